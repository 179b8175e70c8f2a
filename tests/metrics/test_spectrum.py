"""Spectrum metrics against dense float64 linear algebra, scipy and the
reference formulas (FastSSL's Stringer fit, RankMe on singular values)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from sklearn.metrics import r2_score

from neurojax.metrics import (DEFAULT_FIT_RANGE, PowerLawFit, alpha, effective_rank,
                              eigenspectrum, eigenspectrum_from_covariance,
                              participation_ratio, spectrum_metrics, tail_ratio)


def power_law_features(n: int, d: int, a: float, seed: int = 0) -> np.ndarray:
    """n Gaussian examples, covariance Q diag(j^-a) Q^T with a random rotation Q."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.arange(1, d + 1.0) ** -a
    return ((rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T).astype(np.float32)


def ref_spectrum(x: np.ndarray, center: bool = True) -> np.ndarray:
    """float64 eigh of the 1/n covariance, descending, min(n, D) values."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if center:
        x = x - x.mean(0)
    lam = scipy.linalg.eigh(x.T @ x / len(x), eigvals_only=True)[::-1]
    return lam[:min(x.shape)]


# --- alpha recovers a planted power law -------------------------------------

@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_alpha_recovers_planted_power_law(a):
    # The sample spectrum is biased by finite n: to second order
    # E[lam_hat_j] ~ lam_j (1 + 1/n sum_{k != j} lam_k / (lam_j - lam_k)),
    # largest for flat spectra (a = 0.5), where many tail modes k > j are
    # comparable to lam_j. D/n = 1/16 keeps it small over ranks 4..100 (a
    # numpy sweep gave errors <= 0.015 for a = 0.5 over seeds; 0.03 at
    # D/n = 1/8 with D = 512), and D = 256 > 100 keeps the fit range off the
    # truncated end of the population spectrum.
    fit = alpha(power_law_features(4000, 256, a), DEFAULT_FIT_RANGE)
    assert isinstance(fit, PowerLawFit)
    assert abs(float(fit.alpha) - a) < 0.05
    assert float(fit.r2) > 0.99
    assert int(fit.num_points) == 97


def test_alpha_invariant_to_scale_and_rotation():
    # Same shapes as above: the compiled programs are reused.
    x = power_law_features(4000, 256, 1.0, seed=1)
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((256, 256)))
    base = float(alpha(x).alpha)
    np.testing.assert_allclose(float(alpha(7.5 * x).alpha), base, rtol=1e-4)
    np.testing.assert_allclose(float(alpha((x @ q).astype(np.float32)).alpha), base,
                               rtol=1e-3)


# --- eigenspectrum ------------------------------------------------------------

@pytest.mark.parametrize("n,d", [(40, 100), (300, 50)])
@pytest.mark.parametrize("method", ["auto", "covariance", "gram", "svd"])
def test_eigenspectrum_matches_float64_eigh(n, d, method):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, d)) * np.linspace(3, 0.1, d) + 5.0).astype(np.float32)
    ref = ref_spectrum(x)
    got = np.asarray(eigenspectrum(x, method=method))
    assert got.shape == (min(n, d),)
    np.testing.assert_allclose(got, np.maximum(ref, 0), rtol=0, atol=2e-5 * ref[0])
    # Centred rank is n - 1 when n <= D: the last eigenvalue is a numerical 0.
    if n <= d:
        assert got[-1] <= 1e-5 * got[0]


def test_eigenspectrum_flattens_uncentred_and_truncates():
    x = np.random.default_rng(3).standard_normal((30, 2, 3, 4)).astype(np.float32) + 1
    ref, ref_uncentred = ref_spectrum(x), ref_spectrum(x, center=False)
    # float32 eigh: errors of a few eps * lambda_1 (seen on CPU and H200).
    tol = dict(rtol=0, atol=2e-5 * ref[0])
    np.testing.assert_allclose(eigenspectrum(x), ref, **tol)
    np.testing.assert_allclose(eigenspectrum(x, center=False), ref_uncentred,
                               rtol=0, atol=2e-5 * ref_uncentred[0])
    np.testing.assert_allclose(eigenspectrum(x, max_eigenvalues=5), ref[:5], **tol)
    cov = np.cov(x.reshape(30, -1).T, bias=True)
    np.testing.assert_allclose(eigenspectrum_from_covariance(cov), ref, **tol)


def test_eigenspectrum_float32_large_offset_is_stable():
    # A mean 1e3 times the spread: E[ff^T] - mu mu^T would cancel 6 digits.
    rng = np.random.default_rng(4)
    x = (1000.0 + rng.standard_normal((500, 20)) * np.linspace(1, 0.1, 20)).astype(np.float32)
    ref = ref_spectrum(x)
    np.testing.assert_allclose(eigenspectrum(x), ref, rtol=1e-3)


def test_eigenspectrum_x64_accumulates_in_float64():
    x = power_law_features(200, 64, 2.0)
    with jax.enable_x64(True):
        lam = eigenspectrum(x)
        assert lam.dtype == jnp.float64
        np.testing.assert_allclose(lam, ref_spectrum(x), rtol=1e-9, atol=1e-14)
    assert eigenspectrum(x).dtype == jnp.float32
    assert eigenspectrum(x.astype(jnp.bfloat16)).dtype == jnp.float32


def test_eigenspectrum_errors():
    with pytest.raises(ValueError, match="method"):
        eigenspectrum(np.ones((4, 3)), method="qr")
    with pytest.raises(ValueError, match="at least"):
        eigenspectrum(np.ones(4))
    with pytest.raises(ValueError, match="max_eigenvalues"):
        eigenspectrum(np.ones((4, 3)), max_eigenvalues=0)


# --- alpha against scipy / numpy / the reference fit ------------------------

def noisy_spectrum(m=300, a=1.3, seed=5):
    rng = np.random.default_rng(seed)
    lam = np.arange(1, m + 1.0) ** -a * np.exp(0.1 * rng.standard_normal(m))
    return np.sort(lam)[::-1]                   # alpha sorts; compare like with like


def stringer_fit(ss, trange):
    """FastSSL's ``stringer_get_powerlaw`` fit, written out (0-based trange)."""
    y = np.log(np.abs(ss))[trange][:, None]
    r = trange + 1                              # on a copy: no mutation
    x = np.concatenate([-np.log(r)[:, None], np.ones((r.size, 1))], axis=1)
    w = 1.0 / r[:, None]
    return np.linalg.solve(x.T @ (x * w), (w * x).T @ y).ravel()


def test_alpha_ols_equals_linregress():
    lam = noisy_spectrum()
    fit = alpha(lam, (4, 100), weighting="none", normalize=False)
    ranks = np.arange(4, 101)
    ref = scipy.stats.linregress(np.log(ranks), np.log(lam[3:100]))
    np.testing.assert_allclose(fit.alpha, -ref.slope, rtol=1e-5)
    np.testing.assert_allclose(fit.intercept, ref.intercept, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.r2, ref.rvalue ** 2, rtol=1e-5)


def test_alpha_inverse_rank_equals_weighted_polyfit_and_stringer():
    lam = noisy_spectrum()
    ratio = lam / lam.sum()                     # sklearn's explained_variance_ratio_
    fit = alpha(lam, (4, 100))                  # defaults: 1/rank weights, normalised
    ranks = np.arange(4, 101)
    # polyfit weights multiply residuals, so sqrt of the least-squares weights.
    slope, intercept = np.polyfit(np.log(ranks), np.log(ratio[3:100]), 1,
                                  w=np.sqrt(1.0 / ranks))
    np.testing.assert_allclose(fit.alpha, -slope, rtol=1e-5)
    np.testing.assert_allclose(fit.intercept, intercept, rtol=1e-5)
    b = stringer_fit(ratio, np.arange(3, 100))
    np.testing.assert_allclose([fit.alpha, fit.intercept], b, rtol=1e-5)
    yhat = intercept + slope * np.log(ranks)
    np.testing.assert_allclose(fit.r2, r2_score(np.log(ratio[3:100]), yhat), rtol=1e-5)
    np.testing.assert_allclose(fit.normalizer, lam.sum(), rtol=1e-6)
    # FastSSL's R^2 range, ranks 5..500 clipped to the spectrum's 300.
    fit2 = alpha(lam, (4, 100), r2_range=(5, 500))
    yhat2 = intercept + slope * np.log(np.arange(5, 301))
    np.testing.assert_allclose(fit2.r2, r2_score(np.log(ratio[4:300]), yhat2), rtol=1e-4)


def test_alpha_does_not_mutate_and_accepts_any_order():
    lam = noisy_spectrum()
    before = lam.copy()
    fit = alpha(lam)
    np.testing.assert_array_equal(lam, before)
    np.testing.assert_allclose(alpha(lam[::-1].copy()).alpha, fit.alpha, rtol=1e-6)


def test_alpha_zero_and_negative_eigenvalues():
    lam = np.arange(1, 301.0) ** -1.0
    lam[60:] = 0.0
    lam[70:] = -1e-9                            # round-off below zero
    fit = alpha(lam, (4, 100))
    assert int(fit.num_points) == 57            # ranks 4..60 are usable
    np.testing.assert_allclose(fit.alpha, 1.0, rtol=1e-4)
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-5)
    collapsed = np.zeros(300)
    collapsed[:4] = 1.0
    fit = alpha(collapsed, (4, 100))            # one usable point: no fit
    assert np.isnan(fit.alpha) and np.isnan(fit.intercept) and int(fit.num_points) == 1


