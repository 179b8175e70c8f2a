"""A dataset split held in device memory, and the batch of any step.

When a split fits in memory, a training step need not wait for the host:
the arrays live on the device mesh and each step gathers its batch on the
device from a seeded permutation of the examples, so the data order is a
pure function of ``(key, step)``. A run resumes exactly from the step alone,
many steps can run in one compiled ``lax.scan``, and vmapped seed replicas
each get their own order.

The order: epoch ``e = step // steps_per_epoch`` visits the examples in the
order of ``jax.random.permutation(fold_in(key, e), n)``; step ``t`` takes
positions ``[p B, (p + 1) B)`` of it with ``p = t mod steps_per_epoch`` and
``steps_per_epoch = n // B``, so every epoch sees ``steps_per_epoch * B``
distinct examples and the last ``n mod B`` of its permutation are skipped.
Compared with the grain path of ``neurojax.data.load`` for the same seed
(``shuffle=True``, ``num_epochs=None``, ``drop_remainder=True``): each
epoch uses the same records (the same ``fraction`` subset, each record at
most once), but in a different order (grain draws its own permutation), and
grain's batches run across epoch boundaries where these restart at each
epoch. Multi-host: every process holds the whole split and draws the same
global batch; the step's sharding splits it over the devices.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.data import pipeline, sources

ON_DEVICE_MODES = ("auto", "on", "off")


def load_split_arrays(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                      fraction: float = 1.0, fraction_seed: int = 0,
                      max_examples: int | None = None) -> dict[str, np.ndarray]:
    """A whole split (or its kept ``fraction``) as host arrays, in stored order.

    Read through the grain path of :func:`neurojax.data.load` with its default
    preprocessing (``image`` float32 in [0, 1], ``label`` int32, other
    floating-point features float32), so the values equal what a training
    loader yields. Non-numeric features (CIFAR-10's string ``id``) are
    dropped: a device holds numbers only. ``max_examples`` keeps the first
    that many.
    """
    source = sources.data_source(name, split, data_dir)
    if fraction < 1.0:
        source = pipeline.SubsetSource(
            source, pipeline.fraction_indices(len(source), fraction, fraction_seed))
    if max_examples is not None:
        if not isinstance(max_examples, int) or max_examples <= 0:
            raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}")
        source = pipeline.SubsetSource(source, np.arange(min(max_examples, len(source))))
    return numeric_only(read_all(source))


def _numeric(value) -> bool:
    dtype = np.asarray(value).dtype
    return np.issubdtype(dtype, np.number) or dtype == np.bool_


def numeric_only(batch: dict[str, Any]) -> dict[str, Any]:
    """The numeric features of a batch (devices hold no strings, e.g.
    CIFAR-10's ``id``)."""
    return {k: v for k, v in batch.items() if _numeric(v)}


def read_all(source, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Every record of a random-access ``source`` as arrays, in order, through
    grain's default preprocessing (one process, no shuffling, no sharding)."""
    import grain

    loader = pipeline.make_loader(source, batch_size=min(batch_size, len(source)),
                                  shuffle=False, num_epochs=1, drop_remainder=False,
                                  shard_options=grain.sharding.NoSharding())
    batches = list(loader)
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def estimated_bytes(name: str, split: str, *, data_dir=None, fraction: float = 1.0) -> int:
    """Bytes that :func:`load_split_arrays` would hold, from the first record."""
    source = sources.data_source(name, split, data_dir)
    first = pipeline.ToFloatImage().map(dict(source[0]))
    per_example = sum(np.asarray(v).nbytes for v in first.values() if _numeric(v))
    return per_example * round(fraction * len(source))


def use_device_data(mode: str, nbytes: int, budget_bytes: int) -> bool:
    """Whether a split of ``nbytes`` goes on the device: ``mode`` 'on', 'off',
    or 'auto' (when it fits in ``budget_bytes``)."""
    if mode not in ON_DEVICE_MODES:
        raise ValueError(f"config.dataset.on_device must be one of {ON_DEVICE_MODES}, got {mode!r}")
    return mode == "on" or (mode == "auto" and nbytes <= budget_bytes)


def epochs_spanned(num_steps: int, steps_per_epoch: int) -> int:
    """At most how many epochs ``num_steps`` consecutive steps touch."""
    return -(-(num_steps - 1) // steps_per_epoch) + 1 if num_steps > 1 else 1


def batch_indices(key: jax.Array, steps: jax.Array, num_examples: int,
                  batch_size: int) -> jax.Array:
    """Example indices of each step in ``steps`` (consecutive, int32 [k]):
    ``int32 [k, batch_size]``; see the module docstring for the order.

    The permutations of the (at most ``epochs_spanned(k, ...)``) epochs the
    steps touch are drawn once, not once per step.
    """
    steps_per_epoch = num_examples // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size ({batch_size}) exceeds the {num_examples} examples")
    steps = jnp.asarray(steps, jnp.int32)
    first_epoch = steps[0] // steps_per_epoch
    n_epochs = epochs_spanned(steps.shape[0], steps_per_epoch)
    keys = jax.vmap(lambda e: jax.random.fold_in(key, e))(first_epoch + jnp.arange(n_epochs))
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(keys)
    rows = steps // steps_per_epoch - first_epoch
    starts = (steps % steps_per_epoch) * batch_size
    take = lambda row, start: jax.lax.dynamic_slice(perms[row], (start,), (batch_size,))
    return jax.vmap(take)(rows, starts).astype(jnp.int32)


def gather(arrays: dict[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
    """The examples ``indices`` (any shape) of every array."""
    return {k: jnp.take(v, indices, axis=0) for k, v in arrays.items()}


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Full global batches per pass over ``num_examples`` (the one definition)."""
    if not (isinstance(global_batch_size, int) and global_batch_size > 0):
        raise ValueError(f"batch size must be a positive int, got {global_batch_size!r}")
    return num_examples // global_batch_size
