"""Curvature tools against independent computations in float64.

References: an analytic Hessian (quadratic + separable sine term), central
finite differences of the gradient (no second-order autodiff), and NumPy's
dense linear algebra (``eigvalsh``, trace, Frobenius norm). Monte Carlo
tolerances come from each estimator's exact variance for the given Hessian.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from neurojax.metrics.curvature import (dense_hessian, gradient_norm, hessian_frobenius_norm,
                                        hessian_trace, hvp, lanczos_eigenvalues)
from neurojax.models import SmallCNN


@pytest.fixture
def x64():
    """float64 inside the test only (restored afterwards)."""
    with jax.enable_x64(True):
        yield


def _spectrum_matrix(eigenvalues, seed):
    """Symmetric matrix with the given spectrum and a random eigenbasis (NumPy)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues)) @ q.T


def _tree_problem(eigenvalues, seed=0, c=0.0):
    """loss(params) = 1/2 x^T A x + c sum(sin x) with x the flattened PyTree
    {'w': (3, k), 'b': (rest,)}; returns loss, params and the analytic Hessian."""
    n = len(eigenvalues)
    a = _spectrum_matrix(eigenvalues, seed)  # in ravel_pytree's coordinates
    k = n // 6
    _, unravel = ravel_pytree({"w": jnp.zeros((3, k)), "b": jnp.zeros(n - 3 * k)})
    x = np.random.default_rng(seed + 1).standard_normal(n)
    params = unravel(jnp.asarray(x))
    a_j = jnp.asarray(a)

    def loss(p):
        z = ravel_pytree(p)[0]
        return 0.5 * z @ a_j @ z + c * jnp.sum(jnp.sin(z))

    return loss, params, a - c * np.diag(np.sin(x)), a @ x + c * np.cos(x)


def _random_tree(params, seed):
    flat, unravel = ravel_pytree(params)
    return unravel(jnp.asarray(np.random.default_rng(seed).standard_normal(flat.size)))


@pytest.mark.parametrize("mode", ["fwd_rev", "rev_rev"])
def test_hvp_dense_and_gradient_norm_match_the_analytic_hessian(x64, mode):
    loss, params, hess, grad = _tree_problem(np.linspace(-1.0, 3.0, 24), c=0.7)
    v = _random_tree(params, 5)
    hv = hvp(loss, params, v, mode=mode)
    assert jax.tree.structure(hv) == jax.tree.structure(params)
    np.testing.assert_allclose(ravel_pytree(hv)[0], hess @ np.asarray(ravel_pytree(v)[0]),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense_hessian(loss, params, mode=mode), hess, atol=1e-12)
    np.testing.assert_allclose(gradient_norm(loss, params), np.linalg.norm(grad), rtol=1e-12)


def _finite_difference_hessian(loss, params, h=1e-5):
    """Central differences of the (first-order autodiff) gradient: column j is
    (g(x + h e_j) - g(x - h e_j)) / 2h, symmetrised."""
    flat, unravel = ravel_pytree(params)
    grad = jax.jit(lambda z: ravel_pytree(jax.grad(loss)(unravel(z)))[0])
    eye = np.eye(flat.size)
    cols = [np.asarray(grad(flat + h * e) - grad(flat - h * e)) / (2 * h) for e in eye]
    fd = np.stack(cols, axis=1)
    return 0.5 * (fd + fd.T)


