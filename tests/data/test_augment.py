"""Jittable augmentations against independent NumPy / colorsys / PIL / SciPy references."""

import colorsys
import dataclasses
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from neurojax.data import augment as A

LUMA = np.array([0.299, 0.587, 0.114])


def _image(seed=0, shape=(8, 8, 3)):
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


def _over_keys(fn, keys):
    """``fn(key)`` for every key, compiled once (eager vmaps compile op by op)."""
    return np.asarray(jax.jit(jax.vmap(fn))(keys))


_augment = jax.jit(A.augment, static_argnums=2)
_resized_crop = jax.jit(A.resized_crop, static_argnums=2, static_argnames="antialias")
_blur = jax.jit(A.gaussian_blur, static_argnums=2)


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


def np_bilinear(crop, out_h, out_w):
    """PyTorch ``interpolate(mode="bilinear", align_corners=False)``, no antialias."""
    in_h, in_w, _ = crop.shape

    def taps(o, in_size, out_size):
        src = max((o + 0.5) * in_size / out_size - 0.5, 0.0)
        i0 = int(math.floor(src))
        return i0, min(i0 + 1, in_size - 1), src - i0

    out = np.zeros((out_h, out_w, crop.shape[2]))
    for o, q in itertools.product(range(out_h), range(out_w)):
        y0, y1, ly = taps(o, in_h, out_h)
        x0, x1, lx = taps(q, in_w, out_w)
        out[o, q] = (
            (1 - ly) * (1 - lx) * crop[y0, x0]
            + (1 - ly) * lx * crop[y0, x1]
            + ly * (1 - lx) * crop[y1, x0]
            + ly * lx * crop[y1, x1]
        )
    return out


def pil_resized_crop(image, box, out_h, out_w):
    """PIL crop then antialiased bilinear resize, per channel in float mode."""
    top, left, h, w = box
    channels = [
        np.asarray(
            Image.fromarray(image[..., c], mode="F")
            .crop((left, top, left + w, top + h))
            .resize((out_w, out_h), Image.BILINEAR)
        )
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=-1)


# ------------------------------------------------------------------ flip and grayscale


def test_flip_matches_numpy_and_probability():
    x = _image()
    np.testing.assert_array_equal(A.horizontal_flip(_keys(1)[0], x, p=1.0), x[:, ::-1])
    np.testing.assert_array_equal(A.horizontal_flip(_keys(1)[0], x, p=0.0), x)
    outs = _over_keys(lambda k: A.horizontal_flip(k, x, 0.3), _keys(400))
    flipped = np.all(outs == x[:, ::-1], axis=(1, 2, 3))
    kept = np.all(outs == x, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert abs(flipped.mean() - 0.3) < 0.08


def test_grayscale_matches_numpy_luma_replicated():
    x = _image()
    gray = np.asarray(A.random_grayscale(_keys(1)[0], x, p=1.0))
    np.testing.assert_allclose(gray, np.repeat((x @ LUMA)[..., None], 3, axis=-1), atol=1e-6)
    np.testing.assert_array_equal(A.random_grayscale(_keys(1)[0], x, p=0.0), x)
    one = _image(shape=(8, 8, 1))
    np.testing.assert_array_equal(A.to_grayscale(one), one)
    outs = _over_keys(lambda k: A.random_grayscale(k, x, 0.2), _keys(400))
    assert abs(np.mean(np.all(outs != x, axis=(1, 2, 3))) - 0.2) < 0.07


# ----------------------------------------------------------------------- colour jitter


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4, 2.5])
def test_brightness_contrast_saturation_match_torchvision_formulas(factor):
    x = _image(1)
    for ours, ref in (
        (A.adjust_brightness, np_brightness),
        (A.adjust_contrast, np_contrast),
        (A.adjust_saturation, np_saturation),
    ):
        np.testing.assert_allclose(ours(x, factor), ref(x, factor), atol=1e-6, err_msg=ref.__name__)


