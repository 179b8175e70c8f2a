"""Online data filters: k-filtering and loss filtering (Oland 2024, Efficient
Deep Learning, Sec 5.4 and Sec 6.8.2), usable by any task's objective.

* **k-filtering** (Sec 5.4; Sec 6.8.2 runs it online "from a given epoch over
  large batches", k = 10, at most 60% of a batch removed): example i of a
  batch is removed when it is k-redundant within the batch, i.e. all of its
  k nearest neighbours (Euclidean on the flattened inputs, itself excluded)
  share its label (``neurojax.metrics.redundancy``). Cap: at most
  ``floor(max_removed * B)`` examples are removed. When more are redundant,
  the *most* redundant go first: examples are ranked by c_i, the number of
  same-label neighbours before the first neighbour of another label
  (``same_label_neighbours``; c_i >= k is the redundancy criterion), largest
  first, ties towards the lower batch index; the first ``floor(max_removed *
  B)`` redundant ones in that order are removed. (The thesis does not say
  which it keeps; this removes those that stay redundant at the largest k.)
* **loss filtering** (Sec 6.8.2, the ImageNet variant: each example's loss
  as a redundancy proxy): the ``floor(fraction * B)`` examples with the
  lowest loss in the batch are removed (``fraction = 0.25`` in the thesis);
  ties towards the lower batch index (a stable sort).

Shapes stay static under ``jit``: a filter is a per-example 0/1 weight w_i,
computed inside the compiled step, and the objective is the mean loss over
the kept examples,

    L = sum_i w_i l_i / max(sum_i w_i, 1),

where l_i is the loss of example i alone (the loss function applied to a
batch of one, under ``vmap``: every supervised loss here is a batch mean of
per-example terms, so the mean of the l_i is the batch loss). The weights
are constants for the gradient (the losses that rank them pass through
``stop_gradient``). The model's forward pass still runs on the whole batch:
BatchNorm's batch statistics include the removed examples.

**The step.** A filter acts from ``start_step`` on (``config.data_filter.
start_epoch`` x steps per epoch) of the train state's global step, which the
step function passes to objectives that ask for it
(``neurojax.train.step.takes_step``): :func:`filtered_model_objective` puts
it in the batch (``batch['data_filter_step']``) for the filtered loss. The
step is checkpointed with the state, so resumption is exact.

Config (``config.data_filter``, validated by :func:`validate_config`)::

    data_filter = dict(kind='k', k=10, max_removed=0.6, start_epoch=0)
    data_filter = dict(kind='loss', fraction=0.25, start_epoch=0)

``kind='none'`` (or no block) trains on every example. The k-filter ranks
within the training batch: give the run a large batch (the thesis: 6148).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from neurojax._checks import check_int, check_real
from neurojax.metrics.redundancy import DEFAULT_BLOCK_SIZE, same_label_neighbours

__all__ = ["FILTER_KINDS", "STEP_KEY", "DataFilter", "validate_config", "from_config",
           "config_filter", "loss_filter_mask", "k_filter_mask_capped", "filter_mask",
           "per_example_losses", "filtered_loss", "filtered_model_objective"]

FILTER_KINDS = ("none", "k", "loss")
STEP_KEY = "data_filter_step"
_FIELDS = {"none": ("kind",), "k": ("kind", "k", "max_removed", "start_epoch", "block_size"),
           "loss": ("kind", "fraction", "start_epoch")}


@dataclasses.dataclass(frozen=True)
class DataFilter:
    """kind: 'none', 'k' or 'loss'; k and max_removed (k-filtering);
    fraction (loss filtering: the share of each batch dropped); start_step:
    the first step at which the filter acts; block_size: the kNN blocks."""
    kind: str = "none"
    k: int = 10
    max_removed: float = 0.6
    fraction: float = 0.25
    start_step: int = 0
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self):
        _check_fields(dataclasses.asdict(self), "DataFilter", start="start_step")


def _check_fields(cfg, prefix: str, start: str = "start_epoch") -> None:
    kind = cfg.get("kind", "none")
    if kind not in FILTER_KINDS:
        raise ValueError(f"{prefix}.kind must be one of {FILTER_KINDS}, got {kind!r}")
    if "k" in cfg:
        check_int(f"{prefix}.k", cfg["k"], 1)
    if "max_removed" in cfg:
        check_real(f"{prefix}.max_removed", cfg["max_removed"], low=0.0, high=1.0)
    if "fraction" in cfg:
        check_real(f"{prefix}.fraction", cfg["fraction"], low=0.0, high=1.0, high_open=True)
    if start in cfg:
        check_int(f"{prefix}.{start}", cfg[start], 0)
    if "block_size" in cfg:
        check_int(f"{prefix}.block_size", cfg["block_size"], 1)


def validate_config(config) -> None:
    """Checks ``config.data_filter`` (absent, empty or kind 'none': no
    filter); ``ValueError`` naming the field."""
    cfg = config.get("data_filter")
    if not cfg or cfg.get("kind", "none") == "none":
        return
    cfg = dict(cfg)
    _check_fields(cfg, "config.data_filter")
    unknown = sorted(set(cfg) - set(_FIELDS[cfg["kind"]]))
    if unknown:
        raise ValueError(f"config.data_filter.{unknown[0]} is not a field of kind "
                         f"{cfg['kind']!r}; allowed: {list(_FIELDS[cfg['kind']])}")
    if config.get("task", "supervised") != "supervised":
        raise ValueError(f"config.data_filter is wired for task 'supervised' only, got "
                         f"config.task={config.get('task')!r} (other tasks wrap their "
                         f"objectives with neurojax.train.filters themselves)")
    if config.get("rule") is not None:
        raise ValueError("config.data_filter cannot be combined with config.rule (the "
                         "alignment metrics compare with an unfiltered twin)")
    sync = config.get("sync")
    if sync and sync.get("mode", "off") != "off":
        raise ValueError("config.data_filter cannot be combined with config.sync")


def from_config(config, steps_per_epoch: int) -> Optional[DataFilter]:
    """The :class:`DataFilter` of ``config.data_filter`` (``None``: no filter),
    its ``start_epoch`` converted with ``steps_per_epoch``."""
    validate_config(config)
    cfg = config.get("data_filter")
    if not cfg or cfg.get("kind", "none") == "none":
        return None
    cfg = dict(cfg)
    start = cfg.pop("start_epoch", 0) * check_int("steps_per_epoch", steps_per_epoch)
    return DataFilter(start_step=start, **cfg)


def config_filter(config, info, data_dir) -> Optional[DataFilter]:
    """:func:`from_config` with the loop's steps per epoch of the training
    split (``info``: the dataset's ``neurojax.data.DatasetInfo``)."""
    cfg = config.get("data_filter")
    if not cfg or cfg.get("kind", "none") == "none":
        return None
    from neurojax import data as nj_data
    from neurojax.data import on_device
    ds = config.dataset
    split = ds.get("train_split", "train")
    records = info.num_examples.get(split) or len(nj_data.data_source(ds.name, split, data_dir))
    num_train = len(nj_data.fraction_indices(records, ds.get("fraction", 1.0)))
    return from_config(config, on_device.steps_per_epoch(
        num_train, ds.batch_size * jax.process_count()))


# --- masks -------------------------------------------------------------------------

def loss_filter_mask(losses: jax.Array, fraction: float) -> jax.Array:
    """Keep mask of loss filtering (Sec 6.8.2): False for the ``floor(fraction
    * B)`` lowest of the (B,) ``losses`` (ties: the lower index goes first)."""
    check_real("fraction", fraction, low=0.0, high=1.0, high_open=True)
    if jnp.ndim(losses) != 1:
        raise ValueError(f"losses must be 1-D (one per example), got shape {jnp.shape(losses)}")
    n = losses.shape[0]
    drop = math.floor(fraction * n)
    order = jnp.argsort(losses, stable=True)
    return jnp.ones((n,), bool).at[order[:drop]].set(False)


def k_filter_mask_capped(x: jax.Array, labels: jax.Array, k: int, max_removed: float, *,
                         block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
    """Keep mask of capped k-filtering within a batch (Sec 5.4, 6.8.2): False
    for k-redundant examples, at most ``floor(max_removed * B)`` of them,
    the most redundant first (see the module docstring). ``x``: (B, ...)
    inputs (flattened per example); ``labels``: (B,) ints >= 0; k <= B - 1."""
    check_real("max_removed", max_removed, low=0.0, high=1.0)
    n = x.shape[0]
    k = check_int("k", k)
    if k > n - 1:
        raise ValueError(f"k must be <= the batch size - 1 ({n - 1}), got {k}")
    c = same_label_neighbours(x.reshape(n, -1), labels, block_size=block_size)
    order = jnp.argsort(-c, stable=True)                 # most redundant first
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    removed = (c >= k) & (rank < math.floor(max_removed * n))
    return jnp.logical_not(removed)


def filter_mask(flt: DataFilter, step, *, inputs: jax.Array, labels: jax.Array,
                losses: jax.Array) -> jax.Array:
    """The keep mask of ``flt`` at ``step``: all True before ``flt.start_step``
    (the mask is not computed then: ``lax.cond``)."""
    n = losses.shape[0]
    if flt.kind == "none":
        return jnp.ones((n,), bool)
    if flt.kind == "k":
        compute = lambda: k_filter_mask_capped(inputs, labels, flt.k, flt.max_removed,
                                               block_size=flt.block_size)
    else:
        compute = lambda: loss_filter_mask(losses, flt.fraction)
    return jax.lax.cond(jnp.asarray(step) >= flt.start_step, compute,
                        lambda: jnp.ones((n,), bool))


# --- objectives ------------------------------------------------------------------

def per_example_losses(loss_fn: Callable, outputs: jax.Array, batch: dict,
                       **loss_hyper) -> tuple[jax.Array, dict]:
    """``loss_fn`` on each example alone (a batch of one, under ``vmap``):
    ``((B,) losses, {aux name: (B,)})``. Batch entries without the example
    axis (a leading axis of size B) are passed whole."""
    n = outputs.shape[0]
    axes = {k: 0 if (jnp.ndim(v) >= 1 and jnp.shape(v)[0] == n) else None
            for k, v in batch.items()}

    def one(output, example):
        single = {k: (v[None] if axes[k] == 0 else v) for k, v in example.items()}
        return loss_fn(output[None], single, **loss_hyper)
    return jax.vmap(one, in_axes=(0, axes))(outputs, batch)


def filtered_loss(loss_fn: Callable, flt: DataFilter, *, input_key: str = "image",
                  label_key: str = "label") -> Callable:
    """An output-level loss ``(outputs, batch, **hyper) -> (scalar, aux)``:
    the mean of ``loss_fn``'s per-example losses over the examples ``flt``
    keeps at step ``batch['data_filter_step']`` (see the module docstring).
    Aux: ``loss_fn``'s aux averaged over the whole batch, plus
    ``kept_fraction``."""
    def loss(outputs, batch, **loss_hyper):
        if STEP_KEY not in batch:
            raise ValueError(f"the batch has no {STEP_KEY!r}: use filtered_model_objective, "
                             f"whose objective takes the step")
        losses, aux = per_example_losses(loss_fn, outputs, batch, **loss_hyper)
        keep = filter_mask(flt, batch[STEP_KEY], inputs=batch[input_key],
                           labels=batch[label_key], losses=jax.lax.stop_gradient(losses))
        w = keep.astype(losses.dtype)
        value = jnp.sum(w * losses) / jnp.maximum(jnp.sum(w), 1)
        return value, {**{k: jnp.mean(v) for k, v in aux.items()},
                       "kept_fraction": jnp.mean(w)}
    return loss


def filtered_model_objective(model, loss_fn: Callable, flt: DataFilter, *,
                             input_key: str = "image", label_key: str = "label",
                             **loss_hyper: Any) -> Callable:
    """``neurojax.train.step.model_objective`` with ``loss_fn`` filtered by
    ``flt``: an objective that takes the global step
    (``objective(params, model_state, batch, rng, step=...)``, marked
    ``takes_step`` for ``neurojax.train.step.train_step_fn``)."""
    from neurojax.train.step import model_objective
    inner = model_objective(model, filtered_loss(loss_fn, flt, input_key=input_key,
                                                 label_key=label_key),
                            input_key=input_key, **loss_hyper)

    def objective(params, model_state, batch, rng, *, step):
        return inner(params, model_state, {**batch, STEP_KEY: step}, rng)
    objective.takes_step = True
    return objective
