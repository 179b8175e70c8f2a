"""Rich vs lazy from unbalanced initialisations (Kunin et al. 2024): the
conserved delta and its exact discrete drift against real gradient steps, the
single-neuron Riccati solution against gradient descent, tangent kernels
against jax.jacobian, and the kernel distance's dependence on delta."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.metrics import rich_lazy as rl
from neurojax.models.mlp import MLP
from tests._x64 import float64 as x64

BETA_STAR = np.array([0.0, 1.0])          # whitened inputs: E[x x^T] = I, E[x y] = beta*


def neuron_loss(a, w):
    return 0.5 * jnp.sum((a * w - BETA_STAR) ** 2)


@functools.partial(jax.jit, static_argnums=4)
def neuron_gd(a, w, lr_a, lr_w, steps):
    """Gradient descent on the whitened single-neuron loss; returns the trajectory."""
    def step(carry, _):
        a, w = carry
        ga, gw = jax.grad(neuron_loss, argnums=(0, 1))(a, w)
        new = (a - lr_a * ga, w - lr_w * gw)
        return new, new
    return jax.lax.scan(step, (a, w), None, length=steps)[1]


def test_conserved_delta_and_its_exact_step_drift():
    with x64():
        rng = np.random.default_rng(0)
        a, w = rng.normal(size=(5,)), rng.normal(size=(5, 3))
        np.testing.assert_allclose(rl.conserved_delta(a, w, 0.3, 0.7),
                                   [0.7 * a[i] ** 2 - 0.3 * w[i] @ w[i] for i in range(5)])
        # one neuron, unequal rates
        a0, w0 = 0.8, np.array([-0.4, 0.3])
        ga, gw = jax.grad(neuron_loss, argnums=(0, 1))(a0, w0)
        lr_a, lr_w = 0.2, 0.05
        a1, w1 = a0 - lr_a * ga, w0 - lr_w * gw
        moved = rl.conserved_delta(a1, w1, lr_a, lr_w) - rl.conserved_delta(a0, w0, lr_a, lr_w)
        np.testing.assert_allclose(moved, rl.delta_step_drift(ga, gw, lr_a, lr_w), rtol=1e-10)
        # a two-layer ReLU MLP: every hidden neuron, through the library model
        model = MLP(widths=(6,), num_outputs=1, use_bias=False)
        x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 1))
        p = {"dense_0": {"kernel": rng.normal(size=(3, 6))},
             "head": {"kernel": rng.normal(size=(6, 1))}}
        g = jax.jit(jax.grad(lambda q: jnp.mean((model.apply({"params": q}, x) - y) ** 2)))(p)
        lr = 0.3
        before = rl.conserved_delta(p["head"]["kernel"][:, 0], p["dense_0"]["kernel"].T, lr, lr)
        after = rl.conserved_delta(p["head"]["kernel"][:, 0] - lr * g["head"]["kernel"][:, 0],
                                   (p["dense_0"]["kernel"] - lr * g["dense_0"]["kernel"]).T,
                                   lr, lr)
        want = rl.delta_step_drift(g["head"]["kernel"][:, 0], g["dense_0"]["kernel"].T, lr, lr)
        np.testing.assert_allclose(after - before, want, rtol=1e-9, atol=1e-15)
        assert np.abs(np.asarray(want)).max() > 0


def test_delta_over_lr_drifts_as_lr_squared():
    """Rates lr * (1, 0.5): delta / lr after a fixed 10 steps moves as lr^2."""
    with x64():
        a0, w0 = rl.single_neuron_init(jnp.array([-0.5, 0.2]), 0.3, 1.0, 0.5)
        lrs = np.array([0.005, 0.01, 0.02, 0.04])
        drift = []
        for lr in lrs:
            a, w = neuron_gd(a0, w0, lr, 0.5 * lr, 10)
            drift.append(abs(float(rl.conserved_delta(a[-1], w[-1], 1.0, 0.5)) - 0.3))
        slope = np.polyfit(np.log(lrs), np.log(drift), 1)[0]
        assert 1.9 < slope < 2.1, slope


def test_single_neuron_init():
    with x64():
        for delta, lr_a, lr_w in [(-2.0, 1.0, 1.0), (0.0, 0.5, 2.0), (3.0, 1.0, 0.25)]:
            a, w = rl.single_neuron_init(jnp.array([0.3, -0.4]), delta, lr_a, lr_w)
            assert float(a) > 0
            np.testing.assert_allclose(a * w, [0.3, -0.4], rtol=1e-13)
            np.testing.assert_allclose(rl.conserved_delta(a, w, lr_a, lr_w), delta, atol=1e-13)
    with pytest.raises(ValueError, match="beta0"):
        rl.single_neuron_init(jnp.zeros(2), -1.0)
    with pytest.raises(ValueError, match="lr_a"):
        rl.single_neuron_init(jnp.ones(2), 1.0, lr_a=0.0)
    with pytest.raises(ValueError, match="w must be"):
        rl.conserved_delta(jnp.ones(3), jnp.ones((2, 4)))


def test_riccati_solution_matches_gradient_descent():
    """r = w.beta*/a: GD (float64) against the closed form, the gap first order in
    lr; both tanh (|delta + 2 r0| < D) and coth (> D) branches, unequal rates."""
    with x64():
        cases = [(jnp.array([-1.0, 0.1]), -2.0, 1.0, 1.0),     # tanh branch, downstream
                 (jnp.array([0.1, 1.5]), 1.0, 1.0, 1.0),       # coth branch (r0 large)
                 (jnp.array([-0.5, 0.3]), 0.5, 2.0, 0.5)]      # unequal rates
        t_end = 6.0
        for beta0, delta, ra, rw in cases:
            a0, w0 = rl.single_neuron_init(beta0, delta, ra, rw)
            r0 = float(w0 @ BETA_STAR / a0)
            d = np.sqrt(delta ** 2 + 4 * ra * rw)
            errors = []
            for h in (0.01, 0.005):
                steps = int(round(t_end / h))
                a, w = neuron_gd(a0, w0, ra * h, rw * h, steps)
                r_gd = np.asarray(w @ BETA_STAR / a)
                t = h * np.arange(1, steps + 1)
                errors.append(np.abs(r_gd - rl.single_neuron_riccati(t, r0, delta, 1.0, ra, rw)).max())
            assert 1.7 < errors[0] / errors[1] < 2.3, (delta, errors)
            assert errors[1] < 1e-2, (delta, errors)
            if delta == 1.0:
                assert abs(delta + 2 * ra * r0) > d     # the coth branch was exercised


def test_tangent_kernels_match_jacobians():
    with x64():
        rng = np.random.default_rng(1)
        x = rng.normal(size=(5, 3))
        a, w = 0.7, rng.normal(size=3)
        params = {"a": jnp.asarray(a), "w": jnp.asarray(w)}
        apply_fn = lambda p, xs: p["a"] * (xs @ p["w"])  # noqa: E731
        lrs = {"a": 0.3, "w": 2.0}
        np.testing.assert_allclose(rl.empirical_ntk(apply_fn, params, x, lrs),
                                   rl.single_neuron_ntk(a, w, x, 0.3, 2.0), rtol=1e-12)
        jac_a = x @ w                                   # d f / d a
        jac_w = a * x                                   # d f / d w
        want = 0.3 * np.outer(jac_a, jac_a) + 2.0 * jac_w @ jac_w.T
        np.testing.assert_allclose(rl.single_neuron_ntk(a, w, x, 0.3, 2.0), want, rtol=1e-12)


def test_kernel_distance():
    rng = np.random.default_rng(2)
    k0, k1 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    want = 1 - np.sum(k0 * k1) / (np.linalg.norm(k0) * np.linalg.norm(k1))
    np.testing.assert_allclose(rl.kernel_distance(k0, k1), want, rtol=1e-5)
    assert float(rl.kernel_distance(k0, 3.0 * k0)) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(rl.kernel_distance(np.stack([k0, k1]), k1), [want, 0.0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="k0 and k1"):
        rl.kernel_distance(k0, k1[:3, :3])


def test_kernel_distance_vanishes_upstream_and_is_large_near_balance():
    """Gradient flow (GD at lr 0.02 to t = 40) from beta0 = (-0.5, 0.05), nearly
    orthogonal to beta* = (0, 1): the final kernel distance falls towards 0 as
    delta grows (upstream, lazy), is large at delta = 0 (rich) and larger still
    for delta < 0 (downstream, delayed rich: w0 must turn by ~90 degrees)."""
    with x64():
        deltas = np.array([-4.0, 0.0, 4.0, 16.0, 64.0])
        inits = [rl.single_neuron_init(jnp.array([-0.5, 0.05]), d) for d in deltas]
        a0 = jnp.stack([i[0] for i in inits])
        w0 = jnp.stack([i[1] for i in inits])
        a, w = jax.vmap(neuron_gd, in_axes=(0, 0, None, None, None))(a0, w0, 0.02, 0.02, 2000)
        eye = jnp.eye(2)
        k0 = jax.vmap(rl.single_neuron_ntk, in_axes=(0, 0, None))(a0, w0, eye)
        k1 = jax.vmap(rl.single_neuron_ntk, in_axes=(0, 0, None))(a[:, -1], w[:, -1], eye)
        s = np.asarray(rl.kernel_distance(k0, k1))
        np.testing.assert_allclose(a[:, -1, None] * w[:, -1], np.tile(BETA_STAR, (5, 1)),
                                   atol=1e-3)                      # all converged
        assert np.all(np.diff(s) < 0), s                           # monotone in delta
        assert s[-1] < 1e-3 and s[1] > 0.1 and s[0] > 0.5, s


def test_two_layer_unbalanced_init():
    with x64():
        model = MLP(widths=(6,), num_outputs=1, use_bias=False)
        apply = jax.jit(model.apply)
        for delta in (-0.8, 0.8):
            params = rl.two_layer_unbalanced_init(jax.random.PRNGKey(0), 5, 6, 0.5, delta)
            p = params["params"]
            a, w = p["head"]["kernel"][:, 0], p["dense_0"]["kernel"].T
            np.testing.assert_allclose(rl.conserved_delta(a, w), delta, atol=1e-12)
            np.testing.assert_allclose(np.linalg.norm(w, axis=1),
                                       0.5 * rl.unbalanced_alpha(delta, 0.5), rtol=1e-12)
            out = apply(params, jnp.asarray(np.random.default_rng(3).normal(size=(4, 5))))
            np.testing.assert_allclose(out, 0.0, atol=1e-12)        # +-a pairs cancel
    with pytest.raises(ValueError, match="width"):
        rl.two_layer_unbalanced_init(jax.random.PRNGKey(0), 5, 5, 0.5, 0.0)
    with pytest.raises(ValueError, match="scale"):
        rl.two_layer_unbalanced_init(jax.random.PRNGKey(0), 5, 6, -1.0, 0.0)