def test_rgb_hsv_round_trip_matches_colorsys():
    x = np.concatenate([_image(2, (6, 6, 3)), np.full((1, 6, 3), 0.5, np.float32)])  # grays too
    x[0, 0] = [1.0, 0.0, 0.0]
    x[0, 1] = [0.2, 0.9, 0.2]
    hsv = np.asarray(A.rgb_to_hsv(jnp.asarray(x)))
    ref = np.array([[colorsys.rgb_to_hsv(*map(float, p)) for p in row] for row in x])
    np.testing.assert_allclose(hsv, ref, atol=1e-6)
    np.testing.assert_allclose(A.hsv_to_rgb(jnp.asarray(ref, jnp.float32)), x, atol=1e-6)


@pytest.mark.parametrize("shift", [-0.5, -0.2, 0.0, 0.05, 0.37, 0.5])
def test_adjust_hue_matches_colorsys_loop(shift):
    x = _image(3, (5, 5, 3))
    np.testing.assert_allclose(A.adjust_hue(x, shift), np_hue(x, shift), atol=2e-6)


def test_colour_ops_leave_one_channel_unchanged_where_undefined():
    one = _image(shape=(6, 6, 1))
    np.testing.assert_array_equal(A.adjust_hue(one, 0.3), one)
    np.testing.assert_array_equal(A.adjust_saturation(one, 0.3), one)
    expected = np.clip(0.5 * one + 0.5 * one.mean(), 0, 1)
    np.testing.assert_allclose(A.adjust_contrast(one, 0.5), expected, atol=1e-6)


JITTER = (0.4, 0.3, 0.9, 0.1)  # brightness, contrast, saturation, hue
JITTER_LOW = np.array([0.6, 0.7, 0.1, -0.1])
JITTER_HIGH = np.array([1.4, 1.3, 1.9, 0.1])


@pytest.fixture(scope="module")
def jitter_draws():
    """600 keys' jitter (p = 0.8) of one image, with the parameters they drew."""
    x = _image(4, (6, 6, 3))

    def draw(key):
        factors, order = A.sample_jitter_params(key, *JITTER)
        return A.color_jitter(key, x, *JITTER, p=0.8), factors, order

    outs, factors, orders = jax.jit(jax.vmap(draw))(_keys(600, seed=1))
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


def test_color_jitter_applies_with_probability_p(jitter_draws):
    x, outs, _, _ = jitter_draws
    changed = np.any(outs != x, axis=(1, 2, 3))
    assert abs(changed.mean() - 0.8) < 0.05
    np.testing.assert_array_equal(outs[~changed], np.broadcast_to(x, outs[~changed].shape))
    key = _keys(1)[0]
    np.testing.assert_array_equal(A.color_jitter(key, x, p=0.0), x)
    np.testing.assert_array_equal(A.color_jitter(key, x, 0, 0, 0, 0, p=1.0), x)


def test_jitter_params_cover_all_orders_and_stay_in_range(jitter_draws):
    _, _, factors, orders = jitter_draws
    assert len({tuple(o) for o in orders}) == 24
    assert np.all(factors >= JITTER_LOW) and np.all(factors <= JITTER_HIGH)
    # Uniform draws fill their ranges.
    assert np.all(factors.min(0) < JITTER_LOW + 0.05)
    assert np.all(factors.max(0) > JITTER_HIGH - 0.05)
    # Zero strengths are skipped; a fixed order is the identity.
    f, o = A.sample_jitter_params(_keys(1)[0], 0.5, 0.0, 0.0, 0.2, random_order=False)
    assert f.shape == (2,) and list(np.asarray(o)) == [0, 1]


# ------------------------------------------------------------------------------- crop


