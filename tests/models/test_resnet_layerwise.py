"""ResNet block slices for layer-wise training (Oland 2024, ch. 6): the stem
is block 0, each residual block one block after it."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.losses import softmax_cross_entropy
from neurojax.models import BasicBlock, BottleneckBlock, ResNet
from neurojax.models.heads import decision_head
from neurojax.train import layerwise as lw
from neurojax.train.program import enter_stage
from neurojax.train.state import create_train_state
from neurojax.train.step import train_step_fn
from tests.models._helpers import key, randn, random_variables


def _tiny(**kwargs):
    return ResNet(**{**dict(stage_sizes=(1, 1), block_cls=BasicBlock, num_classes=3,
                            width=0.125), **kwargs})


def test_block_protocol():
    model = _tiny(stage_sizes=(1, 2))
    assert model.num_blocks == 4  # stem + 3 residual blocks
    assert [model.block_params(b) for b in range(5)] == [
        ("stem",), ("stage1_block1",), ("stage2_block1",), ("stage2_block2",), ("head",)]
    assert ResNet(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock).num_blocks == 17


def test_chained_slices_equal_the_full_forward_pass_in_both_modes():
    """Eval mode: logits; train mode: logits and every updated BatchNorm
    statistic, the slices [0,1), [1,3), top chained."""
    model = _tiny()
    x = randn(4, 8, 8, 3, seed=1)
    variables = random_variables(model, x.shape)
    bounds = [(0, 1), (1, 3), (3, None)]

    @jax.jit
    def both(variables, x):
        full = model.apply(variables, x)
        full_train, full_stats = model.apply(variables, x, train=True, mutable=["batch_stats"])
        z, zt, stats = x, x, variables["batch_stats"]
        for start, stop in bounds:
            z = model.apply(variables, z, start=start, stop=stop)
            zt, new = model.apply({"params": variables["params"], "batch_stats": stats}, zt,
                                  train=True, mutable=["batch_stats"], start=start, stop=stop)
            stats = new["batch_stats"]
        return full, z, full_train, zt, full_stats["batch_stats"], stats

    full, z, full_train, zt, full_stats, stats = both(variables, x)
    assert full.shape == (4, 3)
    np.testing.assert_allclose(z, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zt, full_train, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(stats, full_stats, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="stop"):
        model.apply(variables, x, start=2, stop=1)


def test_a_dll_stage_over_a_resnet_trains_its_block_only():
    """Stage [1, 2) (the first residual block) with a decision layer, on the
    cached output of the frozen stem: the loss falls over 8 SGD steps on
    one batch; nothing outside the window and its head moves."""
    model, head = _tiny(), decision_head("layer", 3)
    batch = {"image": jnp.asarray(randn(16, 8, 8, 3)),
             "label": jnp.asarray(np.random.default_rng(0).integers(0, 3, 16), jnp.int32)}
    windows = lw.stage_windows(model.num_blocks)
    variables = random_variables(model, batch["image"].shape)
    heads = jax.jit(lambda k: lw.init_heads(model, head, k, variables, batch["image"],
                                            windows))(key(1))
    params = {**variables["params"], lw.HEADS: heads}
    model_state = {"batch_stats": variables["batch_stats"]}
    tx = optax.sgd(0.2, momentum=0.9)
    stages = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(), 3,
                                 lambda i, n: tx, params, data_on_device=True)
    assert [s.trainable for s in stages] == [
        ("stem", f"{lw.HEADS}/head_1"), ("stage1_block1", f"{lw.HEADS}/head_2"),
        ("stage2_block1", "head")]
    stage = stages[1]
    z = jax.jit(stage.inputs)(params, model_state, batch)
    state = enter_stage(create_train_state(params, optax.identity(), model_state=model_state,
                                           rng=jax.random.PRNGKey(2)), stage)
    step = jax.jit(train_step_fn(stage.objective, tx, trainable=stage.trainable))
    losses = []
    for _ in range(8):
        state, metrics = step(state, z)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.9 * losses[0]
    for name in ("stem", "stage2_block1", "head"):
        chex.assert_trees_all_equal(state.params[name], params[name])
    assert not np.allclose(state.params["stage1_block1"]["conv1"]["kernel"],
                           params["stage1_block1"]["conv1"]["kernel"])
