"""Host batches for the multi-step calls, prepared while the device computes.

When the training split does not live on the device, every call of ``k``
steps needs ``k`` batches from the grain loader, stacked and placed on the
mesh. :class:`HostFeed` does that in a background thread, a few calls ahead,
so that loading overlaps with the previous call's compute. It records the
loader's position after each call's batches, which is what a checkpoint
written after that call must save.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from neurojax.data.on_device import numeric_only
from neurojax.train.step import shard_batch


class HostFeed:
    """Yields ``(stacked sharded batches, loader state)`` for each call size
    in ``sizes``, in order; ``depth`` calls are prepared ahead."""

    def __init__(self, iterator: Iterator[dict], sizes: Sequence[int], mesh: Mesh, *,
                 depth: int = 2):
        self._iterator, self._sizes, self._mesh = iterator, list(sizes), mesh
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, daemon=True,
                                        name="neurojax-host-feed")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for n in self._sizes:
                batches = [numeric_only(next(self._iterator)) for _ in range(n)]
                stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches)
                state = self._iterator.get_state()
                if not self._put((shard_batch(stacked, self._mesh, axis=1), state)):
                    return
        except BaseException as e:  # re-raised in the training thread
            self._put(e)

    def next(self):
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
