"""SmallCNN and VGG: shapes, layer counts, a numpy convolution check."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.models import VGG, SmallCNN, intermediate_features
from neurojax.models.vgg import VGG_CONFIGS
from tests.models._helpers import abstract_init as _abstract_init
from tests.models._helpers import init, n_params as _n_params, randn, to_np


def _np_conv_same(x, kernel):
    """Direct NHWC/HWIO 'SAME' convolution (stride 1, odd kernel) in numpy."""
    kh, kw = kernel.shape[:2]
    ph, pw = kh // 2, kw // 2
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(kh):
        for j in range(kw):
            out += xp[:, i:i + h, j:j + w, :] @ kernel[i, j]
    return out


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 32, 32, 3)])
def test_small_cnn_shapes(shape):
    # shapes only (jax.eval_shape); test_small_cnn_first_layers_match_numpy
    # runs the real computation
    model = SmallCNN(widths=(4, 8), hidden=16, num_classes=10)
    variables = _abstract_init(model, shape)
    x = jnp.zeros(shape)
    chex.assert_shape(jax.eval_shape(lambda v: model.apply(v, x), variables), (2, 10))
    feats = SmallCNN(widths=(4, 8), hidden=16, num_classes=None)
    chex.assert_shape(jax.eval_shape(lambda v: feats.apply(v, x), variables), (2, 16))


def test_small_cnn_without_hidden_returns_flattened_pooled_features():
    model = SmallCNN(widths=(4, 8), hidden=None, num_classes=None)
    x = jnp.zeros((2, 8, 8, 1))
    # two 2x2 pools: 8 -> 4 -> 2, so 2*2*8 features
    out = jax.eval_shape(lambda v: model.apply(v, x), _abstract_init(model, x.shape))
    chex.assert_shape(out, (2, 32))


def test_small_cnn_first_layers_match_numpy():
    model = SmallCNN(widths=(3, 4), hidden=5, num_classes=2)
    x = randn(2, 8, 8, 1, seed=0)
    variables = init(model, x, seed=1)
    feats = intermediate_features(model, variables, x,
                                  filter=["conv_0", "act_0", "pool_0"])
    p = to_np(variables["params"])
    conv = _np_conv_same(np.asarray(x, np.float64), p["conv_0"]["kernel"])
    conv += p["conv_0"]["bias"]
    act = np.maximum(conv, 0)
    pool = act.reshape(2, 4, 2, 4, 2, 3).max(axis=(2, 4))
    np.testing.assert_allclose(feats["conv_0"], conv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["act_0"], act, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["pool_0"], pool, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth, n_conv", [(11, 8), (13, 10), (16, 13), (19, 16)])
def test_vgg_conv_layer_count_and_shapes(depth, n_conv):
    model = VGG(depth=depth, width_factor=0.125, num_classes=10)
    variables = _abstract_init(model, (2, 32, 32, 3))
    kernels = [a for a in jax.tree.leaves(variables["params"]) if a.ndim == 4]
    assert len(kernels) == n_conv
    assert len([c for c in VGG_CONFIGS[depth] if c != "M"]) == n_conv
    # the paper counts these convs plus 3 FC layers (8 + 3 = 11 for VGG-11);
    # the CIFAR variant keeps the convs and has a single FC layer
    assert [k.shape[-1] for k in kernels][-1] == 64  # 512 * 0.125
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                         jnp.zeros((2, 32, 32, 3)))
    chex.assert_shape(out, (2, 10))


def test_vgg16_parameter_count():
    # pytorch-cifar VGG16 (conv bias + BN): 14,728,266; without the 4,224
    # redundant conv biases (BN follows every conv): 14,724,042.
    variables = _abstract_init(VGG(depth=16), (1, 32, 32, 3))
    assert _n_params(variables["params"]) == 14_724_042
    no_bn = _abstract_init(VGG(depth=16, use_batchnorm=False), (1, 32, 32, 3))
    assert "batch_stats" not in no_bn
    # conv biases instead of BN scale+bias: 4,224 fewer parameters
    assert _n_params(no_bn["params"]) == 14_728_266 - 2 * 4224


def test_vgg11_forward_train_and_eval():
    model = VGG(depth=11, width_factor=1 / 16, num_classes=3)
    x = randn(2, 32, 32, 3, seed=0)
    variables = init(model, x, seed=1)

    @jax.jit
    def forward(variables, x):
        out, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return out, state, model.apply(variables, x, train=False)

    out, state, eval_out = forward(variables, x)
    chex.assert_shape([out, eval_out], (2, 3))
    chex.assert_tree_all_finite([out, eval_out])
    assert set(state["batch_stats"]) == {f"bn_{i}" for i in range(8)}


def test_vgg_features_mode_and_classifier_widths():
    x = jnp.zeros((2, 32, 32, 3))
    model = VGG(depth=11, width_factor=0.25, num_classes=None)
    out = jax.eval_shape(lambda v: model.apply(v, x), _abstract_init(model, x.shape))
    chex.assert_shape(out, (2, 128))
    model = VGG(depth=11, width_factor=0.25, num_classes=7, classifier_widths=(32,))
    variables = _abstract_init(model, x.shape)
    assert variables["params"]["fc_0"]["kernel"].shape == (128, 32)
    chex.assert_shape(jax.eval_shape(lambda v: model.apply(v, x), variables), (2, 7))


@pytest.mark.parametrize("kwargs, field", [
    (dict(depth=12), "depth"),
    (dict(width_factor=0), "width_factor"),
    (dict(width_factor=-1.0), "width_factor"),
    (dict(num_classes=0), "num_classes"),
    (dict(classifier_widths=(0,)), "classifier_widths"),
])
def test_vgg_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        VGG(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    (dict(widths=()), "widths"),
    (dict(hidden=0), "hidden"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(activation="nope"), "activation"),
])
def test_small_cnn_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SmallCNN(**kwargs)


def test_small_cnn_global_pool_averages_the_last_stage_at_any_resolution():
    model = SmallCNN(widths=(4, 6), hidden=None, num_classes=None, global_pool=True)
    for size in (8, 16):
        x = np.random.default_rng(size).normal(size=(3, size, size, 2)).astype(np.float32)
        variables = model.init(jax.random.PRNGKey(0), x)
        out = model.apply(variables, x)
        pooled = intermediate_features(model, variables, x, filter="pool_1")["pool_1"]
        assert out.shape == (3, 6)
        np.testing.assert_allclose(out, np.asarray(pooled).mean(axis=(1, 2)), rtol=1e-6)


def test_small_cnn_batch_norm_normalises_conv_outputs_in_training():
    model = SmallCNN(widths=(5,), hidden=None, num_classes=None, batch_norm=True)
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(16, 6, 6, 2)).astype(np.float32)
    variables = model.init(jax.random.PRNGKey(0), x)
    assert "bias" not in variables["params"]["conv_0"]  # BN's shift replaces it
    (_, state) = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                             capture_intermediates=lambda m, name: m.name == "bn_0")
    normed = np.asarray(state["intermediates"]["bn_0"]["__call__"][0])
    np.testing.assert_allclose(normed.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    conv = variables["params"]["conv_0"]["kernel"]
    moved = state["batch_stats"]["bn_0"]["mean"]
    assert not np.allclose(moved, variables["batch_stats"]["bn_0"]["mean"])
    assert conv.shape == (3, 3, 2, 5)
