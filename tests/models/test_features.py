"""intermediate_features / layer_names: names, filters, hand recomputation."""
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.models import (MLP, ResNet, SmallCNN, intermediate_features,
                             layer_names)
from tests.models._helpers import init, randn, to_np


@pytest.fixture(scope="module")
def mlp_setup():
    model = MLP(widths=(6, 5), num_outputs=3)
    x = randn(4, 7, seed=0)
    return model, init(model, x), x


def test_layer_names_in_call_order(mlp_setup):
    model, variables, x = mlp_setup
    expected = ["dense_0", "act_0", "dense_1", "act_1", "head"]
    assert layer_names(model, x) == expected
    assert layer_names(model, jax.ShapeDtypeStruct(x.shape, x.dtype), variables) \
        == expected


def test_layer_names_nested():
    model = ResNet(stage_sizes=(1, 1), num_classes=2, width=0.125)
    names = layer_names(model, jnp.zeros((1, 8, 8, 3)))
    assert names[:4] == ["stem", "stem/conv", "stem/bn", "stage1_block1"]
    assert "stage2_block1/proj_conv" in names
    assert names[-2:] == ["gap", "head"]


def test_all_features_match_numpy(mlp_setup):
    model, variables, x = mlp_setup
    feats = intermediate_features(model, variables, x)
    assert list(feats) == ["dense_0", "act_0", "dense_1", "act_1", "head"]
    p = to_np(variables["params"])
    d0 = np.asarray(x, np.float64) @ p["dense_0"]["kernel"] + p["dense_0"]["bias"]
    a0 = np.maximum(d0, 0)
    d1 = a0 @ p["dense_1"]["kernel"] + p["dense_1"]["bias"]
    np.testing.assert_allclose(feats["dense_0"], d0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["act_0"], a0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["dense_1"], d1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["act_1"], np.maximum(d1, 0), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(feats["head"], model.apply(variables, x), rtol=1e-6)


@pytest.mark.parametrize("filter, expected", [
    ("act_1", ["act_1"]),                       # exact name
    (r"act_\d", ["act_0", "act_1"]),            # regex, full match
    (re.compile(r"dense_.*"), ["dense_0", "dense_1"]),
    (["head", "dense_0"], ["dense_0", "head"]),  # any of; call order kept
    (lambda path, module: isinstance(module, nn.Dense), ["dense_0", "dense_1", "head"]),
    ("act", []),                                # no partial matches
])
def test_filters(mlp_setup, filter, expected):
    model, variables, x = mlp_setup
    assert list(intermediate_features(model, variables, x, filter=filter)) == expected


def test_root_output_only_when_filter_matches_empty_path(mlp_setup):
    model, variables, x = mlp_setup
    assert "" not in intermediate_features(model, variables, x)
    feats = intermediate_features(model, variables, x, filter=["", "head"])
    np.testing.assert_allclose(feats[""], feats["head"])


def test_jit_and_shapes_for_cnn():
    model = SmallCNN(widths=(3, 4), hidden=5, num_classes=2)
    x = randn(2, 8, 8, 1, seed=1)
    variables = init(model, x)
    feats = jax.jit(lambda v, x: intermediate_features(model, v, x, filter=r"pool_\d"))(
        variables, x)
    chex.assert_shape(feats["pool_0"], (2, 4, 4, 3))
    chex.assert_shape(feats["pool_1"], (2, 2, 2, 4))
    # the captured pooled features, flattened through the dense layers by
    # hand, give the logits
    p = to_np(variables["params"])
    h = np.asarray(feats["pool_1"], np.float64).reshape(2, -1)
    h = np.maximum(h @ p["hidden"]["kernel"] + p["hidden"]["bias"], 0)
    logits = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x), logits, rtol=1e-5, atol=1e-5)


def test_shared_module_called_twice():
    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            dense = nn.Dense(2, name="shared")
            return dense(dense(x))

    model, x = Twice(), jnp.ones((1, 2))
    variables = init(model, x)
    feats = intermediate_features(model, variables, x)
    assert list(feats) == ["shared", "shared:1"]
    np.testing.assert_allclose(feats["shared:1"], model.apply(variables, x))


def test_bad_filter(mlp_setup):
    model, variables, x = mlp_setup
    with pytest.raises(ValueError, match="filter"):
        intermediate_features(model, variables, x, filter=[3])
