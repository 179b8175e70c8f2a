"""Colour augmentations (jitter, grayscale, solarize) against independent NumPy /
colorsys references (torchvision's formulas)."""

import colorsys
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.data import augment_color as C
from tests.data._images import over_keys, random_image, split_keys

LUMA = np.array([0.299, 0.587, 0.114])


# ------------------------------------------------- NumPy references (torchvision formulas)


def np_brightness(x, f):
    return np.clip(f * x, 0, 1)


def np_contrast(x, f):
    return np.clip(f * x + (1 - f) * (x @ LUMA).mean(), 0, 1)


def np_saturation(x, f):
    return np.clip(f * x + (1 - f) * (x @ LUMA)[..., None], 0, 1)


def np_hue(x, shift):
    out = np.empty_like(x, dtype=np.float64)
    for i, j in itertools.product(range(x.shape[0]), range(x.shape[1])):
        h, s, v = colorsys.rgb_to_hsv(*map(float, x[i, j]))
        out[i, j] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return out


# ----------------------------------------------------------------------- grayscale


def test_grayscale_matches_numpy_luma_replicated():
    x = random_image()
    gray = np.asarray(C.random_grayscale(split_keys(1)[0], x, p=1.0))
    np.testing.assert_allclose(gray, np.repeat((x @ LUMA)[..., None], 3, axis=-1), atol=1e-6)
    np.testing.assert_array_equal(C.random_grayscale(split_keys(1)[0], x, p=0.0), x)
    one = random_image(shape=(8, 8, 1))
    np.testing.assert_array_equal(C.to_grayscale(one), one)
    outs = over_keys(lambda k: C.random_grayscale(k, x, 0.2), split_keys(400))
    assert abs(np.mean(np.all(outs != x, axis=(1, 2, 3))) - 0.2) < 0.07


# ----------------------------------------------------------------------- colour jitter


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4, 2.5])
def test_brightness_contrast_saturation_match_torchvision_formulas(factor):
    x = random_image(1)
    for ours, ref in (
        (C.adjust_brightness, np_brightness),
        (C.adjust_contrast, np_contrast),
        (C.adjust_saturation, np_saturation),
    ):
        np.testing.assert_allclose(ours(x, factor), ref(x, factor), atol=1e-6, err_msg=ref.__name__)


def test_rgb_hsv_round_trip_matches_colorsys():
    x = np.concatenate([random_image(2, (6, 6, 3)), np.full((1, 6, 3), 0.5, np.float32)])  # grays too
    x[0, 0] = [1.0, 0.0, 0.0]
    x[0, 1] = [0.2, 0.9, 0.2]
    hsv = np.asarray(C.rgb_to_hsv(jnp.asarray(x)))
    ref = np.array([[colorsys.rgb_to_hsv(*map(float, p)) for p in row] for row in x])
    np.testing.assert_allclose(hsv, ref, atol=1e-6)
    np.testing.assert_allclose(C.hsv_to_rgb(jnp.asarray(ref, jnp.float32)), x, atol=1e-6)


@pytest.mark.parametrize("shift", [-0.5, -0.2, 0.0, 0.05, 0.37, 0.5])
def test_adjust_hue_matches_colorsys_loop(shift):
    x = random_image(3, (5, 5, 3))
    np.testing.assert_allclose(C.adjust_hue(x, shift), np_hue(x, shift), atol=2e-6)


def test_colour_ops_leave_one_channel_unchanged_where_undefined():
    one = random_image(shape=(6, 6, 1))
    np.testing.assert_array_equal(C.adjust_hue(one, 0.3), one)
    np.testing.assert_array_equal(C.adjust_saturation(one, 0.3), one)
    expected = np.clip(0.5 * one + 0.5 * one.mean(), 0, 1)
    np.testing.assert_allclose(C.adjust_contrast(one, 0.5), expected, atol=1e-6)


JITTER = (0.4, 0.3, 0.9, 0.1)  # brightness, contrast, saturation, hue
JITTER_LOW = np.array([0.6, 0.7, 0.1, -0.1])
JITTER_HIGH = np.array([1.4, 1.3, 1.9, 0.1])


@pytest.fixture(scope="module")
def jitter_draws():
    """600 keys' jitter (p = 0.8) of one image, with the parameters they drew."""
    x = random_image(4, (6, 6, 3))

    def draw(key):
        factors, order = C.sample_jitter_params(key, *JITTER)
        return C.color_jitter(key, x, *JITTER, p=0.8), factors, order

    outs, factors, orders = jax.jit(jax.vmap(draw))(split_keys(600, seed=1))
    return x, np.asarray(outs), np.asarray(factors), np.asarray(orders)


