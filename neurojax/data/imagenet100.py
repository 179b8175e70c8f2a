"""Fixed-size views of ImageNet: ImageNet-100 (the 100-class subset of CMC,
solo-learn and FastSSL) and the whole 1000-class set.

Two names are served as views of the prepared ``imagenet2012`` TFDS dataset
(:data:`VIEWS`): ``imagenet100`` (the class subset below, relabelled) and
``imagenet2012_224`` (every record of a split with its ``imagenet2012`` label
unchanged, no subset filter and no label scan). Both decode and resize the
same way (below), so their batches have one shape, which ``imagenet2012``'s
variable-size images do not; ``imagenet2012_224`` serves its evaluation
splits (every split but ``train``) at ``crop_fraction=0.875``. The ``test`` split of ``imagenet2012`` has no
labels: ``imagenet2012_224`` serves its 100,000 records with label -1.

The paper's ImageNet-100 (thesis Part III, "100 classes of ImageNet-1k from a
fixed list [39]") is served as a view of the prepared ``imagenet2012`` TFDS
dataset, through the same ``data_source`` + grain path as every other
dataset: nothing is copied or re-encoded, and no TensorFlow is needed.

* **Classes.** :data:`CLASSES` holds the 100 WordNet IDs of the CMC list (Tian
  et al. 2019), in that list's order; label ``k`` of ImageNet-100 is
  ``CLASSES[k]``. (solo-learn reads the same classes with torchvision's
  ``ImageFolder``, which numbers them in sorted WNID order instead; the set
  of images is the same, only the label numbering differs.)
* **Subset.** The records of an ``imagenet2012`` split whose label is one of
  :data:`CLASSES` are found once by reading every record's label with the
  image left undecoded (``tfds.decode.SkipDecoding``): one pass over the
  split's files (~140 GB for ``train``). Their positions are cached in
  ``<data_dir>/neurojax_imagenet100/<version>/`` when that is writable, and
  the cache is checked against the split's size and a few records' labels
  before it is trusted. ImageNet-100 has 5,000 validation images (50 per
  class) and about 127,000 training images (126,689 is the count usually
  quoted); the ``test`` split of ``imagenet2012`` has no labels (all -1), so
  its subset is empty.
* **Decoding.** Each example's JPEG bytes are decoded with PIL (JPEG draft
  mode: DCT-domain downscaling by 1/2, 1/4 or 1/8 while the image stays at
  least twice as large as needed, so only large files are reduced),
  converted to RGB (greyscale and CMYK files included), and the centred square of side ``crop_fraction`` times the
  shorter side is resized (bilinear, antialiased) to ``image_size`` squared.
  The default, ``crop_fraction=1``, is "shorter side to 224, centre crop
  224 x 224": every batch has one shape, the SSL step draws its random
  resized crops from the whole centred square, and the probes see it whole.
  ``crop_fraction=0.875`` is the usual evaluation transform (shorter side to
  256, centre crop 224).

Examples are ``{"image": uint8 (image_size, image_size, 3), "label": int64}``
(in [0, 100) for ImageNet-100, in [0, 1000) or -1 for ``imagenet2012_224``);
``imagenet2012``'s ``file_name`` is dropped (strings cannot go through a
compiled step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

NAME = "imagenet100"
BASE = "imagenet2012"  # the TFDS dataset this one is a view of

# The CMC ImageNet-100 classes (Tian, Krishnan and Isola 2019, "Contrastive
# Multiview Coding"), in the order of github.com/HobbitLong/CMC/blob/master/
# imagenet100.txt; solo-learn's solo/data/dataset_subset/imagenet100_classes.txt
# is the same list in the same order (both checked, 100 unique IDs, all
# among imagenet2012's 1000 class names).
CLASSES: tuple[str, ...] = (
    "n02869837", "n01749939", "n02488291", "n02107142", "n13037406",  # 0-4
    "n02091831", "n04517823", "n04589890", "n03062245", "n01773797",  # 5-9
    "n01735189", "n07831146", "n07753275", "n03085013", "n04485082",  # 10-14
    "n02105505", "n01983481", "n02788148", "n03530642", "n04435653",  # 15-19
    "n02086910", "n02859443", "n13040303", "n03594734", "n02085620",  # 20-24
    "n02099849", "n01558993", "n04493381", "n02109047", "n04111531",  # 25-29
    "n02877765", "n04429376", "n02009229", "n01978455", "n02106550",  # 30-34
    "n01820546", "n01692333", "n07714571", "n02974003", "n02114855",  # 35-39
    "n03785016", "n03764736", "n03775546", "n02087046", "n07836838",  # 40-44
    "n04099969", "n04592741", "n03891251", "n02701002", "n03379051",  # 45-49
    "n02259212", "n07715103", "n03947888", "n04026417", "n02326432",  # 50-54
    "n03637318", "n01980166", "n02113799", "n02086240", "n03903868",  # 55-59
    "n02483362", "n04127249", "n02089973", "n03017168", "n02093428",  # 60-64
    "n02804414", "n02396427", "n04418357", "n02172182", "n01729322",  # 65-69
    "n02113978", "n03787032", "n02089867", "n02119022", "n03777754",  # 70-74
    "n04238763", "n02231487", "n03032252", "n02138441", "n02104029",  # 75-79
    "n03837869", "n03494278", "n04136333", "n03794056", "n03492542",  # 80-84
    "n02018207", "n04067472", "n03930630", "n03584829", "n02123045",  # 85-89
    "n04229816", "n02100583", "n03642806", "n04336792", "n03259280",  # 90-94
    "n02116738", "n02108089", "n03424325", "n01855672", "n02090622",  # 95-99
)
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 224
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)

_SCAN_CHUNK = 1024  # records per batched read while scanning labels
_SCAN_LOG_EVERY = 100_000
_CACHE_FORMAT = 1
_CACHE_SPOT_CHECKS = 8


def label_map(base_names: Sequence[str]) -> np.ndarray:
    """The ImageNet-100 label of each base class; -1 for the other classes.

    Args:
        base_names: the base dataset's class names in label order (for
            ``imagenet2012``, ``info.features["label"].names``: the 1000 WNIDs).

    Returns:
        int64 array of ``len(base_names)``: entry ``i`` is ``k`` when
        ``base_names[i] == CLASSES[k]``, else -1.

    Raises:
        ValueError: ``base_names`` has duplicates or lacks some of :data:`CLASSES`.
    """
    names = [str(n) for n in base_names]
    if len(set(names)) != len(names):
        raise ValueError("base_names must not contain duplicate class names")
    position = {name: i for i, name in enumerate(names)}
    missing = [wnid for wnid in CLASSES if wnid not in position]
    if missing:
        raise ValueError(
            f"base_names must contain every ImageNet-100 class; missing {len(missing)} "
            f"of them, e.g. {missing[:3]}"
        )
    mapping = np.full(len(names), -1, dtype=np.int64)
    for k, wnid in enumerate(CLASSES):
        mapping[position[wnid]] = k
    return mapping


def subset_positions(labels: Any, mapping: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the records whose base label maps to a class.

    Labels outside ``[0, len(mapping))`` (e.g. the -1 of an unlabelled test
    split) are left out.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    valid = (labels >= 0) & (labels < len(mapping))
    keep = np.zeros(labels.shape, dtype=bool)
    keep[valid] = mapping[labels[valid]] >= 0
    return np.flatnonzero(keep).astype(np.int64)


def load_image(value: Any, image_size: int = IMAGE_SIZE, crop_fraction: float = 1.0) -> np.ndarray:
    """Decodes an image and returns its resized centre square, uint8 RGB.

    Args:
        value: encoded image bytes (JPEG, PNG, ...; ``bytes`` or a 0-d numpy
            bytes/object array, as ``tfds.decode.SkipDecoding`` returns them),
            or a decoded uint8 array of shape (H, W), (H, W, 1), (H, W, 3) or
            (H, W, 4) (alpha dropped).
        image_size: side of the returned square, a positive int.
        crop_fraction: in (0, 1]; the centred square of side ``crop_fraction
            * min(H, W)`` is resized to ``image_size``, i.e. the shorter side
            goes to ``image_size / crop_fraction`` and the centre
            ``image_size`` square is kept.

    Returns:
        uint8 array of shape (image_size, image_size, 3).

    Raises:
        ValueError: bad ``image_size`` or ``crop_fraction``, or ``value`` is
            not an image of a supported shape or dtype.
    """
    _check_image_size(image_size)
    _check_crop_fraction(crop_fraction)
    encoded = _as_bytes(value)
    if encoded is not None:
        with Image.open(io.BytesIO(encoded)) as image:
            # JPEG only: DCT-domain downscaling keeping both sides >= twice what the
            # crop needs (PIL's thumbnail uses the same margin, reducing_gap=2).
            need = 2 * math.ceil(image_size / crop_fraction)
            image.draft("RGB", (need, need))
            image = image.convert("RGB")
    else:
        image = Image.fromarray(_rgb_array(value))
    width, height = image.size
    side = crop_fraction * min(width, height)
    left, top = (width - side) / 2.0, (height - side) / 2.0
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR,
                         box=(left, top, left + side, top + side))
    return np.asarray(image, dtype=np.uint8)


class ImagenetViewSource:
    """Random access to fixed-size examples of a base ImageNet-1k source.

    Record ``i`` is the base record ``positions[i]`` (every record when
    ``positions`` is None), with its label mapped through ``mapping`` (kept
    as stored when ``mapping`` is None) and its image decoded by
    :func:`load_image`.

    Args:
        source: a random-access source of ``{"image", "label", ...}`` dicts
            (a TFDS data source of an ``imagenet2012`` split).
        positions: the base records to serve, e.g. :func:`subset_positions`;
            None: all of them, in order.
        mapping: base label -> served label (see :func:`label_map`); None:
            the base label unchanged.
        image_size, crop_fraction: see :func:`load_image`.
    """

    def __init__(self, source: Sequence[dict[str, Any]], positions: Sequence[int] | None,
                 mapping: np.ndarray | None, *, image_size: int = IMAGE_SIZE,
                 crop_fraction: float = 1.0):
        _check_image_size(image_size)
        _check_crop_fraction(crop_fraction)
        self._source = source
        self._positions = (None if positions is None
                           else np.asarray(positions, dtype=np.int64).reshape(-1))
        self._mapping = None if mapping is None else np.asarray(mapping, dtype=np.int64)
        self._image_size = int(image_size)
        self._crop_fraction = float(crop_fraction)
        if self._positions is not None and len(self._positions) and not (
            0 <= self._positions.min() and self._positions.max() < len(source)
        ):
            raise ValueError(f"positions must lie in [0, {len(source)}), the source's records")

    def __len__(self) -> int:
        return len(self._source) if self._positions is None else len(self._positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        record = int(index % len(self) if self._positions is None else self._positions[index])
        example = self._source[record]
        label = base_label = int(example["label"])
        if self._mapping is not None:
            label = self._mapping[base_label] if 0 <= base_label < len(self._mapping) else -1
            if label < 0:
                raise ValueError(
                    f"record {record} of the base source has label {base_label}, not a "
                    f"class of the subset: the positions are stale"
                )
        image = load_image(example["image"], self._image_size, self._crop_fraction)
        return {"image": image, "label": np.int64(label)}

    def __repr__(self) -> str:
        classes = "all classes" if self._mapping is None else \
            f"{int(np.sum(self._mapping >= 0))} classes"
        return (f"ImagenetViewSource({len(self)} of {len(self._source)} records, {classes}, "
                f"{self._image_size}x{self._image_size}, crop_fraction={self._crop_fraction}, "
                f"of {self._source!r})")


def data_source(builder: tfds.core.DatasetBuilder, split: str, *, subset: bool = True,
                image_size: int = IMAGE_SIZE, crop_fraction: float = 1.0,
                cache: bool = True) -> ImagenetViewSource:
    """The fixed-size examples of ``split`` of an ``imagenet2012`` builder.

    A prepared builder is read with the images left encoded (decoded here
    with PIL). With ``subset``, only the ImageNet-100 records are served,
    relabelled, and their positions come from the cache or one label scan
    (see the module docstring); without it every record is served with its
    label as stored (no scan, no cache). An unprepared builder's
    ``as_data_source`` raises, except under ``tfds.testing.mock_data``,
    whose random decoded examples are filtered and resized the same way.

    Args:
        builder: the ``imagenet2012`` TFDS builder.
        split: a TFDS split of it, e.g. ``"train"`` or ``"validation[:50%]"``.
        subset: ImageNet-100 (True) or all 1000 classes (False).
        image_size, crop_fraction: see :func:`load_image`.
        cache: read and write the positions' cache (only for prepared data).
    """
    _check_image_size(image_size)
    _check_crop_fraction(crop_fraction)
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    if not isinstance(subset, bool):
        raise ValueError(f"subset must be a bool, got {subset!r}")
    prepared = builder.is_prepared()
    # Decoders only for real files: the mock's fake examples are already
    # decoded, and it encodes them with TensorFlow when decoders are given.
    decoders = {"image": tfds.decode.SkipDecoding()} if prepared else None
    source = builder.as_data_source(split=split, decoders=decoders)
    if not subset:
        return ImagenetViewSource(source, None, None, image_size=image_size,
                                  crop_fraction=crop_fraction)
    mapping = label_map(builder.info.features["label"].names)
    path = _cache_path(builder, split) if (prepared and cache) else None
    positions = _cached_positions(path, source, mapping)
    if positions is None:
        logging.info("imagenet100: scanning the labels of %d records of %s[%s]",
                     len(source), builder.name, split)
        positions = subset_positions(read_labels(source, batched=prepared), mapping)
        if path is not None:
            _write_cache(path, source, positions)
    return ImagenetViewSource(source, positions, mapping, image_size=image_size,
                              crop_fraction=crop_fraction)


def read_labels(source: Sequence[dict[str, Any]], *, batched: bool = True) -> np.ndarray:
    """Every record's ``label`` (int64), in record order.

    With ``batched``, records are read ``_SCAN_CHUNK`` at a time through the
    source's ``__getitems__`` (array_record reads them in parallel).
    """
    labels = np.empty(len(source), dtype=np.int64)
    step = _SCAN_CHUNK if batched else 1
    for start in range(0, len(source), step):
        stop = min(start + step, len(source))
        if batched:
            examples = source.__getitems__(list(range(start, stop)))
        else:
            examples = [source[start]]
        labels[start:stop] = [int(ex["label"]) for ex in examples]
        if stop // _SCAN_LOG_EVERY != start // _SCAN_LOG_EVERY:
            logging.info("imagenet100: read %d of %d labels", stop, len(source))
    return labels


def split_sizes(builder: tfds.core.DatasetBuilder, *, subset: bool = True) -> Mapping[str, int]:
    """Examples per split of ``builder``'s view (see :func:`data_source`).

    Empty when the builder is not prepared (its splits are unknown). Without
    ``subset``, the builder's own split sizes; with it, a split's ImageNet-100
    count, from :func:`data_source` (the cache, or one label scan) on first
    access.
    """
    splits = tuple(builder.info.splits.keys()) if builder.is_prepared() else ()
    if not subset:
        return {s: int(builder.info.splits[s].num_examples) for s in splits}
    return _SplitSizes(builder, splits)


@dataclasses.dataclass(frozen=True)
class View:
    """A named fixed-size view of ``imagenet2012``, as ``neurojax.data.sources``
    serves it: ``subset`` and ``image_size`` as in :func:`data_source`; the
    ``train`` split and its slices at crop fraction 1 (the random crops of
    the training augmentation are drawn from the whole centred square) and
    every other split at ``eval_crop_fraction``."""

    subset: bool
    image_size: int = IMAGE_SIZE
    eval_crop_fraction: float = 1.0

    def num_classes(self, builder: tfds.core.DatasetBuilder) -> int:
        return NUM_CLASSES if self.subset else int(builder.info.features["label"].num_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def split_sizes(self, builder: tfds.core.DatasetBuilder) -> Mapping[str, int]:
        return split_sizes(builder, subset=self.subset)

    def data_source(self, builder: tfds.core.DatasetBuilder, split: str) -> ImagenetViewSource:
        # 'train' and its slices ('train[:90%]') train; every other split evaluates
        crop = 1.0 if split.split("[")[0].strip() == "train" else self.eval_crop_fraction
        return data_source(builder, split, subset=self.subset, image_size=self.image_size,
                           crop_fraction=crop)


# Public dataset name -> view; every one reads BASE. ImageNet-100 is an SSL
# set whose probes see the whole centred square; the 1000-class view is
# evaluated as supervised ImageNet classifiers are: shorter side to 256,
# centre 224 x 224 (crop fraction 0.875).
VIEWS: Mapping[str, View] = {
    NAME: View(subset=True),
    "imagenet2012_224": View(subset=False, eval_crop_fraction=0.875),
}


class _SplitSizes(Mapping):
    """A lazy ``{split: number of ImageNet-100 examples}``."""

    def __init__(self, builder: tfds.core.DatasetBuilder, splits: tuple[str, ...]):
        self._builder, self._splits, self._sizes = builder, splits, {}

    def __getitem__(self, split: str) -> int:
        if split not in self._splits:
            raise KeyError(split)
        if split not in self._sizes:
            self._sizes[split] = len(data_source(self._builder, split))
        return self._sizes[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self._splits)

    def __len__(self) -> int:
        return len(self._splits)

    def __repr__(self) -> str:
        known = {s: self._sizes.get(s, "?") for s in self._splits}
        return f"ImageNet-100 split sizes {known}"


def cache_dir(builder: tfds.core.DatasetBuilder) -> str:
    """Where the subset positions of ``builder``'s splits are cached."""
    return os.path.join(os.fspath(builder.data_dir_root), "neurojax_imagenet100",
                        str(builder.version))


