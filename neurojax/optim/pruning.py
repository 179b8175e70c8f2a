"""Pruning at initialisation: SynFlow, SNIP, GraSP, magnitude and random
scores, global exact top-k masks and the optax transformation that trains the
masked network.

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by
iteratively conserving synaptic flow" (NeurIPS 2020). Every method gives each
prunable parameter a score; the ``k`` highest scores over the whole network
are kept (a *global* mask) and the rest are set to zero for the whole of
training. The scores (higher = keep):

* **SynFlow** (Sec. 6, Algorithm 1): ``R = 1^T (prod_l |W^[l]|) 1``, the
  network's output summed over units for an all-ones input with every
  parameter replaced by its absolute value, and ``S = |theta * dR/dtheta|``.
  Data-free. For a network that is homogeneous of degree one in each
  layer's weights (no biases, ReLU, max/avg pooling, BatchNorm in eval mode
  with zero shift and mean), Euler's theorem gives the layer-wise
  conservation of Theorem 2 (Sec. 5): ``sum_{theta in layer l} S(theta) = R``
  for every layer, so iterating with a slowly shrinking mask (an
  exponential compression schedule over ``n = 100`` iterations, Sec. 6)
  never removes a whole layer before the last weights of the others
  (Theorem 3: no layer collapse).
* **SNIP** (Lee et al. 2019, Eq. 6): ``S = |theta * dL/dtheta|`` on a batch
  (the derivative of the loss with respect to a multiplicative mask at 1).
* **GraSP** (Wang et al. 2020, Eq. 8): the paper's score is
  ``S(-theta) = -theta * H g`` with ``g`` the loss gradient, ``H`` its
  Hessian, the loss taken on logits divided by a temperature ``T = 200``,
  and it *removes* the highest ``S(-theta)``. So the keep-score here is
  ``theta * H g`` (as in the Synaptic-Flow code, which stores ``p.grad *
  p`` after back-propagating ``g_stopped . g``); ``H g`` is the library's
  ``neurojax.metrics.curvature.hvp``.
* **magnitude**: ``|theta|``; **random**: i.i.d. standard normal.

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
* SynFlow is computed in float64 (the design's named convention: ``R``
  grows like a product of layer sums and reaches ~1e24 in a VGG-16; the
  reference's ``model.double()`` is commented out, so its published runs
  used float32). ``pruning_masks`` switches 64-bit types on only inside its
  own computation (``jax.enable_x64``), so it runs under a float32 program.
  All parameters and model state (BatchNorm statistics included) are made
  absolute, as the reference's ``linearize`` does to its ``state_dict``,
  and the model runs in evaluation mode (BatchNorm with running statistics).
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax._checks import check_choice, check_int, check_real
from neurojax.metrics.curvature import hvp

METHODS = ("synflow", "snip", "grasp", "magnitude", "random")
SCHEDULES = ("exponential", "linear")
# The paper's iterations: SynFlow 100 (Sec. 6); the others single-shot.
DEFAULT_ITERATIONS = {"synflow": 100, "snip": 1, "grasp": 1, "magnitude": 1, "random": 1}
DEFAULT_PRUNABLE = r"(^|/)kernel$"
GRASP_TEMPERATURE = 200.0  # Wang et al. 2020 / the Synaptic-Flow code's GraSP.temp
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


# ----------------------------------------------------------------------------- scores


def magnitude_scores(params: PyTree) -> PyTree:
    """``|theta|``."""
    return jax.tree.map(jnp.abs, params)


def random_scores(key: jax.Array, params: PyTree) -> PyTree:
    """I.i.d. standard normal scores (random pruning), drawn with ``key``."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x, jnp.float32))
        for k, x in zip(keys, leaves)])


def snip_scores(loss_fn: Callable[[PyTree], jax.Array], params: PyTree) -> PyTree:
    """SNIP (Lee et al. 2019, Eq. 6): ``|theta * dL/dtheta|`` for
    ``loss_fn(params) -> scalar`` on a data batch (the gradient with respect
    to a multiplicative mask, ``dL/dm = theta * dL/dtheta`` at ``m = 1``)."""
    grads = jax.grad(loss_fn)(params)
    return jax.tree.map(lambda g, p: jnp.abs(g * p), grads, params)


