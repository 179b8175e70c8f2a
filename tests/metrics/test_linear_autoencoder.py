"""Regularised linear autoencoders (Kunin et al. 2019): GD-trained decoders (float64)
against numpy's SVD, principal angles against scipy, optima against autodiff."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from neurojax.metrics import linear_autoencoder as lae
from tests._x64 import float64

SINGULAR_VALUES = np.array([6.0, 5.0, 4.0, 3.0, 2.0])
K, LAM = 3, 4.0


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    m = SINGULAR_VALUES.size
    u = np.linalg.qr(rng.standard_normal((m, m)))[0]
    v = np.linalg.qr(rng.standard_normal((n, m)))[0]
    return v @ np.diag(SINGULAR_VALUES) @ u.T  # (n, m): X = x^T = U S V^T


def _train(x, lam, regularization, steps=4000, lr=0.01, seed=1):
    rng = np.random.default_rng(seed)
    m = x.shape[1]
    params = {"encoder": jnp.asarray(0.1 * rng.standard_normal((K, m))),
              "decoder": jnp.asarray(0.1 * rng.standard_normal((m, K)))}
    grad = jax.grad(lambda p: lae.lae_loss(p, x, lam, regularization=regularization))

    @jax.jit
    def run(p):
        def step(p, _):
            return jax.tree.map(lambda a, g: a - lr * g, p, grad(p)), None
        return jax.lax.scan(step, p, None, length=steps)[0]

    return run(params)


@pytest.fixture(scope="module")
def trained():
    with float64():
        x = _data()
        return x, {r: jax.tree.map(np.asarray, _train(x, 0.0 if r == "none" else LAM, r))
                   for r in ("sum", "none")}


def test_l2_regularised_decoder_matches_svd_closed_form(trained):
    x, runs = trained
    w1, w2 = runs["sum"]["encoder"], runs["sum"]["decoder"]
    u, s, _ = np.linalg.svd(x.T)  # independent: numpy's SVD of X
    du, ds, _ = np.linalg.svd(w2, full_matrices=False)
    np.testing.assert_allclose(ds, np.sqrt(1 - LAM / s[:K] ** 2), rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(du * u[:, :K], axis=0)), 1.0, atol=1e-8)
    np.testing.assert_allclose(w1, w2.T, atol=1e-8)  # encoder = decoder^T
    with float64():
        rec = lae.lae_recovery(runs["sum"], x, LAM)
        assert float(rec["singular_value_error"]) < 1e-8
        np.testing.assert_allclose(np.asarray(rec["direction_alignment"]), 1.0, atol=1e-8)


def test_unregularised_recovers_only_the_subspace(trained):
    x, runs = trained
    w1, w2 = runs["none"]["encoder"], runs["none"]["decoder"]
    u = np.linalg.svd(x.T)[0][:, :K]
    np.testing.assert_allclose(scipy.linalg.subspace_angles(w2, u), 0.0, atol=1e-7)
    np.testing.assert_allclose(w2 @ w1, u @ u.T, atol=1e-7)  # the projection
    with float64():
        align = np.asarray(lae.direction_alignment(w2, u))
    assert align.min() < 0.99  # the individual directions are not recovered


def test_principal_angles_match_scipy_including_small_angles():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((7, 3))
    for b in (rng.standard_normal((7, 2)), a[:, :2] + 1e-9 * rng.standard_normal((7, 2)),
              rng.standard_normal((7, 4))):
        with float64():
            got = np.asarray(lae.principal_angles(a, b))
        np.testing.assert_allclose(got, np.sort(scipy.linalg.subspace_angles(a, b)),
                                   rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("regularization", lae.REGULARIZATIONS)
def test_optimum_is_a_critical_point_with_the_closed_form_product(regularization):
    with float64():
        x = _data(seed=2)
        lam = 0.0 if regularization == "none" else LAM
        p = lae.lae_optimum(x, K, lam, regularization=regularization)
        g = jax.grad(lambda q: lae.lae_loss(q, x, lam, regularization=regularization))(p)
        assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(g)) < 1e-10
        xx = x.T @ x
        if regularization == "product":
            # ridge closed form of min_P ||X - P X||^2 + lam ||P||^2, cut to rank K
            full = xx @ np.linalg.inv(xx + lam * np.eye(xx.shape[0]))
            ev, evec = np.linalg.eigh(full)
            want = (evec[:, -K:] * ev[-K:]) @ evec[:, -K:].T
            np.testing.assert_allclose(np.asarray(p["decoder"] @ p["encoder"]), want,
                                       atol=1e-10)
        # lower than random nearby points (a minimum, not a saddle)
        base = float(lae.lae_loss(p, x, lam, regularization=regularization))
        rng = np.random.default_rng(0)
        for _ in range(5):
            q = jax.tree.map(lambda a: a + 1e-3 * rng.standard_normal(a.shape), p)
            assert float(lae.lae_loss(q, x, lam, regularization=regularization)) >= base - 1e-12


def test_decoder_singular_values_clip_at_lambda_and_bad_inputs_raise():
    x = _data()
    sv = np.asarray(lae.lae_decoder_singular_values(x, 5, 20.0))  # sigma^2 = 36,25,16,9,4
    np.testing.assert_allclose(sv, np.sqrt(np.maximum(0, 1 - 20.0 / SINGULAR_VALUES ** 2)),
                               rtol=1e-5)
    assert sv[2:].max() == 0
    p = lae.lae_optimum(x, K, LAM)
    with pytest.raises(ValueError, match="regularization"):
        lae.lae_loss(p, x, LAM, regularization="l1")
    with pytest.raises(ValueError, match="lam"):
        lae.lae_loss(p, x, -1.0)
    with pytest.raises(ValueError, match="k must be"):
        lae.lae_optimum(x, 6, LAM)
    with pytest.raises(ValueError, match="params"):
        lae.lae_loss({"encoder": p["encoder"]}, x)
    with pytest.raises(ValueError, match="decoder"):
        lae.lae_loss({"encoder": p["encoder"][:, :4], "decoder": p["decoder"][:4]}, x)
    with pytest.raises(ValueError, match="rows"):
        lae.principal_angles(np.ones((3, 2)), np.ones((4, 2)))