def _cache_path(builder: tfds.core.DatasetBuilder, split: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", split)[:60]
    digest = hashlib.sha1(split.encode()).hexdigest()[:8]
    return os.path.join(cache_dir(builder), f"{readable}-{digest}.npz")


def _classes_digest() -> str:
    return hashlib.sha1(" ".join(CLASSES).encode()).hexdigest()


def _cached_positions(path: str | None, source: Sequence[dict[str, Any]],
                      mapping: np.ndarray) -> np.ndarray | None:
    """The cached positions when they still fit ``source``, else None."""
    if path is None or not os.path.exists(path):
        return None
    try:
        with np.load(path) as data:
            fits = (int(data["format"]) == _CACHE_FORMAT
                    and str(data["classes"]) == _classes_digest()
                    and int(data["num_records"]) == len(source))
            positions = data["positions"].astype(np.int64)
    except (OSError, KeyError, ValueError) as err:
        logging.warning("imagenet100: ignoring unreadable cache %s (%s)", path, err)
        return None
    if not fits or (len(positions) and positions.max() >= len(source)):
        logging.warning("imagenet100: cache %s does not match the data; rescanning", path)
        return None
    # A re-prepared copy (same size, new order) would make the positions stale.
    spread = np.linspace(0, len(positions) - 1, _CACHE_SPOT_CHECKS).astype(int)
    checks = np.unique(positions[spread]) if len(positions) else positions
    for position in checks:
        label = int(source[int(position)]["label"])
        if not (0 <= label < len(mapping)) or mapping[label] < 0:
            logging.warning("imagenet100: cache %s is stale (record %d); rescanning",
                            path, int(position))
            return None
    return positions


def _write_cache(path: str, source: Sequence[dict[str, Any]], positions: np.ndarray) -> None:
    """Writes the positions atomically; an unwritable data dir only logs."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, format=_CACHE_FORMAT, classes=_classes_digest(),
                     num_records=len(source), positions=positions)
        os.replace(tmp, path)
    except OSError as err:
        logging.warning("imagenet100: could not cache the subset in %s (%s); the labels "
                        "will be scanned again next time", path, err)
        if os.path.exists(tmp):
            os.remove(tmp)


def _as_bytes(value: Any) -> bytes | None:
    """The encoded bytes in ``value``, or None when it is a decoded array."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.ndim == 0:
        item = value.item()
        if isinstance(item, (bytes, bytearray, memoryview)):
            return bytes(item)
    if isinstance(value, np.bytes_):
        return bytes(value)
    return None


def _rgb_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.uint8:
        raise ValueError(f"value must be encoded bytes or a uint8 image, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or 0 in array.shape:
        raise ValueError(
            "value must be an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got shape {array.shape}"
        )
    return np.ascontiguousarray(array[..., :3])


def _check_image_size(image_size: Any) -> None:
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) \
            or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")


def _check_crop_fraction(crop_fraction: Any) -> None:
    is_real = isinstance(crop_fraction, (int, float, np.integer, np.floating))
    if isinstance(crop_fraction, bool) or not is_real or not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be a number in (0, 1], got {crop_fraction!r}")
