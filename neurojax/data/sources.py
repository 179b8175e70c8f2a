"""Named datasets as random-access TFDS sources (array_record, no TensorFlow).

Every dataset, the offline digits and procedural shapes included, is opened
the same way: a TFDS builder in ``data_dir`` and
``builder.as_data_source(split)``. The offline datasets are prepared on
first use; the real datasets are never downloaded
from here: when they are not prepared, a :class:`DatasetNotPreparedError`
says which command prepares them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow_datasets as tfds

from neurojax.data import digits, imagenet100, shapes

DATA_DIR_ENV = "NEUROJAX_DATA_DIR"

# Public name -> TFDS builder name.
DATASETS: Mapping[str, str] = {
    "digits": digits.NAME,
    "shapes": f"{shapes.NAME}/default",
    "shapes_small": f"{shapes.NAME}/small",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "stl10": "stl10",
    "imagenet2012": "imagenet2012",
    # fixed-size views of imagenet2012 (imagenet100, imagenet2012_224)
    **{name: imagenet100.BASE for name in imagenet100.VIEWS},
}

# Prepared here on first use: the data ship inside a dependency or are generated.
_OFFLINE = {
    "digits": digits.NeurojaxDigits,
    "shapes": functools.partial(shapes.NeurojaxShapes, config="default"),
    "shapes_small": functools.partial(shapes.NeurojaxShapes, config="small"),
}

# Served as a view of their TFDS dataset (all classes or a subset, decoded to
# one size); each gives num_classes(builder), image_shape, split_sizes(builder)
# and data_source(builder, split).
_VIEWS = imagenet100.VIEWS

_FILE_FORMAT = "array_record"


class DatasetNotPreparedError(FileNotFoundError):
    """A named dataset is not prepared as array_record in the data dir."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model or config needs to know about a dataset.

    Attributes:
        name: the public dataset name (a key of ``DATASETS``).
        num_classes: number of label classes.
        image_shape: per-example image shape (H, W, C); ``None`` entries mean
            variable size (imagenet2012; ``imagenet2012_224`` serves it at
            224 x 224).
        num_examples: examples per split; empty when the dataset is not
            prepared (splits are only known after preparation).
        prepared: whether the data are prepared in ``data_dir``.
    """

    name: str
    num_classes: int
    image_shape: tuple[int | None, ...]
    num_examples: Mapping[str, int]
    prepared: bool


def default_data_dir() -> str:
    """``$NEUROJAX_DATA_DIR`` if set, else ``~/tensorflow_datasets``."""
    return os.environ.get(DATA_DIR_ENV) or os.path.expanduser("~/tensorflow_datasets")


def prepare_command(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The shell command that prepares ``name`` for :func:`data_source`."""
    tfds_name = _tfds_name(name)
    data_dir = _resolve(data_dir)
    return f"tfds build {tfds_name} --data_dir={data_dir} --file_format={_FILE_FORMAT}"


def get_builder(
    name: str, data_dir: str | os.PathLike[str] | None = None
) -> tfds.core.DatasetBuilder:
    """Returns the TFDS builder of ``name``; prepares the offline ones.

    Never downloads: a real dataset that is not prepared is returned as is
    (``builder.is_prepared()`` is False).
    """
    tfds_name = _tfds_name(name)
    data_dir = _resolve(data_dir)
    if name in _OFFLINE:
        # No file_format here: the constructor raises on a copy prepared in
        # another format, which data_source reports with the fix instead.
        builder = _OFFLINE[name](data_dir=data_dir)
        if not builder.is_prepared():
            builder.download_and_prepare(
                file_format=_FILE_FORMAT,
                download_dir=os.path.join(data_dir, "downloads"),
            )
        return builder
    return tfds.builder(tfds_name, data_dir=data_dir)


