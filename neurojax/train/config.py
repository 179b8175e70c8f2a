"""Validation of experiment configs, before anything is built or compiled.

Every config has the blocks ``dataset``, ``model``, ``loss``, ``optim`` and
``train`` plus a top-level ``seed`` (see ``configs/supervised_digits.py``).
This module checks those common blocks; the task named by ``config.task``
checks its own (``neurojax.train.task.register_task``; ``task='ssl'``
configs add ``projector``, ``views`` and ``probe``, see
``configs/_ssl_common.py``).
"""
from typing import Any, Mapping, Sequence

from neurojax import models
from neurojax._checks import check_bool, check_int, check_real
from neurojax.data.on_device import ON_DEVICE_MODES
from neurojax.models import resolve_dtype
from neurojax.optim import validate_optim_config
from neurojax.train import filters
from neurojax.train.task import get_task


def positive_int(value: Any, field: str, *, allow_zero: bool = False) -> None:
    """``neurojax._checks.check_int`` for a config field (>= 1, or >= 0)."""
    check_int(field, value, 0 if allow_zero else 1)


# Blocks whose fields are optional: a model's constructor arguments and an
# augmentation recipe's arguments (``configs/_ssl_common.py``).
OPEN_BLOCKS = ("model", "views.augment", "views.small_augment")


def apply_overrides(config, overrides: Mapping[str, Any], *,
                    open_blocks: Sequence[str] = OPEN_BLOCKS) -> None:
    """Set dotted-key ``overrides`` (``{'optim.lr': 0.1, 'seed': 1}``) on
    ``config`` in place. A key must name an existing field, except inside
    ``open_blocks`` (dotted block names whose fields are optional, default
    ``OPEN_BLOCKS``), where it is added.
    Field references (``loss.lambd`` following ``projector.output_dim``)
    keep following unless the referring field itself is overridden."""
    config.unlock()  # a --config flag's config is locked: open fields may be added
    for key, value in overrides.items():
        *blocks, field = key.split(".")
        node = config
        for block in blocks:
            if block not in node:
                raise ValueError(f"overrides: {key!r} names no block of the config")
            node = node[block]
        if field not in node and ".".join(blocks) not in open_blocks:
            raise ValueError(f"overrides: {key!r} is not a field of the base config")
        node[field] = value


def validate_config(config) -> None:
    """Raises ``ValueError`` naming the first invalid field of ``config``."""
    for block in ("dataset", "model", "loss", "optim", "train"):
        if block not in config:
            raise ValueError(f"config.{block} is missing")
    positive_int(config.get("seed", 0), "config.seed", allow_zero=True)
    ds = config.dataset
    if not isinstance(ds.get("name"), str) or not ds.name:
        raise ValueError(f"config.dataset.name must be a dataset name, got {ds.get('name')!r}")
    positive_int(ds.get("batch_size"), "config.dataset.batch_size")
    positive_int(ds.get("eval_batch_size", ds.batch_size), "config.dataset.eval_batch_size")
    positive_int(ds.get("worker_count", 0), "config.dataset.worker_count", allow_zero=True)
    _validate_model_fields(config.model)
    resolve_dtype(config.model.get("dtype"), "config.model.dtype")  # compute dtype
    task = get_task(config.get("task", "supervised"))
    fraction = ds.get("fraction", 1.0)
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"config.dataset.fraction must be in (0, 1], got {fraction!r}")
    if ds.get("on_device", "auto") not in ON_DEVICE_MODES:
        raise ValueError(f"config.dataset.on_device must be one of {ON_DEVICE_MODES}, "
                         f"got {ds.get('on_device')!r}")
    positive_int(ds.get("device_budget_mb", 1024), "config.dataset.device_budget_mb",
                  allow_zero=True)
    task.validate(config)
    filters.validate_config(config)   # config.data_filter
    _validate_sync(config)
    validate_optim_config(config.optim)
    tr = config.train
    if tr.get("num_steps", 0) and tr.get("num_epochs", 0):
        raise ValueError("set only one of config.train.num_steps and config.train.num_epochs")
    if not (tr.get("num_steps", 0) or tr.get("num_epochs", 0)):
        raise ValueError("config.train.num_steps or config.train.num_epochs must be > 0")
    for field in ("num_steps", "num_epochs"):
        positive_int(tr.get(field, 0), f"config.train.{field}", allow_zero=True)
    for field in ("log_every", "eval_every", "checkpoint_every"):
        positive_int(tr.get(field, 0), f"config.train.{field}", allow_zero=True)
    positive_int(tr.get("steps_per_call", 1), "config.train.steps_per_call")
    check_real("config.train.max_train_seconds", tr.get("max_train_seconds", 0), low=0)
    positive_int(tr.get("num_replicas", 1), "config.train.num_replicas")
    positive_int(tr.get("keep_checkpoints", 2), "config.train.keep_checkpoints")
    positive_int(tr.get("spectrum_every", 0), "config.train.spectrum_every", allow_zero=True)
    positive_int(tr.get("spectrum_examples", 1024), "config.train.spectrum_examples")
    check_bool("config.train.eval_at_stage_end", tr.get("eval_at_stage_end", False))
    layers = tr.get("spectrum_layers", ())
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"config.train.spectrum_layers must be a tuple of layer names, "
                         f"got {layers!r}")
    if tr.get("spectrum_every", 0) and not layers:
        raise ValueError("config.train.spectrum_layers must name at least one layer when "
                         "config.train.spectrum_every > 0 (see neurojax.models.layer_names)")


def _validate_model_fields(model) -> None:
    """``config.model.name`` is a registered model and every other field one of
    its arguments (``neurojax.models.model_kwargs``), checked before any data
    is opened."""
    name = model.get("name")
    if not isinstance(name, str):
        raise ValueError(f"config.model.name must be a model name, got {name!r}")
    try:
        allowed = models.model_kwargs(name)
    except ValueError as e:
        raise ValueError(f"config.model.name: {e}") from e
    unknown = sorted(set(model.keys()) - {"name"} - set(allowed))
    if unknown:
        raise ValueError(f"config.model.{unknown[0]} is not an argument of model {name!r}; "
                         f"allowed: {sorted(allowed)}")


SYNC_MODES = ("off", "none", "fixed", "dynamic")


def _validate_sync(config) -> None:
    """The optional ``sync`` block (local steps with a compressed weight sync;
    ``neurojax.train.worker_sync``); ``mode='off'`` or no block: none."""
    s = config.get("sync")
    if not s or s.get("mode", "off") == "off":
        return
    from neurojax.train.worker_sync import SyncConfig  # only runs with a sync need it

    if s.get("mode") not in SYNC_MODES:
        raise ValueError(f"config.sync.mode must be one of {SYNC_MODES}, got {s.get('mode')!r}")
    positive_int(s.get("num_workers"), "config.sync.num_workers")
    positive_int(s.get("local_steps", 0), "config.sync.local_steps", allow_zero=True)
    fields = {f: s[f] for f in ("num_bits", "fraction", "prelim_bits", "floor", "min_bits",
                                "max_bits", "grouping", "method") if f in s}
    try:
        SyncConfig(mode=s.mode, **fields)
    except ValueError as e:
        raise ValueError(f"config.sync: {e}") from e
    if config.train.get("num_replicas", 1) != 1:
        raise ValueError("config.train.num_replicas must be 1 with config.sync")
