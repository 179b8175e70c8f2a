"""Spatial augmentations: random resized crop, padded crop, horizontal flip, Gaussian blur.

Each mixes or moves pixels across the image plane and is built as a
separable linear map along height and width (``rows @ image @ cols^T`` per
channel), so boxes and blur widths may be traced values. Images are one
``(H, W, C)`` array, floating point in [0, 1], ``C`` = 1 or 3; random
operations take an explicit PRNG key (jit- and vmap-friendly). The recipe
that chains them is :mod:`neurojax.data.augment`.

Numerical conventions (named):

- The crop samples its box like torchvision's ``RandomResizedCrop`` (area
  fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``, ten
  candidates, then a centre crop) and resizes it as "crop, then resize":
  bilinear (triangle filter) over pixels of the box only, with antialiasing
  on by default (a triangle stretched by the reduction factor when the box is
  larger than the output, as PIL and torchvision >= 0.17 do). FFCV's decoder,
  used for the paper's timings, crops with OpenCV's area interpolation.
- The blur is torchvision's ``gaussian_blur`` (reflect padding; sigma drawn
  continuously, where FFCV-SSL picks one of 10 evenly spaced values).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.data._augment_checks import (Array, check_image, check_interval, check_prob,
                                           check_size, is_number)

_HIGHEST = jax.lax.Precision.HIGHEST


# ---------------------------------------------------------- crop and resize


def sample_crop_box(
    key: Array,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    *,
    num_trials: int = 10,
) -> Array:
    """Samples a random-resized-crop box ``[top, left, crop_h, crop_w]`` (int32).

    torchvision's sampling rule, vectorised: ``num_trials`` candidates draw an
    area ``A = u * H * W`` with ``u ~ U(scale)`` and an aspect ratio
    ``r = exp(v)``, ``v ~ U(log ratio)``; each gives ``crop_w =
    round(sqrt(A r))`` and ``crop_h = round(sqrt(A / r))``. The first
    candidate with ``0 < crop_h <= H`` and ``0 < crop_w <= W`` is kept, its
    corner uniform over the integer positions that fit. If none fits, the
    fallback is a centre crop of the whole image clamped to the ratio range.

    Args:
        key: PRNG key.
        height, width: the image size (static ints).
        scale: area fraction range, ``0 < min <= max <= 1``.
        ratio: width / height range, ``0 < min <= max``.
        num_trials: candidates drawn at once (torchvision: 10).
    """
    height, width = check_size((height, width), "(height, width)")
    scale = check_interval(scale, "scale", high=1.0)
    ratio = check_interval(ratio, "ratio")
    if not isinstance(num_trials, int) or num_trials < 1:
        raise ValueError(f"num_trials must be a positive int, got {num_trials!r}")
    # One draw: area and ratio uniforms per candidate, then the corner.
    u = jax.random.uniform(key, (2 * num_trials + 2,))
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:num_trials])
    log_ratio = math.log(ratio[0]) + math.log(ratio[1] / ratio[0]) * u[num_trials:-2]
    aspect = jnp.exp(log_ratio)
    cand_w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    cand_h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (cand_w > 0) & (cand_w <= width) & (cand_h > 0) & (cand_h <= height)
    first = jnp.argmax(fits)  # index of the first True
    centre_h, centre_w = _centre_crop_size(height, width, ratio)
    found = fits.any()
    crop_h = jnp.where(found, cand_h[first], centre_h)
    crop_w = jnp.where(found, cand_w[first], centre_w)
    top = jnp.where(found, _uniform_int(u[-2], height - crop_h + 1), (height - crop_h) // 2)
    left = jnp.where(found, _uniform_int(u[-1], width - crop_w + 1), (width - crop_w) // 2)
    return jnp.stack([top, left, crop_h, crop_w]).astype(jnp.int32)


def _uniform_int(u: Array, count: Array) -> Array:
    """Maps ``u ~ U[0, 1)`` to a uniform integer in ``[0, count)``."""
    return jnp.minimum(jnp.floor(u * count).astype(jnp.int32), count - 1)


def _centre_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """The fallback box: the whole image, cut to the nearest allowed ratio."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return min(height, max(1, round(width / ratio[0]))), width
    if in_ratio > ratio[1]:
        return height, min(width, max(1, round(height * ratio[1])))
    return height, width


def _separable(rows: Array, image: Array, cols: Array) -> Array:
    """``rows @ image @ cols^T`` per channel, in float32 at full precision
    (TPUs and recent GPUs otherwise multiply float32 in reduced precision)."""
    out = jnp.einsum(
        "oh,hwc,pw->opc", rows, image.astype(jnp.float32), cols, precision=_HIGHEST
    )
    return out.astype(image.dtype)


