"""Training programs: stages of compiled multi-step calls.

A training program is a sequence of :class:`Stage` s. Each stage has its own
objective, optimiser (with its own schedule, counted from the stage's first
step), number of steps and *trainable part* of the parameters: the other
parameters are carried frozen, with no gradient computed for them and no
optimiser state. End-to-end supervised or SSL training is a one-stage
program; layer-wise training is one stage per block.

A stage may name an *optimiser slot* (``Stage.opt_slot``): stages with the
same slot share one optimiser state that persists from one visit to the
next (its schedule counts every step of every visit), as Random Robin needs
(Oland 2024, Algorithm 4: "S = per-layer training states"). A program uses
slots in every stage or in none; with slots, ``TrainState.opt_state`` is
``{slot: state}`` for all slots at once (:func:`initial_opt_state`), so its
structure is the same in every stage and a checkpoint restores anywhere.

A stage runs as *calls*: ``k`` steps compiled into one ``jax.lax.scan``
(:func:`make_call`), with the batches either gathered on the device from a
split held there (``neurojax.data.on_device``; the data order is then a pure
function of the data key and the step) or passed in stacked from the host.
With ``replicas=True`` the call is vmapped over a leading replica axis of
the train state and of the data key: R independently seeded runs in one
program. What may differ between replicas is whatever lives in the state
(initial parameters, model state, the step rng that draws dropout, views and
gradient noise) and the data order; the model, objective, optimiser and
hyperparameters are shared.

A call of one step compiles the step alone, with no loop around it. XLA:CPU
runs convolutions inside a loop body (``lax.scan``/``while``) far slower
than at the top level of a program: measured on 2 cores (jax 0.10.2), a
ResNet-18 training step at batch 64 on 32x32 images takes 1.2 s alone and
133 s as the body of a one-step scan with XLA's convolution (3.7 s and 36-44
s with this library's CPU convolution, also with the scan unrolled, which
keeps a one-trip loop). So on CPU, convolutional models train with
``steps_per_call = 1``; on GPU and TPU scans of convolutions run at full
speed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neurojax.data import on_device
from neurojax.train import worker_sync
from neurojax.train.state import PyTree, TrainState
from neurojax.train.step import DATA_AXIS, Objective, train_step_fn

_SEP = "/"


@dataclasses.dataclass(frozen=True)
class WorkerSync:
    """Local steps with a compressed weight sync (Oland's thesis, ch. 3).

    The stage trains ``num_workers`` copies of the model, worker ``i`` on its
    own disjoint shard of the training split; every call is one round: ``K``
    (the call's steps) local steps on every worker, then
    ``worker_sync.sync_workers`` (quantise with ``sync.mode``, gather the
    fixed-width codes over the mesh's 'data' axis, average the dequantised
    copies). The workers are sharded over the 'data' axis (``num_workers``
    a multiple of the devices); optimiser and BatchNorm states stay local.
    """
    num_workers: int
    sync: worker_sync.SyncConfig


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a training program.

    Attributes:
        name: shown in logs and recorded in checkpoints.
        num_steps: steps of this stage (> 0).
        objective: ``(params, model_state, batch, rng) -> (loss, (aux, model_state))``
            over the *full* parameter tree.
        tx: the stage's optimiser, initialised on the trainable part when the
            stage starts (so its schedule starts at the stage's first step).
        trainable: '/'-joined path prefixes into the parameter tree
            (``('Dense_0',)``, ``('block2/conv1',)``) naming the trainable
            part; ``None`` trains every parameter.
        workers: local steps on several workers with a (compressed) weight
            sync after every call (:class:`WorkerSync`); ``None``: one model.
        inputs: ``(params, model_state, arrays) -> arrays``: the stage's
            training split, computed on the device from the split held there
            and the state when the stage starts (or resumes), e.g. a frozen
            feednet's features (``neurojax.train.layerwise``); ``None``: the
            split itself. It must depend on the frozen part only, so that a
            resumed stage sees the same data.
        opt_slot: the name of the optimiser state this stage updates and
            keeps for the next stage of the same slot (see the module
            docstring); ``None``: a fresh state for this stage alone.
    """
    name: str
    num_steps: int
    objective: Objective
    tx: optax.GradientTransformation
    trainable: Optional[tuple[str, ...]] = None
    workers: Optional[WorkerSync] = None
    inputs: Optional[Callable[[PyTree, PyTree, dict], dict]] = None
    opt_slot: Optional[str] = None

    def __post_init__(self):
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) \
                or self.num_steps <= 0:
            raise ValueError(f"Stage {self.name!r}: num_steps must be a positive int, "
                             f"got {self.num_steps!r}")
        if self.trainable is not None and (isinstance(self.trainable, str) or not all(
                isinstance(p, str) and p for p in self.trainable)):
            raise ValueError(f"Stage {self.name!r}: trainable must be a tuple of non-empty "
                             f"path prefixes or None, got {self.trainable!r}")
        if self.opt_slot is not None and (not isinstance(self.opt_slot, str)
                                          or not self.opt_slot):
            raise ValueError(f"Stage {self.name!r}: opt_slot must be a non-empty str or None, "
                             f"got {self.opt_slot!r}")
        if self.opt_slot is not None and self.workers is not None:
            raise ValueError(f"Stage {self.name!r}: a worker-sync stage cannot share an "
                             f"optimiser slot (its optimiser states are per worker)")


def _selected(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + _SEP) for p in prefixes)


