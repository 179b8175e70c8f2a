"""Pruning at initialisation, the mask side: prunable parameters, kept counts
and schedules, global exact top-k masks, iterative pruning with any score,
and the optax transformation that trains the masked network.

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by
iteratively conserving synaptic flow" (NeurIPS 2020). Every method gives each
prunable parameter a score (``neurojax.metrics.saliency``: SynFlow, SNIP,
GraSP, magnitude, random); the ``k`` highest scores over the whole network
are kept (a *global* mask) and the rest are set to zero for the whole of
training. ``neurojax.train.pruning.pruning_masks`` picks a score by name and
runs ``iterative_masks``.

Numerical conventions (and where the references differ):

* ``compression`` is the ratio ``prunable / kept`` (100 keeps 1%). The
  Synaptic-Flow code's ``--compression c`` is the exponent (density
  ``10^-c``); its issue #6 is this confusion.
* Kept counts are exact: ``k = round(N / compression)`` of the ``N``
  prunable entries, ranked by score with ties broken by position (the
  parameter tree's leaf order, each leaf row-major; lower position kept
  first). The Synaptic-Flow code thresholds at the k-th value
  (``score <= threshold`` is pruned), which keeps fewer when scores tie and
  aborts (``quit()``, its issue #12) when the count is off by 5 or more.
* Iterative pruning keeps a nested sequence of masks: an entry pruned once
  stays pruned (its score is set to ``-inf`` before ranking). The reference
  re-ranks every entry; that only matters for scores that can be negative
  (GraSP, random) at more than one iteration. NaN scores rank lowest.
* The schedule after iteration ``i`` of ``n`` keeps ``N (1/c)^(i/n)``
  (exponential, the paper's) or ``N (1 - (1 - 1/c) i/n)`` (linear), rounded.
* Which parameters are prunable is the ``prunable`` regular expression over
  the '/'-joined parameter path (``re.search``): by default the kernels of
  Dense and Conv layers (``(^|/)kernel$``), not biases or BatchNorm, as in the
  reference's defaults (``--prune-bias/--prune-batchnorm False``).
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax._checks import check_choice, check_int, check_real

METHODS = ("synflow", "snip", "grasp", "magnitude", "random")
SCHEDULES = ("exponential", "linear")
# The paper's iterations: SynFlow 100 (Sec. 6); the others single-shot.
DEFAULT_ITERATIONS = {"synflow": 100, "snip": 1, "grasp": 1, "magnitude": 1, "random": 1}
DEFAULT_PRUNABLE = r"(^|/)kernel$"
# The paper's data for SNIP/GraSP: prune_dataset_ratio (10) x number of classes
EXAMPLES_PER_CLASS = 10

PyTree = Any


def path_name(path) -> str:
    """The '/'-joined name of a key path (``'conv_0/kernel'``)."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _compile_prunable(prunable: str) -> re.Pattern:
    if not isinstance(prunable, str) or not prunable:
        raise ValueError(f"prunable must be a non-empty regular expression, got {prunable!r}")
    try:
        return re.compile(prunable)
    except re.error as e:
        raise ValueError(f"prunable must be a valid regular expression, got {prunable!r}: "
                         f"{e}") from e


