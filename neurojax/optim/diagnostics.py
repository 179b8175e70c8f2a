"""Gradient diagnostics as optax transforms that pass the updates through.

:func:`record_gradient_rms` keeps, in its state, the root mean square of the
gradient of every parameter array, ``rms(g) = sqrt(mean(g^2))`` over the
array's entries (so a layer's kernel and bias are reported apart), as in
the per-layer gradient RMS of Oland 2024, Efficient Deep Learning, Sec 4.10,
Fig 4.3. Put it first in ``config.optim.transforms`` to record the raw
gradient ``dL/dW`` (later in the chain it records what it receives). The
training step adds these values to its per-step scalars
(:func:`gradient_rms_metrics`), so they reach ``metrics.jsonl`` as
``grad_rms/<parameter path>``, averaged over the steps of each train record.

:func:`record_metrics` is the same mechanism for any pure function
``fn(updates, params) -> tree of arrays`` (e.g. the per-channel charges of
``neurojax.metrics.conservation.conservation_record``): its state
(:class:`RecordedMetricsState`) is picked up by the same
:func:`gradient_rms_metrics`, one scalar per array entry, named
``<name>/<path in fn's output>`` (``/<i>`` appended per entry of an array
with more than one).
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["GradientRMSState", "record_gradient_rms", "gradient_rms_metrics", "gradient_rms",
           "RecordedMetricsState", "record_metrics"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GradientRMSState:
    """``rms``: a tree shaped like the parameters with one scalar per array,
    the RMS of the last gradient seen (0 before the first update); ``name``
    (static): the prefix of the metric names."""
    rms: Any
    name: str = dataclasses.field(default="grad_rms", metadata={"static": True})


def gradient_rms(tree) -> Any:
    """``sqrt(mean(g^2))`` of every array of ``tree`` (a scalar per leaf, in
    float32 or float64 when the leaf is float64)."""
    def rms(g):
        g = jnp.asarray(g)
        return jnp.sqrt(jnp.mean(jnp.square(g.astype(jnp.promote_types(g.dtype, jnp.float32)))))
    return jax.tree.map(rms, tree)


def record_gradient_rms(name: str = "grad_rms") -> optax.GradientTransformation:
    """An identity transform whose state records the per-array gradient RMS
    (:class:`GradientRMSState`); ``name`` prefixes the metric names (two
    recorders in one chain need different names)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty str without '/', got {name!r}")

    def init(params):
        zeros = jax.tree.map(
            lambda p: jnp.zeros((), jnp.promote_types(jnp.asarray(p).dtype, jnp.float32)),
            params)
        return GradientRMSState(rms=zeros, name=name)

    def update(updates, state, params=None):
        del params
        return updates, GradientRMSState(rms=gradient_rms(updates), name=state.name)

    return optax.GradientTransformation(init, update)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RecordedMetricsState:
    """``values``: what ``fn(updates, params)`` returned at the last update
    (zeros of its shapes before the first); ``name`` (static): the prefix
    of the metric names."""
    values: Any
    name: str = dataclasses.field(default="recorded", metadata={"static": True})


def record_metrics(fn, name: str) -> optax.GradientTransformation:
    """An identity transform whose state records ``fn(updates, params)``, a
    pure function returning a tree of arrays (:class:`RecordedMetricsState`);
    the training step logs them like the gradient RMS. ``update`` must be
    given the parameters (``tx.update(grads, state, params)``, as the
    library's step does)."""
    if not callable(fn):
        raise ValueError(f"fn must be callable as fn(updates, params), got {fn!r}")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a non-empty str without '/', got {name!r}")

    def init(params):
        shapes = jax.eval_shape(fn, params, params)
        return RecordedMetricsState(
            values=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), name=name)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(f"record_metrics({name!r}) needs params: call "
                             "tx.update(updates, state, params)")
        return updates, RecordedMetricsState(values=fn(updates, params), name=state.name)

    return optax.GradientTransformation(init, update)


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def gradient_rms_metrics(opt_state) -> dict[str, jax.Array]:
    """``{'<name>/<parameter path>': rms}`` for every :class:`GradientRMSState`
    inside ``opt_state`` (any nesting: ``optax.chain``, ``MultiSteps``,
    masks), and ``{'<name>/<path>[/<i>]': value}`` for every
    :class:`RecordedMetricsState` (one scalar per entry); ``{}`` when there
    is none. ``ValueError`` when two share a name."""
    kinds = (GradientRMSState, RecordedMetricsState)
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds))
             if isinstance(s, kinds)]
    names = [s.name for s in found]
    if len(set(names)) < len(names):
        raise ValueError(f"record_gradient_rms / record_metrics transforms must have distinct "
                         f"names, got {names}")
    out = {}
    for state in found:
        tree = state.rms if isinstance(state, GradientRMSState) else state.values
        for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
            key = "/".join([state.name] + [_key_name(k) for k in path])
            if isinstance(state, GradientRMSState):  # as before (a replica axis stays)
                out[key] = value
            elif jnp.ndim(value) == 0 or jnp.size(value) == 1:
                out[key] = jnp.reshape(value, ())
            else:
                for i, v in enumerate(jnp.ravel(value)):
                    out[f"{key}/{i}"] = v
    return out
