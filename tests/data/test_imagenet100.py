"""Fixed-size views of imagenet2012 (ImageNet-100 and all 1000 classes): class list,
label map, decoding, subset, cache."""

import io
import os
import re

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder

from neurojax.data import imagenet100, on_device, pipeline, sources


def _imagenet_names():
    """imagenet2012's 1000 class names from the builder's code (no data)."""
    return tfds.builder("imagenet2012", data_dir="/tmp/neurojax-no-such-dir").info.features[
        "label"].names


# --- the class list and the label map ------------------------------------------------

def test_class_list_is_the_cmc_list_of_100_imagenet_classes():
    classes = imagenet100.CLASSES
    assert len(classes) == imagenet100.NUM_CLASSES == 100
    assert len(set(classes)) == 100
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in classes)
    assert set(classes) <= set(_imagenet_names())
    # The CMC file's order (HobbitLong/CMC imagenet100.txt): first, middle, last.
    assert classes[:3] == ("n02869837", "n01749939", "n02488291")
    assert classes[50] == "n02259212" and classes[-1] == "n02090622"


def test_label_map_follows_the_list_order():
    names = _imagenet_names()
    mapping = imagenet100.label_map(names)
    chex.assert_shape(mapping, (1000,))
    assert sorted(mapping[mapping >= 0].tolist()) == list(range(100))
    assert np.sum(mapping == -1) == 900
    for k in (0, 37, 99):
        assert mapping[names.index(imagenet100.CLASSES[k])] == k
    # Any order of the base names: the map follows the names, not positions.
    shuffled = list(np.random.default_rng(0).permutation(names))
    remapped = imagenet100.label_map(shuffled)
    assert all(remapped[shuffled.index(w)] == k for k, w in enumerate(imagenet100.CLASSES))


def test_label_map_rejects_incomplete_or_duplicated_names():
    names = list(_imagenet_names())
    with pytest.raises(ValueError, match="base_names must contain every ImageNet-100 class"):
        imagenet100.label_map([n for n in names if n != imagenet100.CLASSES[5]])
    with pytest.raises(ValueError, match="base_names must not contain duplicate"):
        imagenet100.label_map(names + names[:1])


def test_subset_positions_skips_other_and_missing_labels():
    mapping = np.array([-1, 0, -1, 1])
    positions = imagenet100.subset_positions([3, 0, 1, -1, 7, 1, 2], mapping)
    np.testing.assert_array_equal(positions, [0, 2, 5])


# --- decoding and resizing -------------------------------------------------------------

def test_centre_square_of_a_wide_image_by_value():
    # Pixel value 2x along x: bilinear resampling keeps a linear ramp, so
    # output column j shows the source x its centre maps to in the centre
    # square [25, 75) of the 100-wide image: 25 + (j + 0.5) * 2 - 0.5.
    ramp = np.tile((2 * np.arange(100)).astype(np.uint8), (50, 1))
    out = imagenet100.load_image(ramp, 25)
    chex.assert_shape(out, (25, 25, 3))
    assert out.dtype == np.uint8
    expected = 2 * (25 + (np.arange(25) + 0.5) * 2 - 0.5)
    np.testing.assert_allclose(out[..., 0], np.broadcast_to(expected, (25, 25)), atol=1)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # greyscale -> 3 equal channels


def test_crop_fraction_on_a_tall_image():
    # 120 x 60 (tall): the centred square of side 0.5 * 60 = 30 spans rows
    # [45, 75); resized to 15, row i maps to 45 + (i + 0.5) * 2 - 0.5.
    ramp = np.tile(np.arange(120, dtype=np.uint8)[:, None, None], (1, 60, 3))
    out = imagenet100.load_image(ramp, 15, crop_fraction=0.5)
    expected = 45 + (np.arange(15) + 0.5) * 2 - 0.5
    np.testing.assert_allclose(out[:, 7, 1], expected, atol=1)


