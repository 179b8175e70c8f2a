"""The compiled step equals a hand-written gradient step; the mesh path is one path."""
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.losses import softmax_cross_entropy
from neurojax.train import (create_train_state, make_eval_step, make_mesh, make_train_step,
                            model_objective, shard_batch)
from tests._devices import run_with_forced_devices


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(16)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(3)(nn.relu(x))


def _setup(batch_size=8):
    model = TinyNet()
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(batch_size, 4, 4, 1)).astype(np.float32),
             "label": rng.integers(0, 3, size=batch_size).astype(np.int32)}
    variables = model.init(jax.random.PRNGKey(0), batch["image"], train=False)
    params = variables.pop("params")
    return model, params, variables, batch


def test_step_matches_manual_sgd():
    model, params, model_state, batch = _setup()
    tx = optax.sgd(0.1, momentum=0.9)
    state = create_train_state(params, tx, model_state=model_state)
    step = make_train_step(model_objective(model, softmax_cross_entropy), tx, donate=False)
    new_state, metrics = step(state, shard_batch(batch, make_mesh()))

    # Independent computation: softmax cross-entropy written out by hand.
    def loss(p):
        logits, updated = model.apply({"params": p, **model_state}, batch["image"], train=True,
                                      mutable=["batch_stats"])
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(logp[jnp.arange(len(batch["label"])), batch["label"]]), updated
    (ref_loss, updated), grads = jax.value_and_grad(loss, has_aux=True)(params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)  # momentum buffer starts at g
    chex.assert_trees_all_close(new_state.params, expected, atol=1e-6)
    chex.assert_trees_all_close(new_state.model_state, updated, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], ref_loss, rtol=1e-6)
    assert int(new_state.step) == 1


def test_rng_changes_per_step_and_is_deterministic():
    seen = []

    def objective(params, model_state, batch, rng):
        return jnp.sum(params["w"] ** 2), ({"r": jax.random.uniform(rng)}, model_state)

    tx = optax.sgd(0.1)
    state = create_train_state({"w": jnp.ones(2)}, tx, rng=jax.random.PRNGKey(3))
    step = make_train_step(objective, tx, donate=False)
    batch = shard_batch({"x": np.zeros((2, 1), np.float32)}, make_mesh())
    for _ in range(2):
        state, m = step(state, batch)
        seen.append(float(m["r"]))
    assert seen[0] != seen[1]
    state2 = create_train_state({"w": jnp.ones(2)}, tx, rng=jax.random.PRNGKey(3))
    assert float(step(state2, batch)[1]["r"]) == seen[0]


def test_eval_step_masks_padding():
    model, params, model_state, batch = _setup(batch_size=8)
    state = create_train_state(params, optax.sgd(0.1), model_state=model_state)
    eval_step = make_eval_step(model, softmax_cross_entropy)
    padded = dict(batch, mask=np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32))
    sums = jax.device_get(eval_step(state, shard_batch(padded, make_mesh())))
    logits = model.apply({"params": params, **model_state}, batch["image"][:5], train=False)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"][:5])
    np.testing.assert_allclose(sums["loss"], ref.sum(), rtol=1e-5)
    assert sums["count"] == 5
    assert sums["accuracy"] == np.sum(np.argmax(logits, -1) == batch["label"][:5])


_SHARDED_SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, numpy as np, optax, chex
    from neurojax.losses import softmax_cross_entropy
    from neurojax.train import (create_train_state, make_mesh, make_train_step,
                                model_objective, shard_batch)
    from tests.train.test_step import _setup
    assert jax.device_count() == 8, jax.devices()
    model, params, model_state, batch = _setup(batch_size=16)
    tx = optax.sgd(0.1, momentum=0.9)
    objective = model_objective(model, softmax_cross_entropy)
    results = []
    for mesh in (make_mesh(jax.devices()[:1]), make_mesh()):
        # fresh copies: the step donates its input state
        state = create_train_state(jax.tree.map(np.array, params), tx,
                                   model_state=jax.tree.map(np.array, model_state))
        step = make_train_step(objective, tx, mesh=mesh)
        for _ in range(3):
            state, _ = step(state, shard_batch(batch, mesh))
        if mesh.devices.size == 8:
            leaf = jax.tree.leaves(state.params)[0]
            assert len(leaf.sharding.device_set) == 8
        results.append(jax.device_get(state))
    chex.assert_trees_all_close(results[0].params, results[1].params, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(results[0].model_state, results[1].model_state, atol=1e-5, rtol=1e-5)
    try:
        shard_batch({"x": np.zeros((6, 2))}, make_mesh())
    except ValueError as e:
        assert "divisible" in str(e)
    else:
        raise AssertionError("indivisible batch accepted")
    print("SHARDED_OK")
""")


@pytest.mark.slow
def test_sharded_step_equals_single_device_step():
    """8 forced CPU devices: the data-parallel step gives the same parameters."""
    run_with_forced_devices(_SHARDED_SCRIPT, "SHARDED_OK")


def test_evaluate_extra_masked_batches_change_nothing():
    """Processes with a smaller shard run extra all-padding eval steps."""
    from neurojax.train.evaluation import eval_batches_per_process, evaluate

    model, params, model_state, batch = _setup(batch_size=8)
    state = create_train_state(params, optax.sgd(0.1), model_state=model_state)
    eval_step = make_eval_step(model, softmax_cross_entropy)
    mesh = make_mesh()
    loader = [{k: v[:4] for k, v in batch.items()}, {k: v[4:7] for k, v in batch.items()}]
    exact = evaluate(eval_step, state, loader, 4, mesh)
    padded = evaluate(eval_step, state, loader, 4, mesh, num_batches=4)
    assert padded == pytest.approx(exact)
    logits = model.apply({"params": params, **model_state}, batch["image"][:7], train=False)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"][:7]).mean()
    assert exact["loss"] == pytest.approx(float(ref), rel=1e-5)
    assert eval_batches_per_process(7, 4) == 2 and eval_batches_per_process(9, 4) == 3