def grasp_scores(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *,
                 mode: str = "fwd_rev") -> PyTree:
    """GraSP (Wang et al. 2020, Eq. 8) as a keep-score: ``theta * (H g)``.

    ``g = dL/dtheta`` (held fixed) and ``H g`` is the Hessian-vector product
    of ``loss_fn`` (``neurojax.metrics.curvature.hvp``, ``mode`` as there).
    The paper's score is ``S(-theta) = -theta * H g`` and it prunes the
    highest ``S(-theta)``, i.e. keeps the highest ``theta * H g`` (what is
    returned). Build ``loss_fn`` on logits divided by the temperature
    (``GRASP_TEMPERATURE = 200`` in the paper's code; ``batch_loss_fn``).
    """
    g = jax.lax.stop_gradient(jax.grad(loss_fn)(params))
    hg = hvp(loss_fn, params, g, mode=mode)
    return jax.tree.map(lambda h, p: h * p, hg, params)


def synflow_objective(apply_fn: Callable[[dict, jax.Array], jax.Array], params: PyTree,
                      input_shape, *, model_state: Optional[dict] = None) -> jax.Array:
    """``R = 1^T f_{|theta|}(1)``: the summed output of the network with
    absolute parameters (and absolute model state) on one all-ones input of
    ``input_shape`` (without the batch axis), in the parameters' dtype.

    ``apply_fn(variables, x)`` must run the model in evaluation mode (e.g.
    ``lambda v, x: model.apply(v, x, train=False)``). ``params`` are taken as
    they are: ``synflow_scores`` passes them through ``abs``.
    """
    dtype = jnp.result_type(*jax.tree.leaves(params))
    state = jax.tree.map(lambda s: jnp.abs(s).astype(dtype)
                         if jnp.issubdtype(jnp.asarray(s).dtype, jnp.floating) else s,
                         dict(model_state or {}))
    x = jnp.ones((1,) + tuple(input_shape), dtype)
    return jnp.sum(apply_fn({"params": params, **state}, x))


def synflow_scores(apply_fn: Callable[[dict, jax.Array], jax.Array], params: PyTree,
                   input_shape, *, model_state: Optional[dict] = None) -> PyTree:
    """SynFlow (Tanaka et al. 2020, Sec. 6): ``S = |theta * dR/dtheta|`` with
    ``R`` of ``synflow_objective`` at ``|theta|`` (so ``S = |theta| dR/d|theta|``).

    Computed in ``params``' dtype: pass float64 parameters with
    ``jax_enable_x64`` on (``pruning_masks(..., dtype='float64')`` does both).
    """
    absolute = jax.tree.map(jnp.abs, params)
    grads = jax.grad(lambda p: synflow_objective(apply_fn, p, input_shape,
                                                 model_state=model_state))(absolute)
    # no signs to restore (the reference's nonlinearize): the score is
    # |theta * dR/dtheta| = |theta| * dR/d|theta| and params are not changed
    return jax.tree.map(lambda g, p: jnp.abs(g * p), grads, absolute)


def batch_loss_fn(apply_fn, loss: Callable[[jax.Array, dict], jax.Array], variables_rest,
                  batch: dict, *, temperature: float = 1.0, input_key: str = "image"):
    """``params -> loss(apply_fn(variables, batch[input_key]) / temperature, batch)``:
    SNIP's loss (``temperature=1``) and GraSP's (``GRASP_TEMPERATURE``)."""
    def fn(params):
        out = apply_fn({"params": params, **variables_rest}, batch[input_key])
        return loss(out / temperature, batch)
    return fn


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


