"""The activations table: 'celu' (Oland 2024, Efficient Deep Learning, Sec 7.5)
against its formula, and through the MLP."""
import numpy as np

from neurojax.models import MLP
from neurojax.models._common import ACTIVATIONS, resolve_activation
from tests.models._helpers import init, randn, to_np


def celu_np(v, alpha=1.0):
    """max(0, v) + min(0, alpha (exp(v / alpha) - 1))."""
    return np.maximum(v, 0.0) + np.minimum(0.0, alpha * np.expm1(v / alpha))


def test_celu_matches_formula():
    v = np.linspace(-6.0, 6.0, 121).astype(np.float32)
    assert "celu" in ACTIVATIONS
    np.testing.assert_allclose(np.asarray(resolve_activation("CELU")(v)), celu_np(v),
                               rtol=1e-6, atol=1e-7)
    # The negative branch is exercised (celu saturates at -1, relu at 0).
    assert np.max(np.abs(celu_np(v) - np.maximum(v, 0))) > 0.9


def test_mlp_with_celu_matches_numpy():
    model = MLP(widths=(5,), num_outputs=2, activation="celu")
    x = randn(4, 3, seed=0)
    params = init(model, x, seed=1)["params"]
    p = to_np(params)
    h = celu_np(x.astype(np.float64) @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
    expected = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, x)), expected,
                               rtol=1e-5, atol=1e-5)
