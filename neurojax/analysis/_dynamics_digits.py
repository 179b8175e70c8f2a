"""What the learning-dynamics parts (collapse, limiting) share: the offline digits
as device arrays, minibatch SGD segments of an MLP as one ``lax.scan``, and the
record of a closed-form check."""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from neurojax.data.on_device import batch_indices


def check_record(name: str, measured: float, predicted: float) -> dict:
    """``{'name', 'measured', 'predicted', 'rel_error'}`` with ``rel_error =
    |measured - predicted| / |predicted|``, or the absolute error when the
    prediction is exactly 0 (an invariance: measured should be 0 too)."""
    measured, predicted = float(measured), float(predicted)
    err = abs(measured - predicted)
    return {"name": name, "measured": measured, "predicted": predicted,
            "rel_error": err / abs(predicted) if predicted != 0 else err}


def digits_arrays(data_dir: Optional[str] = None):
    """``(x_train, y_train, x_test, y_test)`` of the offline digits, images flattened
    to 64 features in [0, 1]."""
    from neurojax.data.on_device import load_split_arrays
    out = []
    for split in ("train", "test"):
        a = load_split_arrays("digits", split, data_dir=data_dir)
        out += [jnp.asarray(a["image"].reshape(len(a["label"]), -1)), jnp.asarray(a["label"])]
    return tuple(out)


def cross_entropy(model):
    """``loss(params, x, y)``: mean softmax cross-entropy of ``model``'s logits."""
    def loss(params, x, y):
        logits = model.apply({"params": params}, x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return loss


def accuracy(model, params, x, y) -> float:
    return float(jnp.mean(jnp.argmax(model.apply({"params": params}, x), -1) == y))


def sgd_segment(loss: Callable, opt: optax.GradientTransformation, params, opt_state,
                x, y, *, key, start: int, num_steps: int, batch_size: int,
                record_every: int = 0, record: Optional[Callable] = None):
    """``num_steps`` minibatch steps from step ``start`` (batches of
    ``neurojax.data.on_device.batch_indices``), compiled as one scan.

    ``record(params) -> pytree`` is stacked every ``record_every`` steps (after
    the step); returns ``(params, opt_state, records or None)``.
    """
    idx = batch_indices(key, jnp.arange(start, start + num_steps), x.shape[0], batch_size)

    def step(carry, i):
        p, s = carry
        g = jax.grad(loss)(p, x[i], y[i])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    if not record_every:
        (params, opt_state), _ = jax.jit(lambda c, ii: jax.lax.scan(step, c, ii))(
            (params, opt_state), idx)
        return params, opt_state, None
    chunks = idx.reshape(num_steps // record_every, record_every, batch_size)

    def chunk(carry, ii):
        carry, _ = jax.lax.scan(step, carry, ii)
        return carry, record(carry[0])

    (params, opt_state), recs = jax.jit(lambda c, cc: jax.lax.scan(chunk, c, cc))(
        (params, opt_state), chunks)
    return params, opt_state, recs


def flat_params(params):
    return ravel_pytree(params)[0]


def log_lags(max_lag: int, num: int = 20) -> np.ndarray:
    """About ``num`` distinct integer lags from 1 to ``max_lag``, evenly spaced in log."""
    return np.unique(np.round(np.logspace(0, math.log10(max_lag), num)).astype(np.int64))
