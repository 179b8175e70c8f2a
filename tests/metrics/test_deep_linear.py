"""Lambda-balanced deep linear networks (Dominé et al. 2025; Saxe et al. 2014):
the closed form against gradient descent on ``DeepLinear`` in float64, numpy's
eigvalsh, scipy's solve_ivp, Saxe's logistic and jax.jacobian."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from neurojax.metrics import deep_linear as dl
from neurojax.models.mlp import DeepLinear
from tests._x64 import float64 as x64

N_I, N_H, N_O, N = 4, 3, 3, 8
MODEL = DeepLinear(widths=(N_H,), num_outputs=N_O)


def task(seed=0):
    """Whitened inputs (X^T X / n = I) and random targets."""
    rng = np.random.default_rng(seed)
    x = np.sqrt(N) * np.linalg.qr(rng.normal(size=(N, N_I)))[0]
    y = rng.normal(size=(N, N_O))
    return x, y, y.T @ x / N


def loss(params, x, y):
    return 0.5 * jnp.mean(jnp.sum((MODEL.apply(params, x) - y) ** 2, axis=-1))


@jax.jit
def gradient_descent(params, x, y, lr, steps):
    """``steps`` full-batch GD steps (one compilation for every lr and length)."""
    def step(_, p):
        g = jax.grad(loss)(p, x, y)
        return jax.tree.map(lambda a, b: a - lr * b, p, g)
    return jax.lax.fori_loop(0, steps, step, params)


def orthogonal(rng, n):
    return np.linalg.qr(rng.normal(size=(n, n)))[0]


def test_init_is_lambda_balanced_and_keeps_the_gaussian_product():
    with x64():
        key = jax.random.PRNGKey(3)
        w1, w2 = dl.lambda_balanced_init(key, N_I, N_H, N_O, 1.5, scale=0.5)
        assert w1.shape == (N_H, N_I) and w2.shape == (N_O, N_H)
        w1, w2 = np.asarray(w1), np.asarray(w2)
        np.testing.assert_allclose(w2.T @ w2 - w1 @ w1.T, 1.5 * np.eye(N_H), atol=1e-12)
        np.testing.assert_allclose(dl.balance(w1, w2), w2.T @ w2 - w1 @ w1.T, atol=1e-14)
        k1, k2, _ = jax.random.split(key, 3)     # the documented draw: the product is G2 G1
        g1 = 0.5 * np.asarray(jax.random.normal(k1, (N_H, N_I), jnp.float64))
        g2 = 0.5 * np.asarray(jax.random.normal(k2, (N_O, N_H), jnp.float64))
        np.testing.assert_allclose(w2 @ w1, g2 @ g1, atol=1e-12)


def test_balanced_weights_with_more_hidden_units_than_one_side():
    """Hidden units beyond min(N_i, N_o) carry sqrt(lam) in W2 (lam > 0) or
    sqrt(-lam) in W1 (lam < 0) and nothing in the product."""
    with x64():
        rng = np.random.default_rng(7)
        for (ni, nh, no), lam in [((2, 3, 4), 0.7), ((5, 4, 2), -0.7)]:
            u, v, r = orthogonal(rng, no), orthogonal(rng, ni), orthogonal(rng, nh)
            c = np.array([1.3, 0.2])
            w1, w2 = (np.asarray(m) for m in dl.lambda_balanced_weights(u, c, v, r, lam))
            assert w1.shape == (nh, ni) and w2.shape == (no, nh)
            np.testing.assert_allclose(w2.T @ w2 - w1 @ w1.T, lam * np.eye(nh), atol=1e-12)
            np.testing.assert_allclose(w2 @ w1, (u[:, :2] * c) @ v[:, :2].T, atol=1e-12)


def test_init_rejects_impossible_balance():
    with pytest.raises(ValueError, match="hidden_dim <= out_dim"):
        dl.lambda_balanced_init(jax.random.PRNGKey(0), 4, 3, 2, 1.0)
    with pytest.raises(ValueError, match="hidden_dim <= in_dim"):
        dl.lambda_balanced_init(jax.random.PRNGKey(0), 2, 3, 4, -1.0)
    with pytest.raises(ValueError, match="scale"):
        dl.lambda_balanced_init(jax.random.PRNGKey(0), 3, 3, 3, 0.0, scale=0.0)
    w1, w2 = np.ones((3, 4)), np.ones((2, 3))
    with pytest.raises(ValueError, match="sigma_yx"):
        dl.qqt_trajectory(w1, w2, np.ones((4, 2)), 0.0, [0.0, 1.0])
    with pytest.raises(ValueError, match="ascending"):
        dl.qqt_trajectory(w1, w2, np.ones((2, 4)), 0.0, [1.0, 0.5])
    with pytest.raises(ValueError, match="w2"):
        dl.balance(w1, np.ones((2, 4)))
    with pytest.raises(ValueError, match="params"):
        dl.weights_from_params({"params": {"dense_0": {"kernel": w1.T}}})


def test_riccati_rates_are_the_eigenvalues_of_f():
    with x64():
        rng = np.random.default_rng(1)
        for shape in [(3, 5), (5, 2)]:
            for lam in (-1.3, 0.8):
                s = rng.normal(size=shape)
                f = np.asarray(dl.riccati_matrix(s, lam))
                np.testing.assert_allclose(f, f.T)
                np.testing.assert_allclose(dl.riccati_rates(s, lam), np.linalg.eigvalsh(f),
                                           atol=1e-12)
                sv = np.linalg.svd(s, compute_uv=False)
                assert np.max(np.asarray(dl.riccati_rates(s, lam))) == pytest.approx(
                    np.sqrt(sv[0] ** 2 + lam ** 2 / 4))


def test_closed_form_solves_the_riccati_equation():
    """Against scipy integrating d(QQ^T)/dt = F QQ^T + QQ^T F - (QQ^T)^2, with F
    singular (lam = 0, N_i != N_o) and not; one coarse interval split by substeps."""
    with x64():
        rng = np.random.default_rng(2)
        for (ni, nh, no), lam in [((3, 2, 2), 0.0), ((N_I, N_H, N_O), -0.5)]:
            # a lam-balanced start built here: W1 = R A V^T, W2 = U B R^T, B^2 - A^2 = lam
            a = rng.uniform(0.8, 1.2, size=nh)
            b = np.sqrt(a ** 2 + lam)
            v, u, r = orthogonal(rng, ni)[:, :nh], orthogonal(rng, no)[:, :nh], orthogonal(rng, nh)
            w1, w2 = r @ np.diag(a) @ v.T, u @ np.diag(b) @ r.T
            s = rng.normal(size=(no, ni))
            f = np.asarray(dl.riccati_matrix(s, lam))
            p0 = np.asarray(dl.qqt(w1, w2))
            rhs = lambda _, p: (f @ p.reshape(f.shape) + p.reshape(f.shape) @ f  # noqa: E731
                                - p.reshape(f.shape) @ p.reshape(f.shape)).ravel()
            times = np.linspace(0.0, 4.0, 9)
            sol = scipy.integrate.solve_ivp(rhs, (0, 4.0), p0.ravel(), t_eval=times,
                                            method="DOP853", rtol=1e-12, atol=1e-13)
            want = sol.y.T.reshape(9, *f.shape)
            got = dl.qqt_trajectory(w1, w2, s, lam, times)
            np.testing.assert_allclose(got, want, atol=1e-8)
            if lam == 0.0:
                got4 = dl.qqt_trajectory(w1, w2, s, lam, [4.0], substeps=4)
                np.testing.assert_allclose(got4[0], want[-1], atol=1e-8)


def test_gradient_descent_on_deep_linear_follows_the_closed_form():
    """GD (float64, whitened inputs) at t = lr * steps: the gap to the exact flow
    is first order in lr (halves when lr halves) and small at lr = 0.01."""
    with x64():
        x, y, s = task()
        t_end = 4.0
        for lam in (-2.0, 0.0, 2.0):
            w1, w2 = dl.lambda_balanced_init(jax.random.PRNGKey(1), N_I, N_H, N_O, lam,
                                             scale=0.3)
            exact = np.asarray(dl.qqt_trajectory(w1, w2, s, lam, np.linspace(0, t_end, 9)))[-1]
            errors = []
            for lr in (0.04, 0.02, 0.01):
                p = gradient_descent(dl.params_from_weights(w1, w2), x, y, lr,
                                     int(round(t_end / lr)))
                errors.append(np.abs(np.asarray(dl.qqt(*dl.weights_from_params(p))) - exact).max())
            ratios = np.array(errors[:-1]) / np.array(errors[1:])
            assert np.all((ratios > 1.7) & (ratios < 2.3)), (lam, errors)
            assert errors[-1] < 5e-3, (lam, errors)


def test_balance_drift_is_exactly_second_order():
    """One GD step moves B by lr^2 (G2^T G2 - G1 G1^T) exactly; over a fixed
    number of steps the drift's log-log slope in lr is 2."""
    with x64():
        x, y, _ = task(1)
        w1, w2 = dl.lambda_balanced_init(jax.random.PRNGKey(2), N_I, N_H, N_O, 1.0, scale=0.5)
        params = dl.params_from_weights(w1, w2)
        grads = jax.grad(loss)(params, x, y)
        g1, g2 = dl.weights_from_params(grads)
        lr = 0.3
        a1, a2 = dl.weights_from_params(gradient_descent(params, x, y, lr, 1))
        np.testing.assert_allclose(dl.balance(a1, a2) - dl.balance(w1, w2),
                                   dl.balance_step_drift(g1, g2, lr), atol=1e-13)
        np.testing.assert_allclose(dl.balance_step_drift(g1, g2, lr),
                                   lr ** 2 * (np.asarray(g2).T @ g2 - g1 @ np.asarray(g1).T),
                                   atol=1e-14)
        lrs = np.array([0.001, 0.002, 0.004, 0.008])
        drift = []
        for lr in lrs:
            b1, b2 = dl.weights_from_params(gradient_descent(params, x, y, lr, 10))
            drift.append(np.linalg.norm(np.asarray(dl.balance(b1, b2)) - np.eye(N_H)))
        slope = np.polyfit(np.log(lrs), np.log(drift), 1)[0]
        assert 1.9 < slope < 2.1, slope


