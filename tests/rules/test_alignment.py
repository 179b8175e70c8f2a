"""Kunin et al.'s primitives against NumPy, and the rules' fixed points.

With W frozen, B follows SGD on its cotangent (what ``make_train_step``
feeds B's optimiser). Symmetric alignment's and activation alignment's
dynamics are linear in B, so their whole trajectories are checked against
the closed form; the weight mirror's fixed point
``B* = beta noise_std^2 / (2 alpha) W`` (times the number of output
positions for a VALID convolution) is checked on the average of the
stationary iterates, with a standard error estimated from them.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from neurojax.models.conv import conv2d
from neurojax.rules import (amp, decay, feedback_conv, feedback_dense, get_rule,
                            local_loss, null, reconstruct, self_alignment, sparse)

DN = ("NHWC", "HWIO", "NHWC")


def _normal(seed, *shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _np(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def test_primitives_against_numpy():
    x, w, b = _normal(0, 7, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    xn, wn, bn = _np(x, w, b)
    r, rb = xn @ wn, xn @ bn           # forward and backward projections
    recon = r @ bn.T                   # r sent back through B
    n = xn.shape[0]
    np.testing.assert_allclose(decay(w, b), np.sum(wn ** 2) + np.sum(bn ** 2), rtol=1e-5)
    np.testing.assert_allclose(sparse(x @ w, x @ b), (np.sum(r ** 2) + np.sum(rb ** 2)) / n,
                               rtol=1e-5)
    np.testing.assert_allclose(null(reconstruct(lambda z, k: z @ k, x, b, x @ w)),
                               np.sum(recon ** 2) / n, rtol=1e-5)
    np.testing.assert_allclose(null(x @ w, x @ b), (np.sum(r ** 2) + np.sum(rb ** 2)) / n,
                               rtol=1e-5)
    np.testing.assert_allclose(self_alignment(w, b), -np.trace(wn.T @ bn), rtol=1e-5)
    np.testing.assert_allclose(amp(x @ w, x @ b), -np.trace(r.T @ rb) / n, rtol=1e-5)


def test_conv_reconstruction_is_the_transposed_convolution():
    """<conv(z, B), p> = <z, reconstruct(p)> for all z, p (the adjoint)."""
    op = lambda z, k: lax.conv_general_dilated(z, k, (2, 2), "SAME", dimension_numbers=DN)
    z, b = _normal(0, 2, 9, 9, 3), _normal(1, 3, 3, 3, 4)
    p = _normal(2, 2, 5, 5, 4)
    back = reconstruct(functools.partial(conv2d, strides=(2, 2), padding="SAME"), z, b, p)
    np.testing.assert_allclose(jnp.vdot(op(z, b), p), jnp.vdot(z, back), rtol=1e-4)


def _sgd_on_b(layer, b0, lr, steps, key=jax.random.key(0)):
    """B's SGD trajectory under ``layer(b, key) -> output`` with W frozen: B's
    cotangent of any loss (here sum(output)); returns all iterates."""
    grad = jax.grad(lambda b, k: jnp.sum(layer(b, k)))

    def step(b, t):
        b = b - lr * grad(b, jax.random.fold_in(key, t))
        return b, b
    _, path = jax.jit(lambda b: lax.scan(step, b, jnp.arange(steps)))(b0)
    return np.asarray(path, np.float64)


def test_symmetric_alignment_trajectory_and_fixed_point():
    """Gradient 2 alpha B - beta W: B_k = B* + (1 - 2 lr alpha)^k (B_0 - B*),
    B* = (beta / 2 alpha) W, for any input."""
    alpha, beta, lr = 0.5, 0.3, 0.1
    rule = get_rule("symmetric_alignment", alpha=alpha, beta=beta)
    x, w, b0 = _normal(0, 6, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    path = _sgd_on_b(lambda b, k: feedback_dense(rule, x, w, b), b0, lr, 60)
    wn, bn0 = _np(w, b0)
    star = beta / (2 * alpha) * wn
    for k in (1, 10, 60):
        expected = star + (1 - 2 * lr * alpha) ** k * (bn0 - star)
        np.testing.assert_allclose(path[k - 1], expected, rtol=1e-4, atol=1e-5)
    assert np.linalg.norm(path[-1] - star) < 0.01 * np.linalg.norm(bn0 - star)


def test_activation_alignment_trajectory():
    """Gradient (1/n) x^T x (2 alpha B - beta W): B_k - B* =
    (I - 2 lr alpha x^T x / n)^k (B_0 - B*), B* = (beta / 2 alpha) W."""
    alpha, beta, lr = 0.5, 0.8, 0.1
    rule = get_rule("activation_alignment", alpha=alpha, beta=beta)
    x, w, b0 = _normal(0, 32, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    path = _sgd_on_b(lambda b, k: feedback_dense(rule, x, w, b), b0, lr, 40)
    xn, wn, bn0 = _np(x, w, b0)
    star = beta / (2 * alpha) * wn
    contraction = np.eye(5) - 2 * lr * alpha * xn.T @ xn / xn.shape[0]
    expected = star + np.linalg.matrix_power(contraction, 40) @ (bn0 - star)
    np.testing.assert_allclose(path[-1], expected, rtol=1e-4, atol=1e-5)


def _stationary_mean_check(path, star, contraction, burn_in):
    """The mean of the stationary iterates is B* within 5 standard errors.

    B_t - B* is an AR(1) process with coefficient ``contraction`` (the
    deterministic part of one SGD step) driven by the noise's gradient; the
    variance of the mean of T such iterates is Var(B_t) (1 + rho) /
    ((1 - rho) T). Var(B_t) is estimated from the iterates themselves.
    """
    tail = path[burn_in:]
    mean, t = tail.mean(axis=0), tail.shape[0]
    se = np.sqrt(np.sum(tail.var(axis=0)) * (1 + contraction) / ((1 - contraction) * t))
    err = np.linalg.norm(mean - star)
    assert err < 5 * se, (err, se)
    assert se < 0.05 * np.linalg.norm(star)  # the check is sharp enough to matter
    return err


@pytest.mark.parametrize("noise_std,distribution", [(0.5, "gaussian"), (2.0, "gaussian"),
                                                    (2.0, "rademacher")])
def test_weight_mirror_dense_fixed_point(noise_std, distribution):
    """E[grad] = 2 alpha B - beta noise_std^2 W (the noise replaces the input;
    any zero-mean noise with covariance noise_std^2 I):
    B* = beta noise_std^2 / (2 alpha) W."""
    alpha, beta, lr = 0.5, 1.0, 0.1
    rule = get_rule("weight_mirror", alpha=alpha, beta=beta, noise_std=noise_std,
                    noise_distribution=distribution)
    x, w, b0 = _normal(0, 256, 16), _normal(1, 16, 4), _normal(2, 16, 4)
    path = _sgd_on_b(lambda b, k: feedback_dense(rule, x, w, b, k), b0, lr, 800)
    star = beta * noise_std ** 2 / (2 * alpha) * np.asarray(w, np.float64)
    _stationary_mean_check(path, star, 1 - 2 * lr * alpha, burn_in=200)
    # without the noise variance the fixed point would be far off
    assert np.linalg.norm(path[200:].mean(0) - star / noise_std ** 2) > 0.2 * np.linalg.norm(star)


def test_weight_mirror_valid_conv_fixed_point():
    """A VALID convolution sums the same correlation over its P = H_out W_out
    positions: E[grad] = 2 alpha B - beta noise_std^2 P W, so
    B* = beta noise_std^2 P / (2 alpha) W."""
    alpha, beta, lr, noise_std = 4.5, 1.0, 0.01, 1.0
    rule = get_rule("weight_mirror", alpha=alpha, beta=beta, noise_std=noise_std)
    x, w, b0 = _normal(0, 64, 5, 5, 2), _normal(1, 3, 3, 2, 3), _normal(2, 3, 3, 2, 3)
    layer = lambda b, k: feedback_conv(rule, conv2d, x, w, b, (1, 1), "VALID", key=k)
    path = _sgd_on_b(layer, b0, lr, 1000)
    positions = 3 * 3
    star = beta * noise_std ** 2 * positions / (2 * alpha) * np.asarray(w, np.float64)
    _stationary_mean_check(path, star, 1 - 2 * lr * alpha, burn_in=300)


def test_local_rules_do_not_move_w():
    """The local loss trains B only: W's gradient is the task's (x^T dy)."""
    x, w, b = _normal(0, 8, 5), _normal(1, 5, 3), _normal(2, 5, 3)
    for name in ("weight_mirror", "symmetric_alignment", "activation_alignment",
                 "information_alignment"):
        dw = jax.grad(lambda w: jnp.sum(feedback_dense(get_rule(name), x, w, b,
                                                       jax.random.key(0))))(w)
        np.testing.assert_allclose(dw, np.asarray(x).T @ np.ones((8, 3)), rtol=1e-5)


def test_information_alignment_reduces_its_local_loss():
    """Information alignment's B descends amp + null + decay: with W frozen
    the local loss decreases along the trajectory."""
    rule = get_rule("information_alignment", alpha=1.0, beta=0.1, gamma=0.1)
    x, w, b0 = _normal(0, 32, 6), _normal(1, 6, 4, scale=0.5), _normal(2, 6, 4, scale=0.5)
    path = _sgd_on_b(lambda b, k: feedback_dense(rule, x, w, b), b0, 0.05, 100)
    loss = lambda b: float(local_loss(rule.local_name, rule.coefficients, x, w,
                                      jnp.asarray(b, jnp.float32), lambda z, k: z @ k))
    values = [loss(b0)] + [loss(path[k]) for k in (9, 49, 99)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    cos = lambda a, b: np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert math.degrees(math.acos(cos(path[-1], np.asarray(w)))) < 45


def test_local_losses_under_jit_and_vmap():
    """A stack of layers' local losses in one vmapped, jitted call."""
    x, w = _normal(0, 8, 5), _normal(1, 4, 5, 3)
    b = _normal(2, 4, 5, 3)
    dense = lambda z, k: z @ k
    for name, coeffs in (("weight_mirror", {"alpha": 0.1, "beta": 0.2}),
                         ("information_alignment", {"alpha": 0.1, "beta": 0.2, "gamma": 0.3})):
        f = lambda w, b: local_loss(name, coeffs, x, w, b, dense)
        stacked = jax.jit(jax.vmap(f))(w, b)
        np.testing.assert_allclose(stacked, [f(w[i], b[i]) for i in range(4)], rtol=1e-5)
    with pytest.raises(ValueError, match="name must be one of"):
        local_loss("kolen_pollack", {}, x, w[0], b[0], dense)