def dataset_info(name: str, data_dir: str | os.PathLike[str] | None = None) -> DatasetInfo:
    """Returns the classes, image shape and split sizes of ``name``.

    Works for a real dataset that is not prepared (from the builder's code),
    with empty ``num_examples``; the offline datasets are prepared first.
    """
    builder = get_builder(name, data_dir)
    if name in _VIEWS:
        view = _VIEWS[name]
        return DatasetInfo(name=name, num_classes=view.num_classes(builder),
                           image_shape=view.image_shape, num_examples=view.split_sizes(builder),
                           prepared=builder.is_prepared())
    info = builder.info
    return DatasetInfo(
        name=name,
        num_classes=int(info.features["label"].num_classes),
        image_shape=tuple(info.features["image"].shape),
        num_examples={s: int(v.num_examples) for s, v in info.splits.items()},
        prepared=builder.is_prepared(),
    )


def data_source(
    name: str, split: str, data_dir: str | os.PathLike[str] | None = None
) -> Sequence[dict[str, Any]]:
    """Returns a random-access source of decoded examples (numpy dicts).

    Args:
        name: a key of ``DATASETS``.
        split: a TFDS split, e.g. ``"train"``, ``"test"``, ``"train[:90%]"``
            or ``"train+test"``.
        data_dir: where prepared datasets live; see :func:`default_data_dir`.

    Raises:
        ValueError: unknown ``name`` or ``split``.
        DatasetNotPreparedError: a real dataset is not prepared as
            array_record in ``data_dir``; the message has the command.
    """
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    builder = get_builder(name, data_dir)
    if builder.is_prepared():
        _check_split(split, builder.info.splits.keys())
        if _FILE_FORMAT not in {f.value for f in builder.info.available_file_formats()}:
            raise DatasetNotPreparedError(
                f"Dataset {name!r} in {builder.data_dir} is prepared as "
                f"{builder.info.file_format.value}, not {_FILE_FORMAT} (random "
                f"access needs {_FILE_FORMAT}). " + _how_to_prepare(name, builder)
            )
    # Opened before the preparation check fails, so tfds.testing.mock_data
    # (which patches as_data_source and points builders at a missing dir)
    # serves its fake examples through this same path.
    try:
        if name in _VIEWS:
            return _VIEWS[name].data_source(builder, split)
        return builder.as_data_source(split=split)
    except (NotImplementedError, ValueError, FileNotFoundError) as err:
        if builder.is_prepared():
            raise
        raise DatasetNotPreparedError(
            f"Dataset {name!r} is not prepared in {builder.data_dir}. "
            + _how_to_prepare(name, builder)
        ) from err


def _resolve(data_dir: str | os.PathLike[str] | None) -> str:
    return os.path.expanduser(os.fspath(data_dir or default_data_dir()))


def _tfds_name(name: str) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name]


def _check_split(split: str, known: Any) -> None:
    """Checks each '+'-joined part's base name (before any '[...]' slice)."""
    known = sorted(known)
    for part in split.split("+"):
        base = part.split("[", 1)[0].strip()
        if base not in known:
            raise ValueError(f"split must name one of {known}, got {split!r}")


def _how_to_prepare(name: str, builder: tfds.core.DatasetBuilder) -> str:
    if name in _OFFLINE:  # Prepared by get_builder; a bad copy must go first.
        return f"Delete {builder.data_dir} and load it again: it is prepared automatically."
    # data_dir of the builder is <root>/<name>/<version>; the command takes root.
    root = os.fspath(builder.data_dir_root)
    text = (
        f"Prepare it with:\n  {prepare_command(name, root)}\n"
        "Run this where there is network access and TensorFlow is installed "
        "(TFDS encodes the images with TensorFlow while preparing); reading "
        "the prepared array_record files needs neither."
    )
    if DATASETS[name] == "imagenet2012":
        text += (
            f"\nimagenet2012 also needs the manually downloaded archives in "
            f"{os.path.join(root, 'downloads', 'manual')}."
        )
    return text