def partition(params: PyTree, trainable: Optional[Sequence[str]]) -> tuple[PyTree, PyTree]:
    """``(trainable part, frozen part)`` of a nested-dict parameter tree, each a
    nested dict holding only its own leaves. ``trainable=None``: everything
    is trainable. ``ValueError`` when a prefix selects nothing."""
    if trainable is None:
        return params, {}
    flat = traverse_util.flatten_dict(params, sep=_SEP)
    for prefix in trainable:
        if not any(_selected(path, (prefix,)) for path in flat):
            raise ValueError(f"trainable prefix {prefix!r} matches no parameter; the "
                             f"parameters are {sorted(flat)}")
    train = {k: v for k, v in flat.items() if _selected(k, trainable)}
    frozen = {k: v for k, v in flat.items() if not _selected(k, trainable)}
    return (traverse_util.unflatten_dict(train, sep=_SEP),
            traverse_util.unflatten_dict(frozen, sep=_SEP))


def combine(trainable: PyTree, frozen: PyTree) -> PyTree:
    """The full tree from :func:`partition`'s two parts."""
    if not frozen:
        return trainable
    flat = traverse_util.flatten_dict(frozen, sep=_SEP)
    flat.update(traverse_util.flatten_dict(trainable, sep=_SEP))
    return traverse_util.unflatten_dict(flat, sep=_SEP)


def stage_opt_state(stage: Stage, params: PyTree) -> optax.OptState:
    """The stage's fresh optimiser state over its trainable part."""
    return stage.tx.init(partition(params, stage.trainable)[0])


def check_slots(stages: Sequence[Stage]) -> dict[str, Stage]:
    """The first stage of every optimiser slot; ``ValueError`` when only some
    stages have a slot or two stages of a slot train different parts."""
    slotted = [stage.opt_slot is not None for stage in stages]
    if any(slotted) and not all(slotted):
        raise ValueError("a program gives an optimiser slot (Stage.opt_slot) to every stage "
                         f"or to none; got {[stage.opt_slot for stage in stages]}")
    first: dict[str, Stage] = {}
    for stage in stages if any(slotted) else ():
        seen = first.setdefault(stage.opt_slot, stage)
        if seen.trainable != stage.trainable:
            raise ValueError(f"stages {seen.name!r} and {stage.name!r} share the optimiser "
                             f"slot {stage.opt_slot!r} but train different parameters "
                             f"({seen.trainable} vs {stage.trainable})")
    return first


def initial_opt_state(stages: Sequence[Stage], params: PyTree) -> optax.OptState:
    """The optimiser state a program starts with: the first stage's (fresh),
    or, with optimiser slots, ``{slot: fresh state}`` for every slot."""
    slots = check_slots(stages)
    if slots:
        return {slot: stage_opt_state(stage, params) for slot, stage in slots.items()}
    return stage_opt_state(stages[0], params)


