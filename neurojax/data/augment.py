"""Jittable image augmentations for self-supervised pretraining.

The views of the multi-augmentation SSL study (Ghosh, thesis Part III, Sec. 4
and App. D; the NeurIPS 2024 paper on small projectors and multiple views)
are made by the FastSSL recipe: random resized crop -> horizontal flip ->
colour jitter (p = 0.8) -> grayscale -> normalise.
Every function here takes one image ``(H, W, C)``, floating point in
[0, 1], with ``C = 3`` (``C = 1`` is accepted: the colour-only operations,
saturation, hue and grayscale, leave a one-channel image unchanged), and is
driven by an explicit PRNG key, so it runs under ``jax.jit`` and
``jax.vmap`` (see :mod:`neurojax.data.views` for many views of a batch).

Numerical conventions (named, as the design asks):

- Colour operations follow torchvision's ``ColorJitter`` semantics (factors
  uniform in ``[max(0, 1 - b), 1 + b]``, hue shifted in HSV space, the four
  operations in a random order per image, each result clipped to [0, 1]).
  Luma uses the ITU-R 601 weights 0.299 / 0.587 / 0.114 (PIL's
  ``convert("L")``); torchvision's tensor path uses 0.2989 for red and
  FFCV-SSL's jitter does too (a difference below 1e-4 of a pixel value).
- The crop samples its box like torchvision's ``RandomResizedCrop`` (area
  fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``, ten
  candidates, then a centre crop) and resizes it as "crop, then resize":
  bilinear (triangle filter) over pixels of the box only, with antialiasing
  on by default (a triangle stretched by the reduction factor when the box is
  larger than the output, as PIL and torchvision >= 0.17 do). FFCV's decoder,
  used for the paper's timings, crops with OpenCV's area interpolation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: ITU-R BT.601 luma weights for (R, G, B).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: CIFAR-10 training-set channel statistics (FastSSL's FFCV path:
#: ``CIFAR_FFCV_MEAN / 255`` and ``CIFAR_FFCV_STD / 255``).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
#: ImageNet statistics; FastSSL's torchvision path normalises CIFAR with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: STL-10 training-set statistics (FastSSL's ``STL_MEAN``/``STL_STD``).
STL10_MEAN = (0.4467, 0.4398, 0.4066)
STL10_STD = (0.2242, 0.2215, 0.2239)

_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------- checks


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_prob(p: Any, name: str) -> float:
    if not _is_number(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_nonneg(x: Any, name: str) -> float:
    if not _is_number(x) or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    return float(x)


def _check_interval(pair: Any, name: str, *, low: float = 0.0, high: float = math.inf):
    """A pair ``(a, b)`` with ``low < a <= b <= high``."""
    try:
        a, b = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max) of numbers, got {pair!r}") from None
    if not (low < a <= b <= high) or not all(_is_number(v) for v in pair):
        raise ValueError(f"{name} must satisfy {low} < min <= max <= {high}, got {pair!r}")
    return a, b


def _check_size(size: Any, name: str) -> tuple[int, int]:
    """A positive int (square) or a pair of positive ints ``(height, width)``."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    try:
        ok = len(pair) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in pair
        )
    except TypeError:
        ok = False
    if not ok or isinstance(size, bool):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def _check_image(image: Any, name: str = "image") -> Array:
    image = jnp.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} must have shape (H, W, C) with C = 1 or 3, got {image.shape}"
        )
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point in [0, 1], got dtype {image.dtype}")
    return image


def _check_factor(factor: Any, name: str, *, low: float, high: float = math.inf) -> None:
    """Checks a factor given as a Python number; traced factors pass through."""
    if _is_number(factor) and not low <= factor <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {factor!r}")


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
    height, width = _check_size((height, width), "(height, width)")
    scale = _check_interval(scale, "scale", high=1.0)
    ratio = _check_interval(ratio, "ratio")
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
    image = _check_image(image)
    out_h, out_w = _check_size(out_size, "out_size")
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
    image = _check_image(image)
    _check_size(out_size, "out_size")
    box = sample_crop_box(
        key, image.shape[0], image.shape[1], scale, ratio, num_trials=num_trials
    )
    return resized_crop(image, box, out_size, antialias=antialias)


# --------------------------------------------------------------------- flip