def _encode(array, fmt="JPEG", **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _smooth_image(height, width, seed=0):
    """A smooth RGB image (JPEG keeps it within a few levels)."""
    y, x = np.mgrid[0:height, 0:width]
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    channels = [127 + 100 * np.sin(x / 37.0 + y / 53.0 + p) for p in phase]
    return np.stack(channels, -1).round().astype(np.uint8)


@pytest.mark.parametrize("size, crop_fraction", [(64, 1.0), (32, 0.875)])
def test_jpeg_bytes_decode_like_the_decoded_array(size, crop_fraction):
    # 400 x 300: JPEG draft mode decodes at 1/2 or 1/4 scale, then resizes.
    image = _smooth_image(300, 400)
    from_array = imagenet100.load_image(image, size, crop_fraction).astype(int)
    for value in (_encode(image, quality=95), np.array(_encode(image, quality=95), dtype=object),
                  np.bytes_(_encode(image, quality=95))):
        from_jpeg = imagenet100.load_image(value, size, crop_fraction).astype(int)
        chex.assert_shape(from_jpeg, (size, size, 3))
        assert np.abs(from_jpeg - from_array).mean() < 2.0


def test_greyscale_cmyk_and_rgba_become_rgb():
    grey = _smooth_image(40, 60)[..., 0]
    for value in (_encode(grey), grey[..., None]):
        out = imagenet100.load_image(value, 16)
        chex.assert_shape(out, (16, 16, 3))
        assert np.abs(out[..., 0].astype(int) - out[..., 1]).max() <= 1
    cmyk = Image.new("CMYK", (30, 20), (0, 255, 255, 0))  # pure red in CMYK
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG")
    red = imagenet100.load_image(buffer.getvalue(), 8).astype(int)
    assert red[..., 0].min() > 200 and red[..., 1:].max() < 50
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 2] = 200
    np.testing.assert_array_equal(imagenet100.load_image(_encode(rgba, "PNG"), 4)[..., 2], 200)


def test_bad_arguments_name_themselves():
    image = np.zeros((8, 8, 3), np.uint8)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="image_size"):
            imagenet100.load_image(image, bad)
    for bad in (0.0, 1.5, -0.1, "1"):
        with pytest.raises(ValueError, match="crop_fraction"):
            imagenet100.load_image(image, 4, bad)
    with pytest.raises(ValueError, match="value must be"):
        imagenet100.load_image(np.zeros((8, 8, 2), np.uint8), 4)
    with pytest.raises(ValueError, match="value must be"):
        imagenet100.load_image(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(ValueError, match="positions"):
        imagenet100.ImagenetViewSource([{}] * 3, [0, 3], np.zeros(4, int))


# --- through TFDS: mocked, and a real prepared copy --------------------------------------

def test_mock_imagenet2012_is_filtered_remapped_and_resized(tmp_path):
    names = _imagenet_names()
    with tfds.testing.mock_data(num_examples=300, policy=tfds.testing.MockPolicy.USE_CODE):
        base = sources.data_source("imagenet2012", "train", tmp_path)
        subset = sources.data_source("imagenet100", "train", tmp_path)
        # The mock serves decoded images of random sizes and labels in [0, 1000).
        examples = [base[i] for i in range(len(base))]
        assert len({ex["image"].shape for ex in examples}) > 1
        kept = [i for i, ex in enumerate(examples) if names[int(ex["label"])] in
                imagenet100.CLASSES]
        assert 10 <= len(kept) < 100 and len(subset) == len(kept)
        for j, i in enumerate(kept):
            ex = subset[j]
            assert imagenet100.CLASSES[int(ex["label"])] == names[int(examples[i]["label"])]
            np.testing.assert_array_equal(ex["image"],
                                          imagenet100.load_image(examples[i]["image"]))
        assert set(subset[0]) == {"image", "label"}

        batches = list(pipeline.load("imagenet100", "train", batch_size=8, data_dir=tmp_path))
        info = sources.dataset_info("imagenet100", tmp_path)
    assert len(batches) == len(kept) // 8
    for batch in batches:
        chex.assert_shape(batch["image"], (8, 224, 224, 3))
        assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
        assert 0 <= batch["label"].min() and batch["label"].max() < 100
    assert (info.num_classes, info.image_shape) == (100, (224, 224, 3))
    assert dict(info.num_examples) == {} and not info.prepared
    assert not any(tmp_path.iterdir())  # nothing downloaded or written


def test_not_prepared_names_the_imagenet2012_build_and_manual_archives(tmp_path):
    with pytest.raises(sources.DatasetNotPreparedError) as err:
        pipeline.load("imagenet100", "train", batch_size=8, data_dir=tmp_path)
    text = str(err.value)
    assert f"tfds build imagenet2012 --data_dir={tmp_path} --file_format=array_record" in text
    assert "manual" in text
    assert not any(tmp_path.iterdir())


# A tiny imagenet2012 with its real name, version and features (JPEG bytes
# encoded with PIL, so preparing needs neither TensorFlow nor the archives).
# Record r has a constant colour that encodes r, and label LABELS[r].
def _labels():
    names = _imagenet_names()
    inside = [names.index(w) for w in imagenet100.CLASSES]
    outside = [i for i in range(1000) if i not in set(inside)]
    rng = np.random.default_rng(0)
    # 24 records in ImageNet-100 (classes repeated), 26 outside it.
    labels = np.concatenate([rng.choice(inside, 24), rng.choice(outside, 26)])
    return rng.permutation(labels)


LABELS = {"train": _labels(), "validation": np.array([0, 1, 2, 3, 4, 5])}
LABELS["validation"][[1, 4]] = [_imagenet_names().index(imagenet100.CLASSES[7]),
                               _imagenet_names().index(imagenet100.CLASSES[92])]


def _colour(split, record):
    return np.array([record * 5, 250 - record * 4, 100 + 50 * (split == "validation")], np.uint8)


class _TinyImagenet2012(imagenet2012_dataset_builder.Builder, skip_registration=True):
    name = "imagenet2012"

    def _info(self):
        features = tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=_imagenet_names()),
            "file_name": tfds.features.Text(),
        })
        return tfds.core.DatasetInfo(builder=self, features=features,
                                     supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate(split) for split in LABELS}

    def _generate(self, split):
        for record, label in enumerate(LABELS[split]):
            height, width = (30 + record % 7, 50) if record % 2 else (60, 41)
            image = np.broadcast_to(_colour(split, record), (height, width, 3))
            if record == 3:  # a greyscale JPEG, as some ImageNet files are
                image = np.ascontiguousarray(image[..., 0])
            yield f"{split}{record}", {"image": _encode(np.ascontiguousarray(image)),
                                       "label": int(label), "file_name": f"{record}.JPEG"}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    _TinyImagenet2012(data_dir=data_dir).download_and_prepare(
        file_format="array_record", download_dir=os.path.join(data_dir, "dl"))
    return data_dir