def enter_stage(state: TrainState, stage: Stage) -> TrainState:
    """``state`` with the optimiser state of ``stage`` (fresh); with a leading
    replica axis too (the optimiser state is built per replica). A stage with
    an optimiser slot keeps the state as it is (its slot persists)."""
    if stage.opt_slot is not None:
        return state
    if jnp.ndim(state.step) == 0:
        return state.replace(opt_state=stage_opt_state(stage, state.params))
    return state.replace(opt_state=jax.vmap(lambda p: stage_opt_state(stage, p))(state.params))


def stage_at(stages: Sequence[Stage], step: int) -> int:
    """Index of the stage that runs the step after ``step`` steps are done
    (``len(stages)`` once all are done)."""
    end = 0
    for i, stage in enumerate(stages):
        end += stage.num_steps
        if step < end:
            return i
    return len(stages)


def stage_bounds(stages: Sequence[Stage]) -> list[tuple[int, int]]:
    """``[(first step, end step), ...]`` of each stage, in global steps."""
    bounds, start = [], 0
    for stage in stages:
        bounds.append((start, start + stage.num_steps))
        start += stage.num_steps
    return bounds


@dataclasses.dataclass(frozen=True)
class DeviceData:
    """A split held on the device: ``arrays`` (replicated over the mesh),
    the global batch size and the number of examples. ``per_replica``: the
    arrays carry a leading replica axis (a stage's ``inputs`` computed from
    each replica's own parameters)."""
    arrays: dict[str, jax.Array]
    batch_size: int
    per_replica: bool = False

    @property
    def num_examples(self) -> int:
        return int(next(iter(self.arrays.values())).shape[int(self.per_replica)])


def make_call(stage: Stage, num_steps: int, mesh: Mesh, *,
              device_data: Optional[DeviceData] = None, replicas: bool = False,
              donate: bool = True) -> Callable:
    """``num_steps`` steps of ``stage`` as one jit-compiled ``lax.scan``.

    With ``device_data``: ``call(state, arrays, data_key) -> (state, metrics)``,
    each step's batch gathered on the device (``on_device.batch_indices`` at
    the state's step) and sharded over the mesh's 'data' axis. Without:
    ``call(state, batches) -> (state, metrics)`` where every leaf of
    ``batches`` has a leading axis of ``num_steps`` (sharded on axis 1).
    ``metrics`` are the step scalars stacked: ``[num_steps]`` (``[num_steps,
    R]`` with replicas). With ``replicas``, the state and ``data_key`` carry
    a leading replica axis and the call is vmapped over it.
    """
    if stage.workers is not None:
        if device_data is None or replicas:
            raise ValueError("worker sync needs the training data on the device and no "
                             "seed replicas (config.train.num_replicas = 1)")
        return _make_sync_call(stage, num_steps, mesh, device_data, donate)
    if stage.inputs is not None and device_data is None:
        raise ValueError(f"stage {stage.name!r} computes its inputs on the device: it needs "
                         f"the training split there (config.dataset.on_device)")
    step = train_step_fn(stage.objective, stage.tx, trainable=stage.trainable)
    if stage.opt_slot is not None:
        step = _slot_step(step, stage.opt_slot)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(DATA_AXIS))

    def run(state, batches_or_indices, arrays):
        def body(state, xs):
            batch = xs if arrays is None else on_device.gather(arrays, xs)
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            state, metrics = step(state, batch)
            return state, metrics
        if num_steps == 1:  # no loop: see the module docstring (XLA:CPU convolutions)
            state, metrics = body(state, jax.tree.map(lambda x: x[0], batches_or_indices))
            return state, jax.tree.map(lambda m: m[None], metrics)
        state, metrics = jax.lax.scan(body, state, batches_or_indices)
        return state, metrics

    if device_data is not None:
        n, batch_size = device_data.num_examples, device_data.batch_size

        def one(state, arrays, data_key):
            steps = state.step + jnp.arange(num_steps, dtype=jnp.int32)
            indices = on_device.batch_indices(data_key, steps, n, batch_size)
            return run(state, indices, arrays)

        if device_data.per_replica and not replicas:
            raise ValueError("per-replica device data needs replicas=True")
        data_axis = 0 if device_data.per_replica else None
        fn = jax.vmap(one, in_axes=(0, data_axis, 0), out_axes=(0, 1)) if replicas else one
        return jax.jit(fn, in_shardings=(replicated, replicated, replicated),
                       out_shardings=(replicated, replicated),
                       donate_argnums=(0,) if donate else ())

    def host(state, batches):
        return run(state, batches, None)

    if replicas:
        raise ValueError("seed replicas need the training data on the device "
                         "(config.dataset.on_device='on' or 'auto' within the byte budget)")
    return jax.jit(host, in_shardings=(replicated, NamedSharding(mesh, P(None, DATA_AXIS))),
                   out_shardings=(replicated, replicated),
                   donate_argnums=(0,) if donate else ())


