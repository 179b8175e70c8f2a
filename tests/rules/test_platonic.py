"""Platonic projections (Oland 2024, Efficient Deep Learning, Ch. 7) against numpy:
Eq 7.2, Def 9, the cached pseudo-inverse against fresh lstsq solves, ridge, nested
N_tries, the extreme learning machine, Platonic PCA, Sorted PCA, the EMA sample
weights, and the parameter tree against ``MLP.apply``."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.models import MLP
from neurojax.rules import platonic as pp
from tests._x64 import float64

M, N, K = 96, 3, 2


def task(seed=0, m=M, n=N):
    """Inputs [m, n] and one-hot labels [m, 2] of a non-linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, n))
    labels = (np.sin(2 * x[:, 0]) + x[:, 1] * x[:, -1] > 0).astype(int)
    return x, np.eye(K)[labels]


def with_bias(z):
    return np.concatenate([np.ones((len(z), 1)), z], axis=1)


def lstsq(a, b):
    return np.linalg.lstsq(a, b, rcond=None)[0]


def lsd_np(h, y):
    """Eq 5.3 with a bias column, by numpy lstsq."""
    ht = with_bias(h)
    return np.sum((y - ht @ lstsq(ht, y)) ** 2) / len(y)


def celu(v):
    return np.where(v > 0, v, np.expm1(np.minimum(v, 0)))


def relu(v):
    return np.maximum(v, 0)


