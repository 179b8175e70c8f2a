"""The training loop: build from a config, run its training program, evaluate, resume.

``train_and_evaluate(config, workdir)`` is what ``python -m launch.run`` calls.
``config.task`` names a registered task (``neurojax.train.task``:
'supervised', 'ssl') that builds the model, the objective, the evaluation
and optionally its own stages; everything else is shared. The task's
training program (``neurojax.train.program``: one stage, or several) runs as
compiled calls of ``config.train.steps_per_call = k`` steps each.

Data: with ``config.dataset.on_device`` 'auto' (the default; when the
training split fits in ``config.dataset.device_budget_mb``) or 'on', the
split lives on the device mesh and each step gathers its batch there, the
order a pure function of (seed, step) (``neurojax.data.on_device``);
otherwise grain feeds the calls from the host, a few calls ahead.

Seed replicas: ``config.train.num_replicas = R`` trains R copies seeded
``config.seed + r`` (initialisation, data order, step rngs) as one vmapped
program; replica r equals a run with ``seed = config.seed + r``.

It writes to ``workdir``:

- ``metrics.jsonl``: train scalars every ``log_every`` steps (means over the
  steps since the last record; with replicas the mean over replicas, its
  ``_std`` and the ``_replicas`` values), eval scalars every ``eval_every``
  steps, at the end and (``train.eval_at_stage_end``) where each stage ends, each with ``train_seconds`` (time spent running
  training calls; evaluation and compilation excluded, continued across
  resumption) and ``compile_seconds``; eval records add ``epoch`` and
  ``examples_seen`` (over the global batch); with ``train.spectrum_every``
  also alpha-ReQ and effective-rank records (``neurojax.train.spectrum_monitor``)
  and ``eigenspectrum_{layer}.png`` at the end;
- ``curves.png``: the train and eval curves, redrawn at an evaluation at most
  every ``CURVES_SECONDS`` and at the end;
- ``checkpoints/``: orbax checkpoints of the train state and of the run's
  position (stage, training time, grain iterator), so that a run killed at
  any point and restarted with the same command resumes and ends with the
  same parameters and the same records as an uninterrupted run (a restart
  before the first checkpoint starts clean).

Training-time budget: ``config.train.max_train_seconds = T`` (0: none) ends
the program at the first train record or checkpoint at which ``train_seconds``
has reached T, with everything the last step gets (the final evaluation and
its summary, the spectrum, a checkpoint). Nothing else changes, so a budgeted
run is the prefix of the unbudgeted one (learning-rate schedules keep their
``num_steps``), and the step it reaches depends on the host. Run again, it
reports the run as finished; with the budget raised or 0 it goes on.

Call boundaries: evaluation, spectrum, checkpoints, hooks and the NaN check
happen between calls, so their intervals are rounded up to multiples of k
(a warning says so); train records are still written every ``log_every``
steps, from the per-step scalars each call returns.

Non-finite losses: the loss of every step is checked (at the next train
record, never later than the next checkpoint) and a ``FloatingPointError``
names the first bad step. No checkpoint is written after a bad step.
"""
import dataclasses
import functools
import os
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from neurojax import data as nj_data
from neurojax import plots
from neurojax.data import on_device
from neurojax.data.pipeline import fraction_indices
from neurojax.optim import make_optimizer
from neurojax.train.config import validate_config
from neurojax.train.feed import HostFeed
from neurojax.train.metrics_log import MetricsWriter, read_metrics
from neurojax.train import worker_sync
from neurojax.train.program import (DeviceData, Stage, WorkerSync, enter_stage, init_workers,
                                    initial_opt_state, make_call, plan_calls, stage_bounds,
                                    stage_data, worker_shards)
from neurojax.train.spectrum_monitor import SpectrumMonitor
from neurojax.train.state import TrainState, create_train_state
from neurojax.train.step import DATA_AXIS, make_mesh, replicate
from neurojax.train.task import get_task

