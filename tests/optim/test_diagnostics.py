"""record_gradient_rms: an identity whose state holds the per-array gradient
RMS (Oland 2024, Efficient Deep Learning, Fig 4.3), found anywhere in an
optimiser state."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.optim import (GRADIENT_TRANSFORMS, GradientRMSState, gradient_rms,
                            gradient_rms_metrics, make_optimizer, record_gradient_rms,
                            validate_optim_config)
from tests._x64 import float64

PARAMS = {"dense": {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.zeros(4)},
          "scale": jnp.array(1.5), "extra": [jnp.ones(3)]}
GRADS = {"dense": {"w": jnp.array([[0.3, -0.2], [0.1, 0.9], [-1.0, 0.4]]),
                   "b": jnp.array([0.5, -0.5, 0.25, 2.0])},
         "scale": jnp.array(-0.7), "extra": [jnp.array([0.05, 0.0, -0.3])]}


def _numpy_rms(tree):
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path):
            float(np.sqrt(np.mean(np.asarray(g, np.float64) ** 2)))
            for path, g in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_identity_and_recorded_rms_against_numpy():
    tx = optax.chain(record_gradient_rms(), optax.sgd(0.1, momentum=0.9))
    ref = optax.sgd(0.1, momentum=0.9)
    state, ref_state = tx.init(PARAMS), ref.init(PARAMS)
    assert all(float(v) == 0.0 for v in gradient_rms_metrics(state).values())
    update = jax.jit(tx.update)
    for scale in (1.0, -3.0):  # two steps: the state holds the latest gradient's RMS
        grads = jax.tree.map(lambda g: scale * g, GRADS)
        updates, state = update(grads, state, PARAMS)
        ref_updates, ref_state = ref.update(grads, ref_state, PARAMS)
        chex.assert_trees_all_close(updates, ref_updates, rtol=1e-6)
        metrics = gradient_rms_metrics(state)
        want = {f"grad_rms/{k}": v for k, v in _numpy_rms(grads).items()}
        assert set(metrics) == set(want) == {"grad_rms/dense/w", "grad_rms/dense/b",
                                             "grad_rms/scale", "grad_rms/extra/0"}
        for key, value in want.items():
            np.testing.assert_allclose(float(metrics[key]), value, rtol=1e-6)


def test_vmap_over_replicas_and_float64():
    tx = record_gradient_rms()
    stacked = jax.tree.map(lambda g: jnp.stack([g, 2 * g, -g]), GRADS)
    states = jax.vmap(tx.init)(jax.tree.map(lambda p: jnp.stack([p] * 3), PARAMS))
    _, states = jax.jit(jax.vmap(tx.update))(stacked, states)
    rms = gradient_rms_metrics(states)["grad_rms/dense/w"]
    one = _numpy_rms(GRADS)["dense/w"]
    np.testing.assert_allclose(np.asarray(rms), [one, 2 * one, one], rtol=1e-6)
    with float64():  # kept in float64: 1e-30 squared underflows in float32
        g = {"w": jnp.array([1e-30, 3e-30], jnp.float64)}
        state = tx.init(g)
        assert state.rms["w"].dtype == jnp.float64
        _, state = tx.update(g, state)
        np.testing.assert_allclose(float(state.rms["w"]), np.sqrt(5.0) * 1e-30, rtol=1e-12)


def test_found_inside_multisteps_masks_and_under_two_names():
    cfg = dict(name="sgd", lr=0.1, accumulate_steps=2,
               transforms=(("record_gradient_rms", {}), ("clip", {"max_delta": 0.5}),
                           ("record_gradient_rms", {"name": "clipped_rms"})))
    tx = make_optimizer(cfg, total_steps=4)
    state = tx.init(PARAMS)
    update = jax.jit(tx.update)
    _, state = update(GRADS, state, PARAMS)
    _, state = update(jax.tree.map(lambda g: 3 * g, GRADS), state, PARAMS)
    metrics = gradient_rms_metrics(state)
    mean_grad = jax.tree.map(lambda g: 2 * g, GRADS)  # the mean of g and 3g
    for key, value in _numpy_rms(mean_grad).items():
        np.testing.assert_allclose(float(metrics[f"grad_rms/{key}"]), value, rtol=1e-6)
    clipped = jax.tree.map(lambda g: jnp.clip(g, -0.5, 0.5), mean_grad)
    for key, value in _numpy_rms(clipped).items():
        np.testing.assert_allclose(float(metrics[f"clipped_rms/{key}"]), value, rtol=1e-6)
    # inside a mask: only the selected part is recorded
    masked = optax.masked(record_gradient_rms(), {"dense": True, "scale": False,
                                                  "extra": [False]})
    _, mstate = masked.update(GRADS, masked.init(PARAMS), PARAMS)
    assert set(gradient_rms_metrics(mstate)) == {"grad_rms/dense/w", "grad_rms/dense/b"}
    assert gradient_rms_metrics(optax.sgd(0.1).init(PARAMS)) == {}


def test_errors_and_registry():
    assert GRADIENT_TRANSFORMS["record_gradient_rms"] is record_gradient_rms
    for bad in ("", "a/b", 3):
        with pytest.raises(ValueError, match="name"):
            record_gradient_rms(bad)
    with pytest.raises(ValueError, match="record_gradient_rms"):
        validate_optim_config(dict(name="sgd", lr=0.1,
                                   transforms=(("record_gradient_rms", {"every": 2}),)))
    twice = optax.chain(record_gradient_rms(), record_gradient_rms())
    with pytest.raises(ValueError, match="distinct names"):
        gradient_rms_metrics(twice.init(PARAMS))
    assert isinstance(record_gradient_rms().init(PARAMS), GradientRMSState)
    chex.assert_trees_all_close(gradient_rms({"a": jnp.array([3.0, 4.0])}),
                                {"a": jnp.sqrt(12.5)})