def prunable_flags(params: PyTree, prunable: str = DEFAULT_PRUNABLE) -> PyTree:
    """A tree like ``params`` of Python bools: which leaves are pruned.

    A leaf is prunable when ``re.search(prunable, its '/'-joined path)``
    matches and it is floating point; ``ValueError`` when none is.
    """
    pattern = _compile_prunable(prunable)
    flags = jax.tree_util.tree_map_with_path(
        lambda p, x: bool(pattern.search(path_name(p)))
        and jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating), params)
    if not any(jax.tree.leaves(flags)):
        names = [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        raise ValueError(f"prunable={prunable!r} matches no floating-point parameter; the "
                         f"parameters are {names}")
    return flags


def num_prunable(params: PyTree, prunable: str = DEFAULT_PRUNABLE) -> int:
    """``N``: the number of prunable entries."""
    flags = prunable_flags(params, prunable)
    return sum(int(np.prod(jnp.shape(x))) for f, x in
               zip(jax.tree.leaves(flags), jax.tree.leaves(params)) if f)


def num_kept(num: int, compression: float) -> int:
    """``round(num / compression)``, the exact count a mask keeps;
    ``ValueError`` when that is 0 or ``compression < 1``."""
    compression = check_real("compression", compression, low=1.0)
    keep = int(round(num / compression))
    if keep < 1:
        raise ValueError(f"compression={compression} keeps no parameter of the {num} prunable "
                         f"ones (at most {num} for one kept)")
    return keep


def schedule_counts(num: int, compression: float, iterations: int,
                    schedule: str = "exponential") -> np.ndarray:
    """Kept counts after each of ``iterations`` pruning rounds, ending at
    exactly ``num_kept(num, compression)`` (see the module docstring)."""
    keep = num_kept(num, compression)
    iterations = check_int("iterations", iterations)
    check_choice("schedule", schedule, SCHEDULES)
    frac = np.arange(1, iterations + 1) / iterations
    density = 1.0 / float(compression)
    kept = num * (density ** frac if schedule == "exponential" else 1 - (1 - density) * frac)
    counts = np.clip(np.round(kept).astype(np.int64), keep, num)
    counts[-1] = keep
    return counts


PRUNE_FIELDS = ("method", "compression", "iterations", "schedule", "prunable",
                "examples_per_class", "temperature", "dtype")


def validate_prune_config(cfg, prefix: str = "config.prune") -> None:
    """Raises ``ValueError`` naming the offending field of a prune block:
    ``method`` (one of ``METHODS``), ``compression`` (>= 1), ``iterations``
    (int >= 1; default ``DEFAULT_ITERATIONS[method]``), ``schedule``,
    ``prunable`` (a regular expression), ``examples_per_class`` (SNIP/GraSP's
    data, default 10), ``temperature`` (GraSP, > 0), ``dtype`` (SynFlow's)."""
    unknown = sorted(set(cfg.keys()) - set(PRUNE_FIELDS))
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]} is not a field; the fields are {PRUNE_FIELDS}")
    for field, check in (
            ("method", lambda v: check_choice("method", v, METHODS)),
            ("compression", lambda v: check_real("compression", v, low=1.0)),
            ("iterations", lambda v: check_int("iterations", v)),
            ("schedule", lambda v: check_choice("schedule", v, SCHEDULES)),
            ("prunable", _compile_prunable),
            ("examples_per_class", lambda v: check_int("examples_per_class", v)),
            ("temperature", lambda v: check_real("temperature", v, low=0.0, low_open=True)),
            ("dtype", lambda v: check_choice("dtype", v, ("float64", "float32")))):
        if field in cfg or field in ("method", "compression"):
            try:
                check(cfg.get(field))
            except ValueError as e:
                raise ValueError(f"{prefix}.{field}: {e}") from e


# ----------------------------------------------------------------------------- masks


def _flat(tree, flags):
    return [x for f, x in zip(jax.tree.leaves(flags), jax.tree.leaves(tree)) if f]


def topk_masks(scores: PyTree, num_keep, flags: PyTree, *,
               current: Optional[PyTree] = None) -> PyTree:
    """Global top-``num_keep`` masks over the prunable leaves (``flags``).

    Returns a tree like ``scores`` of bool arrays: exactly ``num_keep``
    True entries over the prunable leaves (fewer only if ``num_keep`` exceeds
    the entries still in ``current``), all True on the other leaves. Ties are
    broken by position (leaf order, then row-major; earlier kept); entries
    where ``current`` is False and NaN scores rank below every other.
    ``num_keep`` may be traced (one compiled program for a schedule).
    """
    leaves, treedef = jax.tree.flatten(scores)
    flag_leaves = jax.tree.leaves(flags)
    if len(flag_leaves) != len(leaves):
        raise ValueError(f"flags must have the structure of scores ({len(leaves)} leaves), "
                         f"got {len(flag_leaves)}")
    pruned = [x for f, x in zip(flag_leaves, leaves) if f]
    if not pruned:
        raise ValueError("flags select no leaf of scores")
    dtype = jnp.result_type(*pruned)
    flat = jnp.concatenate([jnp.ravel(x).astype(dtype) for x in pruned])
    flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
    if current is not None:
        alive = jnp.concatenate([jnp.ravel(m) for m in _flat(current, flags)]).astype(bool)
        flat = jnp.where(alive, flat, -jnp.inf)
    n = flat.shape[0]
    order = jnp.argsort(-flat, stable=True)  # descending, ties by position
    keep = jnp.zeros((n,), bool).at[order].set(jnp.arange(n) < num_keep)
    if current is not None:
        keep = keep & alive
    out, start = [], 0
    for f, x in zip(flag_leaves, leaves):
        if f:
            size = int(np.prod(jnp.shape(x)))
            out.append(keep[start:start + size].reshape(jnp.shape(x)))
            start += size
        else:
            out.append(jnp.ones(jnp.shape(x), bool))
    return jax.tree.unflatten(treedef, out)


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
    """``params`` with masked entries set to zero (exactly)."""
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)