def _expected(split):
    """(label, colour) of the split's ImageNet-100 records, sorted."""
    names = _imagenet_names()
    rows = []
    for record, label in enumerate(LABELS[split]):
        if names[label] in imagenet100.CLASSES:
            colour = _colour(split, record)
            if record == 3:
                colour = np.full(3, colour[0])
            rows.append((imagenet100.CLASSES.index(names[label]), tuple(colour.tolist())))
    return sorted(rows)


def _rows(images, labels):
    """(label, mean colour) per example, sorted: the order of records is TFDS's."""
    return sorted((int(lab), tuple(np.rint(img.reshape(-1, 3).mean(0)).astype(int).tolist()))
                  for img, lab in zip(images, labels))


def test_prepared_imagenet2012_serves_the_subset_and_caches_it(prepared_dir, monkeypatch):
    cache = os.path.join(prepared_dir, "neurojax_imagenet100")
    info = sources.dataset_info("imagenet100", prepared_dir)
    assert info.prepared and set(info.num_examples) == {"train", "validation"}
    assert not os.path.exists(cache)  # counted lazily
    assert info.num_examples["train"] == len(_expected("train")) == 24
    assert info.num_examples["validation"] == 2

    loader = pipeline.load("imagenet100", "train", batch_size=5, data_dir=prepared_dir,
                           shuffle=False, drop_remainder=False)
    batches = list(loader)
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    chex.assert_shape(images, (24, 224, 224, 3))
    assert images.dtype == np.float32 and 0.0 <= images.min() and images.max() <= 1.0
    # Constant colours survive JPEG and resizing to within a few levels.
    pixels = np.rint(images * 255).astype(int)
    assert (pixels.max(axis=(1, 2)) - pixels.min(axis=(1, 2))).max() <= 6
    got, want = _rows(pixels, labels), _expected("train")
    assert [g[0] for g in got] == [w[0] for w in want]
    assert max(np.abs(np.subtract(g[1], w[1])).max() for g, w in zip(got, want)) <= 4
    files = os.listdir(os.path.join(cache, "5.1.0"))
    assert files and all(f.endswith(".npz") for f in files)  # no temporary files left

    # Later opens read the cache: no label scan.
    def no_scan(*args, **kwargs):
        raise AssertionError("the labels were scanned again")

    monkeypatch.setattr(imagenet100, "read_labels", no_scan)
    assert len(sources.data_source("imagenet100", "train", prepared_dir)) == 24
    assert len(sources.data_source("imagenet100", "validation", prepared_dir)) == 2