def _slot_step(step: Callable, slot: str) -> Callable:
    """``step`` on the optimiser state of ``slot`` inside ``{slot: state}``."""
    def slotted(state: TrainState, batch: dict):
        if not isinstance(state.opt_state, dict) or slot not in state.opt_state:
            raise ValueError(f"the state's optimiser state has no slot {slot!r}: start the "
                             f"program from initial_opt_state(stages, params)")
        new, metrics = step(state.replace(opt_state=state.opt_state[slot]), batch)
        return new.replace(opt_state={**state.opt_state, slot: new.opt_state}), metrics
    return slotted


def stage_data(stage: Stage, state: TrainState, device_data: DeviceData, *,
               replicas: bool = False) -> DeviceData:
    """The training split of ``stage``: ``device_data`` itself, or its
    ``inputs`` computed from ``state`` (per replica with ``replicas``),
    placed like ``device_data``'s arrays."""
    if stage.inputs is None:
        return device_data
    # the split is an argument, not a captured constant: XLA would constant-fold
    # the computation over the whole split at compile time (seconds per stage)
    fn = jax.vmap(stage.inputs, in_axes=(0, 0, None)) if replicas else stage.inputs
    arrays = jax.jit(fn)(state.params, state.model_state, device_data.arrays)
    sharding = next(iter(device_data.arrays.values())).sharding
    return DeviceData(jax.device_put(arrays, sharding), device_data.batch_size,
                      per_replica=replicas)


def replica_slice(tree: PyTree, r: int) -> PyTree:
    """Replica ``r`` of a tree with a leading replica axis."""
    return jax.tree.map(lambda x: x[r], tree)


def worker_shards(key: jax.Array, num_examples: int, num_workers: int) -> jax.Array:
    """``int32 [P, n // P]``: a random split of the examples into ``P``
    disjoint, equal shards (the remainder is dropped), one per worker."""
    shard = num_examples // num_workers
    perm = jax.random.permutation(key, num_examples)[:shard * num_workers]
    return perm.reshape(num_workers, shard).astype(jnp.int32)


def init_workers(state: TrainState, num_workers: int, mesh: Mesh) -> TrainState:
    """``num_workers`` copies of ``state`` (same parameters and optimiser
    state; step rng ``fold_in(rng, i)``), every leaf with a leading worker
    axis sharded over the mesh's 'data' axis."""
    if num_workers % mesh.devices.size:
        raise ValueError(f"config.sync.num_workers ({num_workers}) must be a multiple of the "
                         f"{mesh.devices.size} devices")
    stack = lambda x: jnp.broadcast_to(x, (num_workers,) + jnp.shape(x))
    stacked = jax.tree.map(stack, state.replace(rng=jnp.zeros_like(state.rng)))
    stacked = stacked.replace(rng=jax.vmap(lambda i: jax.random.fold_in(state.rng, i))(
        jnp.arange(num_workers)))
    return jax.device_put(stacked, NamedSharding(mesh, P(DATA_AXIS)))