def _resize_matrix(
    start: Array, length: Array, in_size: int, out_size: int, antialias: bool
) -> Array:
    """``(out_size, in_size)`` weights resampling pixels ``[start, start+length)``.

    Output pixel ``o`` is centred at ``c_o = start + (o + 1/2) * s`` in input
    coordinates (pixel ``i`` covers ``[i, i + 1)``), ``s = length / out_size``.
    Its weights are the triangle (bilinear) filter ``max(0, 1 - |i + 1/2 -
    c_o| / t)`` over the pixels inside the box, normalised to sum to one;
    ``t = max(s, 1)`` with antialiasing, else ``t = 1`` (plain bilinear with
    half-pixel centres and the box's edge pixels repeated, i.e. PyTorch's
    ``align_corners=False``).
    """
    start = start.astype(jnp.float32)
    length = length.astype(jnp.float32)
    step = length / out_size
    centres = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * step
    width = jnp.maximum(step, 1.0) if antialias else 1.0
    pixel = jnp.arange(in_size, dtype=jnp.float32)
    distance = jnp.abs(pixel[None, :] + 0.5 - centres[:, None])
    weights = jnp.maximum(0.0, 1.0 - distance / width)
    inside = (pixel >= start) & (pixel < start + length)
    weights = jnp.where(inside[None, :], weights, 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def resized_crop(
    image: Array, box: Array, out_size: int | tuple[int, int], *, antialias: bool = True
) -> Array:
    """Crops ``box = [top, left, crop_h, crop_w]`` and resizes it to ``out_size``.

    Separable: ``out = R_y @ image @ R_x^T`` per channel, with the resampling
    matrices of :func:`_resize_matrix`, so the box may be a traced value
    (the cost is ``O(out_h H W C + out_h out_w W C)`` multiply-adds).
    """
    image = check_image(image)
    out_h, out_w = check_size(out_size, "out_size")
    box = jnp.asarray(box)
    rows = _resize_matrix(box[0], box[2], image.shape[0], out_h, antialias)
    cols = _resize_matrix(box[1], box[3], image.shape[1], out_w, antialias)
    return _separable(rows, image, cols)


def random_resized_crop(
    key: Array,
    image: Array,
    out_size: int | tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    *,
    antialias: bool = True,
    num_trials: int = 10,
) -> Array:
    """torchvision-style ``RandomResizedCrop``: :func:`sample_crop_box` then
    :func:`resized_crop` (bilinear, antialiased unless ``antialias=False``)."""
    image = check_image(image)
    check_size(out_size, "out_size")
    box = sample_crop_box(
        key, image.shape[0], image.shape[1], scale, ratio, num_trials=num_trials
    )
    return resized_crop(image, box, out_size, antialias=antialias)


def random_padded_crop(
    key: Array, image: Array, out_size: int | tuple[int, int], padding: int
) -> Array:
    """torchvision-style ``RandomCrop(out_size, padding)``: ``padding`` zero
    pixels on every side, then the ``out_size`` window at a uniformly drawn
    integer offset (top in ``[0, H + 2 padding - out_h]``, left likewise).
    No resampling: the output pixels are input (or padding) pixels. The
    standard supervised CIFAR crop is ``out_size=32, padding=4``."""
    image = check_image(image)
    out_h, out_w = check_size(out_size, "out_size")
    if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    height, width = image.shape[0] + 2 * padding, image.shape[1] + 2 * padding
    if out_h > height or out_w > width:
        raise ValueError(f"out_size {(out_h, out_w)} is larger than the padded image "
                         f"{(height, width)}")
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    u = jax.random.uniform(key, (2,))
    top = _uniform_int(u[0], height - out_h + 1)
    left = _uniform_int(u[1], width - out_w + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (out_h, out_w, image.shape[2]))


# --------------------------------------------------------------------- flip


def horizontal_flip(key: Array, image: Array, p: float = 0.5) -> Array:
    """Mirrors the width axis (``image[:, ::-1]``) with probability ``p``."""
    image = check_image(image)
    p = check_prob(p, "p")
    return jnp.where(jax.random.uniform(key) < p, image[:, ::-1], image)


# --------------------------------------------------------------------- blur


def _reflect_blur_matrix(size: int, weights: Array) -> Array:
    """``(size, size)`` matrix of a 1-D convolution with reflect padding.

    Row ``i`` puts tap ``t``'s weight on pixel ``reflect(i + t - k // 2)``
    (reflection without repeating the edge, as ``numpy.pad(mode="reflect")``).
    """
    k = weights.shape[0]
    padded = np.pad(np.arange(size), k // 2, mode="reflect")
    source = np.stack([padded[i : i + k] for i in range(size)])  # (size, k), static
    rows = np.repeat(np.arange(size), k)
    return jnp.zeros((size, size), weights.dtype).at[rows, source.ravel()].add(
        jnp.tile(weights, size)
    )


def gaussian_blur(image: Array, sigma: Any, kernel_size: int) -> Array:
    """Separable Gaussian blur, reflect padding (torchvision's ``gaussian_blur``).

    The 1-D kernel is ``w_t ∝ exp(-x_t^2 / (2 sigma^2))``, ``x_t = t - (k-1)/2``
    for ``t = 0..k-1``, normalised to sum to one; it is applied along height
    and width. ``kernel_size`` must be odd and at most ``2 min(H, W) - 1``.
    """
    image = check_image(image)
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if kernel_size // 2 >= min(image.shape[:2]):
        raise ValueError(
            f"kernel_size={kernel_size} needs kernel_size // 2 < min(H, W) = "
            f"{min(image.shape[:2])} for reflect padding"
        )
    if is_number(sigma) and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    x = jnp.arange(kernel_size, dtype=jnp.float32) - (kernel_size - 1) / 2
    weights = jnp.exp(-0.5 * jnp.square(x / sigma))
    weights = weights / weights.sum()
    rows = _reflect_blur_matrix(image.shape[0], weights)
    cols = _reflect_blur_matrix(image.shape[1], weights)
    return _separable(rows, image, cols)


def random_gaussian_blur(
    key: Array,
    image: Array,
    kernel_size: int,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
) -> Array:
    """With probability ``p``, :func:`gaussian_blur` with ``sigma ~ U(sigma)``
    (continuous, as torchvision; FFCV-SSL picks one of 10 evenly spaced values)."""
    sigma = check_interval(sigma, "sigma")
    p = check_prob(p, "p")
    k_apply, k_sigma = jax.random.split(key)
    s = jax.random.uniform(k_sigma, minval=sigma[0], maxval=sigma[1])
    blurred = gaussian_blur(image, s, kernel_size)
    return jnp.where(jax.random.uniform(k_apply) < p, blurred, image)
