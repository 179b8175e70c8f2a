"""The augmentation recipe: ``augment`` chains the spatial and colour operations
(tested against their references in test_augment_spatial / test_augment_color)
in FastSSL's order and normalises last."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.data import augment as A
from tests.data._images import random_image, split_keys

_augment = jax.jit(A.augment, static_argnums=2)


# ------------------------------------------------------------------------ the recipe


def test_cifar_recipe_has_the_papers_numbers():
    r = A.cifar_recipe()
    assert (r.out_size, r.crop_scale, r.flip_p) == (32, (0.08, 1.0), 0.5)
    assert (r.jitter_p, r.grayscale_p) == (0.8, 0.2)
    assert r.crop_ratio == pytest.approx((0.75, 4 / 3))
    assert (r.brightness, r.contrast, r.saturation, r.hue) == (0.4, 0.4, 0.4, 0.1)
    assert (r.blur_p, r.solarize_p) == (0.0, 0.0)
    ffcv = A.cifar_recipe(variant="ffcv")
    assert ffcv.hue == 0.0 and not ffcv.jitter_random_order
    assert A.stl10_recipe().crop_scale == (0.2, 1.0) and A.stl10_recipe().grayscale_p == 0.1
    assert A.imagenet_recipe().saturation == 0.2 and A.imagenet_recipe().blur_p == 0.1


RAW = dataclasses.replace(A.cifar_recipe(8), mean=None, std=None, blur_p=0.5, solarize_p=0.5)
MEAN, STD = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
NORMED = dataclasses.replace(RAW, mean=tuple(MEAN), std=tuple(STD))


def test_augment_shapes_range_and_determinism():
    x = random_image(10, (12, 12, 3))
    key = split_keys(1)[0]
    out = _augment(key, x, RAW)
    chex.assert_shape(out, (8, 8, 3))
    assert out.dtype == jnp.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    np.testing.assert_array_equal(_augment(key, x, RAW), out)  # same key, same view
    others = [_augment(k, x, RAW) for k in split_keys(3, seed=5)]
    assert all(not np.allclose(o, out) for o in others)


def test_augment_vmap_agrees_with_one_image_at_a_time_and_normalises_last():
    images = np.stack([random_image(s, (12, 12, 3)) for s in range(3)])
    keys = split_keys(3, seed=2)
    single = np.stack([_augment(k, x, RAW) for k, x in zip(keys, images)])
    batched = jax.jit(jax.vmap(A.augment, in_axes=(0, 0, None)), static_argnums=2)
    chex.assert_trees_all_close(batched(keys, images, NORMED), (single - MEAN) / STD, atol=1e-5)


def test_augment_accepts_one_channel_images():
    x = random_image(11, (8, 8, 1))
    recipe = dataclasses.replace(A.cifar_recipe(6), mean=(0.5,), std=(0.25,))
    out = _augment(split_keys(1)[0], x, recipe)
    chex.assert_shape(out, (6, 6, 1))
    assert np.all(np.isfinite(out))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda k, x: A.normalize(x, (0.5, 0.5), (1, 1)), "mean"),
        (lambda k, x: A.normalize(x, (0.5,), (0.0,)), "std"),
        (lambda k, x: A.augment(k, x, {"out_size": 4}), "recipe"),
        (lambda k, x: A.AugmentRecipe(out_size=-1), "out_size"),
        (lambda k, x: A.AugmentRecipe(jitter_p=2), "jitter_p"),
        (lambda k, x: A.AugmentRecipe(blur_kernel_size=4), "blur_kernel_size"),
        (lambda k, x: A.AugmentRecipe(mean=(0.5, 0.5, 0.5), std=None), "mean"),
        (lambda k, x: A.cifar_recipe(variant="pytorch"), "variant"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call(split_keys(1)[0], random_image())