def test_crop_full_image_scale_and_ratio_one_is_plain_resize():
    x = _image(6, (16, 16, 3))
    key = _keys(1)[0]
    full = ((1.0, 1.0), (1.0, 1.0))  # scale, ratio
    same, half, plain = jax.jit(
        lambda k, x: (
            A.random_resized_crop(k, x, 16, *full),
            A.random_resized_crop(k, x, 8, *full),
            A.random_resized_crop(k, x, 8, *full, antialias=False),
        )
    )(key, x)
    np.testing.assert_allclose(same, x, atol=1e-6)
    np.testing.assert_allclose(half, pil_resized_crop(x, (0, 0, 16, 16), 8, 8), atol=1e-5)
    np.testing.assert_allclose(plain, np_bilinear(x, 8, 8), atol=1e-5)


@pytest.mark.parametrize(
    "box,out",
    [
        ((3, 2, 5, 7), (9, 6)),
        ((0, 4, 12, 11), (4, 4)),
        ((5, 5, 1, 2), (3, 3)),
    ],
)
def test_crop_of_known_box_matches_numpy_bilinear_and_pil(box, out):
    x = _image(7, (12, 16, 3))
    top, left, h, w = box
    plain = _resized_crop(x, jnp.asarray(box), out, antialias=False)
    crop = x[top : top + h, left : left + w]
    np.testing.assert_allclose(plain, np_bilinear(crop, *out), atol=1e-5)
    smooth = _resized_crop(x, jnp.asarray(box), out, antialias=True)
    np.testing.assert_allclose(smooth, pil_resized_crop(x, box, *out), atol=1e-5)