def test_color_jitter_equals_reference_ops_in_the_sampled_order(jitter_draws):
    x, outs, factors, orders = jitter_draws
    refs = [np_brightness, np_contrast, np_saturation, np_hue]
    changed = np.flatnonzero(np.any(outs != x, axis=(1, 2, 3)))
    assert len({tuple(o) for o in orders[changed[:8]]}) > 1
    for i in changed[:8]:
        expected = x.astype(np.float64)
        for j in orders[i]:
            expected = refs[j](expected, float(factors[i, j]))
        np.testing.assert_allclose(outs[i], expected, atol=1e-5)


@pytest.mark.parametrize("strengths,channels", [
    ((0.4, 0.0, 0.9, 0.1), 3),   # no contrast: hue among three operations
    ((0.4, 0.3, 0.9, 0.0), 3),   # no hue
    ((0.0, 0.0, 0.0, 0.3), 3),   # hue alone
    ((0.8, 0.8, 0.8, 0.4), 1),   # one channel: saturation and hue leave it as it is
])
def test_color_jitter_with_some_operations_equals_the_reference(strengths, channels):
    """Each subset of operations, vmapped and one image at a time, against the
    NumPy operations applied one by one in the drawn order."""
    x = random_image(6, (6, 6, channels))
    names = [n for n, s in zip(("brightness", "contrast", "saturation", "hue"), strengths) if s]
    gray = lambda y: y @ LUMA if channels == 3 else y[..., 0]
    refs = {"brightness": np_brightness,
            "contrast": lambda y, f: np.clip(f * y + (1 - f) * gray(y).mean(), 0, 1),
            "saturation": np_saturation if channels == 3 else lambda y, f: y,
            "hue": np_hue if channels == 3 else lambda y, f: y}

    def draw(key):
        factors, order = C.sample_jitter_params(key, *strengths)
        return C.color_jitter(key, x, *strengths, p=1.0), factors, order
    keys = split_keys(40, seed=3)
    outs, factors, orders = jax.jit(jax.vmap(draw))(keys)
    assert len({tuple(o) for o in np.asarray(orders)}) > 1 or len(names) == 1
    for i in range(12):
        expected = x.astype(np.float64)
        for j in np.asarray(orders[i]):
            expected = refs[names[j]](expected, float(factors[i, j]))
        np.testing.assert_allclose(outs[i], expected, atol=1e-5)
        one = C.color_jitter(keys[i], x, *strengths, p=1.0)  # not vmapped
        np.testing.assert_allclose(one, outs[i], atol=1e-6)


def test_color_jitter_applies_with_probability_p(jitter_draws):
    x, outs, _, _ = jitter_draws
    changed = np.any(outs != x, axis=(1, 2, 3))
    assert abs(changed.mean() - 0.8) < 0.05
    np.testing.assert_array_equal(outs[~changed], np.broadcast_to(x, outs[~changed].shape))
    key = split_keys(1)[0]
    np.testing.assert_array_equal(C.color_jitter(key, x, p=0.0), x)
    np.testing.assert_array_equal(C.color_jitter(key, x, 0, 0, 0, 0, p=1.0), x)


def test_jitter_params_cover_all_orders_and_stay_in_range(jitter_draws):
    _, _, factors, orders = jitter_draws
    assert len({tuple(o) for o in orders}) == 24
    assert np.all(factors >= JITTER_LOW) and np.all(factors <= JITTER_HIGH)
    # Uniform draws fill their ranges.
    assert np.all(factors.min(0) < JITTER_LOW + 0.05)
    assert np.all(factors.max(0) > JITTER_HIGH - 0.05)
    # Zero strengths are skipped; a fixed order is the identity.
    f, o = C.sample_jitter_params(split_keys(1)[0], 0.5, 0.0, 0.0, 0.2, random_order=False)
    assert f.shape == (2,) and list(np.asarray(o)) == [0, 1]


# ------------------------------------------------------------------------ solarize


def test_solarize_inverts_above_threshold():
    x = random_image(9)
    np.testing.assert_allclose(C.solarize(x, 0.5), np.where(x >= 0.5, 1 - x, x))
    np.testing.assert_array_equal(C.random_solarize(split_keys(1)[0], x, p=0.0), x)


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda k, x: C.random_grayscale(k, x, p=-0.1), "p"),
        (lambda k, x: C.color_jitter(k, x, brightness=-1), "brightness"),
        (lambda k, x: C.color_jitter(k, x, hue=0.6), "hue"),
        (lambda k, x: C.adjust_hue(x, 0.7), "shift"),
        (lambda k, x: C.adjust_contrast(x, -0.5), "factor"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call(split_keys(1)[0], random_image())