def horizontal_flip(key: Array, image: Array, p: float = 0.5) -> Array:
    """Mirrors the width axis (``image[:, ::-1]``) with probability ``p``."""
    image = _check_image(image)
    p = _check_prob(p, "p")
    return jnp.where(jax.random.uniform(key) < p, image[:, ::-1], image)


# ------------------------------------------------------------------- colour


def _luma(image: Array) -> Array:
    """``Y = 0.299 R + 0.587 G + 0.114 B`` as ``(H, W, 1)``; a 1-channel image is its own luma."""
    if image.shape[-1] == 1:
        return image
    weights = jnp.asarray(LUMA_WEIGHTS, dtype=image.dtype)
    return jnp.sum(image * weights, axis=-1, keepdims=True)


def _blend(image: Array, other: Array, factor: Any) -> Array:
    """``clip(f * image + (1 - f) * other, 0, 1)``: torchvision's blend."""
    return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0).astype(image.dtype)


def adjust_brightness(image: Array, factor: Any) -> Array:
    """``clip(f * x, 0, 1)`` (blend with black); ``f >= 0``, 1 is the identity."""
    image = _check_image(image)
    _check_factor(factor, "factor", low=0.0)
    return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: Array, factor: Any) -> Array:
    """``clip(f * x + (1 - f) * mean(Y), 0, 1)``: blend with the image's mean luma."""
    image = _check_image(image)
    _check_factor(factor, "factor", low=0.0)
    return _blend(image, jnp.mean(_luma(image)), factor)


def adjust_saturation(image: Array, factor: Any) -> Array:
    """``clip(f * x + (1 - f) * Y, 0, 1)``: blend with the per-pixel luma.

    A one-channel image has no saturation and is returned unchanged.
    """
    image = _check_image(image)
    _check_factor(factor, "factor", low=0.0)
    if image.shape[-1] == 1:
        return image
    return _blend(image, _luma(image), factor)