def test_hvp_through_a_small_cnn_matches_finite_differences(x64):
    """SmallCNN's conv is the CPU custom_jvp (neurojax/models/conv.py): both HVP
    modes and the dense Hessian agree with finite differences of the gradient."""
    model = SmallCNN(widths=(2,), hidden=None, num_classes=3, activation="tanh")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 6, 6, 1)))
    y = jnp.asarray([0, 1, 2, 1])
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64),
                          model.init(jax.random.PRNGKey(0), x)["params"])

    def loss(p):
        logits = model.apply({"params": p}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    n = ravel_pytree(params)[0].size
    assert n == 3 * 3 * 1 * 2 + 2 + 3 * 3 * 2 * 3 + 3  # 77
    h_fd = _finite_difference_hessian(loss, params)
    h = np.asarray(jax.jit(dense_hessian, static_argnums=0)(loss, params))
    scale = np.abs(h_fd).max()
    np.testing.assert_allclose(h, h_fd, atol=1e-7 * scale)
    v = _random_tree(params, 1)
    expected = h_fd @ np.asarray(ravel_pytree(v)[0])
    for mode in ("fwd_rev", "rev_rev"):
        hv = jax.jit(lambda p, v: hvp(loss, p, v, mode=mode))(params, v)
        np.testing.assert_allclose(ravel_pytree(hv)[0], expected, atol=1e-7 * scale * math.sqrt(n))
    assert np.linalg.norm(h - np.diag(np.diag(h))) > 0.1 * np.linalg.norm(h)  # not diagonal


def _rademacher_variance(a):
    """Exact variance of v^T A v for symmetric A and Rademacher v."""
    return 2.0 * (np.sum(a * a) - np.sum(np.diag(a) ** 2))


def test_hutchinson_trace_within_its_standard_error(x64):
    eig = np.concatenate([np.linspace(-2.0, 5.0, 29), [40.0]])
    loss, params, hess, _ = _tree_problem(eig, seed=3)
    s = 200
    fn = jax.jit(lambda p, k: hessian_trace(loss, p, k, s))
    est = np.array([float(fn(params, jax.random.PRNGKey(i))) for i in range(3)])
    se = math.sqrt(_rademacher_variance(hess) / s)
    assert se > 0.5  # the probe noise is real: an exact method would not need it
    np.testing.assert_allclose(est, np.trace(hess), atol=4 * se)
    assert len(set(est.tolist())) == 3  # different keys, different estimates
    # a diagonal Hessian has a zero-variance estimator: exact with one probe
    d = jnp.asarray(np.linspace(-1.0, 2.0, 30))
    np.testing.assert_allclose(
        hessian_trace(lambda p: 0.5 * jnp.sum(d * ravel_pytree(p)[0] ** 2), params,
                      jax.random.PRNGKey(0), 1, mode="rev_rev"), float(jnp.sum(d)), rtol=1e-12)


def test_frobenius_norm_within_its_standard_error(x64):
    eig = np.concatenate([np.linspace(-3.0, 3.0, 23), [6.0]])
    loss, params, hess, _ = _tree_problem(eig, seed=4, c=0.5)
    s = 200
    est = float(jax.jit(lambda p: hessian_frobenius_norm(loss, p, jax.random.PRNGKey(7), s))(
        params))
    fro2 = np.sum(hess * hess)
    se2 = math.sqrt(_rademacher_variance(hess.T @ hess) / s)
    assert se2 > 1e-3 * fro2
    assert abs(est ** 2 - fro2) < 4 * se2
    np.testing.assert_allclose(fro2, np.sum(np.linalg.eigvalsh(hess) ** 2), rtol=1e-10)


def test_lanczos_full_run_is_exact_and_short_run_finds_separated_extremes(x64):
    eig = np.concatenate([[-4.0], np.linspace(-1.0, 1.0, 34), [10.0]])
    loss, params, hess, _ = _tree_problem(eig, seed=6, c=0.3)
    ref = np.linalg.eigvalsh(hess)
    key = jax.random.PRNGKey(2)
    full = lanczos_eigenvalues(loss, params, key, 100)  # clamped to N = 36
    np.testing.assert_allclose(full["ritz_values"], ref, atol=1e-9)
    short = jax.jit(lambda p: lanczos_eigenvalues(loss, p, key, 14, mode="rev_rev"))(params)
    assert short["ritz_values"].shape == (14,)
    np.testing.assert_allclose([short["lambda_max"], short["lambda_min"]], [ref[-1], ref[0]],
                               rtol=1e-6)
    # Ritz values lie inside the spectrum
    assert ref[0] - 1e-9 <= float(short["ritz_values"][1]) <= ref[-1] + 1e-9


def test_lanczos_low_rank_hessian_restarts_after_breakdown(x64):
    # rank-3 Hessian in 18 dimensions: the Krylov space is invariant after 3 steps
    eig = np.array([5.0, -2.0, 0.5] + [0.0] * 15)
    loss, params, hess, _ = _tree_problem(eig, seed=8)
    out = lanczos_eigenvalues(loss, params, jax.random.PRNGKey(0), 18)
    assert np.all(np.isfinite(out["ritz_values"]))
    np.testing.assert_allclose(out["ritz_values"], np.linalg.eigvalsh(hess), atol=1e-9)


def test_float32_runs_and_agrees_loosely():
    hess = _spectrum_matrix(np.linspace(0.5, 4.0, 12), seed=1)
    a = jnp.asarray(hess, jnp.float32)
    params = {"w": jnp.ones((2, 3)), "b": jnp.arange(6.0)}
    loss = lambda p: 0.5 * ravel_pytree(p)[0] @ a @ ravel_pytree(p)[0]  # noqa: E731
    out = lanczos_eigenvalues(loss, params, jax.random.PRNGKey(0), 12)
    assert out["lambda_max"].dtype == jnp.float32
    np.testing.assert_allclose([out["lambda_min"], out["lambda_max"]], [0.5, 4.0], rtol=1e-4)


@pytest.mark.parametrize("call, field", [
    (lambda l, p: hvp(l, p, p, mode="fwd"), "mode"),
    (lambda l, p: hessian_trace(l, p, jax.random.PRNGKey(0), 0), "num_samples"),
    (lambda l, p: hessian_frobenius_norm(l, p, jax.random.PRNGKey(0), 2.0), "num_samples"),
    (lambda l, p: lanczos_eigenvalues(l, p, jax.random.PRNGKey(0), 0), "num_iterations"),
    (lambda l, p: dense_hessian(l, p, mode="rev"), "mode"),
])
def test_bad_arguments_are_named(call, field):
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match=field):
        call(lambda p: jnp.sum(p["w"] ** 2), params)
