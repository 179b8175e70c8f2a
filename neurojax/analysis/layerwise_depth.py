"""E2 of Oland 2024 (Efficient Deep Learning, Sec. 6.2): deep layer-wise
learning (DLL, Algorithm 3) of a very deep, narrow ReLU MLP on the digits.

Block i of the MLP is ``Dense(width) + ReLU``; stage i trains block i with a
fresh decision layer (``Dense(10)`` on its output) on the cached output of
the frozen blocks below, ``z_{i-1}``, then computes ``z_i`` once for the
training, validation and test sets (the feednet's output is cached: no
augmentation). The decision layer of an MLP block is the same layer as the
MLP's own head, and each stage has its own optimiser and schedule, so the
network read out after block d (block d's head on ``z_d``) *is* the DLL
network of depth d: one run of depth D gives every depth up to D.

Every block after the first has the same shapes (``width -> width``), so the
stage is written here as one compiled program over the block and its head,
``neurojax.models.MLP(widths=(width,), num_outputs=10)`` trained with the
library's ``train_step_fn`` in a ``lax.scan``, vmapped over seeds, reused by
every block: 1000 blocks cost two compilations. The layer-wise training
program of ``neurojax.train.layerwise`` compiles every stage anew (its
trainable part is a different part of one parameter tree), which on 2 CPU
cores costs seconds a stage; it is what the CNN parts of
``neurojax.analysis.layerwise`` use.
"""
from __future__ import annotations

import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from neurojax import losses
from neurojax.data import on_device
from neurojax.models import MLP
from neurojax.optim import make_optimizer
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn


def _stage_fns(width: int, num_classes: int, steps: int, batch: int, lr: float):
    """``(train, propagate, accuracy)``, jitted and vmapped over seeds."""
    model = MLP(widths=(width,), num_outputs=num_classes)
    optim = ml_collections.ConfigDict(dict(name="adam", lr=lr, schedule="cosine",
                                           warmup_steps=0, weight_decay=0.0,
                                           grad_clip_norm=0.0, transforms=()))
    tx = make_optimizer(optim, steps)
    step = train_step_fn(model_objective(model, losses.get_loss("softmax_cross_entropy")), tx)

    def train(key, z, y):
        init_key, data_key, rng = jax.random.split(key, 3)
        params = model.init(init_key, z[:1])["params"]
        state = create_train_state(params, tx, rng=rng)
        indices = on_device.batch_indices(data_key, jnp.arange(steps), z.shape[0], batch)

        def body(state, idx):
            return step(state, {"image": z[idx], "label": y[idx]})
        state, metrics = jax.lax.scan(body, state, indices)
        return state.params, metrics["loss"][-1]

    def propagate(params, z):  # the block's output: the next stage's cached input
        return model.apply({"params": params}, z, stop=1)

    def accuracy(params, z, y):  # the read-out after this block
        return jnp.mean(jnp.argmax(model.apply({"params": params}, z), -1) == y)

    return (jax.jit(jax.vmap(train, in_axes=(0, 0, None))),
            jax.jit(jax.vmap(propagate)),
            jax.jit(jax.vmap(accuracy, in_axes=(0, 0, None))))


def dll_mlp(splits: dict, *, depth: int, width: int, steps: int, replicas: int,
            batch: int = 64, lr: float = 1e-3, seed: int = 0,
            num_classes: int = 10) -> dict:
    """DLL of a ``depth``-block ReLU MLP of ``width`` (module docstring).

    ``splits``: ``{'train', 'validation', 'test'}`` each ``{'image', 'label'}``
    host arrays. Seed replica r draws stage i's initialisation, data order
    and rng from ``fold_in(PRNGKey(seed + r), i)``. Returns per block
    (1-based, the read-out's depth) the per-seed accuracies on the
    validation and test sets and the final training loss of the stage.
    """
    for name in ("train", "validation", "test"):
        if name not in splits:
            raise ValueError(f"splits must hold 'train', 'validation' and 'test'; got "
                             f"{sorted(splits)}")
    train, propagate, accuracy = _stage_fns(width, num_classes, steps, batch, lr)
    flat = {k: jnp.asarray(v["image"]).reshape(len(v["label"]), -1) for k, v in splits.items()}
    labels = {k: jnp.asarray(v["label"]) for k, v in splits.items()}
    z = {k: jnp.broadcast_to(x, (replicas,) + x.shape) for k, x in flat.items()}
    base = jax.vmap(jax.random.PRNGKey)(seed + jnp.arange(replicas))
    out = {"validation": [], "test": [], "train_loss": []}
    tic = time.time()
    for i in range(depth):
        keys = jax.vmap(functools.partial(jax.random.fold_in, data=i))(base)
        params, loss = train(keys, z["train"], labels["train"])
        for split in ("validation", "test"):
            out[split].append(np.asarray(accuracy(params, z[split], labels[split])).tolist())
        out["train_loss"].append(np.asarray(loss).tolist())
        z = {k: propagate(params, x) for k, x in z.items()}
    out["seconds"] = time.time() - tic
    return out


def load_digits(data_dir: str = "", splits: Sequence[str] = ("train[:90%]", "train[90%:]",
                                                             "test")) -> dict:
    """The digits' training, validation and test splits as host arrays."""
    names = ("train", "validation", "test")
    return {n: on_device.load_split_arrays("digits", s, data_dir=data_dir or None)
            for n, s in zip(names, splits)}
