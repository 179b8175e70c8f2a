"""Exact evaluation passes over a dataset, data-parallel on the training mesh.

Every process feeds its own shard of the evaluation set; a partial last
batch is padded and masked, and every process runs the largest shard's
number of steps (fully masked batches once its own loader is exhausted), so
multi-host runs issue the same collectives.
"""
import itertools
from typing import Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neurojax.data.on_device import numeric_only
from neurojax.train.state import TrainState
from neurojax.train.step import DATA_AXIS, shard_batch


def pad_batch(batch: dict, size: int) -> dict:
    """Pads a partial batch to ``size`` rows and adds a 0/1 ``mask``."""
    n = len(next(iter(batch.values())))
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
           for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def eval_batches_per_process(num_examples: int, batch_size: int) -> int:
    """Eval steps of the largest process shard (shards differ by at most one)."""
    largest_shard = -(-num_examples // jax.process_count())
    return -(-largest_shard // batch_size)


def _padded_batches(loader: Iterable[dict], batch_size: int, mesh: Mesh,
                    num_batches: Optional[int]):
    """Yields sharded, padded batches; see the module docstring."""
    template = None
    batches = iter(loader)
    for i in itertools.count():
        if num_batches is not None and i >= num_batches:
            return
        batch = next(batches, None)
        if batch is None:
            if num_batches is None or template is None:
                return
            batch = {k: v[:0] for k, v in template.items()}  # all padding
        template = batch if template is None else template
        yield shard_batch(pad_batch(numeric_only(batch), batch_size), mesh)


def evaluate(eval_step, state: TrainState, loader, batch_size: int, mesh: Mesh,
             num_batches: int | None = None) -> dict:
    """Exact means over one pass of ``loader``.

    ``eval_step(state, batch)`` returns masked sums and a ``count``.
    ``num_batches``: how many steps to run (``None``: one per batch of
    ``loader``; pass ``eval_batches_per_process(...)`` on several hosts).
    """
    totals = None
    for batch in _padded_batches(loader, batch_size, mesh, num_batches):
        sums = eval_step(state, batch)  # summed on the device: one transfer at the end
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: float(v) / float(count) for k, v in totals.items()}


def make_features_step(features_fn: Callable, mesh: Mesh, *, input_key: str = "image",
                       label_key: str = "label"):
    """``step(variables, batch) -> (features, labels, mask)``, jit-compiled.

    ``features_fn(variables, x)`` maps inputs to (n, ...) features. The batch
    is sharded over ``mesh`` and the outputs are replicated, so every process
    receives the features of the whole global batch.
    """
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA_AXIS))

    def step(variables, batch):
        feats = features_fn(variables, batch[input_key])
        return feats.reshape(feats.shape[0], -1), batch[label_key], batch["mask"]

    return jax.jit(step, in_shardings=(replicated, sharded), out_shardings=replicated)


def gather_features(features_step, variables, loader, batch_size: int, mesh: Mesh,
                    num_batches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, D) float32, labels (n,)) of every example ``loader`` yields
    on any process, padding removed, on the host of every process.

    ``features_step`` comes from :func:`make_features_step`. Each batch's
    outputs are copied to the host while the next batch runs.
    """
    feats, labels = [], []
    pending = None

    def drain(out):
        f, y, m = jax.device_get(out)
        keep = m > 0
        feats.append(np.asarray(f[keep], np.float32))
        labels.append(np.asarray(y[keep]))

    for batch in _padded_batches(loader, batch_size, mesh, num_batches):
        out = features_step(variables, batch)
        if pending is not None:
            drain(pending)
        pending = out
    if pending is not None:
        drain(pending)
    if not feats:
        raise ValueError("the loader yielded no examples to compute features on")
    return np.concatenate(feats), np.concatenate(labels)
