"""Losses against written-out formulas, under jit, with label smoothing."""
import jax
import jax.numpy as jnp
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


@pytest.mark.parametrize("output", ["linear", "sigmoid", "tanh"])
@pytest.mark.parametrize("targets", [(0.0, 1.0), (-1.0, 1.0)])
def test_label_mean_squared_error_against_numpy_and_its_gradient(output, targets):
    from neurojax.losses import label_mean_squared_error

    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 3, 1, 2, 3, 0])
    g = {"linear": lambda v: v, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[output]
    t = np.full((6, 4), targets[0]) + (targets[1] - targets[0]) * np.eye(4)[y]
    want = 0.5 * np.mean(np.sum((g(z.astype(np.float64)) - t) ** 2, axis=1))
    loss, aux = label_mean_squared_error(jnp.asarray(z), {"label": jnp.asarray(y)},
                                         output=output, targets=targets)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert float(aux["accuracy"]) == pytest.approx(np.mean(np.argmax(z, 1) == y))
    # dL/dz = (g(z) - t) g'(z) / B, with g' written out
    gz = g(z.astype(np.float64))
    deriv = {"linear": np.ones_like(gz), "sigmoid": gz * (1 - gz), "tanh": 1 - gz ** 2}[output]
    grad = jax.grad(lambda v: label_mean_squared_error(v, {"label": jnp.asarray(y)},
                                                       output=output, targets=targets)[0])(
        jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(grad), (gz - t) * deriv / 6, rtol=1e-4, atol=1e-7)


def test_label_mean_squared_error_names_bad_arguments():
    from neurojax.losses import label_mean_squared_error

    with pytest.raises(ValueError, match="output"):
        label_mean_squared_error(jnp.zeros((1, 2)), {"label": jnp.zeros(1, int)}, output="relu")
