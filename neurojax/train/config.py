"""Validation of experiment configs, before anything is built or compiled.

Every config has the blocks ``dataset``, ``model``, ``loss``, ``optim`` and
``train`` plus a top-level ``seed`` (see ``configs/supervised_digits.py``);
``task='ssl'`` configs add ``projector``, ``views`` and ``probe`` (see
``configs/_ssl_common.py``).
"""
from typing import Any

import numpy as np

from neurojax.losses import LOSSES

TASKS = ("supervised", "ssl")
PROBES = ("knn", "ridge", "linear")
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
    _positive_int(ds.get("worker_count", 0), "config.dataset.worker_count", allow_zero=True)
    if not isinstance(config.model.get("name"), str):
        raise ValueError(f"config.model.name must be a model name, got {config.model.get('name')!r}")
    task = config.get("task", "supervised")
    if task not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {task!r}")
    fraction = ds.get("fraction", 1.0)
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"config.dataset.fraction must be in (0, 1], got {fraction!r}")
    if task == "ssl":
        _validate_ssl(config)
    elif config.loss.get("name") not in LOSSES:
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
    _positive_int(tr.get("spectrum_every", 0), "config.train.spectrum_every", allow_zero=True)
    _positive_int(tr.get("spectrum_examples", 1024), "config.train.spectrum_examples")
    layers = tr.get("spectrum_layers", ())
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"config.train.spectrum_layers must be a tuple of layer names, "
                         f"got {layers!r}")
    if tr.get("spectrum_every", 0) and not layers:
        raise ValueError("config.train.spectrum_layers must name at least one layer when "
                         "config.train.spectrum_every > 0 (see neurojax.models.layer_names)")


def _validate_ssl(config) -> None:
    """The SSL blocks: projector, views, loss (hyperparameters included), probe."""
    from neurojax.models.projector import Projector
    from neurojax.train.ssl import augment_recipe, ssl_loss_fn

    for block in ("projector", "views", "probe"):
        if block not in config:
            raise ValueError(f"config.{block} is missing (needed by config.task='ssl')")
    try:
        Projector(**config.projector)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.projector: {e}") from e
    v = config.views
    _positive_int(v.get("num_views"), "config.views.num_views")
    _positive_int(v.get("small_views", 0), "config.views.small_views", allow_zero=True)
    _positive_int(v.get("size", 0), "config.views.size", allow_zero=True)
    _positive_int(v.get("small_size", 0), "config.views.small_size", allow_zero=True)
    num_views = v.num_views + v.get("small_views", 0)
    if num_views < 2:
        raise ValueError(f"config.views must give at least 2 views per image, got {num_views}")
    if v.get("small_views", 0) and not v.get("small_size", 0):
        raise ValueError("config.views.small_size must be > 0 when config.views.small_views > 0")
    augment_recipe(v, v.get("size", 0) or 32)
    if v.get("small_views", 0):
        augment_recipe(v, v.small_size, small=True)
    hyper = {k: val for k, val in config.loss.items() if k != "name"}
    loss_fn = ssl_loss_fn(config.loss.get("name"), num_views, **hyper)
    try:  # checks the hyperparameters' ranges on a tiny eager batch
        loss_fn(np.random.default_rng(0).normal(size=(num_views, 4, 3)).astype(np.float32))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.loss: {e}") from e
    p = config.probe
    probes = tuple(p.get("probes", ()))
    if not probes or any(name not in PROBES for name in probes):
        raise ValueError(f"config.probe.probes must be a non-empty subset of {PROBES}, "
                         f"got {probes!r}")
    for field in ("knn_k", "linear_epochs", "linear_batch_size"):
        _positive_int(p.get(field), f"config.probe.{field}")
    for field in ("max_train_examples", "max_test_examples"):
        _positive_int(p.get(field, 0), f"config.probe.{field}", allow_zero=True)
    for field in ("knn_temperature", "linear_lr"):
        value = p.get(field)
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"config.probe.{field} must be a positive number, got {value!r}")
    for t in p.get("accuracy_thresholds", ()):
        if not (isinstance(t, (int, float)) and 0 < t <= 1):
            raise ValueError(f"config.probe.accuracy_thresholds must be fractions in (0, 1], "
                             f"got {t!r}")
