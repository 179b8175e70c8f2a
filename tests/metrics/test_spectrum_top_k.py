"""Top-k eigenvalues without the covariance (eigenspectrum's 'block_krylov' and
'randomized' methods) against dense float64 eigh on planted spectra, and
alpha / spectrum_metrics computed from them against the full spectrum."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from neurojax.metrics import alpha, eigenspectrum, participation_ratio, spectrum_metrics
from neurojax.metrics import spectrum
from neurojax.metrics.covariance_spectrum import TRUNCATED_METHODS
from neurojax.metrics.spectrum import alpha_top_k

# m = min(n, D) = 600: large enough that k = 128 (+ the default subspace) is a
# real truncation, small enough for a dense float64 reference in well under 1 s.
N, D = 3000, 600


def planted(n: int, d: int, a: float, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """Gaussian rows with covariance Q diag(j^-a) Q^T, Q a random rotation."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.arange(1, d + 1.0) ** -a
    x = (rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T + offset
    return x.astype(np.float32)


def dense_spectrum(x: np.ndarray) -> np.ndarray:
    """float64 eigvalsh of the centred 1/n covariance, descending."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    return scipy.linalg.eigvalsh(x.T @ x / len(x))[::-1]


@pytest.fixture(scope="module")
def features():
    return {a: planted(N, D, a, seed=int(10 * a)) for a in (0.5, 1.0, 2.0)}


# the default method in the default run; 'randomized' with -m slow (suite time)
@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m == "randomized"
                                    else m for m in TRUNCATED_METHODS])
def test_top_k_match_dense_eigvalsh(features, method):
    # Ritz values are lower bounds (interlacing); on these spectra the default
    # subspaces give a relative error <= 2e-2 up to rank 100 for the flattest
    # decay (a = 0.5) and <= 1e-3 for a = 1, and the top 10 to 1e-4. At a = 2,
    # lambda_100 = 1e-4 lambda_1, so float32 round-off in the products with C
    # (~1e-7 lambda_1) is already ~1e-3 of it: subspace iteration sits there.
    bounds = {0.5: 2e-2, 1.0: 1e-3, 2.0: 2e-3}
    for a, x in features.items():
        ref = dense_spectrum(x)
        got = np.asarray(eigenspectrum(x, method=method))
        assert got.shape == (128,)
        assert np.all(np.diff(got) <= 0)
        rel = np.abs(got - ref[:128]) / ref[:128]
        assert rel[:100].max() < bounds[a], (a, rel[:100].max())
        assert rel[:10].max() < 1e-4, (a, rel[:10].max())
        assert np.all(got <= ref[:128] + 1e-6 * ref[0])          # interlacing (+ round-off)
    # Fewer iterations are measurably worse: the bound above is not slack.
    ref = dense_spectrum(features[0.5])
    poor = np.asarray(eigenspectrum(features[0.5], method=method, iterations=1,
                                    oversampling=0))
    assert (np.abs(poor - ref[:128]) / ref[:128])[:100].max() > 0.1


def test_alpha_top_k_recovers_planted_and_full(features):
    for a, x in features.items():
        full = alpha(x, method="covariance")
        for method in TRUNCATED_METHODS:
            fit = alpha(x, method=method)
            assert abs(float(fit.alpha) - a) < 0.05, (a, method, float(fit.alpha))
            assert abs(float(fit.alpha) - float(full.alpha)) < 5e-3, (a, method)
            # The normaliser is the exact trace, so the intercept matches too.
            np.testing.assert_allclose(fit.normalizer, full.normalizer, rtol=1e-5)
            np.testing.assert_allclose(fit.intercept, full.intercept, atol=5e-3)
            assert int(fit.num_points) == int(full.num_points)


def test_alpha_auto_switches_to_block_krylov(features, monkeypatch):
    assert alpha_top_k(100) == 128 and alpha_top_k(500) == 640
    x = features[0.5]            # where Krylov and the full eigh differ by ~4e-5
    full = float(alpha(x, method="covariance").alpha)
    krylov = float(alpha(x, method="block_krylov").alpha)
    assert abs(krylov - full) > 1e-5
    # Below the crossover (min(n, D) = 600 < 1024), 'auto' is the full eigh.
    np.testing.assert_allclose(alpha(x).alpha, full, rtol=1e-6)
    # Above it (the crossover moved under the data), block Krylov.
    monkeypatch.setattr(spectrum, "AUTO_TRUNCATED_MIN_DIM", 600)
    np.testing.assert_allclose(alpha(x).alpha, krylov, rtol=1e-6)
    # A fit to rank 400 needs k = 512, a 1792-d subspace > 600: full eigh.
    assert not spectrum._prefer_top_k(600, 400, None)


@pytest.mark.slow  # suite time: a CLI / quick-run path; -m slow runs it
def test_deterministic_seed_and_jit(features):
    x = features[1.0]
    a = eigenspectrum(x, method="block_krylov")
    np.testing.assert_array_equal(a, eigenspectrum(x, method="block_krylov", seed=0))
    np.testing.assert_array_equal(
        a, eigenspectrum(x, method="block_krylov", seed=jax.random.key(0)))
    other = eigenspectrum(x, method="block_krylov", seed=1)
    assert not np.array_equal(a, other)                          # the seed is used
    np.testing.assert_allclose(other[:100], a[:100], rtol=1e-3)  # and does not matter
    jitted = jax.jit(lambda f: eigenspectrum(f, method="block_krylov"))(x)
    np.testing.assert_allclose(jitted, a, rtol=1e-5)


def test_centring_uncentred_and_transposed():
    # n < D: the iteration runs on the n x n side. A mean 10x the spread: the
    # centring (a rank-1 correction, X_c never stored) still holds to 1e-4.
    x = planted(300, 500, 1.0, seed=5, offset=10.0)
    ref = dense_spectrum(x)
    got = np.asarray(eigenspectrum(x, method="block_krylov", max_eigenvalues=48))
    np.testing.assert_allclose(got[:20], ref[:20], rtol=1e-4)
    # Uncentred: the second moment X^T X / n (its top eigenvalue is the mean's).
    unc = x.astype(np.float64)
    ref_unc = scipy.linalg.eigvalsh(unc @ unc.T / len(unc))[::-1]
    got_unc = eigenspectrum(x, method="block_krylov", max_eigenvalues=48, center=False)
    np.testing.assert_allclose(got_unc[:20], ref_unc[:20], rtol=1e-4, atol=2e-6 * ref_unc[0])


def test_rank_deficient_features_give_no_spurious_eigenvalues():
    # Rank 20 < the subspace: the Krylov space is exhausted, the extra blocks
    # are null directions, and their Ritz values numerical zeros.
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((300, 20)) @ rng.standard_normal((20, 500))).astype(np.float32)
    ref = dense_spectrum(x)
    for method in TRUNCATED_METHODS:
        got = np.asarray(eigenspectrum(x, method=method, max_eigenvalues=48))
        np.testing.assert_allclose(got[:20], ref[:20], rtol=1e-4)
        assert got[20:].max() < 1e-5 * got[0]


def test_alpha_top_k_on_real_features():
    # Real features (not a planted law): a random 1024-unit ReLU layer on the
    # digits (1797 x 64 pixels). Block Krylov's alpha matches the float64
    # full-spectrum fit far inside the fit's own resampling noise (~1e-2 here).
    from sklearn.datasets import load_digits
    pixels = load_digits().data / 16.0
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 1024)) / 8.0
    x = np.maximum(pixels @ w + rng.standard_normal(1024) * 0.1, 0.0).astype(np.float32)
    ref = dense_spectrum(x)
    got = np.asarray(eigenspectrum(x, method="block_krylov"))
    np.testing.assert_allclose(got[:100], ref[:100], rtol=1e-3)
    full = alpha(ref)                                  # float64 spectrum, full
    np.testing.assert_allclose(alpha(x, method="block_krylov").alpha, full.alpha, atol=1e-3)


@pytest.mark.parametrize("case", ["random", "ill_conditioned", "rank_deficient", "zero_column"])
def test_orthonormal_columns_span_and_fallback(case):
    # CholeskyQR2 where it works, Householder QR where it does not: always
    # orthonormal columns, spanning v's column space where v has full rank.
    from neurojax.metrics.covariance_spectrum import _orthonormal_columns
    rng = np.random.default_rng(1)
    v = rng.standard_normal((500, 16))
    if case == "ill_conditioned":                      # cond 1e6 > u^-1/2
        v = v * np.logspace(0, -6, 16)
    if case == "rank_deficient":
        v[:, 7] = v[:, 3]
    if case == "zero_column":
        v[:, 0] = 0.0
    q = np.asarray(jax.jit(_orthonormal_columns)(jnp.asarray(v, jnp.float32)), np.float64)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(q.T @ q, np.eye(16), atol=1e-5)
    if case in ("random", "ill_conditioned"):          # same span as v
        u = scipy.linalg.orth(v)
        np.testing.assert_allclose(q @ (q.T @ u), u, atol=1e-4)


def test_spectrum_metrics_top_k_exact_trace_and_bounds(features):
    x = features[1.0]
    ref = dense_spectrum(x)
    full = spectrum_metrics(x, tail_start=20)
    top = spectrum_metrics(x, tail_start=20, method="block_krylov", return_eigenvalues=True)
    assert top["eigenvalues"].shape == (128,)
    trace = ref.sum()
    np.testing.assert_allclose(top["total_variance"], trace, rtol=1e-5)
    np.testing.assert_allclose(top["tail_ratio"], ref[19:].sum() / trace, rtol=1e-4)
    np.testing.assert_allclose(top["alpha"], full["alpha"], atol=1e-3)
    lam = ref[:128]
    p = lam / trace + 1e-7
    np.testing.assert_allclose(top["effective_rank_eigenvalues"],
                               np.exp(-(p * np.log(p)).sum()), rtol=1e-4)
    assert float(top["effective_rank_eigenvalues"]) <= float(full["effective_rank_eigenvalues"])
    np.testing.assert_allclose(top["participation_ratio"], trace ** 2 / (lam ** 2).sum(),
                               rtol=1e-4)
    assert float(top["participation_ratio"]) >= float(full["participation_ratio"]) * (1 - 1e-5)
    s = np.sqrt(lam)
    ps = s / s.sum() + 1e-7
    np.testing.assert_allclose(top["effective_rank"], np.exp(-(ps * np.log(ps)).sum()),
                               rtol=1e-4)


def test_errors_before_compiling():
    x = np.ones((50, 30), np.float32)
    with pytest.raises(ValueError, match="max_eigenvalues"):
        eigenspectrum(x, method="block_krylov", max_eigenvalues=31)   # k > min(n, D)
    with pytest.raises(ValueError, match="max_eigenvalues"):
        eigenspectrum(x, method="randomized", max_eigenvalues=0)
    with pytest.raises(ValueError, match="oversampling"):
        eigenspectrum(x, method="randomized", max_eigenvalues=10, oversampling=-1)
    with pytest.raises(ValueError, match="oversampling"):
        eigenspectrum(x, method="randomized", max_eigenvalues=10, oversampling=25)
    with pytest.raises(ValueError, match="oversampling"):
        eigenspectrum(x, method="block_krylov", max_eigenvalues=10, oversampling=1.5)
    with pytest.raises(ValueError, match="iterations"):
        eigenspectrum(x, method="block_krylov", max_eigenvalues=10, iterations=-1)
    with pytest.raises(ValueError, match="seed"):
        eigenspectrum(x, method="block_krylov", max_eigenvalues=10, seed="zero")
    with pytest.raises(ValueError, match="max_eigenvalues"):
        alpha(planted(200, 150, 1.0), method="block_krylov", max_eigenvalues=64)
    with pytest.raises(ValueError, match="whole spectrum"):
        participation_ratio(x, method="block_krylov")
    with pytest.raises(ValueError, match="tail_start"):
        spectrum_metrics(planted(400, 300, 1.0), method="block_krylov", tail_start=130)
    with pytest.raises(ValueError, match="method"):
        eigenspectrum(x, method="lanczos")
