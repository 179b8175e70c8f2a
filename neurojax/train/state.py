"""The training state: a plain PyTree that jit, orbax and the metrics can walk."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training, and nothing static.

    ``model_state`` holds the model's non-parameter collections (e.g.
    ``{'batch_stats': ...}``; empty for models without BatchNorm). ``rng`` is a
    raw ``uint32[2]`` key (``jax.random.PRNGKey``) so that orbax saves it as an
    ordinary array; each step folds the step number into it, never mutating it.
    The optimiser itself (an ``optax.GradientTransformation``) is not state: the
    step factory closes over it.
    """
    step: jax.Array
    params: PyTree
    model_state: PyTree
    opt_state: optax.OptState
    rng: jax.Array


def create_train_state(params: PyTree, tx: optax.GradientTransformation, *,
                       model_state: PyTree | None = None,
                       rng: jax.Array | None = None) -> TrainState:
    """Builds step 0 of a run from initial parameters and an optimiser."""
    if rng is None:
        rng = jax.random.PRNGKey(0)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      model_state=dict(model_state or {}), opt_state=tx.init(params),
                      rng=rng)
