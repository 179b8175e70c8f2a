"""Losses against written-out formulas, under jit, with label smoothing."""
import jax
import numpy as np
import pytest

from neurojax.losses import get_loss, mean_squared_error, softmax_cross_entropy


def test_cross_entropy_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    eps = 0.1
    loss, aux = jax.jit(lambda l, b: softmax_cross_entropy(l, b, label_smoothing=eps))(
        logits, {"label": labels})
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = np.full((6, 4), eps / 4) + (1 - eps) * np.eye(4)[labels]
    np.testing.assert_allclose(loss, -(targets * logp).sum(-1).mean(), rtol=1e-5)
    np.testing.assert_allclose(aux["accuracy"], np.mean(logits.argmax(-1) == labels))


def test_mse_against_numpy():
    rng = np.random.default_rng(1)
    out, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    loss, _ = mean_squared_error(out, {"target": target})
    np.testing.assert_allclose(loss, 0.5 * np.mean(np.sum((out - target) ** 2, -1)), rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="label_smoothing"):
        softmax_cross_entropy(np.zeros((2, 3)), {"label": np.zeros(2, int)}, label_smoothing=1.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("hinge")
