"""Read a finished (or running) training run back for analysis.

``neurojax.train.loop.train_and_evaluate`` saves, under ``workdir/checkpoints``,
an orbax ``Composite`` with two items: ``'state'`` (the ``TrainState``: step,
params, model_state, opt_state, rng) and ``'data'`` (the grain iterator's
position, for resumption). Analysis needs neither the optimiser state nor the
data iterator, and should not need the optimiser that was used to build them:
``restore_params`` restores the ``'state'`` item alone, without a target (as
the plain nested dicts orbax stored), and returns the parameters and the
model's other collections ready for ``model.apply``.

``python -m launch.run`` writes the run's config as ``workdir/config.json``
(``ConfigDict.to_json_best_effort``); ``load_config`` reads it back, turning
JSON lists into tuples as the configs write them. A run started from Python
(``train_and_evaluate(config, workdir)``) writes no config.json: pass its
``config`` instead. ``model_from_config`` rebuilds the module the loop trained
(supervised: the config's model with the dataset's number of classes; SSL:
encoder + projector), so that::

    params, model_state, config = restore_params(workdir)
    model = model_from_config(config)
    logits = model.apply({'params': params, **model_state}, x, train=False)
"""
import json
import os
from typing import Any, NamedTuple, Optional

import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class RestoredParams(NamedTuple):
    """What ``restore_params`` returns: unpacks as ``params, model_state, config``.

    Attributes:
        params: the ``'params'`` collection (nested dicts of arrays).
        model_state: the other collections (e.g. ``{'batch_stats': ...}``;
            ``{}`` for models without BatchNorm).
        config: the run's config (``ml_collections.ConfigDict``).
    """
    params: Any
    model_state: dict
    config: ml_collections.ConfigDict


def _tuples(value: Any) -> Any:
    """JSON lists -> tuples, recursively (configs write sequences as tuples)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _check_workdir(workdir: Any) -> str:
    if not isinstance(workdir, (str, os.PathLike)):
        raise ValueError(f"workdir must be a path (str or os.PathLike), got {workdir!r}")
    workdir = os.fspath(workdir)
    if not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} is not a directory")
    return workdir


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run was launched with, from ``workdir/config.json``.

    Raises:
        ValueError: ``workdir`` is not a directory, or holds no config.json
            (a run started from Python writes none: keep its config).
    """
    workdir = _check_workdir(workdir)
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"workdir {workdir!r} has no {CONFIG_FILE} (launch.run writes "
                         f"it; for a run started from Python pass its config)")
    with open(path) as f:
        return ml_collections.ConfigDict(_tuples(json.load(f)))


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps saved under ``workdir/checkpoints``, ascending (``[]`` if none)."""
    workdir = _check_workdir(workdir)
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return []
    manager = ocp.CheckpointManager(directory)
    try:
        return sorted(int(s) for s in manager.all_steps())
    finally:
        manager.close()


def restore_params(workdir: str, step: Optional[int] = None, *,
                   config: Optional[ml_collections.ConfigDict] = None) -> RestoredParams:
    """Parameters and model state of a run's checkpoint, and the run's config.

    Only the train state's ``params`` and ``model_state`` are read back (the
    optimiser state and the data iterator's position are skipped), as host
    arrays in the nested-dict structure the model's ``init`` produces.

    Args:
        workdir: the run's working directory (``--workdir`` of launch.run,
            ``workdir`` of ``train_and_evaluate``).
        step: the checkpoint to read; default the latest one.
        config: the run's config; default ``load_config(workdir)``.

    Returns:
        ``RestoredParams(params, model_state, config)``.

    Raises:
        ValueError: no checkpoint in ``workdir``, ``step`` not saved there,
            or no config given and no config.json.
    """
    steps = checkpoint_steps(workdir)
    if not steps:
        raise ValueError(f"workdir {workdir!r} has no checkpoints under "
                         f"{CHECKPOINT_DIR}/")
    if step is None:
        step = steps[-1]
    elif isinstance(step, bool) or not isinstance(step, int) or step not in steps:
        raise ValueError(f"step must be one of the saved steps {steps}, got {step!r}")
    if config is None:
        config = load_config(workdir)
    elif not isinstance(config, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
        raise ValueError(f"config must be an ml_collections.ConfigDict or None, "
                         f"got {type(config).__name__}")
    directory = os.path.join(os.path.abspath(os.fspath(workdir)), CHECKPOINT_DIR)
    manager = ocp.CheckpointManager(directory)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))
    finally:
        manager.close()
    state = restored["state"]
    return RestoredParams(params=state["params"],
                          model_state=dict(state.get("model_state") or {}),
                          config=config)


def model_from_config(config: ml_collections.ConfigDict) -> Any:
    """The Flax module a run with this config trained (no parameters).

    The registered task's module (``neurojax.train.task.get_task``):
    'supervised' (the default): ``config.model`` with its output size set to
    the dataset's number of classes, as ``neurojax.train.task.build_model``;
    'ssl': the ``SSLNetwork`` of ``config.model`` (encoder) and
    ``config.projector``.

    Raises:
        ValueError: unknown ``config.task``, or a bad model field (named).
    """
    from neurojax import data as nj_data  # deferred: data pipelines are heavy to import
    from neurojax.train.task import get_task

    spec = get_task(config.get("task", "supervised"))
    data_dir = config.dataset.get("data_dir") or None
    return spec.model(config, nj_data.dataset_info(config.dataset.name, data_dir=data_dir))