def rgb_to_hsv(rgb: Array) -> Array:
    """RGB in [0, 1] (last axis) to HSV in [0, 1], the formulas of ``colorsys``.

    ``V = max``, ``S = (max - min) / max``, and the hue is the position on the
    colour hexagon: ``H = ((G - B) / d, 2 + (B - R) / d, 4 + (R - G) / d) / 6
    mod 1`` when red, green or blue is the maximum, ``d = max - min``;
    grays (``d = 0``) get ``H = S = 0``.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = jnp.max(rgb, axis=-1)
    delta = maxc - jnp.min(rgb, axis=-1)
    gray = delta <= 0
    safe_delta = jnp.where(gray, 1.0, delta)
    sat = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    hue = jnp.where(
        maxc == r,
        (g - b) / safe_delta,
        jnp.where(maxc == g, 2.0 + (b - r) / safe_delta, 4.0 + (r - g) / safe_delta),
    )
    hue = jnp.where(gray, 0.0, jnp.mod(hue / 6.0, 1.0))
    return jnp.stack([hue, sat, maxc], axis=-1)


def hsv_to_rgb(hsv: Array) -> Array:
    """HSV in [0, 1] to RGB: channel ``n`` (5, 3, 1 for R, G, B) is
    ``V - V S clip(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 H) mod 6``."""
    h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
    n = jnp.asarray([5.0, 3.0, 1.0], dtype=hsv.dtype)
    k = jnp.mod(n + 6.0 * h, 6.0)
    return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_hue(image: Array, shift: Any) -> Array:
    """Rotates the hue: ``H' = (H + shift) mod 1`` in HSV, ``shift in [-0.5, 0.5]``.

    A one-channel image has no hue and is returned unchanged.
    """
    image = _check_image(image)
    _check_factor(shift, "shift", low=-0.5, high=0.5)
    if image.shape[-1] == 1:
        return image
    hsv = rgb_to_hsv(image.astype(jnp.float32))
    hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0).astype(image.dtype)


def _jitter_ops(
    brightness: float, contrast: float, saturation: float, hue: float
) -> list[tuple[Callable[[Array, Any], Array], float, float]]:
    """The active jitter operations with their factor ranges, in canonical order."""
    ops = []
    for fn, strength, name in (
        (adjust_brightness, brightness, "brightness"),
        (adjust_contrast, contrast, "contrast"),
        (adjust_saturation, saturation, "saturation"),
    ):
        strength = _check_nonneg(strength, name)
        if strength > 0:
            ops.append((fn, max(0.0, 1.0 - strength), 1.0 + strength))
    hue = _check_nonneg(hue, "hue")
    if hue > 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue!r}")
    if hue > 0:
        ops.append((adjust_hue, -hue, hue))
    return ops


def sample_jitter_params(
    key: Array,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    *,
    random_order: bool = True,
) -> tuple[Array, Array]:
    """The ``(factors, order)`` that :func:`color_jitter` draws from ``key``.

    Only the operations with a nonzero strength are active, indexed in the
    order brightness, contrast, saturation, hue. ``factors[j]`` is active
    operation j's factor (``U[max(0, 1 - b), 1 + b]``, or ``U[-h, h]`` for
    the hue shift); ``order`` is a permutation of ``range(k)`` (the identity
    when ``random_order=False``): step ``i`` applies operation ``order[i]``.
    """
    ops = _jitter_ops(brightness, contrast, saturation, hue)
    _, factors, order = _draw_jitter(key, ops, random_order)
    return factors, order


def _draw_jitter(key: Array, ops: list, random_order: bool) -> tuple[Array, Array, Array]:
    """One uniform draw: ``u[0]`` decides application, then factors, then order."""
    k = len(ops)
    u = jax.random.uniform(key, (1 + 2 * k,))
    lows = jnp.asarray([low for _, low, _ in ops], jnp.float32)
    highs = jnp.asarray([high for _, _, high in ops], jnp.float32)
    factors = lows + (highs - lows) * u[1 : 1 + k]
    # The ranks of k i.i.d. uniforms are a uniformly random permutation.
    order = jnp.argsort(u[1 + k :]) if random_order else jnp.arange(k)
    return u[0], factors, order


def color_jitter(
    key: Array,
    image: Array,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
    *,
    random_order: bool = True,
) -> Array:
    """torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)`` on one image.

    With probability ``p``: draw ``f_b ~ U[max(0, 1 - b), 1 + b]``, ``f_c``,
    ``f_s`` likewise and ``f_h ~ U[-h, h]``, then apply
    :func:`adjust_brightness`, :func:`adjust_contrast`,
    :func:`adjust_saturation` and :func:`adjust_hue` in a random order (a
    permutation per image; ``random_order=False`` keeps that order, as FFCV-SSL
    does). An operation whose strength is 0 is skipped. The draws are
    :func:`sample_jitter_params`. The order is applied with ``lax.switch``
    inside a ``fori_loop``; under ``vmap`` the switch evaluates every branch,
    so k active operations cost k^2 evaluations per image.
    """
    image = _check_image(image)
    ops = _jitter_ops(brightness, contrast, saturation, hue)
    p = _check_prob(p, "p")
    if not ops or p == 0.0:
        return image
    u_apply, factors, order = _draw_jitter(key, ops, random_order)
    branches = [lambda x, f, fn=fn: fn(x, f) for fn, _, _ in ops]

    def apply_one(i: Array, x: Array) -> Array:
        j = order[i]
        return jax.lax.switch(j, branches, x, factors[j])

    jittered = jax.lax.fori_loop(0, len(ops), apply_one, image)
    return jnp.where(u_apply < p, jittered, image)


def to_grayscale(image: Array) -> Array:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` replicated to every channel."""
    image = _check_image(image)
    return jnp.broadcast_to(_luma(image), image.shape).astype(image.dtype)


def random_grayscale(key: Array, image: Array, p: float = 0.2) -> Array:
    """:func:`to_grayscale` with probability ``p``."""
    image = _check_image(image)
    p = _check_prob(p, "p")
    return jnp.where(jax.random.uniform(key) < p, to_grayscale(image), image)


# -------------------------------------------------------- blur and solarize


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
    image = _check_image(image)
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if kernel_size // 2 >= min(image.shape[:2]):
        raise ValueError(
            f"kernel_size={kernel_size} needs kernel_size // 2 < min(H, W) = "
            f"{min(image.shape[:2])} for reflect padding"
        )
    if _is_number(sigma) and not sigma > 0:
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
    sigma = _check_interval(sigma, "sigma")
    p = _check_prob(p, "p")
    k_apply, k_sigma = jax.random.split(key)
    s = jax.random.uniform(k_sigma, minval=sigma[0], maxval=sigma[1])
    blurred = gaussian_blur(image, s, kernel_size)
    return jnp.where(jax.random.uniform(k_apply) < p, blurred, image)