def test_alpha_range_clipped_and_errors():
    lam = noisy_spectrum(m=50)
    clipped = alpha(lam, (4, 100))              # ranks past the spectrum's end
    assert int(clipped.last_rank) == 50
    np.testing.assert_allclose(clipped.alpha, alpha(lam, (4, 50)).alpha)
    for bad in [(5, 3), (0, 10), (4,), "4-100"]:
        with pytest.raises(ValueError, match="fit_range"):
            alpha(lam, bad)
    with pytest.raises(ValueError, match="fewer than 2"):
        alpha(lam, (50, 100))
    with pytest.raises(ValueError, match="weighting"):
        alpha(lam, weighting="1/rank")


# --- effective rank, participation ratio, tail ratio ------------------------

@pytest.mark.parametrize("convention", ["singular_values", "eigenvalues"])
def test_effective_rank_flat_and_one_hot(convention):
    np.testing.assert_allclose(effective_rank(np.full(64, 0.3), convention=convention),
                               64, rtol=1e-4)
    one_hot = np.zeros(64)
    one_hot[0] = 2.0
    # eps = 1e-7 is added to every p_k: 1 + 63 eps log(1/eps) ~ 1 + 1e-4, not 1.
    p = np.full(64, 1e-7)
    p[0] += 1
    got = effective_rank(one_hot, convention=convention)
    np.testing.assert_allclose(got, np.exp(-(p * np.log(p)).sum()), rtol=1e-6)
    np.testing.assert_allclose(got, 1, rtol=2e-4)
    np.testing.assert_allclose(effective_rank(one_hot, convention=convention, eps=0.0), 1)


