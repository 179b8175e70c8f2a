"""Step factories: a pure loss plus an optax transformation -> a compiled step.

Data parallelism has one code path: the step is ``jax.jit``-compiled with the
batch sharded over the ``'data'`` axis of a ``jax.sharding.Mesh`` and the
state replicated. On one device the mesh has one entry and nothing changes;
on many devices (or hosts, after ``jax.distributed.initialize()``) XLA inserts
the gradient all-reduce. BatchNorm statistics are over the global batch, so
the sharded step computes the same function as the single-device step.
"""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neurojax.optim.diagnostics import gradient_rms_metrics
from neurojax.train.state import PyTree, TrainState

# objective(params, model_state, batch, rng) -> (loss, (aux_dict, new_model_state));
# an objective with ``takes_step = True`` is also given ``step=`` (see train_step_fn)
Objective = Callable[[PyTree, PyTree, dict, jax.Array], tuple[jax.Array, tuple[dict, PyTree]]]
DATA_AXIS = "data"


def takes_step(objective: Objective) -> bool:
    """Whether ``objective`` asks for the global step: its attribute
    ``takes_step`` is True, and :func:`train_step_fn` then calls it as
    ``objective(params, model_state, batch, rng, step=state.step)`` (an
    int32 scalar, the number of steps done before this one), e.g. for a
    rate that decays per epoch (``neurojax.train.layerwise``'s input
    dropout). Objectives without the attribute are called as before."""
    return getattr(objective, "takes_step", False) is True


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``'data'`` over all (or the given) devices."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def shard_batch(batch: PyTree, mesh: Mesh, *, axis: int = 0) -> PyTree:
    """Places a host batch on the mesh, split along ``axis`` (0: the examples;
    1 for a stack of batches, as the multi-step calls take).

    Works across processes: each host passes its local slice and the result is
    a global array (``jax.make_array_from_process_local_data``).
    """
    sharding = NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))
    n = mesh.devices.size
    for leaf in jax.tree.leaves(batch):
        if np.ndim(leaf) <= axis or (np.shape(leaf)[axis] * jax.process_count()) % n:
            raise ValueError(
                f"batch dimension {axis} of shape {np.shape(leaf)} (per process) must be "
                f"divisible by the number of devices per process ({n // jax.process_count()})")
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                        batch)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Puts every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def model_objective(model: nn.Module, loss_fn: Callable[..., tuple[jax.Array, dict]], *,
                    input_key: str = "image", **loss_hyper) -> Objective:
    """Turns an output-level loss ``loss_fn(outputs, batch) -> (scalar, aux)``
    into an objective over parameters by running ``model`` in training mode.

    Mutable collections present in ``model_state`` (BatchNorm's
    ``batch_stats``) are updated and returned; a ``'dropout'`` rng is passed.
    """
    def objective(params, model_state, batch, rng):
        variables = {"params": params, **model_state}
        mutable = list(model_state.keys()) or False
        out = model.apply(variables, batch[input_key], train=True,
                          rngs={"dropout": rng}, mutable=mutable)
        outputs, new_model_state = out if mutable else (out, model_state)
        loss, aux = loss_fn(outputs, batch, **loss_hyper)
        return loss, (aux, dict(new_model_state))
    return objective


def train_step_fn(objective: Objective, tx: optax.GradientTransformation, *,
                  trainable=None) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The pure (not compiled) training step ``step(state, batch) -> (state, metrics)``.

    ``objective(params, model_state, batch, rng)`` returns
    ``(loss, (aux, new_model_state))``; the step's rng is
    ``fold_in(state.rng, state.step)``; an objective that :func:`takes_step`
    also gets ``step=state.step``. The step differentiates the objective
    with respect to the trainable part of the parameters (``trainable``:
    path prefixes, see ``neurojax.train.program.partition``; ``None`` = all),
    applies ``tx`` to it (``state.opt_state`` is ``tx``'s state over that
    part) and returns the scalars ``{'loss': ..., **aux}``, plus the
    gradient RMS that a ``record_gradient_rms`` transform in ``tx`` recorded
    this step (``neurojax.optim.diagnostics.gradient_rms_metrics``). The
    frozen part gets no gradient and no optimiser state.
    """
    from neurojax.train.program import combine, partition  # program builds on this module
    wants_step = takes_step(objective)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(state.rng, state.step)
        train, frozen = partition(state.params, trainable)

        extra = {"step": state.step} if wants_step else {}

        def loss_of(train_params):
            return objective(combine(train_params, frozen), state.model_state, batch, rng,
                             **extra)

        (loss, (aux, model_state)), grads = jax.value_and_grad(loss_of, has_aux=True)(train)
        updates, opt_state = tx.update(grads, state.opt_state, train)
        params = combine(optax.apply_updates(train, updates), frozen)
        new_state = state.replace(step=state.step + 1, params=params,
                                  model_state=model_state, opt_state=opt_state)
        return new_state, {"loss": loss, **aux, **gradient_rms_metrics(opt_state)}

    return step


def make_train_step(objective: Objective, tx: optax.GradientTransformation, *,
                    mesh: Mesh | None = None, donate: bool = True, trainable=None):
    """Returns :func:`train_step_fn`'s step, jit-compiled: the state is
    replicated and the batch sharded over ``mesh`` (all devices by default).
    Pass host (numpy) batches through :func:`shard_batch` first. (The
    training loop runs the same step inside ``neurojax.train.program``'s
    multi-step calls.)
    """
    mesh = make_mesh() if mesh is None else mesh
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P(DATA_AXIS))
    return jax.jit(train_step_fn(objective, tx, trainable=trainable),
                   in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                   donate_argnums=(0,) if donate else ())


def make_eval_step(model: nn.Module, loss_fn: Callable[..., tuple[jax.Array, dict]], *,
                   mesh: Mesh | None = None, input_key: str = "image",
                   forward: Callable | None = None):
    """Returns ``eval_step(state, batch) -> sums`` for masked, padded batches.

    ``forward(variables, x) -> outputs`` replaces ``model.apply(variables, x,
    train=False)`` (e.g. a layer-wise stage's read-out through its head).

    ``batch['mask']`` (1 for real examples, 0 for padding) lets the last,
    partial batch keep the compiled shape. Returns the per-batch sums of loss
    and accuracy and the example count, so that the caller's totals are exact.
    """
    mesh = make_mesh() if mesh is None else mesh
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P(DATA_AXIS))

    def per_example(output, example):
        single = jax.tree.map(lambda x: x[None], example)
        loss, aux = loss_fn(output[None], single)
        return {"loss": loss, **aux}

    def eval_step(state, batch):
        mask = batch["mask"].astype(jnp.float32)
        variables = {"params": state.params, **state.model_state}
        outputs = (forward(variables, batch[input_key]) if forward is not None
                   else model.apply(variables, batch[input_key], train=False))
        values = jax.vmap(per_example)(outputs, batch)
        sums = {k: jnp.sum(v.astype(jnp.float32) * mask) for k, v in values.items()}
        sums["count"] = jnp.sum(mask)
        return sums

    return jax.jit(eval_step, in_shardings=(replicated, sharded), out_shardings=replicated)
