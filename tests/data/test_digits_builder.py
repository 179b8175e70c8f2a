"""The offline digits TFDS builder: counts, contents, and a fixed split."""

import json

import chex
import numpy as np
import pytest
from sklearn.datasets import load_digits

from neurojax.data import digits, sources


def _read_all(data_dir, split):
    """All examples of a split, in stored order, as (images, labels)."""
    source = sources.data_source("digits", split, data_dir)
    examples = [source[i] for i in range(len(source))]
    images = np.stack([e["image"] for e in examples])
    labels = np.array([e["label"] for e in examples])
    return images, labels


def _sorted_rows(images, labels):
    """Examples as sorted byte rows, to compare multisets regardless of order."""
    rows = [img.tobytes() + bytes([lab]) for img, lab in zip(images, labels)]
    return sorted(rows)


def test_counts_shapes_dtypes_labels(digits_dir):
    sizes = {}
    for split in ("train", "test"):
        images, labels = _read_all(digits_dir, split)
        chex.assert_shape(images, (len(images), 8, 8, 1))
        assert images.dtype == np.uint8
        assert labels.min() >= 0 and labels.max() <= 9
        assert set(labels.tolist()) == set(range(10))  # every class in both splits
        sizes[split] = len(images)
    assert sizes == {"train": 1437, "test": 360}
    assert sum(sizes.values()) == 1797


def test_contents_match_sklearn_scaled_independently(digits_dir):
    raw = load_digits()
    indices = digits.split_indices()
    for split in ("train", "test"):
        images, labels = _read_all(digits_dir, split)
        idx = indices[split]
        # Independent scaling: round(v * 255 / 16) computed elementwise in Python.
        expected = np.array(
            [[[[round(v * 255 / 16)] for v in row] for row in raw.images[i]] for i in idx],
            dtype=np.uint8,
        )
        assert _sorted_rows(images, labels) == _sorted_rows(expected, raw.target[idx])
    assert images.max() == 255 and images.min() == 0


def test_split_indices_fixed_disjoint_and_complete():
    first = digits.split_indices()
    again = digits.split_indices()
    for split in ("train", "test"):
        np.testing.assert_array_equal(first[split], again[split])
    train, test = first["train"], first["test"]
    assert len(train) == 1437 and len(test) == 360
    assert not set(train.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    # Pinned: changing the split silently would break every published number.
    np.testing.assert_array_equal(test[:5], [4, 5, 6, 9, 14])


def test_rebuild_gives_identical_data(digits_dir, tmp_path):
    sources.get_builder("digits", tmp_path)
    for split in ("train", "test"):
        a_images, a_labels = _read_all(digits_dir, split)
        b_images, b_labels = _read_all(tmp_path, split)
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)


def test_prepared_as_array_record(digits_dir):
    info_path = digits_dir / digits.NAME / "1.0.0" / "dataset_info.json"
    assert json.loads(info_path.read_text())["fileFormat"] == "array_record"
    assert list((digits_dir / digits.NAME / "1.0.0").glob("*.array_record-*"))


def test_dataset_info(digits_dir):
    info = sources.dataset_info("digits", digits_dir)
    assert info == sources.DatasetInfo(
        name="digits",
        num_classes=10,
        image_shape=(8, 8, 1),
        num_examples={"train": 1437, "test": 360},
        prepared=True,
    )


def test_wrong_file_format_names_the_fix(digits_dir, tmp_path):
    # A copy whose metadata says tfrecord: random access is impossible.
    import shutil

    shutil.copytree(digits_dir / digits.NAME, tmp_path / digits.NAME)
    info_path = tmp_path / digits.NAME / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    with pytest.raises(sources.DatasetNotPreparedError, match="tfrecord.*Delete"):
        sources.data_source("digits", "train", tmp_path)