def test_effective_rank_conventions_against_references():
    x = power_law_features(200, 50, 1.0, seed=6)
    lam = np.asarray(eigenspectrum(x))

    def rankme(s, eps=1e-7):
        p = s / s.sum() + eps
        return np.exp(-(p * np.log(p)).sum())
    # Garrido et al.: singular values of the (centred) feature matrix.
    xc = x.astype(np.float64) - x.mean(0)
    s = np.linalg.svd(xc, compute_uv=False)
    np.testing.assert_allclose(effective_rank(x), rankme(s), rtol=1e-4)
    np.testing.assert_allclose(effective_rank(lam), rankme(s), rtol=1e-4)
    # reptrix get_rank: the explained-variance ratios.
    np.testing.assert_allclose(effective_rank(lam, convention="eigenvalues"),
                               rankme(s ** 2), rtol=1e-4)
    with pytest.raises(ValueError, match="convention"):
        effective_rank(lam, convention="svd")


def test_participation_ratio_identities():
    assert np.isclose(participation_ratio(np.ones(17)), 17)
    assert np.isclose(participation_ratio(np.eye(5)[0]), 1)
    x = power_law_features(300, 40, 0.8, seed=7).astype(np.float64)
    cov = np.cov(x.T, bias=True)
    pr = np.trace(cov) ** 2 / np.sum(cov * cov)   # tr(C)^2 / tr(C^2), no eigh
    np.testing.assert_allclose(participation_ratio(x), pr, rtol=1e-4)
    np.testing.assert_allclose(participation_ratio(3.0 * x), pr, rtol=1e-4)