def iterative_masks(score_fn: Callable[[PyTree, jax.Array], PyTree], params: PyTree,
                    counts, *, prunable: str = DEFAULT_PRUNABLE,
                    key: Optional[jax.Array] = None) -> PyTree:
    """Algorithm 1 of Tanaka et al. 2020 for any score.

    For each round ``i`` with kept count ``counts[i]`` (``schedule_counts``;
    an int array, which may be traced, so one compiled program serves every
    compression): ``scores = score_fn(params * mask, fold_in(key, i))`` and
    ``mask = topk_masks(scores, counts[i], current=mask)``, as one
    ``lax.scan``. ``key`` may be ``None`` for deterministic scores. Returns
    bool masks like ``params`` (True on non-prunable leaves).
    """
    flags = prunable_flags(params, prunable)
    counts = jnp.asarray(counts)
    if counts.ndim != 1 or counts.shape[0] < 1 or not jnp.issubdtype(counts.dtype, jnp.integer):
        raise ValueError(f"counts must be a 1-D int array of kept counts per round, got "
                         f"shape {counts.shape} and dtype {counts.dtype}")
    key = jax.random.PRNGKey(0) if key is None else key
    masks0 = jax.tree.map(lambda x: jnp.ones(jnp.shape(x), bool), params)

    def body(masks, inputs):
        i, k = inputs
        scores = score_fn(apply_masks(params, masks), jax.random.fold_in(key, i))
        return topk_masks(scores, k, flags, current=masks), None

    masks, _ = jax.lax.scan(body, masks0, (jnp.arange(counts.shape[0]), counts))
    return masks


def layer_density(masks: PyTree, flags: PyTree) -> dict[str, jax.Array]:
    """``{path: fraction kept}`` for every prunable leaf (0 = a collapsed layer)."""
    out = {}
    for (path, m), f in zip(jax.tree_util.tree_flatten_with_path(masks)[0],
                            jax.tree.leaves(flags)):
        if f:
            out[path_name(path)] = jnp.mean(jnp.asarray(m, jnp.float32))
    return out


def count_kept(masks: PyTree, flags: PyTree) -> jax.Array:
    """Kept entries over the prunable leaves."""
    return sum(jnp.sum(m.astype(jnp.int32)) for m in _flat(masks, flags))


# ----------------------------------------------------------------------------- optax


class MaskState(NamedTuple):
    """The masks (bool, like the parameters; all True on non-prunable leaves)."""
    masks: PyTree


def mask_updates(masks: Optional[PyTree] = None, *,
                 prunable: str = DEFAULT_PRUNABLE) -> optax.GradientTransformation:
    """Trains a pruned network: masked entries get no update and stay zero.

    ``update`` returns ``where(mask, u, -theta)`` (``where(mask, u, 0)``
    when called without ``params``), so ``theta + update`` is exactly zero on
    masked entries whatever the chain before it did (momentum, weight decay,
    Adam) and whether or not ``theta`` was zero there already. Put it *last*
    in the chain, after the optimiser.

    ``masks``: bool trees like the parameters, or ``None``: ``init(params)``
    reads them from pruned parameters (``apply_masks``), masking exactly the
    zero entries of the prunable leaves (a freshly initialised weight is zero
    with probability 0 under the usual initialisers), which lets each seed
    replica of a vmapped run keep its own masks in its optimiser state.
    """
    flags_re = _compile_prunable(prunable)

    def init_fn(params):
        if masks is not None:
            if jax.tree.structure(masks) != jax.tree.structure(params):
                raise ValueError("masks must have the structure of the parameters")
            return MaskState(jax.tree.map(lambda m: jnp.asarray(m, bool), masks))
        flags = prunable_flags(params, flags_re.pattern)
        return MaskState(jax.tree.map(
            lambda f, p: (p != 0) if f else jnp.ones(jnp.shape(p), bool), flags, params))

    def update_fn(updates, state, params=None):
        if params is None:
            new = jax.tree.map(lambda u, m: jnp.where(m, u, jnp.zeros_like(u)),
                               updates, state.masks)
        else:
            new = jax.tree.map(lambda u, m, p: jnp.where(m, u, -p.astype(u.dtype)),
                               updates, state.masks, params)
        return new, state

    return optax.GradientTransformation(init_fn, update_fn)