def np_(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


# --------------------------------------------------------------------------
# Eq 7.2 and Def 9
# --------------------------------------------------------------------------


def test_eq72_holds_for_full_column_rank_and_fails_for_rank_deficient_z():
    with float64():
        rng = np.random.default_rng(1)
        z = with_bias(rng.standard_normal((40, 5)))
        y = rng.standard_normal((40, K))
        p = rng.standard_normal((6 + K, 9))
        alpha, beta = 0.7, 3.0
        t = alpha * np.concatenate([z, beta * y], axis=1) @ p
        w = np.asarray(pp.eq72_weights(z, y, p, alpha=alpha, beta=beta))
        np.testing.assert_allclose(w, lstsq(z, t), rtol=0, atol=1e-10)
        np.testing.assert_allclose(w, alpha * (p[:6] + beta * np.linalg.pinv(z) @ y @ p[6:]),
                                   rtol=0, atol=1e-12)
        # Rank-deficient Z (a repeated column): Z^+ Z != I, and Eq 7.2 no longer
        # gives the least-squares (minimum-norm) weights of the layer rule.
        z_bad = np.concatenate([z, z[:, 2:3]], axis=1)
        p_bad = rng.standard_normal((7 + K, 9))
        t_bad = alpha * np.concatenate([z_bad, beta * y], axis=1) @ p_bad
        w_bad = np.asarray(pp.eq72_weights(z_bad, y, p_bad, alpha=alpha, beta=beta))
        assert np.max(np.abs(w_bad - np.linalg.pinv(z_bad) @ t_bad)) > 1e-2
        w_rule = np.asarray(pp.solve_linear(z_bad, t_bad))
        np.testing.assert_allclose(w_rule, np.linalg.pinv(z_bad) @ t_bad, rtol=0, atol=1e-10)


def test_fitted_hidden_layer_is_eq72():
    """The fit's W~_1 = alpha (P_Z + beta Z~^+ Y P_Y) with the P it reports."""
    with float64():
        x, y = task()
        alpha, beta = 0.5, 4.0
        params, info = pp.fit_platonic(jax.random.PRNGKey(3), x, y, (7,), "celu",
                                       alpha=alpha, beta=beta, n_tries=3)
        p = np.asarray(info["projection"][0])
        assert p.shape == (N + 1 + K, 7)
        zt = with_bias(x)
        expected = alpha * (p[:N + 1] + beta * lstsq(zt, y) @ p[N + 1:])
        got = np.concatenate([np.asarray(params["dense_0"]["bias"])[None],
                              np.asarray(params["dense_0"]["kernel"])], axis=0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("width", [N + K, N + K + 4])
def test_def9_targets_recovered_when_width_at_least_n_plus_k(width):
    with float64():
        x, y = task(2)
        p = np.random.default_rng(width).standard_normal((N + K, width))
        t = np.concatenate([x, y], axis=1) @ p
        resid = y - t @ lstsq(t, y)                                 # no bias: Def 9 exactly
        assert np.sum(resid ** 2) < 1e-20
        assert float(pp.least_squares_distance(t, y)) < 1e-10     # with the bias column
        # A narrower projection that misses the label axes loses Y.
        p_blind = p[:, :N].copy()
        p_blind[N:] = 0.0
        blind = float(pp.least_squares_distance(np.concatenate([x, y], 1) @ p_blind, y))
        np.testing.assert_allclose(blind, lsd_np(x, y), rtol=1e-10)
        assert blind > 0.1


# --------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------


def test_cached_pseudo_inverse_equals_fresh_lstsq_for_every_candidate():
    """One SVD per layer reused over N_tries candidates (batched matmuls) gives
    each candidate's weights and LSD as a fresh numpy lstsq on its own target."""
    with float64():
        x, y = task(4)
        key, n_tries, width, alpha, beta = jax.random.PRNGKey(5), 6, 5, 0.3, 2.0
        params, info = pp.fit_platonic(key, x, y, (width,), "celu", alpha=alpha, beta=beta,
                                       n_tries=n_tries)
        zt = with_bias(x)
        layer_key = jax.random.fold_in(key, 0)
        lsds, weights = [], []
        for t in range(n_tries):
            p = np.asarray(jax.random.normal(jax.random.fold_in(layer_key, t),
                                             (N + 1 + K, width), jnp.float64))
            w = lstsq(zt, alpha * np.concatenate([zt, beta * y], axis=1) @ p)
            weights.append(w)
            lsds.append(lsd_np(celu(zt @ w), y))
        np.testing.assert_allclose(np.asarray(info["candidate_lsd"][0]), lsds, rtol=1e-8)
        best = int(np.argmin(lsds))
        assert int(info["selected"][0]) == best
        np.testing.assert_allclose(np.asarray(params["dense_0"]["kernel"]), weights[best][1:],
                                   rtol=0, atol=1e-10)
        np.testing.assert_allclose(float(info["lsd"][0]), lsds[best], rtol=1e-8)


def test_solve_linear_tolerances_and_lstsq_solver():
    with float64():
        rng = np.random.default_rng(6)
        u, _ = np.linalg.qr(rng.standard_normal((30, 4)))
        v, _ = np.linalg.qr(rng.standard_normal((4, 4)))
        s = np.array([10.0, 1.0, 1e-3, 1e-6])
        z, b = (u * s) @ v.T, rng.standard_normal((30, 2))

        def truncated(keep):
            return v[:, :keep] @ ((u[:, :keep].T @ b) / s[:keep, None])

        cases = [(dict(), 4), (dict(rtol=1e-6), 3), (dict(rtol=0.0, atol=1e-2), 2),
                 (dict(rtol=1e-6, atol=0.5), 2), (dict(rtol=0.05), 2)]
        for kwargs, keep in cases:
            np.testing.assert_allclose(np.asarray(pp.solve_linear(z, b, **kwargs)),
                                       truncated(keep), rtol=1e-6, err_msg=str(kwargs))
        np.testing.assert_allclose(np.asarray(pp.solve_linear(z, b, solver="lstsq", rtol=1e-6)),
                                   truncated(3), rtol=1e-6)
        for rcond in (1e-6, 1e-4, 0.05):  # the factorised lstsq is jnp.linalg.lstsq's rule
            np.testing.assert_allclose(
                np.asarray(pp.solve_linear(z, b, solver="lstsq", rtol=rcond)),
                np.asarray(jnp.linalg.lstsq(z, b, rcond=rcond)[0]), rtol=1e-10, atol=1e-12)
    assert pp.default_tolerance(jnp.float32) == (float(np.finfo(np.float32).eps), 0.0)


@pytest.mark.parametrize("shape", [(500, 33), (40, 33), (20, 33)])
def test_thin_svd_matches_numpy_for_tall_and_wide_matrices(shape):
    """The QR route (tall) and the direct SVD (near-square, wide): singular
    values as numpy's to float32 rounding, orthonormal U and V, U S V^T = Z."""
    rng = np.random.default_rng(7)
    z = np.tanh(rng.standard_normal(shape) @ rng.standard_normal((shape[1], shape[1])))
    z = z.astype(np.float32)
    u, s, vt = (np.asarray(a, np.float64) for a in pp._thin_svd(jnp.asarray(z)))
    k = min(shape)
    assert u.shape == (shape[0], k) and s.shape == (k,) and vt.shape == (k, shape[1])
    s_ref = np.linalg.svd(z.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, s_ref, rtol=0, atol=2e-6 * s_ref[0])
    np.testing.assert_allclose(u.T @ u, np.eye(k), atol=5e-6)
    np.testing.assert_allclose(vt @ vt.T, np.eye(k), atol=5e-6)
    np.testing.assert_allclose((u * s) @ vt, z, atol=5e-6 * s_ref[0])


def test_ridge_is_the_inverse_formula_and_tends_to_the_pseudo_inverse():
    with float64():
        rng = np.random.default_rng(7)
        z, b = with_bias(rng.standard_normal((50, 6))), rng.standard_normal((50, 3))
        exact = lstsq(z, b)
        errors = []
        for lam in (1.0, 1e-2, 1e-4, 1e-6, 1e-8):
            w = np.asarray(pp.solve_linear(z, b, solver="ridge", ridge=lam))
            np.testing.assert_allclose(w, np.linalg.inv(z.T @ z + lam * np.eye(7)) @ z.T @ b,
                                       rtol=1e-9, atol=1e-12)
            errors.append(np.max(np.abs(w - exact)))
        assert all(a > 10 * b_ for a, b_ in zip(errors, errors[1:]))  # error ~ lambda
        assert errors[-1] < 1e-8


def test_min_lsd_non_increasing_over_nested_n_tries():
    with float64():
        x, y = task(8)
        key = jax.random.PRNGKey(9)
        runs = {n: pp.fit_platonic(key, x, y, (3,), "tanh", alpha=0.5, beta=2.0,
                                   n_tries=n)[1] for n in (1, 4, 16)}
        cand = {n: np.asarray(info["candidate_lsd"][0]) for n, info in runs.items()}
        np.testing.assert_array_equal(cand[4][:1], cand[1])      # same key: nested candidates
        np.testing.assert_array_equal(cand[16][:4], cand[4])
        best = [cand[n].min() for n in (1, 4, 16)]
        np.testing.assert_allclose([float(runs[n]["lsd"][0]) for n in (1, 4, 16)], best,
                                   rtol=1e-12)                  # the kept layer is the best
        assert best[0] >= best[1] >= best[2] and best[0] > best[2]


def test_random_hidden_layer_with_fitted_output_is_the_elm():
    """method='elm': W~ ~ N(0, 1) (kernel and bias), output layer by least squares,
    against a direct numpy extreme learning machine on the same draw."""
    with float64():
        x, y = task(10)
        key = jax.random.PRNGKey(11)
        params, info = pp.fit_platonic(key, x, y, (20,), "relu", method="elm")
        w_rand = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), 0),
                                              (N + 1, 20), jnp.float64))
        p = np_(params)
        np.testing.assert_array_equal(p["dense_0"]["bias"], w_rand[0])
        np.testing.assert_array_equal(p["dense_0"]["kernel"], w_rand[1:])
        h = relu(x @ w_rand[1:] + w_rand[0])
        head = lstsq(with_bias(h), y)
        np.testing.assert_allclose(p["head"]["bias"], head[0], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(p["head"]["kernel"], head[1:], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(float(info["train_lsd"]), lsd_np(h, y), rtol=1e-8)
        assert info["projection"][0] is None


# --------------------------------------------------------------------------
# Deterministic methods (Sec 7.8)
# --------------------------------------------------------------------------


def sorted_pca_reference(z, s):
    zc = z - z.mean(axis=0)
    c = np.linalg.svd(zc, full_matrices=False)[2][0]
    c = c * np.sign(c[np.argmax(np.abs(c))])
    order = np.argsort(z @ c, kind="stable")
    return order[[int(np.floor(j * len(z) / s + 0.5)) for j in range(s)]]


@pytest.mark.parametrize("s", [1, 7, 33, M])
def test_sorted_pca_indices_against_numpy(s):
    with float64():
        x, _ = task(12)
        idx = np.asarray(pp.sorted_pca_indices(x, s))
        np.testing.assert_array_equal(idx, sorted_pca_reference(x, s))
        assert len(set(idx.tolist())) == s
        if s == M:
            np.testing.assert_array_equal(np.sort(idx), np.arange(M))


def test_sorted_pca_positions_match_fig_7_14_away_from_ties():
    for m, s in [(96, 7), (96, 33), (1000, 3), (5000, 98), (60000, 1568)]:
        fig = np.round(np.arange(0, m - 1, m / s)).astype(int)
        j = np.arange(s)
        np.testing.assert_array_equal((2 * j * m + s) // (2 * s), fig)


def test_sorted_pca_layer_is_deterministic_and_centred():
    x, y = task(13)
    x = np.abs(x).astype(np.float32) + 1.0                      # non-negative, like pixels
    fit = functools.partial(pp.fit_platonic, None, x, y, (17,), "relu", method="sorted_pca")
    a, b = fit(), fit()
    jax.tree_util.tree_map(np.testing.assert_array_equal, np_(a[0]), np_(b[0]))
    kernel, bias = np.asarray(a[0]["dense_0"]["kernel"]), np.asarray(a[0]["dense_0"]["bias"])
    assert kernel.shape == (N, 17) and bias.shape == (17,)
    idx = sorted_pca_reference(x.astype(np.float64), 17)
    mean = x.mean(axis=0)
    np.testing.assert_allclose(kernel, (x[idx] - mean).T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias, -mean @ kernel, rtol=1e-5, atol=1e-5)
    # Uncentred (the literal Fig 7.14): all pre-activations >= 0, ReLU is the identity.
    raw, _ = pp.fit_platonic(None, x, y, (17,), "relu", method="sorted_pca", center=False)
    np.testing.assert_array_equal(np.asarray(raw["dense_0"]["bias"]), 0.0)
    assert np.all(x @ np.asarray(raw["dense_0"]["kernel"]) >= 0)
    assert np.mean(x @ kernel + bias < 0) > 0.2                 # centred: ReLU cuts


def pca_reference(z, y, width, alpha, beta, d):
    a_w = alpha * np.concatenate([z, beta * d[:, None] * y], axis=1)
    a = alpha * np.concatenate([z, beta * y], axis=1)
    v = np.linalg.svd(a_w - a_w.mean(0), full_matrices=False)[2][:width].T
    v = v * np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(width)])
    return v, (a - a.mean(0)) @ v


def test_platonic_pca_projection_against_numpy():
    with float64():
        x, y = task(14)
        d = np.random.default_rng(0).uniform(0.1, 2.0, M)
        for weights in (None, d):
            p, t = pp.platonic_pca_projection(x, y, N + K, alpha=0.5, beta=30.0,
                                              sample_weights=weights)
            p_ref, t_ref = pca_reference(x, y, N + K, 0.5, 30.0,
                                         np.ones(M) if weights is None else d)
            np.testing.assert_allclose(np.asarray(p), p_ref, atol=1e-10)
            np.testing.assert_allclose(np.asarray(t), t_ref, atol=1e-10)
            np.testing.assert_allclose(np.asarray(p).T @ np.asarray(p), np.eye(N + K), atol=1e-12)
        with pytest.raises(ValueError, match="width"):
            pp.platonic_pca_projection(x, y, N + K + 1)


@pytest.mark.parametrize("ema", [0.2, 0.02])
def test_deterministic_fit_with_ema_sample_weights(ema):
    """Sorted PCA, then Platonic PCA on alpha [Z | beta d * Y] with
    d <- ema d + (1 - ema) ||y - yhat||^2 from a ridge decision layer (Sec 7.9.3)."""
    with float64():
        x, y = task(15)
        alpha, beta, lam = 1.0, 50.0, 1e-3
        params, info = pp.fit_platonic(None, x, y, (12, 4), "relu", method="deterministic",
                                       alpha=alpha, beta=beta, solver="ridge", ridge=lam,
                                       ema=ema)
        p = np_(params)

        def ridge(z, t):
            zt = with_bias(z)
            return np.linalg.solve(zt.T @ zt + lam * np.eye(zt.shape[1]), zt.T @ t)

        h1 = relu(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
        w = ridge(h1, y)
        d1 = ema * 1.0 + (1 - ema) * np.sum((y - with_bias(h1) @ w) ** 2, axis=1)
        np.testing.assert_allclose(np.asarray(info["sample_weights"][0]), d1, rtol=1e-8)
        p2, t2 = pca_reference(h1, y, 4, alpha, beta, d1)
        np.testing.assert_allclose(np.asarray(info["projection"][1]), p2, atol=1e-8)
        w2 = ridge(h1, t2)
        np.testing.assert_allclose(p["dense_1"]["kernel"], w2[1:], rtol=1e-7, atol=1e-9)
        h2 = relu(h1 @ w2[1:] + w2[0])
        d2 = ema * d1 + (1 - ema) * np.sum((y - with_bias(h2) @ ridge(h2, y)) ** 2, axis=1)
        np.testing.assert_allclose(np.asarray(info["sample_weights"][1]), d2, rtol=1e-7)
        np.testing.assert_allclose(p["head"]["kernel"], ridge(h2, y)[1:], rtol=1e-7, atol=1e-9)
        # The weights matter: without them the second layer differs.
        plain, _ = pp.fit_platonic(None, x, y, (12, 4), "relu", method="deterministic",
                                   alpha=alpha, beta=beta, solver="ridge", ridge=lam)
        change = np.asarray(plain["dense_1"]["kernel"]) - p["dense_1"]["kernel"]
        assert np.max(np.abs(change)) > 1e-6


# --------------------------------------------------------------------------
# The parameter tree, jit, dtypes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("x64", [True, False])
def test_params_reproduce_the_fit_through_mlp_apply(x64):
    x, y = task(16)
    with float64() if x64 else jax.enable_x64(False):
        dtype = jnp.float64 if x64 else jnp.float32
        params, info = pp.fit_platonic(jax.random.PRNGKey(17), x, y, (8, 5), "celu",
                                       alpha=0.5, beta=3.0, n_tries=2, dtype=dtype)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a: a.dtype == dtype, params))
        out = MLP(widths=(8, 5), num_outputs=K, activation="celu").apply(
            {"params": params}, jnp.asarray(x, dtype))
        np.testing.assert_allclose(np.asarray(out), np.asarray(info["outputs"]),
                                   rtol=0, atol=1e-12 if x64 else 1e-5)
        p = np_(params)
        h = celu(celu(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
                 @ p["dense_1"]["kernel"] + p["dense_1"]["bias"])
        ref = h @ p["head"]["kernel"] + p["head"]["bias"]
        np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-10 if x64 else 1e-4)
        np.testing.assert_allclose(float(info["train_lsd"]), np.sum((y - ref) ** 2) / M,
                                   rtol=1e-8 if x64 else 1e-3)


