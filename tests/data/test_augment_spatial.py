"""Spatial augmentations (crop, flip, blur) against independent NumPy / PIL / SciPy
references."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from neurojax.data import augment_spatial as S
from tests.data._images import over_keys, random_image, split_keys

_resized_crop = jax.jit(S.resized_crop, static_argnums=2, static_argnames="antialias")
_blur = jax.jit(S.gaussian_blur, static_argnums=2)


# ------------------------------------------------- NumPy and PIL references


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


# ---------------------------------------------------------------------------- flip


def test_flip_matches_numpy_and_probability():
    x = random_image()
    np.testing.assert_array_equal(S.horizontal_flip(split_keys(1)[0], x, p=1.0), x[:, ::-1])
    np.testing.assert_array_equal(S.horizontal_flip(split_keys(1)[0], x, p=0.0), x)
    outs = over_keys(lambda k: S.horizontal_flip(k, x, 0.3), split_keys(400))
    flipped = np.all(outs == x[:, ::-1], axis=(1, 2, 3))
    kept = np.all(outs == x, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert abs(flipped.mean() - 0.3) < 0.08


# ------------------------------------------------------------------------------- crop


def test_crop_full_image_scale_and_ratio_one_is_plain_resize():
    x = random_image(6, (16, 16, 3))
    key = split_keys(1)[0]
    full = ((1.0, 1.0), (1.0, 1.0))  # scale, ratio
    same, half, plain = jax.jit(
        lambda k, x: (
            S.random_resized_crop(k, x, 16, *full),
            S.random_resized_crop(k, x, 8, *full),
            S.random_resized_crop(k, x, 8, *full, antialias=False),
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
    x = random_image(7, (12, 16, 3))
    top, left, h, w = box
    plain = _resized_crop(x, jnp.asarray(box), out, antialias=False)
    crop = x[top : top + h, left : left + w]
    np.testing.assert_allclose(plain, np_bilinear(crop, *out), atol=1e-5)
    smooth = _resized_crop(x, jnp.asarray(box), out, antialias=True)
    np.testing.assert_allclose(smooth, pil_resized_crop(x, box, *out), atol=1e-5)


def test_crop_boxes_stay_in_range_and_fit():
    height, width, scale, ratio = 40, 56, (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = over_keys(lambda k: S.sample_crop_box(k, height, width, scale, ratio), split_keys(3000))
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
        square = S.sample_crop_box(key, 1000, 1000, (0.2, 0.3), (1.0, 1.0))
        fixed_area = S.sample_crop_box(key, 1000, 1000, (0.1, 0.1), (0.5, 2.0))
        return jnp.stack([square, fixed_area])

    boxes = over_keys(both, split_keys(2000, seed=3))
    frac = boxes[:, 0, 2] * boxes[:, 0, 3] / 1e6
    assert stats.kstest(frac, stats.uniform(0.2, 0.1).cdf).pvalue > 1e-3
    log_ratio = np.log(boxes[:, 1, 3] / boxes[:, 1, 2])
    assert stats.kstest(log_ratio, stats.uniform(-np.log(2), 2 * np.log(2)).cdf).pvalue > 1e-3


def test_crop_falls_back_to_centre_crop_when_nothing_fits():
    # Ratio >= 2 never fits a full-area square crop: centre crop 8 x 16.
    sample = jax.jit(S.sample_crop_box, static_argnums=(1, 2, 3, 4))
    box = sample(split_keys(1)[0], 16, 16, (1.0, 1.0), (2.0, 3.0))
    assert np.asarray(box).tolist() == [4, 0, 8, 16]
    box = sample(split_keys(1)[0], 16, 16, (1.0, 1.0), (0.25, 0.5))
    assert np.asarray(box).tolist() == [0, 4, 16, 8]


# ---------------------------------------------------------------------------- blur


@pytest.mark.parametrize("sigma,kernel", [(0.7, 3), (2.0, 7)])
def test_gaussian_blur_matches_scipy_mirror_filter(sigma, kernel):
    x = random_image(8, (9, 10, 3))
    ref = ndimage.gaussian_filter(
        x.astype(np.float64),
        sigma=(sigma, sigma, 0),
        mode="mirror",
        radius=(kernel // 2, kernel // 2, 0),
    )
    np.testing.assert_allclose(_blur(x, sigma, kernel), ref, atol=1e-5)


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda k, x: S.horizontal_flip(k, x, p=1.5), "p"),
        (lambda k, x: S.random_resized_crop(k, x, 0), "out_size"),
        (lambda k, x: S.random_resized_crop(k, x, 4, scale=(0.5, 0.2)), "scale"),
        (lambda k, x: S.random_resized_crop(k, x, 4, scale=(0.0, 1.0)), "scale"),
        (lambda k, x: S.random_resized_crop(k, x, 4, ratio=(0.0, 1.0)), "ratio"),
        (lambda k, x: S.gaussian_blur(x, 1.0, 4), "kernel_size"),
        (lambda k, x: S.gaussian_blur(x, 1.0, 17), "kernel_size"),
        (lambda k, x: S.horizontal_flip(k, np.zeros((8, 8, 2), np.float32)), "image"),
        (lambda k, x: S.horizontal_flip(k, np.zeros((8, 8, 3), np.uint8)), "image"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call(split_keys(1)[0], random_image())
