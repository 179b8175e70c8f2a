"""Stochastic collapse: vanishing and identical neurons, the invariant sets of SGD.

Chen, Kunin, Yamamura & Ganguli, "Stochastic Collapse: How Gradient Noise
Attracts SGD Dynamics Towards Simpler Subnetworks" (NeurIPS 2023), Sec. 3
("invariant sets"). For a hidden neuron ``j`` of a fully connected layer
``h = act(W_in^T x + b)`` followed by ``y = W_out^T h + ...`` (Flax's
``kernel`` layout: ``W_in`` is ``(fan_in, width)``, ``W_out`` is
``(width, fan_out)``), write its *incoming* vector ``(W_in[:, j], b[j])``
and its *outgoing* vector ``W_out[j, :]``. Two sets are invariant under
(stochastic) gradient descent, for any data and any loss of the output:

* **vanishing neurons** (the paper's "sign invariant" set for
  origin-passing activations): incoming and outgoing vectors are both zero.
  If ``act(0) = 0`` (ReLU, tanh, GELU, SiLU, ...; not sigmoid), the neuron
  outputs 0, its outgoing gradient ``h_j * delta`` is 0, and its incoming
  gradient ``act'(0) (W_out[j] . delta) x`` is 0: it stays exactly at 0
  (with weight decay too, and with momentum/Adam if their buffers for those
  entries are 0, as they are when training starts in the set).
* **identical neurons** (the "permutation invariant" set): neurons ``i`` and
  ``j`` have equal incoming *and* equal outgoing vectors. Then ``h_i = h_j``
  and both receive equal gradients, so they stay equal (any activation).

The paper shows SGD's noise makes these sets *attractive* (stochastic
collapse), more so at large learning rate (Sec. 4-5); collapsed networks
have fewer independent neurons. ``collapse_report`` detects both sets
numerically in an MLP-style parameter tree and counts the independent
neurons; ``project_to_invariant_set`` puts a tree exactly on a set (the
Euclidean projection), which is how the invariance is tested.

Detection conventions (a choice; the paper thresholds distances between
neurons' weight vectors): neuron ``j`` of a layer has the vector
``v_j = (W_in[:, j], b[j], W_out[j, :])``; it is *vanishing* when
``||v_j|| <= atol + rtol * max_i ||v_i||`` (relative to the layer's largest
neuron), and non-vanishing ``i, j`` are *identical* when
``||v_i - v_j|| <= atol + rtol * max(||v_i||, ||v_j||)``. Identical pairs are
closed transitively into groups; the number of independent neurons is the
number of groups among the non-vanishing neurons.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_real

__all__ = ["mlp_layer_names", "neuron_vectors", "collapse_report", "collapse_metrics",
           "project_to_invariant_set"]

_DENSE = re.compile(r"^dense_(\d+)$")


def mlp_layer_names(params) -> tuple[str, ...]:
    """The dense layers of an ``neurojax.models.MLP`` tree in order:
    ``dense_0, dense_1, ..., head`` (``params`` or ``{'params': params}``)."""
    p = _unwrap(params)
    dense = sorted((int(m.group(1)), k) for k in p for m in [_DENSE.match(str(k))] if m)
    names = tuple(k for _, k in dense) + (("head",) if "head" in p else ())
    if len(names) < 2:
        raise ValueError("params must hold at least two dense layers named dense_<i> (and "
                         f"optionally head), got keys {list(p)}; pass layer_names otherwise")
    return names


def _unwrap(params):
    if not hasattr(params, "keys"):
        raise ValueError(f"params must be a mapping of layer names, got {type(params).__name__}")
    if set(params.keys()) == {"params"}:
        params = params["params"]
    return params


def _layers(params, layer_names):
    p = _unwrap(params)
    names = mlp_layer_names(p) if layer_names is None else tuple(layer_names)
    if len(names) < 2:
        raise ValueError(f"layer_names must list at least two layers, got {names}")
    for n in names:
        if n not in p or "kernel" not in p[n] or jnp.ndim(p[n]["kernel"]) != 2:
            raise ValueError(f"layer_names: {n!r} must be a layer of params with a 2-D "
                             f"'kernel', got keys {list(p)}")
    for a, b in zip(names[:-1], names[1:]):
        if p[a]["kernel"].shape[1] != p[b]["kernel"].shape[0]:
            raise ValueError(f"layers {a!r} and {b!r} do not chain: kernels "
                             f"{p[a]['kernel'].shape} and {p[b]['kernel'].shape}")
    return p, names


def neuron_vectors(params, layer: str, *, layer_names: Optional[Sequence[str]] = None):
    """``(incoming, outgoing)`` of every neuron of hidden ``layer``:
    ``incoming`` is ``(width, fan_in [+1 with a bias])`` (rows ``W_in[:, j]``
    then ``b[j]``), ``outgoing`` is ``(width, fan_out)`` (rows ``W_out[j]``),
    where ``W_out`` is the kernel of the next layer in ``layer_names``."""
    p, names = _layers(params, layer_names)
    if layer not in names[:-1]:
        raise ValueError(f"layer must be a hidden layer, one of {names[:-1]}, got {layer!r}")
    nxt = names[names.index(layer) + 1]
    w_in = jnp.asarray(p[layer]["kernel"]).T
    if "bias" in p[layer]:
        w_in = jnp.concatenate([w_in, jnp.asarray(p[layer]["bias"])[:, None]], axis=1)
    return w_in, jnp.asarray(p[nxt]["kernel"])


def _closure(adj):
    """Transitive closure of a symmetric boolean adjacency (with self loops)."""
    reach = adj.astype(jnp.float32)
    for _ in range(max(1, math.ceil(math.log2(max(adj.shape[0], 2))))):
        reach = (reach @ reach > 0).astype(jnp.float32)
    return reach > 0


@functools.partial(jax.jit, static_argnums=(2, 3))
def _layer_report(w_in, w_out, rtol, atol):
    v = jnp.concatenate([w_in, w_out], axis=1)
    v = v.astype(jnp.promote_types(v.dtype, jnp.float32))
    norms = jnp.linalg.norm(v, axis=1)
    vanishing = norms <= atol + rtol * jnp.max(norms)
    dist = jnp.linalg.norm(v[:, None, :] - v[None, :, :], axis=-1)
    live = ~vanishing
    identical = (dist <= atol + rtol * jnp.maximum(norms[:, None], norms[None, :])) \
        & live[:, None] & live[None, :]
    width = v.shape[0]
    groups = _closure(identical | jnp.eye(width, dtype=bool))
    first = jnp.argmax(groups, axis=1)  # smallest index of each neuron's group
    group = jnp.where(vanishing, -1, first)
    independent = jnp.sum(live & (first == jnp.arange(width)))
    duplicated = jnp.sum(live & (first != jnp.arange(width)))
    return {"vanishing": vanishing, "group": group,
            "num_vanishing": jnp.sum(vanishing), "num_duplicated": duplicated,
            "num_independent": independent, "width": width}


def collapse_report(params, *, layer_names: Optional[Sequence[str]] = None,
                    rtol: float = 1e-3, atol: float = 0.0) -> dict[str, dict[str, Any]]:
    """Vanishing and identical neurons of every hidden layer (module docstring).

    Args:
        params: an MLP-style tree (``{'params': ...}`` or the inner dict) whose
            layers have a 2-D ``kernel`` ``(fan_in, width)`` and optionally a
            ``bias``.
        layer_names: the layers in order (default ``mlp_layer_names``:
            ``dense_0 .. dense_{L-1}, head``); every layer but the last is a
            hidden layer whose neurons are examined.
        rtol, atol: the thresholds of the detection (``>= 0``).

    Returns:
        ``{layer: {'vanishing': bool (width,), 'group': int (width,) (the
        smallest index of the neuron's identical group, -1 if vanishing),
        'num_vanishing', 'num_duplicated' (live neurons that repeat an
        earlier one), 'num_independent', 'width'}}``. Runs under ``jit``
        (the thresholds static).
    """
    check_real("rtol", rtol, low=0)
    check_real("atol", atol, low=0)
    p, names = _layers(params, layer_names)
    return {name: _layer_report(*neuron_vectors(p, name, layer_names=names), rtol, atol)
            for name in names[:-1]}


def collapse_metrics(params, *, layer_names: Optional[Sequence[str]] = None,
                     rtol: float = 1e-3, atol: float = 0.0) -> dict[str, jax.Array]:
    """Scalars for a training log: ``collapse/<layer>/{vanishing, duplicated,
    independent}`` counts and ``collapse/fraction_independent`` (independent
    neurons over all hidden neurons), from ``collapse_report``."""
    rep = collapse_report(params, layer_names=layer_names, rtol=rtol, atol=atol)
    out, total, indep = {}, 0, 0
    for name, r in rep.items():
        out[f"collapse/{name}/vanishing"] = r["num_vanishing"]
        out[f"collapse/{name}/duplicated"] = r["num_duplicated"]
        out[f"collapse/{name}/independent"] = r["num_independent"]
        total += r["width"]
        indep = indep + r["num_independent"]
    out["collapse/fraction_independent"] = indep / total
    return out


def project_to_invariant_set(params, layer: str, *, vanishing: Sequence[int] = (),
                             groups: Sequence[Sequence[int]] = (),
                             layer_names: Optional[Sequence[str]] = None):
    """The Euclidean projection of ``params`` onto an invariant set of ``layer``.

    Neurons in ``vanishing`` get zero incoming weights, bias and outgoing
    weights; the neurons of each group in ``groups`` get the group's mean
    incoming vector (weights and bias) and mean outgoing vector. The set is a
    linear subspace and this is the nearest point of it (each coordinate
    block is replaced by its average over the tied neurons, or by 0).
    Indices are static Python ints; every other parameter is unchanged.
    Returns a tree of the input's structure (wrapped in ``{'params': ...}``
    if the input was).
    """
    wrapped = set(params.keys()) == {"params"} if hasattr(params, "keys") else False
    p, names = _layers(params, layer_names)
    if layer not in names[:-1]:
        raise ValueError(f"layer must be a hidden layer, one of {names[:-1]}, got {layer!r}")
    width = p[layer]["kernel"].shape[1]
    flat = [int(j) for j in vanishing] + [int(j) for g in groups for j in g]
    if any(not 0 <= j < width for j in flat) or len(set(flat)) != len(flat):
        raise ValueError(f"vanishing and groups must hold distinct neuron indices in "
                         f"[0, {width}), got vanishing={list(vanishing)}, groups={list(groups)}")
    if any(len(g) < 2 for g in groups):
        raise ValueError(f"groups must each hold >= 2 neurons, got {list(groups)}")
    nxt = names[names.index(layer) + 1]
    van = tuple(int(j) for j in vanishing)
    grp = tuple(tuple(int(j) for j in g) for g in groups)
    new_in = dict(p[layer])
    new_in["kernel"] = _tie(p[layer]["kernel"], 1, van, grp)
    if "bias" in p[layer]:
        new_in["bias"] = _tie(p[layer]["bias"], 0, van, grp)
    new_out = dict(p[nxt])
    new_out["kernel"] = _tie(p[nxt]["kernel"], 0, van, grp)
    out = dict(p)
    out[layer], out[nxt] = new_in, new_out
    return {"params": out} if wrapped else out


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _tie(a, axis, vanishing, groups):
    """Zero the ``vanishing`` neurons and set each group to its mean along ``axis``
    (written, not mixed by a matmul: tied neurons come out bitwise equal)."""
    a = jnp.moveaxis(jnp.asarray(a), axis, -1)
    if vanishing:
        a = a.at[..., np.asarray(vanishing)].set(0)
    for g in groups:
        g = np.asarray(g)
        mean = jnp.mean(a[..., g], axis=-1, keepdims=True)
        a = a.at[..., g].set(jnp.broadcast_to(mean, a[..., g].shape))
    return jnp.moveaxis(a, -1, axis)