def test_stale_or_unwritable_cache_falls_back_to_a_scan(prepared_dir, monkeypatch):
    builder = tfds.builder("imagenet2012", data_dir=prepared_dir)
    source = imagenet100.data_source(builder, "validation")
    path = imagenet100._cache_path(builder, "validation")
    assert os.path.exists(path)
    # Positions of records outside ImageNet-100 (as after re-preparing): rescanned.
    others = [i for i in range(6) if i not in set(source._positions.tolist())][:2]
    imagenet100._write_cache(path, source, np.array(others))
    assert sorted(imagenet100.data_source(builder, "validation")._positions.tolist()) == sorted(
        source._positions.tolist())
    # A split-size mismatch is refused too.
    np.savez(path, format=1, classes=imagenet100._classes_digest(), num_records=7,
             positions=np.array([0]))
    assert len(imagenet100.data_source(builder, "validation")) == 2
    # An unwritable data dir only costs a scan next time.
    os.remove(path)
    monkeypatch.setattr(imagenet100.os, "makedirs", _raise_permission_error)
    assert len(imagenet100.data_source(builder, "validation")) == 2
    assert not os.path.exists(path)


def _raise_permission_error(*args, **kwargs):
    raise PermissionError("read-only data dir")


def test_split_slices_and_arguments(prepared_dir):
    builder = tfds.builder("imagenet2012", data_dir=prepared_dir)
    half = imagenet100.data_source(builder, "train[:50%]", image_size=32, crop_fraction=0.875)
    whole = imagenet100.data_source(builder, "train")
    assert 0 < len(half) < len(whole)
    chex.assert_shape(half[0]["image"], (32, 32, 3))
    with pytest.raises(ValueError, match="split"):
        imagenet100.data_source(builder, " ")
    with pytest.raises(ValueError, match="image_size"):
        imagenet100.data_source(builder, "train", image_size=0)
    with pytest.raises(ValueError, match="split"):
        sources.data_source("imagenet100", "test2", prepared_dir)


# --- imagenet2012_224: all 1000 classes, labels as stored, one size ------------------------

def test_view_source_without_subset_serves_every_record_unchanged():
    images = [_smooth_image(30, 50, 0), _smooth_image(64, 40, 1), _smooth_image(20, 20, 2)]
    base = [{"image": im, "label": np.int64(lab), "file_name": "x"}
            for im, lab in zip(images, (999, -1, 0))]
    view = imagenet100.ImagenetViewSource(base, None, None, image_size=12)
    assert len(view) == 3
    for i, image in enumerate(images):
        assert set(view[i]) == {"image", "label"}
        assert view[i]["label"] == base[i]["label"]  # -1 too (imagenet2012's test split)
        np.testing.assert_array_equal(view[i]["image"], imagenet100.load_image(image, 12))
    np.testing.assert_array_equal(view[-1]["image"], view[2]["image"])
    with pytest.raises(IndexError):
        view[3]