def solarize(image: Array, threshold: float = 0.5) -> Array:
    """Inverts pixels at or above ``threshold``: ``x >= t ? 1 - x : x``."""
    image = _check_image(image)
    if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return jnp.where(image >= threshold, 1.0 - image, image)


def random_solarize(key: Array, image: Array, p: float, threshold: float = 0.5) -> Array:
    """:func:`solarize` with probability ``p``."""
    p = _check_prob(p, "p")
    return jnp.where(jax.random.uniform(key) < p, solarize(image, threshold), image)


# ---------------------------------------------------------------- normalise


def _check_stats(mean: Any, std: Any, channels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``mean``/``std`` as 1-D float arrays of length 1 or ``channels``; ``std > 0``."""
    arrays = []
    for name, value in (("mean", mean), ("std", std)):
        try:
            arr = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a sequence of numbers, got {value!r}") from None
        allowed = (1, channels) if channels is not None else (len(np.atleast_1d(mean)),)
        if arr.ndim != 1 or len(arr) not in allowed or not np.all(np.isfinite(arr)):
            want = f"1 or C = {channels}" if channels is not None else "that of mean"
            raise ValueError(f"{name} must be finite with length {want}, got {value!r}")
        arrays.append(arr)
    if np.any(arrays[1] <= 0):
        raise ValueError(f"std must be > 0, got {std!r}")
    return arrays[0], arrays[1]


def normalize(image: Array, mean: Sequence[float], std: Sequence[float]) -> Array:
    """``(x - mean) / std`` per channel (last axis); ``mean``/``std`` have length 1 or C."""
    image = jnp.asarray(image)
    channels = image.shape[-1] if image.ndim else 0
    mean_arr, std_arr = _check_stats(mean, std, channels)
    dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
    return ((image - mean_arr.astype(dtype)) / std_arr.astype(dtype)).astype(dtype)


# ------------------------------------------------------------------- recipe


@dataclasses.dataclass(frozen=True)
class AugmentRecipe:
    """The parameters of :func:`augment` (hashable, so usable as a static arg).

    Defaults are :func:`cifar_recipe`. ``mean``/``std`` ``None`` skips the
    normalisation; ``blur_p``/``solarize_p`` 0 skip those steps. Pass a
    one-channel dataset's statistics as 1-tuples.
    """

    out_size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    antialias: bool = True
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    jitter_random_order: bool = True
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_kernel_size: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] | None = CIFAR10_MEAN
    std: tuple[float, ...] | None = CIFAR10_STD

    def __post_init__(self):
        _check_size(self.out_size, "out_size")
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_interval(self.crop_scale, "crop_scale", high=1.0)
        _check_interval(self.crop_ratio, "crop_ratio")
        _check_interval(self.blur_sigma, "blur_sigma")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _check_prob(getattr(self, name), name)
        for name in ("brightness", "contrast", "saturation", "hue"):
            _check_nonneg(getattr(self, name), name)
        if self.hue > 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        for name in ("antialias", "jitter_random_order"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        k = self.blur_kernel_size
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
            raise ValueError(f"blur_kernel_size must be a positive odd int, got {k!r}")
        if not _is_number(self.solarize_threshold) or not 0 <= self.solarize_threshold <= 1:
            raise ValueError(
                f"solarize_threshold must be in [0, 1], got {self.solarize_threshold!r}"
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must both be given or both be None")
        if self.mean is not None:
            mean, std = _check_stats(self.mean, self.std, None)
            object.__setattr__(self, "mean", tuple(mean.tolist()))
            object.__setattr__(self, "std", tuple(std.tolist()))


def augment(key: Array, image: Array, recipe: AugmentRecipe) -> Array:
    """One random view of ``image`` ``(H, W, C)``: ``(out_size, out_size, C)``.

    FastSSL's CIFAR order (spec section 2, Part III): random resized crop ->
    horizontal flip -> colour jitter (with ``jitter_p``) -> grayscale (with
    ``grayscale_p``) -> [Gaussian blur] -> [solarize] -> normalise. Each
    step gets its own subkey of ``key``.
    """
    if not isinstance(recipe, AugmentRecipe):
        raise ValueError(f"recipe must be an AugmentRecipe, got {type(recipe).__name__}")
    keys = jax.random.split(key, 6)
    r = recipe
    x = random_resized_crop(
        keys[0], image, r.out_size, r.crop_scale, r.crop_ratio, antialias=r.antialias
    )
    x = horizontal_flip(keys[1], x, r.flip_p)
    x = color_jitter(
        keys[2], x, r.brightness, r.contrast, r.saturation, r.hue, r.jitter_p,
        random_order=r.jitter_random_order,
    )
    x = random_grayscale(keys[3], x, r.grayscale_p)
    if r.blur_p > 0:
        x = random_gaussian_blur(keys[4], x, r.blur_kernel_size, r.blur_sigma, r.blur_p)
    if r.solarize_p > 0:
        x = random_solarize(keys[5], x, r.solarize_p, r.solarize_threshold)
    if r.mean is not None:
        x = normalize(x, r.mean, r.std)
    return x


_VARIANTS = ("torchvision", "ffcv")


def _check_variant(variant: str) -> None:
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")


def cifar_recipe(size: int = 32, *, variant: str = "torchvision") -> AugmentRecipe:
    """The paper's CIFAR-10 recipe (FastSSL ``fastssl/data/cifar_transforms.py``).

    Crop ``size`` with scale (0.08, 1) and ratio (3/4, 4/3), flip 0.5,
    ColorJitter(0.4, 0.4, 0.4, hue) with p = 0.8, grayscale p = 0.2,
    normalise with the CIFAR-10 statistics. ``variant="torchvision"`` (its
    ``CifarTransform``): hue 0.1, random jitter order. ``variant="ffcv"``
    (the FFCV path the paper's timings used): hue 0.0, fixed order
    brightness -> contrast -> saturation. (FastSSL's torchvision path
    normalises with ImageNet statistics; pass ``mean``/``std`` through
    ``dataclasses.replace`` to match it.)
    """
    _check_variant(variant)
    ffcv = variant == "ffcv"
    return AugmentRecipe(
        out_size=size,
        hue=0.0 if ffcv else 0.1,
        jitter_random_order=not ffcv,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def stl10_recipe(size: int = 64, *, variant: str = "torchvision") -> AugmentRecipe:
    """The paper's STL-10 recipe (FastSSL ``STLTransform``/``STLTransformFFCV``).

    As :func:`cifar_recipe` but crop scale (0.2, 1), grayscale p = 0.1,
    STL-10 statistics, ``size`` 64 (the multi-crop experiment, E6, adds
    32 x 32 views made with the same recipe at ``size=32``). FastSSL's
    torchvision path jitters before cropping and resizes bicubically; here
    the order of :func:`augment` and bilinear resizing are kept. (Its FFCV
    path passes the mean as the std, a bug not reproduced.)
    """
    _check_variant(variant)
    ffcv = variant == "ffcv"
    return AugmentRecipe(
        out_size=size,
        crop_scale=(0.2, 1.0),
        hue=0.0 if ffcv else 0.1,
        jitter_random_order=not ffcv,
        grayscale_p=0.1,
        mean=STL10_MEAN,
        std=STL10_STD,
    )


def imagenet_recipe(size: int = 224) -> AugmentRecipe:
    """FastSSL's ImageNet-100 FFCV recipe (``ImageNetTransformFFCV``).

    Crop ``size`` with scale (0.08, 1), flip 0.5, ColorJitter(0.4, 0.4, 0.2,
    0.1) with p = 0.8, grayscale p = 0.2, Gaussian blur p = 0.1 (kernel 5,
    sigma in (0.1, 2)), ImageNet statistics (those of FastSSL's FFCV copy).
    The original Barlow Twins pair is asymmetric (blur p = 1 / 0.1,
    solarize p = 0 / 0.2, kernel 23): build it with ``dataclasses.replace``.
    """
    return AugmentRecipe(
        out_size=size,
        saturation=0.2,
        blur_p=0.1,
        blur_kernel_size=5,
        mean=(0.4820, 0.4538, 0.3998),
        std=(0.2208, 0.2165, 0.2157),
    )
