"""Ghosh et al. (ICLR 2023) predictions (neurojax.metrics.imperfect_gradients) against
measurements on quadratics, dense Hessians and autodiff."""
import math
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.metrics import imperfect_gradients as ig
from neurojax.metrics.curvature import dense_hessian
from neurojax.optim.injection import zero_sum_noise_set
from tests._quadratic import as_tree, flat, grad_flat, isotropic_set, quadratic_problem


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):  # restored on exit
        yield


def expected_total_change(h, g, dt, sigma, seed=0):
    """E[L(w + dt(-g + sigma n)) - L(w)] on 1/2 (w-w*)^T H (w-w*), via an isotropic set."""
    nset = isotropic_set(seed, g.size)
    wstar = np.zeros(g.size)
    w = np.linalg.solve(h, g)
    lossq = lambda v: 0.5 * (v - wstar) @ h @ (v - wstar)
    return np.mean([lossq(w + dt * (-g + sigma * n)) for n in nset]) - lossq(w)


def two_layer_loss(x, y, activation):
    act = {"linear": lambda t: t, "relu": jax.nn.relu}[activation]
    return lambda p: jnp.mean((act(x @ p[0]) @ p[1] - y) ** 2)


@pytest.mark.parametrize("normalization", ["paper", "mean_square"])
def test_lemma21_exact_on_quadratic_over_zero_sum_set(normalization):
    loss, params, h, _, _ = quadratic_problem(0, [3.0, 1.5, 1.0, 0.5, 0.2, 0.05])
    g = grad_flat(loss, params)
    b, sigma, dt, r = 0.37, 1.3, 0.05, 7
    nset = zero_sum_noise_set(jax.random.PRNGKey(3), params, r, normalization=normalization)
    flat_set = np.asarray(jax.vmap(flat)(nset))
    np.testing.assert_allclose(flat_set.sum(0), 0.0, atol=1e-14)
    meas = ig.measure_excess_loss(loss, params, dt, b=b, sigma=sigma, noise_set=nset)
    quad = ig.noise_set_quadratic(h, flat_set)
    pred = ig.lemma21_excess_loss(g, dt, hessian=h, b=b, sigma=sigma, noise_quadratic=quad)
    np.testing.assert_allclose(meas["delta_loss"], pred["total"], rtol=1e-8)
    # the noise odd terms cancel: without bias, the per-vector values differ but their
    # mean is the variance term alone
    meas0 = ig.measure_excess_loss(loss, params, dt, sigma=sigma, noise_set=nset)
    assert np.ptp(np.asarray(meas0["per_vector"])) > 1e-3 * abs(float(meas0["delta_loss"]))
    np.testing.assert_allclose(meas0["delta_loss"],
                               0.5 * sigma ** 2 * float(quad) * dt ** 2, rtol=1e-8)


def test_lemma21_residual_is_third_order_on_nonlinear_net():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 3))
    y = np.tanh(x @ rng.standard_normal((3, 1)))
    params = [jnp.asarray(rng.standard_normal((3, 4)) / 2), jnp.asarray(rng.standard_normal((4, 1)))]

    def loss(p):
        return jnp.mean((jnp.tanh(x @ p[0]) @ p[1] - y) ** 2)

    h = np.asarray(jax.jit(lambda p: dense_hessian(loss, p))(params))
    g = grad_flat(loss, params)
    nset = as_tree(isotropic_set(9, g.size), params)
    res = []
    for dt in (0.01, 0.005):
        meas = ig.measure_excess_loss(loss, params, dt, b=0.2, sigma=0.5, noise_set=nset)
        pred = ig.lemma21_excess_loss(g, dt, hessian=h, b=0.2, sigma=0.5)
        res.append(abs(float(meas["delta_loss"] - pred["total"])))
        scale = sum(abs(float(pred[t])) for t in ("bias_linear", "bias_quadratic",
                                                   "bias_cross", "variance"))
        assert res[-1] < 0.05 * scale
    assert 6.5 < res[0] / res[1] < 10.0  # O(dt^3): halving dt divides it by ~8


def test_bias_pq_affine_in_gradient_norm_and_quadratic_in_b():
    lam = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.1])
    loss, params, h, x, y = quadratic_problem(6, lam)
    wstar = np.linalg.lstsq(x, y, rcond=None)[0]
    ghat = np.random.default_rng(0).standard_normal(lam.size)
    ghat /= np.linalg.norm(ghat)
    dt, b = 0.05, 0.02
    _, unravel = jax.flatten_util.ravel_pytree(params)
    cs = np.array([0.0, 0.25, 0.5, 1.0, 2.0])
    deltas = {}
    for bb in (b, 2 * b):
        vals = []
        for c in cs:
            p = unravel(jnp.asarray(wstar + c * np.linalg.solve(h, ghat)))  # gradient = c g_hat
            if c > 0:
                np.testing.assert_allclose(grad_flat(loss, p), c * ghat, atol=1e-9)
            vals.append(float(ig.measure_excess_loss(loss, p, dt, b=bb)["delta_loss"]))
        deltas[bb] = np.array(vals)
    P, Q = ig.bias_pq(ghat, h, dt)
    np.testing.assert_allclose(deltas[b], 0.5 * b ** 2 * Q * dt ** 2 + b * cs * P * dt,
                               rtol=1e-8, atol=1e-14)
    slope, intercept = np.polyfit(cs, deltas[b], 1)
    np.testing.assert_allclose(slope, b * P * dt, rtol=1e-8)
    np.testing.assert_allclose(deltas[2 * b][0] / deltas[b][0], 4.0, rtol=1e-8)
    # Q = <beta, H beta> with beta = 1, written out
    np.testing.assert_allclose(Q, np.ones(lam.size) @ h @ np.ones(lam.size), rtol=1e-12)


