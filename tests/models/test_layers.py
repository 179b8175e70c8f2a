"""max_pool / MaxPool against flax's nn.max_pool (XLA's reduce_window) and its autodiff.

The CPU path (non-overlapping windows) is a reshape with a first-maximum
mask; these tests check it equals ``nn.max_pool`` in value, VJP, JVP and
second order, with ties (where the choice of the first maximum shows),
SAME padding of odd sizes, leading batch dims and bfloat16.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from neurojax.models.layers import MaxPool, max_pool


def _reference(x, window, strides):
    return nn.max_pool(x, window, strides=strides, padding="SAME")


def _tied(shape, seed=0, dtype=jnp.float32):
    """Small integers: most windows hold several equal maxima."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 3, shape), dtype)


CASES = [((2, 8, 8, 3), (2, 2)), ((2, 7, 9, 3), (2, 2)), ((1, 5, 5, 2), (2, 2)),
         ((2, 9, 6, 2), (3, 3)), ((2, 6, 6, 2), (3, 2)), ((1, 1, 1, 4), (2, 2))]


@pytest.mark.parametrize("shape,window", CASES)
def test_value_and_vjp_equal_nn_max_pool_with_ties(shape, window):
    x = _tied(shape)
    rng = np.random.default_rng(1)
    f = jax.jit(lambda x: max_pool(x, window))
    ref = jax.jit(lambda x: _reference(x, window, window))
    y, y_ref = f(x), ref(x)
    np.testing.assert_array_equal(y, y_ref)
    ct = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    g = jax.vjp(f, x)[1](ct)[0]
    np.testing.assert_array_equal(g, jax.vjp(ref, x)[1](ct)[0])
    # With ties XLA's own JVP can pick another maximum than its VJP (e.g. the
    # 5x5 case); ours picks the VJP's, so the two are transposes: <J t, ct> = <t, J^T ct>.
    tangent = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    np.testing.assert_allclose(jnp.vdot(jax.jvp(f, (x,), (tangent,))[1], ct),
                               jnp.vdot(tangent, g), rtol=1e-5)


@pytest.mark.parametrize("shape,window", CASES)
def test_jvp_equals_nn_max_pool_without_ties(shape, window):
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    tangent = jnp.asarray(rng.normal(size=shape), jnp.float32)
    np.testing.assert_array_equal(
        jax.jvp(lambda x: max_pool(x, window), (x,), (tangent,))[1],
        jax.jvp(lambda x: _reference(x, window, window), (x,), (tangent,))[1])


def test_relu_zeros_and_continuous_inputs_match_in_a_loss_gradient():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 10, 10, 5)), jnp.float32)

    def loss(pool, x):
        return jnp.sum(jnp.sin(pool(jax.nn.relu(x))) ** 2)

    g = jax.grad(lambda x: loss(max_pool, x))(x)
    g_ref = jax.grad(lambda x: loss(lambda v: _reference(v, (2, 2), (2, 2)), x))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-7)


def test_second_order_and_vmap_match():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
    v = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

    def loss(pool, x):
        return jnp.sum(pool(x) ** 3)

    def hvp(pool):
        grad = jax.grad(lambda x: loss(pool, x))
        return jax.jvp(grad, (x,), (v,))[1]

    ref = lambda x: _reference(x, (2, 2), (2, 2))  # noqa: E731
    np.testing.assert_allclose(hvp(max_pool), hvp(ref), rtol=1e-6)
    per_example = jax.vmap(jax.grad(lambda x: loss(max_pool, x[None])))(x)
    per_example_ref = jax.vmap(jax.grad(lambda x: loss(ref, x[None])))(x)
    np.testing.assert_allclose(per_example, per_example_ref, rtol=1e-6)


def test_bfloat16_infinities_and_nan():
    x = _tied((2, 6, 6, 3), seed=4, dtype=jnp.bfloat16)
    np.testing.assert_array_equal(max_pool(x).astype(jnp.float32),
                                  _reference(x, (2, 2), (2, 2)).astype(jnp.float32))
    x = jnp.full((1, 3, 3, 1), -jnp.inf).at[0, 0, 0, 0].set(jnp.nan)
    np.testing.assert_array_equal(max_pool(x), _reference(x, (2, 2), (2, 2)))


def test_leading_batch_dims_and_module():
    x = _tied((2, 3, 8, 8, 4), seed=5)
    y = MaxPool().apply({}, x)
    np.testing.assert_array_equal(y, _reference(x.reshape(6, 8, 8, 4), (2, 2), (2, 2))
                                  .reshape(2, 3, 4, 4, 4))


def test_overlapping_windows_use_nn_max_pool():
    x = _tied((2, 9, 9, 2), seed=6)
    np.testing.assert_array_equal(max_pool(x, (3, 3), (2, 2)), _reference(x, (3, 3), (2, 2)))


def test_cpu_gradient_has_no_scatter_and_gpu_tpu_keep_xlas():
    x = jnp.ones((4, 16, 16, 8))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(max_pool(x) ** 2)))
    ops = ("stablehlo.scatter", "stablehlo.select_and_scatter", "stablehlo.reduce_window")
    hlo = export.export(grad, platforms=["cpu"])(x).mlir_module()
    assert not any(op in hlo for op in ops)
    for platform in ("cuda", "tpu"):  # nn.max_pool, unchanged
        text = export.export(grad, platforms=[platform])(x).mlir_module()
        assert all(op in text for op in ops[1:])


@pytest.mark.parametrize("kwargs", [dict(window=(2,)), dict(window=(2, 0)),
                                    dict(window=(2, 2), strides=(1, 2, 3))])
def test_bad_window_or_strides_raise(kwargs):
    with pytest.raises(ValueError, match="window and strides"):
        max_pool(jnp.ones((1, 4, 4, 1)), **kwargs)


def test_bad_rank_raises():
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\)"):
        max_pool(jnp.ones((4, 4)))
