"""The padded crop (torchvision RandomCrop(size, padding)) and the recipe's
crop_padding, checked against numpy's zero padding and slicing."""
import dataclasses

import jax
import numpy as np
import pytest

from neurojax.data.augment import AugmentRecipe, augment
from neurojax.data.augment_spatial import random_padded_crop


def _windows(image, size, padding):
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    span = padded.shape[0] - size + 1
    return {(i, j): padded[i:i + size, j:j + size] for i in range(span) for j in range(span)}


def test_every_output_is_a_window_of_the_zero_padded_image_and_all_are_drawn():
    image = np.random.default_rng(0).uniform(0.1, 1.0, (6, 6, 3)).astype(np.float32)
    windows = _windows(image, 6, 2)
    crop = jax.jit(jax.vmap(lambda k: random_padded_crop(k, image, 6, 2)))
    outs = np.asarray(crop(jax.random.split(jax.random.PRNGKey(0), 2000)))
    found = []
    for out in outs:
        hits = [ij for ij, w in windows.items() if np.array_equal(out, w)]
        assert len(hits) == 1
        found.append(hits[0])
    counts = np.bincount([i * 5 + j for i, j in found], minlength=25)
    assert counts.min() > 0  # every one of the 5 x 5 offsets occurs (expected 80 each)
    assert np.all(np.abs(counts - 80) < 40)


def test_recipe_crop_padding_replaces_the_resized_crop():
    image = np.random.default_rng(1).uniform(0.0, 1.0, (8, 8, 3)).astype(np.float32)
    recipe = AugmentRecipe(out_size=8, crop_padding=4, flip_p=0.0, jitter_p=0.0,
                           grayscale_p=0.0, mean=None, std=None)
    key = jax.random.PRNGKey(3)
    out = np.asarray(augment(key, image, recipe))
    np.testing.assert_array_equal(out, random_padded_crop(jax.random.split(key, 6)[0],
                                                          image, 8, 4))
    assert any(np.array_equal(out, w) for w in _windows(image, 8, 4).values())
    plain = dataclasses.replace(recipe, crop_padding=0)
    assert plain.crop_padding == 0 and AugmentRecipe().crop_padding == 0


@pytest.mark.parametrize("padding", [-1, 1.5, True])
def test_bad_padding_is_named(padding):
    with pytest.raises(ValueError, match="crop_padding"):
        AugmentRecipe(crop_padding=padding)
    with pytest.raises(ValueError, match="padding"):
        random_padded_crop(jax.random.PRNGKey(0), np.zeros((4, 4, 3), np.float32), 4, padding)


def test_output_larger_than_the_padded_image_is_refused():
    with pytest.raises(ValueError, match="out_size"):
        random_padded_crop(jax.random.PRNGKey(0), np.zeros((4, 4, 3), np.float32), 9, 2)
