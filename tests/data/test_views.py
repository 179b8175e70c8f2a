"""Multi-view generation: shapes, one key per (view, image), resolution groups, errors."""

import dataclasses

import chex
import jax
import numpy as np
import pytest

from neurojax.data import augment as A
from neurojax.data import views
from neurojax.data.views import make_views

N, SIZE, SMALL = 3, 8, 4
RECIPE = A.cifar_recipe(SIZE)

_augment = jax.jit(A.augment, static_argnums=2)
_make_views = jax.jit(
    make_views,
    static_argnums=(2, 3),
    static_argnames=("small_views", "small_size", "small_recipe"),
)


def _images():
    return np.random.default_rng(0).uniform(size=(N, 10, 10, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def mixed():
    """Two large and three small views of three images, under jit."""
    key = jax.random.key(7)
    large, small = _make_views(key, _images(), 2, RECIPE, small_views=3, small_size=SMALL)
    return key, np.asarray(large), np.asarray(small)


def test_shapes_one_group_per_resolution(mixed):
    _, large, small = mixed
    chex.assert_shape(large, (2, N, SIZE, SIZE, 3))
    chex.assert_shape(small, (3, N, SMALL, SMALL, 3))
    assert large.dtype == np.float32 and small.dtype == np.float32


def test_each_view_is_augment_with_its_own_split_key(mixed):
    key, large, small = mixed
    # The large views' keys do not depend on the number of small views.
    k_large, k_small = jax.random.split(key)
    large_keys = jax.random.split(k_large, (2, N))
    small_keys = jax.random.split(k_small, (3, N))
    images = _images()
    small_recipe = dataclasses.replace(RECIPE, out_size=SMALL)
    for v, i in [(0, 0), (1, 2), (1, 1)]:
        np.testing.assert_allclose(
            large[v, i], _augment(large_keys[v, i], images[i], RECIPE), atol=1e-5
        )
    for v, i in [(0, 1), (2, 0)]:
        np.testing.assert_allclose(
            small[v, i], _augment(small_keys[v, i], images[i], small_recipe), atol=1e-5
        )


def test_views_differ_across_views_and_images_but_not_across_calls(mixed):
    key, large, small = mixed
    assert not np.allclose(large[0], large[1])
    assert not np.allclose(large[:, 0], large[:, 1])
    assert not np.allclose(small[0], small[1])
    again = _make_views(key, _images(), 2, RECIPE, small_views=3, small_size=SMALL)
    np.testing.assert_array_equal(again[0], large)
    np.testing.assert_array_equal(again[1], small)
    other = _make_views(jax.random.key(8), _images(), 2, RECIPE, small_views=3, small_size=SMALL)
    assert not np.allclose(other[0], large)


def test_small_recipe_defaults_to_the_large_recipe_at_small_size():
    # (The resolved recipe is what make_views augments with, see above.)
    at_small = dataclasses.replace(RECIPE, out_size=SMALL)
    assert views._small_recipe(RECIPE, SMALL, None) == at_small
    custom = dataclasses.replace(at_small, crop_scale=(0.05, 0.14))
    assert views._small_recipe(RECIPE, None, custom) == custom
    assert views._small_recipe(RECIPE, SMALL, custom) == custom


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"num_views": 0}, "num_views"),
        ({"num_views": 2.0}, "num_views"),
        ({"small_views": -1}, "small_views"),
        ({"small_views": 2}, "small_size"),
        ({"small_views": 2, "small_size": 0}, "small_size"),
        ({"small_views": 2, "small_size": 5, "small_recipe": A.cifar_recipe(4)}, "small_size"),
        ({"small_views": 2, "small_recipe": {"out_size": 4}}, "small_recipe"),
        ({"recipe": {"out_size": 8}}, "recipe"),
        ({"images": np.zeros((10, 10, 3), np.float32)}, "images"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    args = {"key": jax.random.key(0), "images": _images(), "num_views": 2, "recipe": RECIPE}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        make_views(**args)


def test_raw_uint32_keys_give_the_same_views_as_typed_keys(mixed):
    key, large, _ = mixed
    (again,) = _make_views(jax.random.key_data(key), _images(), 2, RECIPE)
    np.testing.assert_array_equal(again, large)