def test_noise_threshold_tight_for_isotropic_hessian():
    dt, sigma, d = 0.1, 0.7, 5
    g = np.random.default_rng(1).standard_normal(d)
    thr = float(ig.noise_threshold(np.linalg.norm(g), sigma, dt))
    np.testing.assert_allclose(thr, 20.0 / (1 + sigma ** 2 / (g @ g)), rtol=1e-12)
    assert abs(expected_total_change(thr * np.eye(d), g, dt, sigma)) < 1e-12 * (g @ g)
    assert expected_total_change(0.95 * thr * np.eye(d), g, dt, sigma) < 0
    assert expected_total_change(1.05 * thr * np.eye(d), g, dt, sigma) > 0


def test_noise_descent_and_ascent_conditions_on_random_spectra():
    rng = np.random.default_rng(2)
    dt, d = 0.1, 6
    counts = {"descent": 0, "ascent": 0}
    for trial in range(60):
        g = rng.standard_normal(d)
        sigma = rng.uniform(0, 2) * np.linalg.norm(g)
        thr = float(ig.noise_threshold(np.linalg.norm(g), sigma, dt))
        lam = thr * rng.uniform(0.3, 1.7, size=d) * rng.choice([0.6, 1.0, 1.6])
        z = np.linalg.qr(rng.standard_normal((d, d)))[0]
        h = (z * lam) @ z.T
        cond = ig.noise_descent_conditions(lam.max(), lam.min(), np.linalg.norm(g), sigma, dt)
        change = expected_total_change(h, g, dt, sigma, seed=trial)
        if cond["descent_guaranteed"]:
            counts["descent"] += 1
            assert change <= 0
        if cond["ascent_guaranteed"]:
            counts["ascent"] += 1
            assert change >= 0
    assert counts["descent"] >= 5 and counts["ascent"] >= 5  # both branches exercised


def test_bias_bound_forms():
    psi, n, dt = 3.0, 16, 0.01
    x = psi * dt
    # Eq. 55's larger root (numpy) at b = 1 gives the paper's bound
    roots = np.roots([1.0, -math.sqrt(n) * (1 + x), -n * psi * dt / 2])
    np.testing.assert_allclose(ig.bias_descent_bound(psi, n, dt), 1 / roots.max(), rtol=1e-12)
    # rigorous form: root of x^2 (1 - psi dt / 2) - x sqrt(N)(1 + psi dt) - N psi dt / 2
    roots = np.roots([1.0 - x / 2, -math.sqrt(n) * (1 + x), -n * psi * dt / 2])
    np.testing.assert_allclose(ig.bias_descent_bound(psi, n, dt, form="rigorous"),
                               1 / roots.max(), rtol=1e-12)
    # the first-order form agrees to O((psi dt)^2)
    approx = float(ig.bias_descent_bound(psi, n, dt, form="approx"))
    assert abs(approx / float(ig.bias_descent_bound(psi, n, dt)) - 1) < 2 * x ** 2
    assert float(ig.bias_descent_bound(psi, n, 3.0, form="rigorous")) < 0.0  # psi dt > 2


@pytest.mark.parametrize("form,dt", [("rigorous", 0.2), ("paper", 0.01)])
def test_bias_bound_guarantees_descent(form, dt):
    rng = np.random.default_rng(3)
    d = 6
    ones = np.ones(d)
    used = 0
    for trial in range(80):
        lam = rng.uniform(0.0, 2.0, size=d) ** rng.choice([1, 2])
        z = np.linalg.qr(rng.standard_normal((d, d)))[0]
        h = (z * lam) @ z.T
        kind = trial % 3  # random gradient, gradient along beta, along the top eigenvector
        g = [rng.standard_normal(d), ones * rng.uniform(0.1, 3), z[:, 0] * rng.uniform(0.1, 3)][kind]
        psi = np.linalg.norm(h)
        bound = float(ig.bias_descent_bound(psi, d, dt, form=form))
        if bound <= 0:
            continue  # psi dt >= 2: no guarantee even without bias
        used += 1
        b = 0.999 * bound * np.linalg.norm(g)
        step = dt * (-g + b * ones)
        # exact change of the quadratic with gradient g and Hessian h at w
        change = g @ step + 0.5 * step @ h @ step
        assert change < 0, (trial, change)
    assert used >= 60