def test_rademacher_noise_is_fair_independent_signs():
    """Values +-1; over 2^20 entries the mean, the lag-1 product (neighbours
    share a random word) and each of the 32 bit positions are fair within
    5 standard errors."""
    from neurojax.rules.feedback import rademacher_noise
    shape = (1024, 1024)
    z = np.asarray(rademacher_noise(jax.random.PRNGKey(3), shape), np.float64)
    assert z.shape == shape and set(np.unique(z)) == {-1.0, 1.0}
    flat = z.reshape(-1)
    se = 1 / np.sqrt(flat.size)
    assert abs(flat.mean()) < 5 * se
    assert abs(np.mean(flat[1:] * flat[:-1])) < 5 * se
    by_bit = flat.reshape(-1, 32).mean(axis=0)
    assert np.all(np.abs(by_bit) < 5 * np.sqrt(32) * se)
    odd = np.asarray(rademacher_noise(jax.random.PRNGKey(3), (3, 7)))  # not a multiple of 32
    assert odd.shape == (3, 7) and set(np.unique(odd)) <= {-1.0, 1.0}


def test_the_mirror_draws_the_configured_noise():
    """The local input is +-noise_std under 'rademacher' and continuous under
    'gaussian' (the fixed-point test alone cannot tell them apart)."""
    from neurojax.rules.feedback import _local_input
    x, key = jnp.zeros((64, 16)), jax.random.PRNGKey(0)
    signs = _local_input(get_rule("weight_mirror", noise_std=0.5,
                                  noise_distribution="rademacher"), x, key)
    assert set(np.unique(np.asarray(signs))) == {-0.5, 0.5}
    normal = np.asarray(_local_input(get_rule("weight_mirror", noise_std=0.5), x, key))
    assert np.unique(normal).size == normal.size
