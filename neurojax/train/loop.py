"""The supervised training loop: build from a config, train, evaluate, resume.

``train_and_evaluate(config, workdir)`` is what ``python -m launch.run`` calls.
It writes to ``workdir``:

- ``metrics.jsonl``: train scalars every ``log_every`` steps, eval scalars every
  ``eval_every`` steps and at the end;
- ``curves.png``: the training curves, redrawn at each evaluation;
- ``checkpoints/``: orbax checkpoints of the train state *and* the data
  iterator's position, so that a run killed at any step and restarted with
  the same command resumes and ends with the same parameters as an
  uninterrupted run.

Non-finite losses: the loop checks the losses of every step (fetched in one
transfer every ``log_every`` steps, never later than the next checkpoint) and
raises ``FloatingPointError`` naming the first bad step. No checkpoint is
written after a bad step, so the last good one stays intact.
"""
import dataclasses
import itertools
import math
import os
import time
from typing import Callable, Sequence

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from neurojax import data as nj_data
from neurojax import losses, models, plots
from neurojax.optim import make_optimizer
from neurojax.train.config import validate_config
from neurojax.train.logging import MetricsWriter, read_metrics
from neurojax.train.state import TrainState, create_train_state
from neurojax.train.step import (make_eval_step, make_mesh, make_train_step, model_objective,
                                 replicate, shard_batch)

Hook = Callable[[int, TrainState, dict], None]


@dataclasses.dataclass
class RunResult:
    state: TrainState
    eval_metrics: dict
    num_steps: int
    seconds: float


def _build_model(config, num_classes: int):
    """The config's model, its output size defaulting to the dataset's classes."""
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    for field in ("num_classes", "num_outputs"):
        if field in models.model_kwargs(config.model.name):
            kwargs.setdefault(field, num_classes)
    try:
        return models.get_model(config.model.name, **kwargs)
    except ValueError as e:
        raise ValueError(f"config.model: {e}") from e


def _pad_batch(batch: dict, size: int) -> dict:
    """Pads a partial eval batch to ``size`` rows with a 0/1 ``mask``."""
    n = len(batch["label"])
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
           for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def evaluate(eval_step, state: TrainState, loader, batch_size: int, mesh,
             num_batches: int | None = None) -> dict:
    """Exact means over one pass of ``loader`` (the last batch padded and masked).

    ``num_batches``: how many steps to run. On several hosts every process
    must run the same number of (collective) eval steps although shards may
    differ by one example, so each runs the largest shard's count and feeds
    fully masked batches once its own loader is exhausted. ``None`` runs one
    step per batch of ``loader``.
    """
    totals, template = None, None
    batches = iter(loader)
    for i in itertools.count():
        if num_batches is not None and i >= num_batches:
            break
        batch = next(batches, None)
        if batch is None:
            if num_batches is None or template is None:
                break
            batch = {k: v[:0] for k, v in template.items()}  # all padding
        template = batch if template is None else template
        sums = eval_step(state, shard_batch(_pad_batch(batch, batch_size), mesh))
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: float(v) / float(count) for k, v in totals.items()}