def test_ntk_from_qqt_matches_jacobian_and_tracks_training():
    with x64():
        x, y, s = task(2)
        w1, w2 = dl.lambda_balanced_init(jax.random.PRNGKey(4), N_I, N_H, N_O, -1.0, scale=0.5)

        def jacobian_ntk(params):
            jac = jax.jacobian(lambda p: MODEL.apply(p, x).reshape(-1))(params)
            rows = [j.reshape(j.shape[0], -1) for j in jax.tree.leaves(jac)]
            return sum(r @ r.T for r in rows)

        params = dl.params_from_weights(w1, w2)
        np.testing.assert_allclose(dl.ntk_from_qqt(dl.qqt(w1, w2), x), jacobian_ntk(params),
                                   rtol=1e-12, atol=1e-12)
        # the closed form's NTK at t = 3 against the Jacobian NTK after GD to t = 3
        lr = 0.005
        trained = gradient_descent(params, x, y, lr, int(3.0 / lr))
        k_exact = dl.ntk_from_qqt(dl.qqt_trajectory(w1, w2, s, -1.0, np.linspace(0, 3, 9))[-1], x)
        k_gd = jacobian_ntk(trained)
        rel = np.linalg.norm(k_exact - k_gd) / np.linalg.norm(k_gd)
        assert rel < 5e-3, rel
        k0 = jacobian_ntk(params)
        assert np.linalg.norm(k_gd - k0) / np.linalg.norm(k0) > 20 * rel   # it did move