def test_tail_ratio_theorem_2_2():
    m, t = 200, 11
    ranks = np.arange(1, m + 1.0)
    values = []
    for a in [0.5, 1.0, 1.5, 2.0]:
        lam = 3.0 * ranks ** -a
        expected = np.sum(ranks[t - 1:] ** -a) / np.sum(ranks ** -a)
        values.append(float(tail_ratio(lam, t)))
        np.testing.assert_allclose(values[-1], expected, rtol=1e-5)
    assert all(v1 > v2 for v1, v2 in zip(values, values[1:]))   # decreasing in alpha
    assert np.isclose(tail_ratio(ranks ** -1.0, 1), 1.0)
    traced = jax.jit(tail_ratio)(ranks ** -1.0, jnp.asarray(t))
    np.testing.assert_allclose(traced, values[1], rtol=1e-6)
    with pytest.raises(ValueError, match="start_rank"):
        tail_ratio(ranks, 0)


# --- one eigendecomposition, many metrics; jit / vmap ------------------------

def test_spectrum_metrics_against_numpy_and_jit():
    x = power_law_features(500, 120, 1.0, seed=8)
    eager = spectrum_metrics(x, tail_start=5, return_eigenvalues=True)
    lam = ref_spectrum(x)
    np.testing.assert_allclose(eager["eigenvalues"], lam, atol=2e-5 * lam[0])
    ranks = np.arange(4, 101)
    y = np.log(lam[3:100] / lam.sum())
    slope, intercept = np.polyfit(np.log(ranks), y, 1, w=np.sqrt(1.0 / ranks))
    r2 = r2_score(y, intercept + slope * np.log(ranks))

    def rankme(s):
        p = s / s.sum() + 1e-7
        return np.exp(-(p * np.log(p)).sum())
    expected = {
        "alpha": -slope, "alpha_intercept": intercept, "alpha_r2": r2,
        "alpha_num_points": 97, "effective_rank": rankme(np.sqrt(lam)),
        "effective_rank_eigenvalues": rankme(lam),
        "participation_ratio": lam.sum() ** 2 / (lam ** 2).sum(),
        "total_variance": lam.sum(), "tail_ratio": lam[4:].sum() / lam.sum(),
    }
    jitted = jax.jit(lambda f: spectrum_metrics(f, tail_start=5, return_eigenvalues=True))(x)
    assert set(jitted) == set(eager) == set(expected) | {"eigenvalues"}
    for k, v in expected.items():
        np.testing.assert_allclose(eager[k], v, rtol=1e-3, err_msg=k)
    for k in eager:
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # From the eigenvalues: the same numbers without a second eigh.
    from_lam = spectrum_metrics(eager["eigenvalues"], tail_start=5)
    for k in from_lam:
        np.testing.assert_allclose(from_lam[k], eager[k], rtol=1e-6, err_msg=k)


def test_metrics_jit_and_vmap_over_spectra():
    # Length 120 with tail_start: the eager reference reuses the compile above.
    spectra = np.stack([np.arange(1, 121.0) ** -a for a in (0.7, 1.0, 1.6)])
    batched = jax.jit(jax.vmap(lambda s: spectrum_metrics(s, tail_start=3)))(spectra)
    np.testing.assert_allclose(batched["alpha"], [0.7, 1.0, 1.6], rtol=1e-4)
    for i, s in enumerate(spectra):
        one = spectrum_metrics(s, tail_start=3)
        for k in one:
            np.testing.assert_allclose(batched[k][i], one[k], rtol=1e-5, err_msg=k)