def test_bias_bound_tight_for_linear_loss():
    d, dt = 9, 0.1
    g = np.ones(d) * 0.4  # linear loss <g, w>: psi = 0, gradient along beta
    bound = float(ig.bias_descent_bound(0.0, d, dt))
    np.testing.assert_allclose(bound, 1 / 3)
    for factor, sign in ((0.999, -1), (1.001, 1)):
        b = factor * bound * np.linalg.norm(g)
        assert np.sign(g @ (dt * (-g + b * np.ones(d)))) == sign


def test_corollary_a2_multistep_on_quadratic():
    rng = np.random.default_rng(7)
    d, k = 5, 4
    lam = np.array([3.0, 1.0, 0.5, 0.2, 0.1])
    z = np.linalg.qr(rng.standard_normal((d, d)))[0]
    h = (z * lam) @ z.T
    wstar, w0 = rng.standard_normal(d), rng.standard_normal(d)
    biases0 = rng.standard_normal((k, d))
    sigmas = rng.uniform(0.5, 1.5, k)
    lossq = lambda v: 0.5 * (v - wstar) @ h @ (v - wstar)
    res = []
    for dt in (0.02, 0.01):
        ws = [w0]
        for _ in range(k):
            ws.append(ws[-1] - dt * h @ (ws[-1] - wstar))
        grads = np.array([h @ (w - wstar) for w in ws[:-1]])
        # exact: w~_k - w_k = sum_i A^{k-i} dt u_i, A = I - dt H; noise adds its variance
        a = np.eye(d) - dt * h
        e = sum(np.linalg.matrix_power(a, k - i) @ (dt * biases0[i - 1]) for i in range(1, k + 1))
        noise = sum(0.5 * dt ** 2 * sigmas[i - 1] ** 2 / d *
                    np.trace(np.linalg.matrix_power(a, k - i) @ h @ np.linalg.matrix_power(a, k - i))
                    for i in range(1, k + 1))
        exact = lossq(ws[-1] + e) + noise
        pred = float(ig.corollary_a2_expected_loss(lossq(ws[-1]), grads, h, biases0, sigmas, dt))
        excess = exact - lossq(ws[-1])
        res.append(abs(pred - exact))
        assert res[-1] < 0.05 * abs(excess)
    assert 6.0 < res[0] / res[1] < 10.0  # O(dt^3)
    # k = 1 is Lemma 2.1 with bias vector b beta
    g0 = h @ (w0 - wstar)
    one = ig.corollary_a2_expected_loss(0.0, g0[None], h, biases0[:1], sigmas[:1], 0.02)
    bnorm = np.linalg.norm(biases0[0])
    lem = ig.lemma21_excess_loss(g0, 0.02, hessian=h, b=bnorm / math.sqrt(d), beta=biases0[0],
                                 sigma=sigmas[0])
    np.testing.assert_allclose(float(one), float(lem["total"]), rtol=1e-12)


def test_hessian_trace_formulas_vs_dense_hessian():
    rng = np.random.default_rng(8)
    n, d, k = 25, 4, 6
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, 1))
    w = jnp.asarray(rng.standard_normal((d, 1)))
    one = lambda p: jnp.mean((x @ p - y) ** 2)
    np.testing.assert_allclose(ig.hessian_trace_one_layer(x), np.trace(jax.jit(lambda p: dense_hessian(one, p))(w)),
                               rtol=1e-10)
    tr1 = float(ig.hessian_trace_one_layer(x))
    for seed in range(2):
        r = np.random.default_rng(seed)
        w1, w2 = r.standard_normal((d, k)) / math.sqrt(d), r.standard_normal((k, 1)) / math.sqrt(k)
        params = [jnp.asarray(w1), jnp.asarray(w2)]
        traces = {}
        for act in ("linear", "relu"):
            dense = np.trace(jax.jit(lambda p: dense_hessian(two_layer_loss(x, y, act), p))(params))
            traces[act] = float(ig.hessian_trace_two_layer(x, w1, w2, act))
            np.testing.assert_allclose(traces[act], dense, rtol=1e-10)
        # Eq. 27: (p + sum w2^2) Tr H_1 and Cauchy-Schwarz p <= ||W1||_F^2
        p = np.sum((x @ w1) ** 2) / np.sum(x ** 2)
        np.testing.assert_allclose(traces["linear"], (p + np.sum(w2 ** 2)) * tr1, rtol=1e-10)
        assert p <= np.sum(w1 ** 2)
        assert traces["relu"] < traces["linear"]  # Theorem A.5


def test_predictions_run_under_jit():
    g, h = jnp.array([1.0, -2.0, 0.5]), jnp.diag(jnp.array([1.0, 2.0, 3.0]))
    f = jax.jit(lambda b, s: ig.lemma21_excess_loss(g, 0.1, hessian=h, b=b, sigma=s)["total"])
    np.testing.assert_allclose(f(0.2, 0.5), ig.lemma21_excess_loss(g, 0.1, hessian=h, b=0.2,
                                                                   sigma=0.5)["total"])
    thr = jax.jit(lambda s: ig.noise_threshold(2.0, s, 0.1))(1.0)
    np.testing.assert_allclose(thr, 20 / 1.25)
