"""The training loop: build from a config, train, evaluate, resume.

``train_and_evaluate(config, workdir)`` is what ``python -m launch.run`` calls.
``config.task`` picks what is trained and how it is evaluated
(``neurojax.train.task``: 'supervised' or 'ssl'); everything else is shared.
It writes to ``workdir``:

- ``metrics.jsonl``: train scalars every ``log_every`` steps, eval scalars every
  ``eval_every`` steps and at the end, each with ``train_seconds`` (time spent
  training, evaluation excluded, continued across resumption) and eval
  records with ``epoch`` and ``examples_seen``; with
  ``train.spectrum_every = k`` also alpha-ReQ and effective-rank records of
  ``train.spectrum_layers`` every k steps (``neurojax.train.spectrum_monitor``)
  and ``eigenspectrum_{layer}.png`` at the end;
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
from neurojax import plots
from neurojax.data.pipeline import fraction_indices
from neurojax.optim import make_optimizer
from neurojax.train.config import validate_config
from neurojax.train.logging import MetricsWriter, read_metrics
from neurojax.train.state import TrainState, create_train_state
from neurojax.train.spectrum_monitor import SpectrumMonitor
from neurojax.train.step import make_mesh, make_train_step, replicate, shard_batch
from neurojax.train.task import supervised_task


def _ssl_task(*args):
    from neurojax.train.ssl import ssl_task  # supervised runs need no augmentation code
    return ssl_task(*args)


TASKS = {"supervised": supervised_task, "ssl": _ssl_task}

Hook = Callable[[int, TrainState, dict], None]


@dataclasses.dataclass
class RunResult:
    state: TrainState
    eval_metrics: dict
    num_steps: int
    seconds: float


class TrainClock:
    """Seconds spent training (evaluation excluded), continued across resumption."""

    def __init__(self, offset: float = 0.0):
        self._offset, self._since = offset, time.time()

    def seconds(self) -> float:
        running = time.time() - self._since if self._since is not None else 0.0
        return self._offset + running

    def pause(self) -> None:
        self._offset, self._since = self.seconds(), None

    def resume(self) -> None:
        self._since = time.time()


def _logged_train_seconds(path: str) -> float:
    """The last ``train_seconds`` a (truncated) metrics file holds, else 0.

    A resumed run continues from it: the training time between that record
    and the checkpoint is not counted twice (at most ``log_every`` steps of it
    are lost).
    """
    if not os.path.exists(path):
        return 0.0
    seconds = [r["train_seconds"] for r in read_metrics(path) if "train_seconds" in r]
    return float(seconds[-1]) if seconds else 0.0


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
    train_split = ds_cfg.get("train_split", "train")
    fraction = ds_cfg.get("fraction", 1.0)
    train_loader = nj_data.load(ds_cfg.name, train_split, batch_size=ds_cfg.batch_size,
                                data_dir=data_dir, seed=config.seed, shuffle=True,
                                num_epochs=None, drop_remainder=True, fraction=fraction,
                                worker_count=ds_cfg.get("worker_count", 0))
    info = nj_data.dataset_info(ds_cfg.name, data_dir=data_dir)
    num_train = len(fraction_indices(info.num_examples[train_split], fraction))
    steps_per_epoch = num_train // ds_cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"config.dataset.batch_size ({ds_cfg.batch_size}) exceeds the "
                         f"training set size ({num_train})")
    num_steps = tr.num_steps or tr.num_epochs * steps_per_epoch
    mesh = make_mesh()

    task = TASKS[config.get("task", "supervised")](config, info, mesh, data_dir)
    tx = make_optimizer(config.optim, num_steps)
    rng = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(rng)
    sample_shape = (1,) + tuple(info.image_shape)
    variables = jax.jit(lambda k: task.model.init(k, np.zeros(sample_shape, np.float32),
                                                  train=False))(init_rng)
    params = variables.pop("params")
    state = replicate(create_train_state(params, tx, model_state=variables, rng=state_rng), mesh)
    train_step = make_train_step(task.objective, tx, mesh=mesh)
    spectrum_every = tr.get("spectrum_every", 0)
    monitor = (SpectrumMonitor.from_config(config, task.model, mesh, data_dir)
               if spectrum_every else None)

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
    clock = TrainClock(_logged_train_seconds(writer.path))

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
        means["train_seconds"] = clock.seconds()
        writer.write(step, "train", means)
        bar.set_postfix(loss=f"{means['loss']:.4f}")
        pending.clear()

    def run_eval(step: int) -> dict:
        jax.block_until_ready(state)  # the clock must not count queued steps as eval
        clock.pause()
        metrics = task.evaluate(state)
        metrics.update(epoch=step / steps_per_epoch, train_seconds=clock.seconds(),
                       examples_seen=step * ds_cfg.batch_size)
        if step == num_steps and task.summarize is not None:
            history = [r for r in read_metrics(writer.path) if r["split"] == "eval"]
            metrics.update(task.summarize(history + [{"step": step, **metrics}]))
        writer.write(step, "eval", metrics)
        clock.resume()
        if jax.process_index() == 0:
            plots.plot_training_curves(read_metrics(writer.path), os.path.join(workdir, "curves.png"),
                                       title=f"{config.model.name} on {ds_cfg.name}")
        return metrics

    def run_spectrum(step: int) -> None:
        clock.pause()
        writer.write(step, "spectrum", monitor(state))
        if step == num_steps and jax.process_index() == 0:
            monitor.plot(workdir, step)
        clock.resume()

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
            if monitor is not None and (step % spectrum_every == 0 or step == num_steps):
                run_spectrum(step)
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