def test_fit_runs_under_jit():
    with float64():
        x, y = task(18)
        fit = functools.partial(pp.fit_platonic, widths=(6, 4), activation=jnp.tanh,
                                method=("random", "pca"), alpha=0.5, beta=2.0, n_tries=3)
        eager = fit(jax.random.PRNGKey(0), x, y)
        jitted = jax.jit(fit)(jax.random.PRNGKey(0), x, y)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-10),
                               eager[0], jitted[0])
        np.testing.assert_allclose(eager[1]["lsd"], jitted[1]["lsd"], rtol=1e-10)


def test_empty_widths_is_least_squares():
    with float64():
        x, y = task(19)
        params, info = pp.fit_platonic(None, x, y, (), "relu")
        w = lstsq(with_bias(x), y)
        np.testing.assert_allclose(np.asarray(params["head"]["kernel"]), w[1:], atol=1e-10)
        assert set(params) == {"head"} and info["lsd"].shape == (0,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(solver="svd"), "solver"),
    (dict(method="pcaa"), "method"),
    (dict(method=("random",)), "method"),
    (dict(ridge=1.0), "ridge"),
    (dict(solver="ridge"), "ridge"),
    (dict(solver="ridge", ridge=0.0), "ridge"),
    (dict(solver="ridge", ridge=1.0, rtol=1e-6), "rtol"),
    (dict(solver="lstsq", atol=1e-5), "atol"),
    (dict(rtol=-1.0), "rtol"),
    (dict(n_tries=0), "n_tries"),
    (dict(alpha=0.0), "alpha"),
    (dict(ema=1.5), "ema"),
    (dict(center=1), "center"),
    (dict(widths=(4, 0)), "widths"),
    (dict(widths=(N + K + 1, 2), method="pca"), "n \\+ k"),
    (dict(widths=(M + 1, 2), method="sorted_pca"), "Sorted PCA"),
    (dict(key=None), "key"),
    (dict(activation="relux"), "activation"),
    (dict(dtype="float16"), "dtype"),
    (dict(y=np.zeros((M - 1, K))), "y must"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    x, y = task()
    args = dict(key=jax.random.PRNGKey(0), x=x, y=y, widths=(4, 2), activation="relu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pp.fit_platonic(args.pop("key"), args.pop("x"), args.pop("y"), args.pop("widths"),
                        args.pop("activation"), **args)


def test_float64_needs_x64():
    x, y = task()
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="jax_enable_x64"):
            pp.fit_platonic(jax.random.PRNGKey(0), x, y, (4,), "relu", dtype="float64")