def test_crop_boxes_stay_in_range_and_fit():
    height, width, scale, ratio = 40, 56, (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = _over_keys(lambda k: A.sample_crop_box(k, height, width, scale, ratio), _keys(3000))
    top, left, h, w = boxes.T.astype(float)
    assert np.all((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1))
    assert np.all((top + h <= height) & (left + w <= width))
    # Some real (area, ratio) pair in range rounds to (h, w).
    area = height * width
    assert np.all((w - 0.5) * (h - 0.5) <= scale[1] * area)
    assert np.all((w + 0.5) * (h + 0.5) >= scale[0] * area)
    assert np.all((w - 0.5) / (h + 0.5) <= ratio[1])
    assert np.all((w + 0.5) / (h - 0.5) >= ratio[0])
    frac = h * w / area
    assert frac.min() < 0.12 and frac.max() > 0.9
    assert len(np.unique(top)) > 10 and len(np.unique(left)) > 10


def test_crop_area_and_log_ratio_are_uniform_when_every_draw_fits():
    def both(key):
        square = A.sample_crop_box(key, 1000, 1000, (0.2, 0.3), (1.0, 1.0))
        fixed_area = A.sample_crop_box(key, 1000, 1000, (0.1, 0.1), (0.5, 2.0))
        return jnp.stack([square, fixed_area])

    boxes = _over_keys(both, _keys(2000, seed=3))
    frac = boxes[:, 0, 2] * boxes[:, 0, 3] / 1e6
    assert stats.kstest(frac, stats.uniform(0.2, 0.1).cdf).pvalue > 1e-3
    log_ratio = np.log(boxes[:, 1, 3] / boxes[:, 1, 2])
    assert stats.kstest(log_ratio, stats.uniform(-np.log(2), 2 * np.log(2)).cdf).pvalue > 1e-3


def test_crop_falls_back_to_centre_crop_when_nothing_fits():
    # Ratio >= 2 never fits a full-area square crop: centre crop 8 x 16.
    sample = jax.jit(A.sample_crop_box, static_argnums=(1, 2, 3, 4))
    box = sample(_keys(1)[0], 16, 16, (1.0, 1.0), (2.0, 3.0))
    assert np.asarray(box).tolist() == [4, 0, 8, 16]
    box = sample(_keys(1)[0], 16, 16, (1.0, 1.0), (0.25, 0.5))
    assert np.asarray(box).tolist() == [0, 4, 16, 8]


# ---------------------------------------------------------------------- blur, solarize


@pytest.mark.parametrize("sigma,kernel", [(0.7, 3), (2.0, 7)])
def test_gaussian_blur_matches_scipy_mirror_filter(sigma, kernel):
    x = _image(8, (9, 10, 3))
    ref = ndimage.gaussian_filter(
        x.astype(np.float64),
        sigma=(sigma, sigma, 0),
        mode="mirror",
        radius=(kernel // 2, kernel // 2, 0),
    )
    np.testing.assert_allclose(_blur(x, sigma, kernel), ref, atol=1e-5)


def test_solarize_inverts_above_threshold():
    x = _image(9)
    np.testing.assert_allclose(A.solarize(x, 0.5), np.where(x >= 0.5, 1 - x, x))
    np.testing.assert_array_equal(A.random_solarize(_keys(1)[0], x, p=0.0), x)


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
    x = _image(10, (12, 12, 3))
    key = _keys(1)[0]
    out = _augment(key, x, RAW)
    chex.assert_shape(out, (8, 8, 3))
    assert out.dtype == jnp.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    np.testing.assert_array_equal(_augment(key, x, RAW), out)  # same key, same view
    others = [_augment(k, x, RAW) for k in _keys(3, seed=5)]
    assert all(not np.allclose(o, out) for o in others)


def test_augment_vmap_agrees_with_one_image_at_a_time_and_normalises_last():
    images = np.stack([_image(s, (12, 12, 3)) for s in range(3)])
    keys = _keys(3, seed=2)
    single = np.stack([_augment(k, x, RAW) for k, x in zip(keys, images)])
    batched = jax.jit(jax.vmap(A.augment, in_axes=(0, 0, None)), static_argnums=2)
    chex.assert_trees_all_close(batched(keys, images, NORMED), (single - MEAN) / STD, atol=1e-5)


def test_augment_accepts_one_channel_images():
    x = _image(11, (8, 8, 1))
    recipe = dataclasses.replace(A.cifar_recipe(6), mean=(0.5,), std=(0.25,))
    out = _augment(_keys(1)[0], x, recipe)
    chex.assert_shape(out, (6, 6, 1))
    assert np.all(np.isfinite(out))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda k, x: A.horizontal_flip(k, x, p=1.5), "p"),
        (lambda k, x: A.random_grayscale(k, x, p=-0.1), "p"),
        (lambda k, x: A.color_jitter(k, x, brightness=-1), "brightness"),
        (lambda k, x: A.color_jitter(k, x, hue=0.6), "hue"),
        (lambda k, x: A.random_resized_crop(k, x, 0), "out_size"),
        (lambda k, x: A.random_resized_crop(k, x, 4, scale=(0.5, 0.2)), "scale"),
        (lambda k, x: A.random_resized_crop(k, x, 4, scale=(0.0, 1.0)), "scale"),
        (lambda k, x: A.random_resized_crop(k, x, 4, ratio=(0.0, 1.0)), "ratio"),
        (lambda k, x: A.adjust_hue(x, 0.7), "shift"),
        (lambda k, x: A.adjust_contrast(x, -0.5), "factor"),
        (lambda k, x: A.gaussian_blur(x, 1.0, 4), "kernel_size"),
        (lambda k, x: A.gaussian_blur(x, 1.0, 17), "kernel_size"),
        (lambda k, x: A.normalize(x, (0.5, 0.5), (1, 1)), "mean"),
        (lambda k, x: A.normalize(x, (0.5,), (0.0,)), "std"),
        (lambda k, x: A.horizontal_flip(k, np.zeros((8, 8, 2), np.float32)), "image"),
        (lambda k, x: A.horizontal_flip(k, np.zeros((8, 8, 3), np.uint8)), "image"),
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
        call(_keys(1)[0], _image())
