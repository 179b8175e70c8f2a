"""One input path for every dataset: a random-access source fed by grain.

``load`` opens a named dataset (see ``sources.DATASETS``) and ``make_loader``
turns any random-access source (a TFDS data source, a list of dicts) into an
iterable of numpy dict batches: optionally keep a fixed fraction of the
records, shard by JAX process, shuffle with a seed,
repeat, map per example, batch, and optionally spread over worker processes.

It is built with grain's dataset API (``grain.MapDataset``), with every
per-example step and the batching done before the worker processes, so the
batches are a pure function of (seed, shard) whatever ``worker_count`` is.
Iterators of the returned ``grain.IterDataset`` can be checkpointed
(``get_state``/``set_state``, or grain's orbax handler).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Union

import grain
import numpy as np

from neurojax.data import sources

Example = dict[str, Any]
# A grain per-example transform, or a plain function example -> example.
Transform = Union[
    grain.transforms.Map,
    grain.transforms.RandomMap,
    grain.transforms.MapWithIndex,
    Callable[[Example], Example],
]

_MAX_SEED = 2**32  # grain seeds are 32-bit.


class ArraySource:
    """Random access over the leading axis of a dict of equal-length arrays.

    Lets in-memory data (e.g. a synthetic task's ``{"x", "y"}``) go through
    :func:`make_loader` like any TFDS source. Arrays are copied to numpy.
    """

    def __init__(self, arrays: dict[str, Any]):
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: len(v) for k, v in self._arrays.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(
                f"arrays must be a non-empty dict of equal-length arrays, got lengths {lengths}"
            )
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Example:
        return {k: v[index] for k, v in self._arrays.items()}

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self._arrays.items()}
        return f"ArraySource({shapes})"


class ToFloatImage(grain.transforms.Map):
    """``image`` uint8 -> float32 in [0, 1] (NHWC kept), ``label`` -> int32.

    Other floating-point values (e.g. the shapes dataset's generative
    factors) become float32: TFDS decodes scalar features as Python floats,
    which batching would otherwise turn into float64. Everything else passes
    through unchanged. Images that are already floating point are only cast,
    not rescaled.
    """

    def map(self, element: Example) -> Example:
        out = dict(element)
        for key, value in out.items():
            if key in ("image", "label"):
                continue
            if isinstance(value, float) or (
                isinstance(value, (np.ndarray, np.floating))
                and np.issubdtype(value.dtype, np.floating)
            ):
                out[key] = np.asarray(value, dtype=np.float32)
        if "image" in out:
            image = np.asarray(out["image"])
            if np.issubdtype(image.dtype, np.integer):
                out["image"] = image.astype(np.float32) / np.float32(255.0)
            else:
                out["image"] = image.astype(np.float32)
        if "label" in out:
            out["label"] = np.asarray(out["label"], dtype=np.int32)
        return out


def load(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    drop_remainder: bool = True,
    worker_count: int = 0,
    transforms: Sequence[Transform] = (),
    preprocess: Transform | None = ToFloatImage(),
    shard_options: grain.sharding.ShardOptions | None = None,
    fraction: float = 1.0,
    fraction_seed: int = 0,
) -> grain.IterDataset:
    """Iterates over dict batches of the named dataset's ``split``.

    The offline ``"digits"`` and the generated ``"shapes"`` are prepared
    into ``data_dir`` on first use; the real datasets must already be
    prepared there as array_record (else a ``sources.DatasetNotPreparedError``
    names the command). Nothing is ever downloaded.

    Args:
        name: one of ``sources.DATASETS`` (digits, shapes, shapes_small,
            mnist, cifar10, cifar100, stl10, imagenet2012, imagenet100,
            imagenet2012_224).
        split: a TFDS split such as ``"train"``, ``"test"``, ``"train[:90%]"``.
        data_dir: defaults to ``$NEUROJAX_DATA_DIR`` or ``~/tensorflow_datasets``.
        Other arguments: see :func:`make_loader`.

    Returns:
        An iterable of ``{"image": float32 [B, H, W, C] in [0, 1],
        "label": int32 [B]}`` batches (with the default ``preprocess``).
    """
    _check_loader_args(batch_size, seed, shuffle, num_epochs, drop_remainder, worker_count)
    _check_fraction(fraction, fraction_seed)
    source = sources.data_source(name, split, data_dir)
    return make_loader(
        source,
        batch_size=batch_size,
        seed=seed,
        shuffle=shuffle,
        num_epochs=num_epochs,
        drop_remainder=drop_remainder,
        worker_count=worker_count,
        transforms=transforms,
        preprocess=preprocess,
        shard_options=shard_options,
        fraction=fraction,
        fraction_seed=fraction_seed,
    )


def make_loader(
    source: Sequence[Example],
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    drop_remainder: bool = True,
    worker_count: int = 0,
    transforms: Sequence[Transform] = (),
    preprocess: Transform | None = ToFloatImage(),
    shard_options: grain.sharding.ShardOptions | None = None,
    fraction: float = 1.0,
    fraction_seed: int = 0,
) -> grain.IterDataset:
    """Builds the grain pipeline over any random-access ``source``.

    Order of work: the kept ``fraction`` of the records (see
    :func:`fraction_indices`), this process's contiguous shard of them (see
    :func:`shard_bounds`), a seeded shuffle within it (reshuffled every
    epoch), ``num_epochs`` passes concatenated into one stream,
    ``preprocess``, then ``transforms`` in order, then batching.

    Args:
        source: supports ``len`` and integer ``__getitem__``, returning dicts.
        batch_size: examples per batch *on this process*.
        seed: 32-bit non-negative int; fixes the shuffle and the ``rng``
            handed to ``grain.transforms.RandomMap`` transforms (a function
            of the seed and the example's position in the stream). With
            several shards, each uses a seed derived from (seed, shard index,
            shard count).
        shuffle: shuffle the order (use False for evaluation).
        num_epochs: passes over the data; ``None`` repeats forever. Epochs
            form one stream, so a batch may straddle an epoch boundary.
        drop_remainder: drop the last incomplete batch, and the examples that
            do not divide evenly over processes, so every process yields the
            same number of full batches (what training needs). Without it,
            every example is read exactly once per epoch by some process.
        worker_count: grain worker processes that prepare whole batches;
            0 runs in this process. It does not change the batches.
        transforms: per-example transforms applied after ``preprocess``:
            grain ``Map``, ``RandomMap`` or ``MapWithIndex`` transforms, or
            plain functions ``example -> example``. (Filters are refused:
            they would give processes different numbers of batches.)
        preprocess: the first per-example transform; by default
            :class:`ToFloatImage`. ``None`` keeps examples as stored.
        shard_options: defaults to ``grain.sharding.ShardByJaxProcess``
            (shard ``jax.process_index()`` of ``jax.process_count()``); pass
            ``grain.sharding.ShardOptions(i, n, drop_remainder)`` to pick a
            shard explicitly.
        fraction: in (0, 1]; keep ``round(fraction * len(source))`` unique
            records, the same ones every epoch and on every process (chosen
            before sharding, so the shards partition the subset). The
            paper's sample-efficiency runs (E3: 4 views on 50%, 8 views on
            25% of the images) train on such a subset.
        fraction_seed: 32-bit non-negative int choosing the subset,
            independent of ``seed``: runs that differ in ``seed`` see the same
            images, and a smaller fraction keeps a subset of a larger one.

    Returns:
        A ``grain.IterDataset``; each ``iter()`` starts from the beginning.
    """
    _check_loader_args(batch_size, seed, shuffle, num_epochs, drop_remainder, worker_count)
    # grain wants Python ints (it rejects numpy integers for seeds).
    batch_size, seed, worker_count = int(batch_size), int(seed), int(worker_count)
    num_epochs = None if num_epochs is None else int(num_epochs)
    if shard_options is None:
        shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=drop_remainder)
    elif not isinstance(shard_options, grain.sharding.ShardOptions):
        raise ValueError(
            f"shard_options must be a grain.sharding.ShardOptions, got {shard_options!r}"
        )
    steps = [_check_transform(t, "preprocess") for t in [preprocess] if t is not None]
    steps += [_check_transform(t, "transforms") for t in transforms]
    _check_fraction(fraction, fraction_seed)
    if len(source) == 0:
        raise ValueError("source must not be empty")
    if fraction < 1.0:
        source = SubsetSource(source, fraction_indices(len(source), fraction, fraction_seed))
    # This process reads its own contiguous slice, shuffled locally. (grain's
    # DataLoader sharding instead serves every shard the length of the
    # smallest one, skipping examples when shards are uneven.)
    start, stop = shard_bounds(len(source), shard_options)
    if num_epochs is not None and drop_remainder and (stop - start) * num_epochs < batch_size:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {(stop - start) * num_epochs} "
            "examples this shard sees with drop_remainder=True: no batch "
            "would be produced"
        )
    if shard_options.shard_count > 1:
        # Shards get their own permutation and RandomMap streams.
        seed = int(
            np.random.SeedSequence(
                [seed, shard_options.shard_index, shard_options.shard_count]
            ).generate_state(1)[0]
        )

    ds = grain.MapDataset.source(source).slice(slice(start, stop)).seed(seed)
    if shuffle:
        ds = ds.shuffle()  # Before repeat: each epoch gets its own order.
    ds = ds.repeat(num_epochs)
    for step in steps:
        if isinstance(step, grain.transforms.RandomMap):
            ds = ds.random_map(step)
        elif isinstance(step, grain.transforms.MapWithIndex):
            ds = ds.map_with_index(step)
        else:
            ds = ds.map(step)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # Batches are formed above, so workers only split whole batches.
    iter_ds = ds.to_iter_dataset()
    if worker_count > 0:
        _allow_grain_workers_without_absl_app()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter_ds


class SubsetSource:
    """Random access to the records ``indices`` of ``source`` (in that order)."""

    def __init__(self, source: Sequence[Example], indices: Sequence[int]):
        self._source = source
        self._indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> Example:
        return self._source[int(self._indices[index])]

    def __repr__(self) -> str:
        return f"SubsetSource({len(self)} of {len(self._source)} records of {self._source!r})"


def fraction_indices(num_records: int, fraction: float, seed: int = 0) -> np.ndarray:
    """The sorted record indices kept by ``make_loader(..., fraction=...)``.

    The first ``round(fraction * num_records)`` entries (Python's ``round``,
    ties to even) of a permutation drawn by ``numpy.random.default_rng(seed)``,
    sorted so that reads keep the storage order. A smaller fraction with the
    same seed keeps a subset of a larger one's records.
    """
    _check_fraction(fraction, seed)
    count = round(fraction * num_records)
    if count < 1:
        raise ValueError(
            f"fraction={fraction!r} keeps round({fraction!r} * {num_records}) = 0 records"
        )
    permutation = np.random.default_rng(seed).permutation(num_records)
    return np.sort(permutation[:count])


def shard_bounds(num_records: int, shard_options: grain.sharding.ShardOptions) -> tuple[int, int]:
    """``[start, stop)`` of this shard's contiguous slice of ``num_records``.

    Shards differ in size by at most one, the first ``num_records %
    shard_count`` being the larger; with ``shard_options.drop_remainder``
    every shard has ``num_records // shard_count`` and the rest is dropped.
    """
    count, index = shard_options.shard_count, shard_options.shard_index
    size, extra = divmod(num_records, count)
    if shard_options.drop_remainder:
        return index * size, (index + 1) * size
    start = index * size + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def _check_transform(transform: Transform, arg: str) -> Transform:
    if isinstance(transform, grain.transforms.Batch):
        raise ValueError(f"{arg} must not batch: batching is set by batch_size")
    if isinstance(transform, grain.transforms.Filter):
        raise ValueError(
            f"{arg} must not filter: processes would get different numbers of "
            "batches; filter the source instead"
        )
    grain_types = (grain.transforms.Map, grain.transforms.RandomMap, grain.transforms.MapWithIndex)
    if isinstance(transform, grain_types) or callable(transform):
        return transform
    raise ValueError(f"{arg} entries must be grain transforms or callables, got {transform!r}")


def _allow_grain_workers_without_absl_app() -> None:
    """Lets grain workers start in scripts, notebooks and tests.

    grain 0.2.x reads an absl flag when it starts workers and fails with
    ``UnparsedFlagAccessError`` unless flags were parsed (google/grain#1355,
    fixed upstream in #1362). ``absl.app.run`` parses them; elsewhere mark
    them parsed so every flag keeps its default value.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _check_fraction(fraction: Any, fraction_seed: Any) -> None:
    """Raises ValueError naming ``fraction`` or ``fraction_seed`` when invalid."""
    is_real = isinstance(fraction, (int, float, np.integer, np.floating))
    if isinstance(fraction, bool) or not is_real or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if (
        not isinstance(fraction_seed, (int, np.integer))
        or isinstance(fraction_seed, bool)
        or not 0 <= fraction_seed < _MAX_SEED
    ):
        raise ValueError(f"fraction_seed must be an int in [0, 2**32), got {fraction_seed!r}")


def _check_loader_args(
    batch_size: Any,
    seed: Any,
    shuffle: Any,
    num_epochs: Any,
    drop_remainder: Any,
    worker_count: Any,
) -> None:
    """Raises ValueError naming the first invalid argument."""

    def is_int(x: Any) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not is_int(seed) or not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    if not isinstance(shuffle, bool):
        raise ValueError(f"shuffle must be a bool, got {shuffle!r}")
    if num_epochs is not None and (not is_int(num_epochs) or num_epochs <= 0):
        raise ValueError(f"num_epochs must be a positive int or None, got {num_epochs!r}")
    if not isinstance(drop_remainder, bool):
        raise ValueError(f"drop_remainder must be a bool, got {drop_remainder!r}")
    if not is_int(worker_count) or worker_count < 0:
        raise ValueError(f"worker_count must be a non-negative int, got {worker_count!r}")
