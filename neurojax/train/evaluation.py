"""Exact evaluation passes over a dataset, data-parallel on the training mesh.

Every process feeds its own shard of the evaluation set; a partial last
batch is padded and masked, and every process runs the largest shard's
number of steps (fully masked batches once its own loader is exhausted), so
multi-host runs issue the same collectives (the batches of
``neurojax.metrics.features.padded_batches``, which also feed the feature
passes of the probes: ``neurojax.metrics.gather_features``).
"""
import jax
import optax
from jax.sharding import Mesh

from neurojax.data.on_device import numeric_only
from neurojax.metrics.features import padded_batches
from neurojax.train.state import TrainState
from neurojax.train.step import shard_batch


def eval_batches_per_process(num_examples: int, batch_size: int) -> int:
    """Eval steps of the largest process shard (shards differ by at most one)."""
    largest_shard = -(-num_examples // jax.process_count())
    return -(-largest_shard // batch_size)


def evaluate(eval_step, state: TrainState, loader, batch_size: int, mesh: Mesh,
             num_batches: int | None = None) -> dict:
    """Exact means over one pass of ``loader``.

    ``eval_step(state, batch)`` returns masked sums and a ``count``.
    ``num_batches``: how many steps to run (``None``: one per batch of
    ``loader``; pass ``eval_batches_per_process(...)`` on several hosts).
    """
    totals = None
    batches = padded_batches(map(numeric_only, loader), batch_size, num_batches=num_batches)
    for batch in batches:
        sums = eval_step(state, shard_batch(batch, mesh))  # summed on the device
        totals = sums if totals is None else optax.tree.add(totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: float(v) / float(count) for k, v in totals.items()}
