"""Supervised classification losses: ``loss(logits, batch) -> (scalar, aux)``."""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax._checks import check_real, is_concrete


def softmax_cross_entropy(logits: jax.Array, batch: dict, *,
                          label_smoothing: float = 0.0) -> tuple[jax.Array, dict]:
    """Mean softmax cross-entropy with integer labels ``batch['label']``.

    L = -1/B sum_b sum_c t_bc log softmax(z_b)_c, with targets
    t = (1 - eps) onehot(y) + eps / C (label smoothing eps, 0 by default).

    Returns the mean loss and ``{'accuracy': fraction of argmax hits}``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    labels = batch["label"]
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    loss = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, {"accuracy": accuracy}


def mean_squared_error(outputs: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """L = 1/(2B) sum_b ||f(x_b) - y_b||^2 with targets ``batch['target']``."""
    diff = outputs.astype(jnp.float32) - batch["target"].reshape(outputs.shape)
    return 0.5 * jnp.mean(jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, -1)), {}


OUTPUTS = {"linear": lambda z: z, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


def label_targets(labels: jax.Array, num_classes: int, targets: Sequence[float],
                  dtype=jnp.float32) -> jax.Array:
    """Scaled one-hot targets ``t[..., c] = a + (b - a) [c = label]``.

    ``targets = (a, b)``: the value of the negative classes and of the
    positive class ("Tval {a, b}" in Oland 2024, Efficient Deep Learning,
    Sec 4.5-4.12), with ``a < b`` so that the positive class is the largest
    target. Shape ``labels.shape + (num_classes,)``. ``ValueError`` naming
    ``targets`` otherwise (traced values pass unchecked).
    """
    if isinstance(targets, (str, bytes)) or not hasattr(targets, "__len__") \
            or len(targets) != 2:
        raise ValueError(f"targets must be a pair (negative, positive), got {targets!r}")
    low, high = (check_real("targets", v) for v in targets)
    if is_concrete(low) and is_concrete(high) and not np.all(np.asarray(low) < np.asarray(high)):
        raise ValueError(f"targets must be (negative, positive) with negative < positive, "
                         f"got {tuple(targets)!r}")
    low, high = jnp.asarray(low, dtype), jnp.asarray(high, dtype)
    return low + (high - low) * jax.nn.one_hot(labels, num_classes, dtype=dtype)


def label_mean_squared_error(logits: jax.Array, batch: dict, *, output: str = "linear",
                             targets: tuple[float, float] = (0.0, 1.0)
                             ) -> tuple[jax.Array, dict]:
    """Squared error of the output neurons against label targets.

    L = 1/(2B) sum_b ||g(z_b) - t_b||^2, t_bc = a + (b - a) [c = y_b], with
    ``g`` the output non-linearity (``output``: 'linear', 'sigmoid' or 'tanh')
    and ``targets = (a, b)`` (negative, positive); prediction argmax z. The
    baselines of Oland's thesis: ch. 3 trains tanh outputs against one-hot
    targets in {0, 1}; ch. 4's Table 4.1 compares linear, sigmoid and tanh
    outputs. Returns the mean loss and ``{'accuracy': ...}``.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got {output!r}")
    labels = batch["label"]
    z = logits.astype(jnp.float32).reshape(logits.shape[0], -1)
    t = label_targets(labels, z.shape[-1], targets)
    loss = 0.5 * jnp.mean(jnp.sum((OUTPUTS[output](z) - t) ** 2, axis=-1))
    return loss, {"accuracy": jnp.mean(jnp.argmax(z, -1) == labels)}
