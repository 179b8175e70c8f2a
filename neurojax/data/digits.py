"""Offline digits dataset: scikit-learn's bundled 8x8 digits as a TFDS builder.

The 1797 images ship inside scikit-learn, so this dataset prepares with no
network access. It goes through exactly the same TFDS + grain path as the
real datasets (array_record files, ``as_data_source``), so tests of the input
pipeline exercise the real loading code.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NAME = "neurojax_digits"
NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
NUM_EXAMPLES = 1797
NUM_TEST = 360  # 1437 train / 360 test, about the usual 80/20 split.
SPLIT_SEED = 0

# load_digits stores pixel intensities as integers in 0..16.
_MAX_PIXEL = 16


def split_indices(
    num_examples: int = NUM_EXAMPLES,
    num_test: int = NUM_TEST,
    seed: int = SPLIT_SEED,
) -> dict[str, np.ndarray]:
    """Returns the sorted example indices of the fixed train/test split.

    ``np.random.RandomState`` is used (not ``default_rng``) because its
    stream is frozen across NumPy versions, so the split never changes.
    """
    perm = np.random.RandomState(seed).permutation(num_examples)
    return {"train": np.sort(perm[num_test:]), "test": np.sort(perm[:num_test])}


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Scales 0..16 digit intensities to 0..255 uint8, shape (N, 8, 8, 1)."""
    scaled = np.rint(np.asarray(images, np.float64) * 255.0 / _MAX_PIXEL)
    return scaled.astype(np.uint8).reshape((-1,) + IMAGE_SHAPE)


class NeurojaxDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fixed 1437/360 train/test split (seed 0)."}

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo is built here, not with dataset_info_from_configs, which
        # would look for metadata files beside this module.
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "8x8 grayscale handwritten digits bundled with scikit-learn "
                "(sklearn.datasets.load_digits); intensities 0..16 scaled to "
                "0..255."
            ),
            features=tfds.features.FeaturesDict(
                {
                    # Raw uint8 tensor: an encoded Image feature could pull in
                    # TensorFlow, which is not installed.
                    "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=(
                "@misc{optdigits, author={Alpaydin, E. and Kaynak, C.}, "
                "title={Optical Recognition of Handwritten Digits}, "
                "howpublished={UCI Machine Learning Repository}, year={1998}}"
            ),
            license="CC BY 4.0",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data ship with scikit-learn.
        return {
            split: self._generate_examples(indices)
            for split, indices in split_indices().items()
        }

    def _generate_examples(self, indices: np.ndarray):
        # Imported lazily: only preparation needs scikit-learn.
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = to_uint8(digits.images)
        labels = digits.target.astype(np.int64)
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
