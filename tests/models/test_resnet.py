"""ResNets: standard parameter counts, stems, BatchNorm modes, jit and grad."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.models import (BasicBlock, BottleneckBlock, ResNet, ResNet18,
                             ResNet34, ResNet50, intermediate_features)
from tests._x64 import float64
from tests.models import _reference as ref
from tests.models._helpers import (abstract_init, float64_variables, init, n_params,
                                   randn, to_np)


def _tiny(**kwargs) -> ResNet:
    """Two one-block stages, 8 base channels."""
    kwargs = dict(stage_sizes=(1, 1), block_cls=BasicBlock, num_classes=3,
                  width=0.125, **kwargs)
    return ResNet(**kwargs)


def test_resnet18_cifar_parameter_count():
    variables = abstract_init(ResNet18(stem="cifar", num_classes=10), (1, 32, 32, 3))
    assert n_params(variables["params"]) == 11_173_962


def test_resnet50_imagenet_parameter_count():
    # the count does not depend on the input size (global pooling); 64x64
    # keeps the abstract trace small
    model = ResNet50(stem="imagenet", num_classes=1000)
    variables = abstract_init(model, (1, 64, 64, 3))
    assert n_params(variables["params"]) == 25_557_032


def test_resnet34_imagenet_parameter_count():
    variables = abstract_init(ResNet34(stem="imagenet", num_classes=1000),
                              (1, 64, 64, 3))
    assert n_params(variables["params"]) == 21_797_672  # torchvision


def _feature_shapes(model, shape, names):
    variables = abstract_init(model, shape)
    return jax.eval_shape(
        lambda v, x: {k: a for k, a in intermediate_features(
            model, v, x, filter=names).items()},
        variables, jnp.zeros(shape))


def test_imagenet_stem_downsamples_224_to_56():
    shapes = _feature_shapes(ResNet50(stem="imagenet"), (1, 224, 224, 3),
                             ["stem/conv", "stem", "stage1_block1", "stage4_block3",
                              "gap"])
    assert shapes["stem/conv"].shape == (1, 112, 112, 64)
    assert shapes["stem"].shape == (1, 56, 56, 64)          # input of stage 1
    assert shapes["stage1_block1"].shape == (1, 56, 56, 256)
    assert shapes["stage4_block3"].shape == (1, 7, 7, 2048)
    assert shapes["gap"].shape == (1, 2048)


def test_cifar_stem_keeps_32():
    shapes = _feature_shapes(ResNet18(stem="cifar"), (1, 32, 32, 3),
                             ["stem", "stage1_block2", "stage4_block2"])
    assert shapes["stem"].shape == (1, 32, 32, 64)
    assert shapes["stage1_block2"].shape == (1, 32, 32, 64)
    assert shapes["stage4_block2"].shape == (1, 4, 4, 512)


def test_projection_shortcut_only_when_shape_changes():
    params = abstract_init(ResNet18(), (1, 32, 32, 3))["params"]
    with_proj = sorted(k for k, v in params.items() if "proj_conv" in v)
    assert with_proj == ["stage2_block1", "stage3_block1", "stage4_block1"]
    params = abstract_init(ResNet50(), (1, 32, 32, 3))["params"]
    with_proj = sorted(k for k, v in params.items() if "proj_conv" in v)
    # stage 1 of a bottleneck net changes channels 64 -> 256 at stride 1
    assert with_proj == [f"stage{s}_block1" for s in (1, 2, 3, 4)]
    assert params["stage1_block1"]["proj_conv"]["kernel"].shape == (1, 1, 64, 256)


@pytest.mark.parametrize("ctor, dim", [(ResNet18, 512), (ResNet50, 2048)])
def test_features_mode_returns_pooled_representation(ctor, dim):
    model = ctor(num_classes=None, width=0.25)
    variables = abstract_init(model, (2, 16, 16, 3))
    assert "head" not in variables["params"]
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 16, 16, 3))),
                         variables)
    chex.assert_shape(out, (2, dim // 4))


def test_width_multiplier_and_string_block():
    model = ResNet(stage_sizes=(1, 1), block_cls="bottleneck", width=0.5,
                   num_classes=5)
    params = abstract_init(model, (1, 8, 8, 3))["params"]
    assert params["stem"]["conv"]["kernel"].shape == (3, 3, 3, 32)
    assert params["stage2_block1"]["conv3"]["kernel"].shape == (1, 1, 64, 256)
    assert params["head"]["kernel"].shape == (256, 5)


def test_zero_init_residual():
    block = BasicBlock(features=4, zero_init_residual=True)
    params = init(block, jnp.zeros((1, 4, 4, 4)))["params"]
    np.testing.assert_array_equal(params["bn2"]["scale"], 0)
    np.testing.assert_array_equal(params["bn1"]["scale"], 1)
    assert "proj_conv" not in params  # same shape in and out: identity shortcut


@pytest.fixture(scope="module")
def tiny_basic():
    model = _tiny()
    x = randn(4, 8, 8, 3, seed=0) * 2 + 1
    return model, init(model, x), x


def test_batchnorm_train_updates_and_eval_uses_batch_stats(tiny_basic):
    model, variables, x = tiny_basic

    @jax.jit
    def run(variables):
        out, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
        conv = intermediate_features(model, variables, x, filter="stem/conv",
                                     train=True)["stem/conv"]
        return out, state, conv

    _, state, conv = run(variables)
    old, new = variables["batch_stats"], state["batch_stats"]
    assert jax.tree.structure(old) == jax.tree.structure(new)
    # momentum 0.9 (PyTorch's 0.1): new = 0.9 * old + 0.1 * batch statistic
    conv = np.asarray(conv, np.float64)
    np.testing.assert_allclose(new["stem"]["bn"]["mean"],
                               0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new["stem"]["bn"]["var"],
                               0.9 + 0.1 * conv.var(axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-5)

    # eval mode: normalise with the stored statistics, not the batch's
    rng = np.random.default_rng(1)
    stats = jax.tree.map(lambda a: rng.uniform(0.5, 2.0, a.shape).astype(np.float32),
                         new)
    params = to_np(variables["params"])
    params["stem"]["bn"]["scale"] = rng.normal(size=conv.shape[-1])
    params["stem"]["bn"]["bias"] = rng.normal(size=conv.shape[-1])
    evaluated = {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params),
                 "batch_stats": stats}
    feats = jax.jit(lambda v, x: intermediate_features(
        model, v, x, filter=["stem/conv", "stem/bn"]))(evaluated, x)
    bn = params["stem"]["bn"]
    mean, var = stats["stem"]["bn"]["mean"], stats["stem"]["bn"]["var"]
    expected = ((np.asarray(feats["stem/conv"]) - mean) / np.sqrt(var + 1e-5)
                * bn["scale"] + bn["bias"])
    np.testing.assert_allclose(feats["stem/bn"], expected, rtol=1e-4, atol=1e-4)

    # ... so each example's eval output does not depend on the rest of the batch
    forward = jax.jit(lambda v, x: model.apply(v, x))
    np.testing.assert_allclose(forward(evaluated, x)[:1], forward(evaluated, x[:1]),
                               rtol=1e-5, atol=1e-5)


def test_jit_forward_and_grad(tiny_basic):
    model, variables, x = tiny_basic
    labels = jnp.array([0, 2, 1, 0])

    def loss_fn(params, batch_stats):
        logits, state = model.apply({"params": params, "batch_stats": batch_stats},
                                    x, train=True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, state["batch_stats"]

    @jax.jit
    def step(variables):
        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables["params"], variables["batch_stats"])
        return loss, new_stats, grads, model.apply(variables, x, train=False)

    loss, new_stats, grads, logits = step(variables)
    chex.assert_trees_all_equal_shapes(grads, variables["params"])
    chex.assert_tree_all_finite((loss, grads, new_stats, logits))
    chex.assert_shape(logits, (4, 3))
    norms = jax.tree.leaves(jax.tree.map(lambda g: float(jnp.abs(g).sum()), grads))
    assert all(n > 0 for n in norms)  # every parameter gets a gradient


def test_grad_through_strided_bottleneck_block():
    block = BottleneckBlock(features=2, strides=(2, 2))
    x = randn(2, 4, 4, 3, seed=2)
    variables = init(block, x)

    @jax.jit
    def grads(params):
        def loss(params):
            y, _ = block.apply({"params": params,
                                "batch_stats": variables["batch_stats"]},
                               x, train=True, mutable=["batch_stats"])
            return jnp.sum(y ** 2)
        return jax.grad(loss)(params)

    g = grads(variables["params"])
    chex.assert_trees_all_equal_shapes(g, variables["params"])
    assert g["proj_conv"]["kernel"].shape == (1, 1, 3, 8)
    chex.assert_tree_all_finite(g)


@pytest.mark.parametrize("block, reference, features, strides, in_shape, projection", [
    # identity shortcut, odd spatial size
    (BasicBlock, ref.basic_block, 4, (1, 1), (3, 7, 7, 4), False),
    # strided 3x3 on an even size: 'SAME' pads 0 before and 1 after
    (BasicBlock, ref.basic_block, 6, (2, 2), (3, 8, 8, 4), True),
    (BottleneckBlock, ref.bottleneck_block, 2, (1, 1), (3, 6, 6, 8), False),
    (BottleneckBlock, ref.bottleneck_block, 3, (2, 2), (3, 8, 8, 5), True),
], ids=["basic", "basic_strided_projection", "bottleneck", "bottleneck_strided_projection"])
def test_block_matches_a_hand_written_float64_reference(block, reference, features, strides,
                                                        in_shape, projection):
    # The block's forward pass against tests/models/_reference.py (lax
    # convolutions, BatchNorm written out) with the same weights, in float64,
    # in inference mode (running statistics) and in training mode (batch
    # statistics, and the updated running statistics).
    with float64():
        module = block(features=features, strides=strides)
        x = jnp.asarray(np.random.default_rng(3).normal(0.5, 2.0, in_shape))
        variables = float64_variables(module, in_shape, seed=4)
        assert ("proj_conv" in variables["params"]) == projection

        @jax.jit
        def both(variables, x):
            params, stats = variables["params"], variables["batch_stats"]
            train_out, state = module.apply(variables, x, train=True,
                                            mutable=["batch_stats"])
            return {"eval": module.apply(variables, x, train=False),
                    "train": train_out, "stats": state["batch_stats"],
                    "ref_eval": reference(x, params, stats, strides, False)[0],
                    "ref_train": reference(x, params, stats, strides, True)}

        out = both(variables, x)
        assert out["eval"].dtype == out["train"].dtype == jnp.float64
        chex.assert_shape([out["eval"], out["train"]],
                          (in_shape[0], -(-in_shape[1] // strides[0]),
                           -(-in_shape[2] // strides[1]), features * block.expansion))
        np.testing.assert_allclose(out["eval"], out["ref_eval"], rtol=1e-10, atol=1e-10)
        expected_train, expected_stats = out["ref_train"]
        np.testing.assert_allclose(out["train"], expected_train, rtol=1e-10, atol=1e-10)
        chex.assert_trees_all_close(out["stats"], expected_stats, rtol=1e-10, atol=1e-12)
        for y in (out["eval"], out["train"]):      # ReLU neither dead nor idle
            assert 0.05 < np.mean(np.asarray(y) == 0) < 0.8
        # the two modes differ (the running statistics are not the batch's)
        assert np.abs(np.asarray(out["eval"]) - np.asarray(out["train"])).max() > 0.1


@pytest.mark.parametrize("kwargs, field", [
    (dict(stem="tiny"), "stem"),
    (dict(width=0), "width"),
    (dict(num_classes=-3), "num_classes"),
    (dict(stage_sizes=()), "stage_sizes"),
    (dict(stage_sizes=(2, 0)), "stage_sizes"),
    (dict(block_cls="resnext"), "block_cls"),
    (dict(block_cls=int), "block_cls"),
])
def test_resnet_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ResNet(**kwargs)
