"""MLP and DeepLinear against independent numpy re-implementations."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from neurojax.models import MLP, DeepLinear
from tests.models._helpers import init, randn, to_np as _np


class MLPTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("relu", "relu", lambda z: np.maximum(z, 0)),
                                    ("tanh", "tanh", np.tanh))
    def test_matches_numpy(self, activation, np_act):
        model = MLP(widths=(5, 4), num_outputs=3, activation=activation)
        x = randn(2, 2, 3, 1, seed=0)  # image-shaped
        params = init(model, x, seed=1)["params"]
        out = self.variant(lambda p, x: model.apply({"params": p}, x))(params, x)
        p = _np(params)
        h = np.asarray(x, np.float64).reshape(2, -1)
        for name in ("dense_0", "dense_1"):
            h = np_act(h @ p[name]["kernel"] + p[name]["bias"])
        expected = h @ p["head"]["kernel"] + p["head"]["bias"]
        chex.assert_shape(out, (2, 3))
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_mlp_callable_activation_and_no_bias():
    model = MLP(widths=(4,), num_outputs=2, activation=jnp.sin, use_bias=False)
    x = randn(3, 6, seed=0)
    params = init(model, x, seed=1)["params"]
    assert "bias" not in params["dense_0"] and "bias" not in params["head"]
    p = _np(params)
    expected = np.sin(np.asarray(x) @ p["dense_0"]["kernel"]) @ p["head"]["kernel"]
    np.testing.assert_allclose(model.apply({"params": params}, x), expected,
                               rtol=1e-5, atol=1e-5)


def test_mlp_features_mode_returns_last_hidden():
    model = MLP(widths=(7, 5), num_outputs=None)
    x = jnp.ones((2, 8, 8, 1))
    variables = init(model, x)
    assert "head" not in variables["params"]
    out = model.apply(variables, x, train=True)  # train is accepted, ignored
    chex.assert_shape(out, (2, 5))
    assert np.all(np.asarray(out) >= 0)  # post-ReLU


def test_deep_linear_is_product_of_weight_matrices():
    model = DeepLinear(widths=(6, 5, 4), num_outputs=3)
    x = randn(4, 2, 2, 2, seed=0)
    params = init(model, x, seed=1)["params"]
    assert set(params) == {"dense_0", "dense_1", "dense_2", "head"}
    assert all(set(layer) == {"kernel"} for layer in params.values())  # no bias
    p = _np(params)
    product = (p["dense_0"]["kernel"] @ p["dense_1"]["kernel"]
               @ p["dense_2"]["kernel"] @ p["head"]["kernel"])
    expected = np.asarray(x, np.float64).reshape(4, -1) @ product
    out = model.apply({"params": params}, x)
    chex.assert_shape(out, (4, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_deep_linear_with_bias_and_custom_init():
    model = DeepLinear(widths=(3,), num_outputs=2, use_bias=True,
                       kernel_init=jax.nn.initializers.constant(0.5))
    x = jnp.ones((1, 4))
    params = init(model, x)["params"]
    np.testing.assert_allclose(params["dense_0"]["kernel"], 0.5)
    # ones(4) @ 0.5 -> 2 per unit; 3 units * 2 * 0.5 -> 3 per output
    np.testing.assert_allclose(model.apply({"params": params}, x), [[3.0, 3.0]])


def test_deep_linear_features_mode():
    model = DeepLinear(widths=(6, 5), num_outputs=None)
    x = jnp.ones((2, 3))
    chex.assert_shape(model.apply(init(model, x), x), (2, 5))


@pytest.mark.parametrize("kwargs, field", [
    (dict(widths=(4, 0)), "widths"),
    (dict(widths=(4, -1)), "widths"),
    (dict(widths=(2.5,)), "widths"),
    (dict(widths=4), "widths"),
    (dict(num_outputs=0), "num_outputs"),
    (dict(activation="relux"), "activation"),
])
def test_mlp_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MLP(**kwargs)


def test_deep_linear_bad_arguments():
    with pytest.raises(ValueError, match="widths"):
        DeepLinear(widths=(0,))
    with pytest.raises(ValueError, match="widths"):
        DeepLinear(widths=(), num_outputs=None)