def pruning_masks(method: str, params: PyTree, *, compression: Optional[float] = None,
                  counts=None,
                  apply_fn: Optional[Callable] = None, model_state: Optional[dict] = None,
                  input_shape=None, batch: Optional[dict] = None,
                  loss: Optional[Callable[[jax.Array, dict], jax.Array]] = None,
                  key: Optional[jax.Array] = None, iterations: Optional[int] = None,
                  schedule: str = "exponential", prunable: str = DEFAULT_PRUNABLE,
                  temperature: float = GRASP_TEMPERATURE, dtype: str = "float64") -> PyTree:
    """Masks of one pruning method at initialisation (Tanaka et al. 2020, Sec. 7).

    Args:
        method: one of ``METHODS``.
        params: the initial parameters.
        compression: ``prunable / kept`` (>= 1); or
        counts: the kept count after each round (``schedule_counts``; may be
            traced, e.g. to compile once for several compressions). Exactly
            one of the two.
        apply_fn: ``(variables, x) -> outputs`` in evaluation mode (synflow,
            snip, grasp).
        model_state: other variable collections (BatchNorm's ``batch_stats``).
        input_shape: one input's shape, without the batch axis (synflow).
        batch: ``{'image', 'label'}`` arrays (snip, grasp; the paper: 10
            examples per class).
        loss: ``(outputs, batch) -> scalar`` (snip, grasp).
        key: PRNG key (random).
        iterations: pruning rounds (default ``DEFAULT_ITERATIONS[method]``;
            with ``counts``, ``len(counts)``: ``iterations`` and ``schedule``
            are then not used).
        schedule, prunable: see the module docstring.
        temperature: GraSP's logit temperature.
        dtype: 'float64' (SynFlow's computation, with 64-bit types switched
            on inside this call only) or 'float32'; for synflow only.
    """
    check_choice("method", method, METHODS)
    check_choice("dtype", dtype, ("float64", "float32"))
    if (compression is None) == (counts is None):
        raise ValueError("give exactly one of compression and counts")
    if counts is None:
        iterations = check_int("iterations", DEFAULT_ITERATIONS[method] if iterations is None
                               else iterations)
        counts = schedule_counts(num_prunable(params, prunable), compression, iterations,
                                 schedule)
    if method in ("synflow", "snip", "grasp") and not callable(apply_fn):
        raise ValueError(f"apply_fn must be a callable (variables, x) -> outputs for "
                         f"method={method!r}, got {apply_fn!r}")
    if method == "synflow" and input_shape is None:
        raise ValueError("input_shape (one input's shape, no batch axis) is required for "
                         "method='synflow'")
    if method in ("snip", "grasp"):
        if not isinstance(batch, dict) or "image" not in batch:
            raise ValueError(f"batch must be a dict with an 'image' array for "
                             f"method={method!r}, got {type(batch).__name__}")
        if not callable(loss):
            raise ValueError(f"loss must be a callable (outputs, batch) -> scalar for "
                             f"method={method!r}, got {loss!r}")
    if method == "random" and key is None:
        raise ValueError("key is required for method='random'")
    check_real("temperature", temperature, low=0.0, low_open=True)
    rest = dict(model_state or {})
    kwargs = dict(counts=counts, prunable=prunable, key=key)

    if method == "magnitude":
        return iterative_masks(lambda p, k: magnitude_scores(p), params, **kwargs)
    if method == "random":
        return iterative_masks(lambda p, k: random_scores(k, p), params, **kwargs)
    if method == "snip":
        return iterative_masks(lambda p, k: snip_scores(
            batch_loss_fn(apply_fn, loss, rest, batch), p), params, **kwargs)
    if method == "grasp":
        return iterative_masks(lambda p, k: grasp_scores(
            batch_loss_fn(apply_fn, loss, rest, batch, temperature=temperature), p),
            params, **kwargs)
    if dtype == "float32":
        return iterative_masks(lambda p, k: synflow_scores(
            apply_fn, p, input_shape, model_state=rest), params, **kwargs)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        wide_state = jax.tree.map(
            lambda s: jnp.asarray(s, jnp.float64)
            if jnp.issubdtype(jnp.asarray(s).dtype, jnp.floating) else s, rest)
        masks = iterative_masks(lambda p, k: synflow_scores(
            apply_fn, p, input_shape, model_state=wide_state), wide, **kwargs)
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