Hook = Callable[[int, TrainState, dict], None]
# salt of the data-order key: independent of the initialisation and step keys
DATA_KEY_SALT = 0x0DA7A
CURVES_SECONDS = 30.0  # curves.png is redrawn at an evaluation at most this often


@dataclasses.dataclass
class RunResult:
    """``state`` (with a leading replica axis when R > 1); ``eval_metrics``:
    the final evaluation (means and ``_std`` over replicas when R > 1);
    ``replica_eval_metrics``: each replica's final evaluation."""
    state: TrainState
    eval_metrics: dict
    num_steps: int
    seconds: float
    replica_eval_metrics: list = dataclasses.field(default_factory=list)


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


def round_up(every: int, k: int) -> int:
    """``every`` rounded up to a multiple of ``k`` (0 stays 0: off)."""
    return -(-every // k) * k if every else 0


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return bool(every) and after // every > before // every


def seed_keys(seed: int, num_replicas: int):
    """``(init, step-rng, data-order)`` keys of replicas ``seed .. seed + R - 1``
    (unbatched when R = 1): replica r's keys are those of a run with seed + r."""
    def keys(s):
        init_rng, state_rng = jax.random.split(jax.random.PRNGKey(s))
        return init_rng, state_rng, jax.random.fold_in(jax.random.PRNGKey(s), DATA_KEY_SALT)
    if num_replicas == 1:
        return keys(seed)
    return jax.vmap(keys)(seed + jnp.arange(num_replicas))


def _default_stages(task, config, num_steps: int, workers, data_on_device: bool) -> list[Stage]:
    if task.stages is not None:
        if workers is not None:
            raise ValueError("config.sync.mode must be 'off' for a task with its own stages")
        return list(task.stages(num_steps, functools.partial(make_optimizer, config.optim),
                                data_on_device=data_on_device))
    return [Stage("train", num_steps, task.objective, make_optimizer(config.optim, num_steps),
                  workers=workers)]


def sync_from_config(config) -> Optional[WorkerSync]:
    """The compressed weight sync of ``config.sync`` (``None`` when its
    ``mode`` is 'off' or there is no sync block); see ``configs/compressed_sync_digits.py``."""
    s = config.get("sync")
    if not s or s.get("mode", "off") == "off":
        return None
    fields = {f: s[f] for f in ("num_bits", "fraction", "prelim_bits", "floor", "min_bits",
                                "max_bits", "grouping", "method") if f in s}
    return WorkerSync(s.num_workers, worker_sync.SyncConfig(mode=s.mode, **fields))


def _summary(values: list[dict], replicas: int) -> dict:
    """Means of per-step (or per-replica) scalars; with replicas, the mean
    over replicas, its std and the replica values."""
    out = {}
    for key in values[0]:
        stacked = np.stack([np.asarray(v[key], np.float64) for v in values])
        if replicas == 1:
            out[key] = float(np.mean(stacked))
        else:
            per_replica = stacked.reshape(-1, replicas).mean(axis=0)
            out[key] = float(per_replica.mean())
            out[f"{key}_std"] = float(per_replica.std())
            out[f"{key}_replicas"] = [float(x) for x in per_replica]
    return out


def _worker_inputs(workers: WorkerSync, device_data: DeviceData, data_key, params, sync_cfg,
                   mesh):
    """The extra inputs of a worker-sync call (disjoint shards and data keys
    per worker, the run-time N and c), the quantisation groups and their sizes."""
    sharded = NamedSharding(mesh, P(DATA_AXIS))
    count = workers.num_workers
    shards = worker_shards(jax.random.fold_in(data_key, 0), device_data.num_examples, count)
    keys = jax.vmap(lambda i: jax.random.fold_in(data_key, i + 1))(jnp.arange(count))
    sync = workers.sync
    inputs = (device_data.arrays, jax.device_put(shards, sharded), jax.device_put(keys, sharded),
              jnp.int32(sync.num_bits), jnp.float32(sync.floor))
    groups = worker_sync.layer_groups(params, sync.grouping)
    return inputs, groups, worker_sync.group_sizes(params, groups)


def train_and_evaluate(config, workdir: str, *, hooks: Sequence[Hook] = (),
                       progress: bool = True) -> RunResult:
    """Trains the model a config describes; see the module docstring.

    ``hooks(step, state, metrics)`` run after every call (``metrics``: the
    call's per-step device scalars).
    """
    validate_config(config)
    if "://" in os.fspath(workdir):
        raise ValueError(f"workdir must be a filesystem path visible to every host (e.g. a "
                         f"gcsfuse mount of the bucket), got {workdir!r}: the loop appends to "
                         f"metrics.jsonl, which object stores cannot do")
    os.makedirs(workdir, exist_ok=True)
    ds_cfg, tr = config.dataset, config.train
    data_dir = ds_cfg.get("data_dir") or None
    train_split = ds_cfg.get("train_split", "train")
    fraction = ds_cfg.get("fraction", 1.0)
    k = tr.get("steps_per_call", 1)
    num_replicas = tr.get("num_replicas", 1)
    workers = sync_from_config(config)
    info = nj_data.dataset_info(ds_cfg.name, data_dir=data_dir)
    num_records = info.num_examples.get(train_split) or len(
        nj_data.data_source(ds_cfg.name, train_split, data_dir))  # e.g. 'train[:90%]'
    num_train = len(fraction_indices(num_records, fraction))
    global_batch = ds_cfg.batch_size * jax.process_count()
    steps_per_epoch = on_device.steps_per_epoch(num_train, global_batch)
    if workers is not None:  # batch_size is per worker; an epoch is a pass over a shard
        global_batch = ds_cfg.batch_size * workers.num_workers
        steps_per_epoch = on_device.steps_per_epoch(num_train // workers.num_workers,
                                                    ds_cfg.batch_size)
        k = config.sync.get("local_steps", 0) or steps_per_epoch  # one round per call
    if steps_per_epoch == 0:
        raise ValueError(f"config.dataset.batch_size ({ds_cfg.batch_size} per process, "
                         f"{global_batch} in all) exceeds the training set size ({num_train})")
    budget = ds_cfg.get("device_budget_mb", 1024) * 2**20
    data_on_device = on_device.use_device_data(
        ds_cfg.get("on_device", "auto"),
        on_device.estimated_bytes(ds_cfg.name, train_split, data_dir=data_dir,
                                  fraction=fraction), budget)
    if (num_replicas > 1 or workers is not None) and not data_on_device:
        raise ValueError("config.train.num_replicas > 1 and config.sync need the training "
                         "split on the device: set config.dataset.on_device='on' or raise "
                         "config.dataset.device_budget_mb")
    if num_replicas > 1 and workers is not None:
        raise ValueError("config.train.num_replicas must be 1 with config.sync")
    mesh = make_mesh()
    task = get_task(config.get("task", "supervised")).build(config, info, mesh, data_dir)
    stages = _default_stages(task, config, tr.num_steps or tr.num_epochs * steps_per_epoch,
                             workers, data_on_device)
    num_steps = sum(stage.num_steps for stage in stages)
    end_step = num_steps  # earlier when the training-time budget runs out
    budget = float(tr.get("max_train_seconds", 0) or 0)

    init_keys, state_keys, data_keys = seed_keys(config.seed, num_replicas)
    sample = np.zeros((1,) + tuple(info.image_shape), np.float32)

    def init_state(init_rng, state_rng):
        variables = (task.init(init_rng, sample) if task.init is not None
                     else task.model.init(init_rng, sample, train=False))
        params = variables.pop("params")
        state = create_train_state(params, optax.identity(), model_state=variables,
                                   rng=state_rng)
        return state.replace(opt_state=initial_opt_state(stages, params))

    init = jax.vmap(init_state) if num_replicas > 1 else init_state
    state = replicate(jax.jit(init)(init_keys, state_keys), mesh)
    data_keys = replicate(data_keys, mesh)

    device_data = None
    if data_on_device:
        arrays = on_device.load_split_arrays(ds_cfg.name, train_split, data_dir=data_dir,
                                             fraction=fraction)
        device_data = DeviceData(replicate(arrays, mesh), global_batch)
    call_inputs = (device_data.arrays, data_keys) if device_data is not None else ()
    if workers is not None:
        params0 = state.params
        state = init_workers(state, workers.num_workers, mesh)
        device_data = DeviceData(device_data.arrays, ds_cfg.batch_size)
        call_inputs, sync_groups, sync_sizes = _worker_inputs(
            workers, device_data, data_keys, params0, config.sync, mesh)

    monitor = (SpectrumMonitor.from_config(config, task.model, mesh, data_dir)
               if tr.get("spectrum_every", 0) else None)
    checkpoint_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    manager = ocp.CheckpointManager(checkpoint_dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=tr.get("keep_checkpoints", 2), create=True))
    writer = MetricsWriter(workdir)
    start_step, position = 0, {}
    if manager.latest_step() is not None:
        start_step = manager.latest_step()
        position = manager.restore(start_step, args=ocp.args.Composite(
            position=ocp.args.JsonRestore()))["position"]
        if position.get("num_replicas", 1) != num_replicas or \
                position.get("num_workers", 0) != (workers.num_workers if workers else 0):
            raise ValueError(f"config.train.num_replicas={num_replicas} but the checkpoint in "
                             f"{checkpoint_dir} has {position.get('num_replicas', 1)} replicas"
                             f" and config.sync.num_workers "
                             f"{position.get('num_workers', 0)} (0: no sync)")
        template = enter_stage(state, stages[position["stage"]])
        state = manager.restore(start_step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template)))["state"]
        if workers is None:
            state = replicate(state, mesh)
    writer.truncate_after(start_step)  # a restart before any checkpoint starts clean
    clock = TrainClock(position.get("train_seconds", 0.0))
    compile_seconds = position.get("compile_seconds", 0.0)

    every = {}
    for field in ("eval_every", "checkpoint_every", "spectrum_every"):
        every[field] = round_up(tr.get(field, 0), k)
        if every[field] != tr.get(field, 0):
            logging.warning("config.train.%s=%d rounded up to %d, a multiple of "
                            "config.train.steps_per_call=%d", field, tr.get(field, 0),
                            every[field], k)
    log_every = tr.get("log_every", 0) or max(1, min(100, num_steps // 20))
    # train.eval_at_stage_end: also evaluate where each stage ends (calls
    # never cross a stage boundary), e.g. every window of a layer-wise program
    eval_ends = ({end for _, end in stage_bounds(stages)}
                 if tr.get("eval_at_stage_end", False) else set())
    plan = plan_calls(stages, start_step, k)
    if budget and position.get("train_seconds", 0.0) >= budget:  # stopped by the budget
        plan, end_step = [], start_step
    feed = None
    if device_data is None and plan:
        loader = nj_data.load(ds_cfg.name, train_split, batch_size=ds_cfg.batch_size,
                              data_dir=data_dir, seed=config.seed, shuffle=True,
                              num_epochs=None, drop_remainder=True, fraction=fraction,
                              worker_count=ds_cfg.get("worker_count", 0))
        iterator = iter(loader)
        if position.get("data_iterator") is not None:
            iterator.set_state(position["data_iterator"])
        feed = HostFeed(iterator, [n for _, _, n, _ in plan], mesh)
    last_saved = manager.latest_step()
    pending: list[tuple[int, int, dict]] = []  # (first step, steps, device metrics)
    window: list[dict] = []  # host scalars of the steps since the last train record
    replica_evals: list[dict] = []
    eval_metrics: dict = {}
    last_curves = [time.time()]

    def flush() -> None:
        values = jax.device_get([m for _, _, m in pending])  # one transfer
        for (first, n, _), call_values in zip(pending, values):
            for j in range(n):
                step = first + j + 1
                scalars = {key: v[j] for key, v in call_values.items()}
                loss = np.asarray(scalars["loss"])
                if not np.all(np.isfinite(loss)):
                    bad = np.flatnonzero(~np.isfinite(loss.reshape(-1)))
                    where = (f"the last good checkpoint (step {last_saved}) is in "
                             f"{checkpoint_dir}" if last_saved is not None
                             else "no checkpoint had been written yet")
                    replica = f" (replica {int(bad[0])})" if num_replicas > 1 else ""
                    raise FloatingPointError(f"non-finite loss ({loss.reshape(-1)[bad[0]]}) "
                                             f"at step {step}{replica}; {where}")
                window.append(scalars)
                if step % log_every == 0 or step == end_step:
                    record = _summary(window, num_replicas)
                    record.update(train_seconds=clock.seconds(), compile_seconds=compile_seconds)
                    writer.write(step, "train", record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                    window.clear()
        pending.clear()

    take = jax.jit(lambda tree, i: jax.tree.map(lambda x: x[i], tree),
                   out_shardings=NamedSharding(mesh, P()))

    def each_replica(fn) -> tuple[dict, list[dict]]:
        if num_replicas == 1:  # with workers: worker 0's (all equal after a sync)
            out = fn(state if workers is None else take(state, 0))
            return out, [out]
        per = [fn(take(state, r)) for r in range(num_replicas)]
        return _summary(per, num_replicas), per

    def log_sync(step: int, out: dict) -> None:
        """Bits and bytes of the sync just done (the host codec's exact bytes)."""
        jax.block_until_ready(state)
        clock.pause()
        sync = workers.sync
        account = (worker_sync.account_bytes(out, sync_groups, sync.method)
                   if sync.quantized else None)
        record = worker_sync.sync_record({**out, "metrics": {}}, sync_sizes, account)
        num_params = sum(sync_sizes.values())
        if account is None:  # float32 weights, no header
            record.update(wire_bits_per_parameter=32.0, bytes_per_worker=4 * num_params)
        record["float32_ratio"] = 32.0 / record["wire_bits_per_parameter"]
        writer.write(step, "sync", record)
        clock.resume()

    def run_eval(step: int) -> tuple[dict, list[dict]]:
        jax.block_until_ready(state)  # the clock must not count queued steps as eval
        clock.pause()
        metrics, per = each_replica(task.evaluate)
        metrics.update(epoch=step / steps_per_epoch, train_seconds=clock.seconds(),
                       examples_seen=step * global_batch)
        if step == end_step and task.summarize is not None and jax.process_index() == 0:
            history = [r for r in read_metrics(writer.path) if r["split"] == "eval"]
            metrics.update(task.summarize(history + [{"step": step, **metrics}]))
        writer.write(step, "eval", metrics)
        # at the end, and at most every CURVES_SECONDS: drawing takes ~0.3 s a panel
        if jax.process_index() == 0 and (step == end_step or
                                         time.time() - last_curves[0] > CURVES_SECONDS):
            records = [r for r in read_metrics(writer.path) if r["split"] in ("train", "eval")]
            plots.plot_training_curves(records, os.path.join(workdir, "curves.png"),
                                       title=f"{config.model.name} on {ds_cfg.name}")
            last_curves[0] = time.time()
        clock.resume()
        return metrics, per

    def run_spectrum(step: int) -> None:
        clock.pause()
        metrics, per = each_replica(monitor)
        writer.write(step, "spectrum", metrics)
        if step == end_step and jax.process_index() == 0:
            monitor.plot(workdir, step)  # replica 0's spectra when R > 1
        clock.resume()

    def save(step: int, stage: int, data_iterator) -> None:
        jax.block_until_ready(state)
        clock.pause()
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            position=ocp.args.JsonSave({
                "stage": stage, "stage_name": stages[stage].name,
                "train_seconds": clock.seconds(), "compile_seconds": compile_seconds,
                "num_replicas": num_replicas, "steps_per_call": k,
                "num_workers": workers.num_workers if workers else 0,
                "data_iterator": data_iterator})))
        # orbax writes in a background thread; letting it run into the next
        # calls slowed them ~1.3x (the quickstart on 2 cores), so the write
        # finishes here, outside the training clock
        manager.wait_until_finished()
        clock.resume()

    compiled: dict[tuple[int, int], Callable] = {}
    start = time.time()
    bar = tqdm.tqdm(total=num_steps, initial=start_step, disable=not progress,
                    desc=f"train {config.model.name}", dynamic_ncols=True)
    data_iterator = position.get("data_iterator")
    stage_device_data, data_stage = device_data, None
    try:
        for stage, first, n, enters in plan:
            if enters and first > 0:  # (the initial state holds stage 0's)
                clock.pause()
                state = replicate(enter_stage(state, stages[stage]), mesh)
                clock.resume()
            if device_data is not None and workers is None and data_stage != stage:
                clock.pause()  # e.g. a layer-wise stage's cached feednet features
                stage_device_data = stage_data(stages[stage], state, device_data,
                                               replicas=num_replicas > 1)
                call_inputs, data_stage = (stage_device_data.arrays, data_keys), stage
                clock.resume()
            args = (state, *call_inputs)
            if feed is not None:
                batches, data_iterator = feed.next()
                args = (state, batches)
            if (stage, n) not in compiled:
                clock.pause()
                tic = time.time()
                call = make_call(stages[stage], n, mesh, device_data=stage_device_data,
                                 replicas=num_replicas > 1)
                compiled[(stage, n)] = call.lower(*args).compile()
                compile_seconds += time.time() - tic
                clock.resume()
            state, metrics, *sync_out = compiled[(stage, n)](*args)
            step = first + n
            pending.append((first, n, metrics))
            for hook in hooks:
                hook(step, state, metrics)
            final = step == num_steps
            checkpoint = crossed(first, step, every["checkpoint_every"]) or final
            if budget and not final and (crossed(first, step, log_every) or checkpoint):
                jax.block_until_ready(state)  # the clock must have counted this call
                if clock.seconds() >= budget:
                    final = checkpoint = True
                    end_step = step
                    logging.info("config.train.max_train_seconds=%g reached at step %d of %d",
                                 budget, step, num_steps)
            if crossed(first, step, log_every) or checkpoint or final:
                flush()  # never checkpoint a state that followed a bad step
            if sync_out:
                log_sync(step, sync_out[0])
            if crossed(first, step, every["eval_every"]) or final or step in eval_ends:
                eval_metrics, replica_evals = run_eval(step)
            if monitor is not None and (crossed(first, step, every["spectrum_every"]) or final):
                run_spectrum(step)
            if checkpoint:
                save(step, stage, data_iterator)
                last_saved = step
            bar.update(n)
            if final:
                break
        if not plan:  # the run had already finished: its final evaluation is logged
            evals = [r for r in read_metrics(writer.path) if r["split"] == "eval"]
            eval_metrics = {key: v for key, v in evals[-1].items()
                            if key not in ("step", "split")} if evals else {}
    finally:
        bar.close()
        if feed is not None:
            feed.close()
        manager.wait_until_finished()
        manager.close()
    return RunResult(state=state, eval_metrics=eval_metrics, num_steps=end_step,
                     seconds=time.time() - start, replica_eval_metrics=replica_evals)