def test_mock_imagenet2012_224_is_every_record_resized(tmp_path):
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
        base = sources.data_source("imagenet2012", "validation", tmp_path)
        full = sources.data_source("imagenet2012_224", "validation", tmp_path)
        examples = [base[i] for i in range(len(base))]
        assert len({ex["image"].shape for ex in examples}) > 1 and len(full) == 20
        for i, ex in enumerate(examples):
            assert full[i]["label"] == ex["label"]
            # an evaluation split: shorter side to 256, centre 224 (crop fraction 0.875)
            np.testing.assert_array_equal(full[i]["image"],
                                          imagenet100.load_image(ex["image"], 224, 0.875))
        assert any(not np.array_equal(full[i]["image"], imagenet100.load_image(ex["image"]))
                   for i, ex in enumerate(examples))  # the crops differ
        train_base = sources.data_source("imagenet2012", "train", tmp_path)
        for split in ("train", "train[:50%]"):  # a training slice trains too
            train = sources.data_source("imagenet2012_224", split, tmp_path)
            np.testing.assert_array_equal(
                train[0]["image"], imagenet100.load_image(train_base[0]["image"], 224, 1.0))
        # ImageNet-100 (an SSL set) keeps the whole centred square on every split
        assert imagenet100.VIEWS["imagenet100"].eval_crop_fraction == 1.0
    assert not any(tmp_path.iterdir())


def test_imagenet2012_224_not_prepared_names_the_imagenet2012_build(tmp_path):
    info = sources.dataset_info("imagenet2012_224", tmp_path)
    assert (info.num_classes, info.image_shape) == (1000, (224, 224, 3))
    assert dict(info.num_examples) == {} and not info.prepared
    with pytest.raises(sources.DatasetNotPreparedError) as err:
        pipeline.load("imagenet2012_224", "train", batch_size=8, data_dir=tmp_path)
    assert f"tfds build imagenet2012 --data_dir={tmp_path}" in str(err.value)
    assert "manual" in str(err.value)


def _all_rows(split):
    """(label, colour) of every record of the split, sorted."""
    rows = []
    for record, label in enumerate(LABELS[split]):
        colour = _colour(split, record)
        rows.append((int(label), tuple((np.full(3, colour[0]) if record == 3 else colour)
                                       .tolist())))
    return sorted(rows)


def test_prepared_imagenet2012_224_serves_all_labels_at_one_size(prepared_dir, monkeypatch):
    def no_scan(*args, **kwargs):
        raise AssertionError("the 1000-class view scanned the labels")

    monkeypatch.setattr(imagenet100, "read_labels", no_scan)
    # The stored JPEGs have several sizes.
    raw = tfds.builder("imagenet2012", data_dir=prepared_dir).as_data_source(
        split="train", decoders={"image": tfds.decode.SkipDecoding()})
    sizes = {Image.open(io.BytesIO(raw[i]["image"])).size for i in range(len(raw))}
    assert len(sizes) > 2

    info = sources.dataset_info("imagenet2012_224", prepared_dir)
    assert (info.num_classes, info.image_shape) == (1000, (224, 224, 3))
    assert info.prepared and dict(info.num_examples) == {"train": 50, "validation": 6}
    source = sources.data_source("imagenet2012_224", "validation", prepared_dir)
    example = source[0]
    assert example["image"].dtype == np.uint8 and example["image"].shape == (224, 224, 3)
    assert set(example) == {"image", "label"}

    for split in ("train", "validation"):
        # The loader the training loop streams from (and its on-device copy).
        batches = list(pipeline.load("imagenet2012_224", split, batch_size=7,
                                     data_dir=prepared_dir, shuffle=False,
                                     drop_remainder=False))
        images = np.concatenate([b["image"] for b in batches])
        labels = np.concatenate([b["label"] for b in batches])
        chex.assert_shape(images, (len(LABELS[split]), 224, 224, 3))
        pixels = np.rint(images * 255).astype(int)
        got, want = _rows(pixels, labels), _all_rows(split)
        assert [g[0] for g in got] == [w[0] for w in want]  # every label, not remapped
        assert max(np.abs(np.subtract(g[1], w[1])).max() for g, w in zip(got, want)) <= 4
    # Labels outside ImageNet-100 are served as they are.
    assert set(labels.tolist()) == set(LABELS["validation"].tolist())
    arrays = on_device.load_split_arrays("imagenet2012_224", "validation", data_dir=prepared_dir)
    np.testing.assert_array_equal(np.sort(arrays["label"]), np.sort(LABELS["validation"]))
    chex.assert_shape(arrays["image"], (6, 224, 224, 3))