def test_lambda_zero_aligned_start_is_saxes_logistic():
    with x64():
        _, _, s = task(3)
        u, sv, vt = np.linalg.svd(s)
        u0 = np.array([1e-3, 2e-3, 5e-4])
        r = orthogonal(np.random.default_rng(4), N_H)
        w1, w2 = dl.lambda_balanced_weights(u, u0, vt.T, r, 0.0)
        np.testing.assert_allclose(np.asarray(w2) @ np.asarray(w1), (u * u0) @ vt[:3], atol=1e-15)
        times = np.linspace(0.0, 12.0, 9)
        fn = dl.qqt_blocks(dl.qqt_trajectory(w1, w2, s, 0.0, times), N_I)[1]
        strengths = np.einsum("oa,toi,ia->ta", u, np.asarray(fn), vt.T[:, :3])
        saxe = np.stack([[sv[a] * np.exp(2 * sv[a] * t) / (np.exp(2 * sv[a] * t) - 1
                                                           + sv[a] / u0[a]) for a in range(3)]
                         for t in times])
        np.testing.assert_allclose(strengths, saxe, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(dl.saxe_mode_strength(times[:, None], sv, u0), saxe,
                                   rtol=1e-12)
        # lam = 1.5: each mode follows du/dt = sqrt(lam^2 + 4u^2)(s - u) (scipy)
        lam = 1.5
        w1, w2 = dl.lambda_balanced_weights(u, u0, vt.T, r, lam)
        fn = dl.qqt_blocks(dl.qqt_trajectory(w1, w2, s, lam, times), N_I)[1]
        strengths = np.einsum("oa,toi,ia->ta", u, np.asarray(fn), vt.T[:, :3])
        sol = scipy.integrate.solve_ivp(
            lambda _, q: np.sqrt(lam ** 2 + 4 * q ** 2) * (sv - q), (0, 12.0), u0,
            t_eval=times, method="DOP853", rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(strengths, sol.y.T, rtol=1e-7, atol=1e-10)