def _make_sync_call(stage: Stage, num_steps: int, mesh: Mesh, device_data: DeviceData,
                    donate: bool) -> Callable:
    """One round of a :class:`WorkerSync` stage: ``call(state, arrays, shards,
    data_keys, num_bits, floor) -> (state, metrics, sync_out)``; ``state``,
    ``shards`` (:func:`worker_shards`) and ``data_keys`` carry the worker
    axis; ``metrics`` are the step scalars averaged over workers ``[K]``;
    ``sync_out`` holds ``worker_sync.sync_workers``' per-worker stats and
    codes."""
    step = train_step_fn(stage.objective, stage.tx, trainable=stage.trainable)
    sync = stage.workers.sync
    batch_size = device_data.batch_size

    def local_steps(state, arrays, shard, data_key):
        steps = state.step + jnp.arange(num_steps, dtype=jnp.int32)
        local = on_device.batch_indices(data_key, steps, shard.shape[0], batch_size)

        def body(state, idx):
            return step(state, on_device.gather(arrays, shard[idx]))
        return jax.lax.scan(body, state, local)

    def per_device(state, arrays, shards, data_keys, num_bits, floor):
        state, metrics = jax.vmap(local_steps, in_axes=(0, None, 0, 0))(
            state, arrays, shards, data_keys)
        groups = worker_sync.layer_groups(state.params, sync.grouping)
        rounds = state.step[0] // num_steps
        params, stats, codes = worker_sync.sync_workers(
            state.params, state.rng, rounds, sync, groups, num_bits, floor,
            return_codes=sync.quantized)
        return state.replace(params=params), metrics, {**stats, "codes": codes}

    sharded = P(DATA_AXIS)
    mapped = jax.shard_map(per_device, mesh=mesh,
                           in_specs=(sharded, P(), sharded, sharded, P(), P()),
                           out_specs=(sharded, sharded, sharded), check_vma=False)

    def call(state, arrays, shards, data_keys, num_bits, floor):
        state, metrics, out = mapped(state, arrays, shards, data_keys, num_bits, floor)
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics), out

    return jax.jit(call, donate_argnums=(0,) if donate else ())


def plan_calls(stages: Sequence[Stage], start_step: int,
               steps_per_call: int) -> list[tuple[int, int, int, bool]]:
    """The calls that run ``stages`` from ``start_step`` to the end:
    ``[(stage index, first step, number of steps, enters the stage), ...]``.
    Calls have ``steps_per_call`` steps except the last of a stage (its
    remainder), so a program compiles at most two calls per stage."""
    if not isinstance(steps_per_call, int) or isinstance(steps_per_call, bool) \
            or steps_per_call <= 0:
        raise ValueError(f"steps_per_call must be a positive int, got {steps_per_call!r}")
    plan, step = [], start_step
    for i, (first, end) in enumerate(stage_bounds(stages)):
        while first <= step < end:
            # aligned to the stage's start, whatever step a resumed run starts at
            n = min(steps_per_call - (step - first) % steps_per_call, end - step)
            plan.append((i, step, n, step == first))
            step += n
    return plan


def run_program(stages: Sequence[Stage], state: TrainState, mesh: Mesh, *,
                device_data: DeviceData, data_key: jax.Array, steps_per_call: int,
                replicas: bool = False,
                donate: bool = False) -> tuple[TrainState, list[dict[str, Any]]]:
    """Runs a whole program from ``state`` (at any step) to its end, with data
    on the device, for use from Python (the config-driven loop adds logging,
    evaluation and checkpoints around the same calls). A state inside a
    stage must hold that stage's optimiser state (a program with optimiser
    slots starts from :func:`initial_opt_state` at step 0); ``donate=True`` lets the
    calls reuse its buffers (``state`` is unusable afterwards). Returns the final state and, per call, ``{'stage', 'start', 'metrics'}``
    (device arrays)."""
    calls: dict[tuple[int, int], Callable] = {}
    history = []
    start = int(jax.device_get(state.step).reshape(-1)[0])
    if start == 0 and check_slots(stages):
        state = state.replace(opt_state=(
            jax.vmap(lambda p: initial_opt_state(stages, p))(state.params) if replicas
            else initial_opt_state(stages, state.params)))
    data, data_stage = device_data, None
    for i, first, n, enters in plan_calls(stages, start, steps_per_call):
        if enters:  # the stage's fresh optimiser state (idempotent at step 0)
            state = enter_stage(state, stages[i])
        if data_stage != i:
            data, data_stage = stage_data(stages[i], state, device_data, replicas=replicas), i
        if (i, n) not in calls:
            calls[(i, n)] = make_call(stages[i], n, mesh, device_data=data,
                                      replicas=replicas, donate=donate)
        state, metrics = calls[(i, n)](state, data.arrays, data_key)
        history.append({"stage": i, "start": first, "metrics": metrics})
    return state, history
