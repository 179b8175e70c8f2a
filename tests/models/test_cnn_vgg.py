"""SmallCNN and VGG: shapes, layer counts, a numpy convolution check."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.models import VGG, SmallCNN, intermediate_features
from neurojax.models.vgg import VGG_CONFIGS
from tests._x64 import float64
from tests.models import _reference as ref
from tests.models._helpers import abstract_init as _abstract_init
from tests.models._helpers import float64_variables, init, n_params as _n_params, randn, to_np


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


# VGG-11 (configuration A of Simonyan & Zisserman, Table 1), written out here
# rather than read from VGG_CONFIGS: "C" is a 3x3 conv (+ BatchNorm) + ReLU,
# "M" a 2x2 max-pool.
_VGG11_LAYERS = "C M C M C C M C C M C C M".split()


def _vgg11_reference(x, params, stats, train, use_batchnorm):
    """(logits, new running statistics) of VGG-11 with a hidden dense layer."""
    new, n_conv = {}, 0
    for layer in _VGG11_LAYERS:
        if layer == "M":
            x = ref.max_pool_2x2(x)
            continue
        x = ref.conv(x, params[f"conv_{n_conv}"]["kernel"])
        if use_batchnorm:
            bn = f"bn_{n_conv}"
            x, new[bn] = ref.batch_norm(x, params[bn], stats[bn], train)
        else:
            x = x + params[f"conv_{n_conv}"]["bias"]
        x = ref.relu(x)
        n_conv += 1
    x = x.mean(axis=(1, 2))
    x = ref.relu(ref.dense(x, params["fc_0"]))
    return ref.dense(x, params["head"]), new


@pytest.mark.parametrize("use_batchnorm, train", [(True, False), (True, True), (False, False)],
                         ids=["running_stats", "batch_stats", "conv_bias"])
def test_vgg11_matches_a_hand_written_float64_reference(use_batchnorm, train):
    # The whole stack against tests/models/_reference.py with the same weights,
    # in float64; 20x20 inputs pool to 10, 5, 3, 2, 1, so two of the five
    # 'SAME' pools pad a row and a column of -inf. BatchNorm in inference
    # (running statistics) and training mode (batch statistics; the updated
    # statistics are compared too), or conv biases without BatchNorm.
    # (Width 1/4, not 1/16: XLA:CPU compiled this test's float64 convolutions
    # about twice as slowly with 4..32 channels as with 16..128.)
    shape = (2, 20, 20, 3)
    with float64():
        model = VGG(depth=11, width_factor=1 / 4, num_classes=4, classifier_widths=(5,),
                    use_batchnorm=use_batchnorm)
        x = jnp.asarray(np.random.default_rng(5).normal(0.5, 1.0, shape))
        variables = float64_variables(model, shape, seed=6)
        assert sorted(k for k in variables["params"] if k.startswith("conv_")) == [
            f"conv_{i}" for i in range(8)]
        assert variables["params"]["conv_7"]["kernel"].shape == (3, 3, 128, 128)  # 512 / 4

        @jax.jit
        def run(variables, x):
            if train:
                out, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
            else:
                out, state = model.apply(variables, x), {}
            expected = _vgg11_reference(x, variables["params"],
                                        variables.get("batch_stats", {}), train, use_batchnorm)
            return out, state.get("batch_stats", {}), expected

        out, stats, (expected, expected_stats) = run(variables, x)
        assert out.dtype == jnp.float64
        chex.assert_shape(out, (2, 4))
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
        assert np.abs(np.asarray(out)).max() > 0.1          # not a trivial output
        if train:
            assert len(jax.tree.leaves(stats)) == 16
            chex.assert_trees_all_close(stats, expected_stats, rtol=1e-10, atol=1e-12)


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


@pytest.mark.slow
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
