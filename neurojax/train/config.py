"""Validation of experiment configs, before anything is built or compiled.

Every supervised config has the blocks ``dataset``, ``model``, ``loss``,
``optim`` and ``train`` plus a top-level ``seed``; see
``configs/supervised_digits.py`` for a documented example.
"""
from typing import Any

from neurojax.losses import LOSSES
from neurojax.optim import validate_optim_config


def _positive_int(value: Any, field: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{field} must be an integer {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def validate_config(config) -> None:
    """Raises ``ValueError`` naming the first invalid field of ``config``."""
    for block in ("dataset", "model", "loss", "optim", "train"):
        if block not in config:
            raise ValueError(f"config.{block} is missing")
    _positive_int(config.get("seed", 0), "config.seed", allow_zero=True)
    ds = config.dataset
    if not isinstance(ds.get("name"), str) or not ds.name:
        raise ValueError(f"config.dataset.name must be a dataset name, got {ds.get('name')!r}")
    _positive_int(ds.get("batch_size"), "config.dataset.batch_size")
    _positive_int(ds.get("eval_batch_size", ds.batch_size), "config.dataset.eval_batch_size")
    if not isinstance(config.model.get("name"), str):
        raise ValueError(f"config.model.name must be a model name, got {config.model.get('name')!r}")
    if config.loss.get("name") not in LOSSES:
        raise ValueError(f"config.loss.name must be one of {sorted(LOSSES)}, "
                         f"got {config.loss.get('name')!r}")
    validate_optim_config(config.optim)
    tr = config.train
    if tr.get("num_steps", 0) and tr.get("num_epochs", 0):
        raise ValueError("set only one of config.train.num_steps and config.train.num_epochs")
    if not (tr.get("num_steps", 0) or tr.get("num_epochs", 0)):
        raise ValueError("config.train.num_steps or config.train.num_epochs must be > 0")
    for field in ("num_steps", "num_epochs"):
        _positive_int(tr.get(field, 0), f"config.train.{field}", allow_zero=True)
    for field in ("log_every", "eval_every", "checkpoint_every"):
        _positive_int(tr.get(field, 0), f"config.train.{field}", allow_zero=True)
    _positive_int(tr.get("keep_checkpoints", 2), "config.train.keep_checkpoints")
