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
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["GradientRMSState", "record_gradient_rms", "gradient_rms_metrics", "gradient_rms"]


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


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def gradient_rms_metrics(opt_state) -> dict[str, jax.Array]:
    """``{'<name>/<parameter path>': rms}`` for every :class:`GradientRMSState`
    inside ``opt_state`` (any nesting: ``optax.chain``, ``MultiSteps``,
    masks); ``{}`` when there is none. ``ValueError`` when two share a name."""
    found = [s for s in jax.tree.leaves(opt_state,
                                        is_leaf=lambda x: isinstance(x, GradientRMSState))
             if isinstance(s, GradientRMSState)]
    names = [s.name for s in found]
    if len(set(names)) < len(names):
        raise ValueError(f"record_gradient_rms transforms must have distinct names, got {names}")
    out = {}
    for state in found:
        for path, value in jax.tree_util.tree_flatten_with_path(state.rms)[0]:
            out["/".join([state.name] + [_key_name(k) for k in path])] = value
    return out
