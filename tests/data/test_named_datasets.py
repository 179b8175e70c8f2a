"""Real datasets: clear errors when not prepared, and mocked loading via TFDS."""

import io

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import mnist

from neurojax.data import pipeline, sources

REAL = ["mnist", "cifar10", "cifar100", "stl10", "imagenet2012"]


@pytest.mark.parametrize("name", REAL)
def test_not_prepared_error_gives_the_build_command(name, tmp_path):
    with pytest.raises(sources.DatasetNotPreparedError) as err:
        pipeline.load(name, "train", batch_size=8, data_dir=tmp_path)
    assert isinstance(err.value, FileNotFoundError)
    expected = f"tfds build {name} --data_dir={tmp_path} --file_format=array_record"
    assert expected in str(err.value)
    assert not any(tmp_path.iterdir())  # no download was attempted


def test_imagenet_error_mentions_manual_download(tmp_path):
    with pytest.raises(sources.DatasetNotPreparedError, match="manual"):
        sources.data_source("imagenet2012", "validation", tmp_path)


def test_default_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
    assert sources.default_data_dir() == str(tmp_path)
    assert f"--data_dir={tmp_path} " in sources.prepare_command("mnist")
    monkeypatch.delenv(sources.DATA_DIR_ENV)
    assert sources.default_data_dir().endswith("tensorflow_datasets")


@pytest.mark.parametrize(
    "name, num_classes, shape",
    [
        ("mnist", 10, (28, 28, 1)),
        ("cifar10", 10, (32, 32, 3)),
        ("cifar100", 100, (32, 32, 3)),
        ("stl10", 10, (96, 96, 3)),
        ("imagenet2012", 1000, (None, None, 3)),
    ],
)
def test_info_of_unprepared_dataset_comes_from_code(name, num_classes, shape, tmp_path):
    info = sources.dataset_info(name, tmp_path)
    assert (info.num_classes, info.image_shape) == (num_classes, shape)
    assert info.num_examples == {} and not info.prepared


def test_unknown_name_lists_allowed(tmp_path):
    with pytest.raises(ValueError, match="name must be one of .*mnist"):
        sources.data_source("svhn", "train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        sources.data_source("mnist", "", tmp_path)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_mock_data_serves_batches_through_load(name, shape, tmp_path):
    # The same code path as a prepared dataset, with TFDS's fake examples.
    with tfds.testing.mock_data(num_examples=50, policy=tfds.testing.MockPolicy.USE_CODE):
        loader = pipeline.load(name, "train", batch_size=16, data_dir=tmp_path, seed=0)
        batches = list(loader)
    assert len(batches) == 50 // 16
    for batch in batches:
        chex.assert_shape(batch["image"], (16, *shape))
        chex.assert_shape(batch["label"], (16,))
        assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
        assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        assert 0 <= batch["label"].min() and batch["label"].max() < 10
    assert not any(tmp_path.iterdir())  # nothing downloaded or written



def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buffer, format="PNG")
    return buffer.getvalue()


def _local_images(num_examples, seed):
    images = np.random.RandomState(seed).randint(0, 256, (num_examples, 28, 28, 1))
    return images.astype(np.uint8), np.arange(num_examples) % 10


class _OfflineMnist(mnist.MNIST, skip_registration=True):
    """The real MNIST builder (features, name, version) fed with local images.

    Images are given as PNG bytes encoded with PIL, so preparing needs neither
    TensorFlow nor a download; the files are what ``tfds build`` would write.
    """

    name = "mnist"

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate(30, seed=0), "test": self._generate(12, seed=1)}

    def _generate(self, num_examples, seed):
        images, labels = _local_images(num_examples, seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": _png(image), "label": int(label)}


def _rows(images, labels):
    """(image, label) pairs as sorted bytes, to compare regardless of order."""
    return sorted(img.tobytes() + bytes([lab]) for img, lab in zip(images, labels))


def test_prepared_real_dataset_loads_through_the_same_path(tmp_path):
    builder = _OfflineMnist(data_dir=tmp_path)
    builder.download_and_prepare(file_format="array_record", download_dir=tmp_path / "dl")
    info = sources.dataset_info("mnist", tmp_path)
    assert info.prepared and info.num_examples == {"train": 30, "test": 12}

    loader = pipeline.load(
        "mnist", "test", batch_size=5, data_dir=tmp_path, shuffle=False, drop_remainder=False
    )
    batches = list(loader)
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    chex.assert_shape(images, (12, 28, 28, 1))
    # PNG decoding (PIL, no TensorFlow) gives back the exact pixels.
    pixels = np.rint(images * 255).astype(np.uint8)
    assert _rows(pixels, labels) == _rows(*_local_images(12, seed=1))
    with pytest.raises(ValueError, match="split"):
        pipeline.load("mnist", "validation", batch_size=5, data_dir=tmp_path)