def eval_batches_per_process(num_examples: int, batch_size: int) -> int:
    """Eval steps of the largest process shard (shards differ by at most one)."""
    largest_shard = -(-num_examples // jax.process_count())
    return -(-largest_shard // batch_size)


def _check_finite(steps: list[int], values: list[dict], checkpoint_dir: str, last_saved) -> None:
    """Raises at the first of ``steps`` whose (host) loss is NaN or Inf."""
    for step, value in zip(steps, (v["loss"] for v in values)):
        if not math.isfinite(float(value)):
            where = (f"the last good checkpoint (step {last_saved}) is in {checkpoint_dir}"
                     if last_saved is not None else "no checkpoint had been written yet")
            raise FloatingPointError(f"non-finite loss ({float(value)}) at step {step}; {where}")


def train_and_evaluate(config, workdir: str, *, hooks: Sequence[Hook] = (),
                       progress: bool = True) -> RunResult:
    """Trains the model a config describes; see the module docstring."""
    validate_config(config)
    os.makedirs(workdir, exist_ok=True)
    ds_cfg, tr = config.dataset, config.train
    data_dir = ds_cfg.get("data_dir") or None
    train_loader = nj_data.load(ds_cfg.name, ds_cfg.get("train_split", "train"),
                                batch_size=ds_cfg.batch_size, data_dir=data_dir,
                                seed=config.seed, shuffle=True, num_epochs=None,
                                drop_remainder=True)  # prepares the offline datasets
    info = nj_data.dataset_info(ds_cfg.name, data_dir=data_dir)
    steps_per_epoch = info.num_examples[ds_cfg.get("train_split", "train")] // ds_cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"config.dataset.batch_size ({ds_cfg.batch_size}) exceeds the "
                         f"training set size")
    num_steps = tr.num_steps or tr.num_epochs * steps_per_epoch
    eval_batch_size = ds_cfg.get("eval_batch_size", ds_cfg.batch_size)
    mesh = make_mesh()

    model = _build_model(config, info.num_classes)
    loss_fn = losses.get_loss(config.loss.name)
    loss_hyper = {k: v for k, v in config.loss.items() if k != "name"}
    tx = make_optimizer(config.optim, num_steps)

    rng = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(rng)
    sample_shape = (1,) + tuple(info.image_shape)
    variables = jax.jit(lambda k: model.init(k, np.zeros(sample_shape, np.float32), train=False))(init_rng)
    params = variables.pop("params")
    state = replicate(create_train_state(params, tx, model_state=variables, rng=state_rng), mesh)

    train_step = make_train_step(model_objective(model, loss_fn, **loss_hyper), tx, mesh=mesh)
    eval_step = make_eval_step(model, loss_fn, mesh=mesh)

    eval_split = ds_cfg.get("eval_split", "test")
    num_eval_batches = eval_batches_per_process(
        len(nj_data.data_source(ds_cfg.name, eval_split, data_dir)), eval_batch_size)

    def eval_loader():
        return nj_data.load(ds_cfg.name, eval_split, batch_size=eval_batch_size,
                            data_dir=data_dir, shuffle=False, num_epochs=1,
                            drop_remainder=False)

    checkpoint_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    manager = ocp.CheckpointManager(checkpoint_dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=tr.get("keep_checkpoints", 2), create=True))
    writer = MetricsWriter(workdir)
    train_iter = iter(train_loader)
    start_step = 0
    if manager.latest_step() is not None:
        start_step = manager.latest_step()
        restored = manager.restore(start_step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(state),
            data=grain.checkpoint.CheckpointRestore(train_iter)))
        state = restored["state"]
        writer.truncate_after(start_step)

    log_every = tr.get("log_every", 0) or max(1, min(100, num_steps // 20))
    eval_every = tr.get("eval_every", 0)
    checkpoint_every = tr.get("checkpoint_every", 0)
    last_saved = manager.latest_step()
    pending: list[tuple[int, dict]] = []  # (step, device metrics) not yet checked
    eval_metrics: dict = {}

    def flush(step: int) -> None:
        if not pending:
            return
        values = jax.device_get([m for _, m in pending])  # one transfer
        _check_finite([s for s, _ in pending], values, checkpoint_dir, last_saved)
        means = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
        writer.write(step, "train", means)
        bar.set_postfix(loss=f"{means['loss']:.4f}")
        pending.clear()

    def run_eval(step: int) -> dict:
        metrics = evaluate(eval_step, state, eval_loader(), eval_batch_size, mesh,
                           num_batches=num_eval_batches)
        writer.write(step, "eval", metrics)
        if jax.process_index() == 0:
            plots.plot_training_curves(read_metrics(writer.path), os.path.join(workdir, "curves.png"),
                                       title=f"{config.model.name} on {ds_cfg.name}")
        return metrics

    start = time.time()
    bar = tqdm.tqdm(total=num_steps, initial=start_step, disable=not progress,
                    desc=f"train {config.model.name}", dynamic_ncols=True)
    try:
        for step in range(start_step + 1, num_steps + 1):
            batch = shard_batch(next(train_iter), mesh)
            state, metrics = train_step(state, batch)
            pending.append((step, metrics))
            for hook in hooks:
                hook(step, state, metrics)
            if step % log_every == 0 or step == num_steps:
                flush(step)
            if eval_every and step % eval_every == 0 and step != num_steps:
                eval_metrics = run_eval(step)
            if (checkpoint_every and step % checkpoint_every == 0) or step == num_steps:
                flush(step)  # never checkpoint a state that followed a bad step
                manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=grain.checkpoint.CheckpointSave(train_iter)))
                last_saved = step
            bar.update(1)
        eval_metrics = run_eval(num_steps)
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
    return RunResult(state=state, eval_metrics=eval_metrics, num_steps=num_steps,
                     seconds=time.time() - start)
