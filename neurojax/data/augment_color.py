"""Colour augmentations: brightness, contrast, saturation, hue, colour jitter,
grayscale, solarize.

Each changes pixel values one pixel at a time (contrast through the image's
mean luma). Images are one ``(H, W, C)`` array, floating point in [0, 1],
``C = 3`` (``C = 1`` is accepted: saturation, hue and grayscale leave a
one-channel image unchanged); random operations take an explicit PRNG key
(jit- and vmap-friendly). The recipe that chains them is
:mod:`neurojax.data.augment`.

Numerical conventions (named):

- Colour operations follow torchvision's ``ColorJitter`` semantics (factors
  uniform in ``[max(0, 1 - b), 1 + b]``, hue shifted in HSV space, the four
  operations in a random order per image, each result clipped to [0, 1]).
  Luma uses the ITU-R 601 weights 0.299 / 0.587 / 0.114 (PIL's
  ``convert("L")``); torchvision's tensor path uses 0.2989 for red and
  FFCV-SSL's jitter does too (a difference below 1e-4 of a pixel value).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from neurojax.data._augment_checks import (Array, check_image, check_nonneg, check_prob,
                                           is_number)

#: ITU-R BT.601 luma weights for (R, G, B).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


# ------------------------------------ brightness, contrast, saturation, hue


def _check_factor(factor: Any, name: str, *, low: float, high: float = math.inf) -> None:
    """Checks a factor given as a Python number; traced factors pass through."""
    if is_number(factor) and not low <= factor <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {factor!r}")


def _luma(image: Array) -> Array:
    """``Y = 0.299 R + 0.587 G + 0.114 B`` as ``(H, W, 1)``; a 1-channel image is its own luma."""
    if image.shape[-1] == 1:
        return image
    # channel slices, not a sum over the 3-long last axis: XLA:CPU fuses the
    # former with what follows and runs the latter as a slow separate loop
    (wr, wg, wb), c = LUMA_WEIGHTS, lambda i: image[..., i:i + 1]
    return wr * c(0) + wg * c(1) + wb * c(2)


def _blend(image: Array, other: Array, factor: Any) -> Array:
    """``clip(f * image + (1 - f) * other, 0, 1)``: torchvision's blend."""
    return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0).astype(image.dtype)


def adjust_brightness(image: Array, factor: Any) -> Array:
    """``clip(f * x, 0, 1)`` (blend with black); ``f >= 0``, 1 is the identity."""
    image = check_image(image)
    _check_factor(factor, "factor", low=0.0)
    return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: Array, factor: Any) -> Array:
    """``clip(f * x + (1 - f) * mean(Y), 0, 1)``: blend with the image's mean luma."""
    image = check_image(image)
    _check_factor(factor, "factor", low=0.0)
    return _blend(image, jnp.mean(_luma(image)), factor)


def adjust_saturation(image: Array, factor: Any) -> Array:
    """``clip(f * x + (1 - f) * Y, 0, 1)``: blend with the per-pixel luma.

    A one-channel image has no saturation and is returned unchanged.
    """
    image = check_image(image)
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
    maxc = jnp.maximum(jnp.maximum(r, g), b)  # (elementwise: fuses, see _luma)
    delta = maxc - jnp.minimum(jnp.minimum(r, g), b)
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
    image = check_image(image)
    _check_factor(shift, "shift", low=-0.5, high=0.5)
    if image.shape[-1] == 1:
        return image
    hsv = rgb_to_hsv(image.astype(jnp.float32))
    hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0).astype(image.dtype)


# ------------------------------------------------------------ colour jitter


def _jitter_ops(
    brightness: float, contrast: float, saturation: float, hue: float
) -> list[tuple[str, float, float]]:
    """The active jitter operations (name, factor range), in canonical order."""
    ops = []
    for name, strength in (
        ("brightness", brightness), ("contrast", contrast), ("saturation", saturation)
    ):
        strength = check_nonneg(strength, name)
        if strength > 0:
            ops.append((name, max(0.0, 1.0 - strength), 1.0 + strength))
    hue = check_nonneg(hue, "hue")
    if hue > 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue!r}")
    if hue > 0:
        ops.append(("hue", -hue, hue))
    return ops


def _apply_in_order(image: Array, names: list[str], factors: Array, order: Array) -> Array:
    """The operations ``names[order[0]], names[order[1]], ...`` with their factors.

    Written for ``vmap``, where a switch per step would evaluate every branch
    (k^2 operations for k steps). Brightness, contrast and saturation are one
    blend ``clip(f x + (1 - f) t)`` with the target t black, the mean luma
    or the per-pixel luma, so each step is one blend whose target is picked
    by 0/1 weights (exact: ``t = c_mean mean(Y) + c_pix Y``). The hue
    rotation (two colour-space conversions, the costly operation) runs once,
    at its drawn position p, between the blend steps before p and those
    after it; a step that is not a blend there leaves the image as it is. A
    one-channel image has no saturation or hue (``adjust_saturation`` and
    ``adjust_hue`` return it unchanged).
    """
    k = len(names)
    op_is = lambda name: jnp.asarray([n == name for n in names])
    is_contrast, is_saturation = op_is("contrast"), op_is("saturation")
    blends = op_is("brightness") | is_contrast
    if image.shape[-1] == 3:
        blends = blends | is_saturation

    def step(x, i, active):
        j = order[i]
        luma = _luma(x)
        target = (is_contrast[j] * jnp.mean(luma) + is_saturation[j] * luma).astype(x.dtype)
        return jnp.where(active & blends[j], _blend(x, target, factors[j]), x)

    if "hue" not in names:
        for i in range(k):
            image = step(image, i, True)
        return image
    h = names.index("hue")
    at = jnp.argmax(order == h)  # the hue's position in the order
    for i in range(k - 1):  # the steps before the hue
        image = step(image, i, i < at)
    image = adjust_hue(image, factors[h])
    for i in range(1, k):  # the steps after it
        image = step(image, i, i > at)
    return image


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
    :func:`sample_jitter_params`; the order is applied by
    :func:`_apply_in_order` (one hue rotation per image, also under ``vmap``).
    """
    image = check_image(image)
    ops = _jitter_ops(brightness, contrast, saturation, hue)
    p = check_prob(p, "p")
    if not ops or p == 0.0:
        return image
    u_apply, factors, order = _draw_jitter(key, ops, random_order)
    jittered = _apply_in_order(image, [name for name, _, _ in ops], factors, order)
    return jnp.where(u_apply < p, jittered, image)


# --------------------------------------------------- grayscale and solarize


def to_grayscale(image: Array) -> Array:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` replicated to every channel."""
    image = check_image(image)
    return jnp.broadcast_to(_luma(image), image.shape).astype(image.dtype)


def random_grayscale(key: Array, image: Array, p: float = 0.2) -> Array:
    """:func:`to_grayscale` with probability ``p``."""
    image = check_image(image)
    p = check_prob(p, "p")
    return jnp.where(jax.random.uniform(key) < p, to_grayscale(image), image)


def solarize(image: Array, threshold: float = 0.5) -> Array:
    """Inverts pixels at or above ``threshold``: ``x >= t ? 1 - x : x``."""
    image = check_image(image)
    if not is_number(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return jnp.where(image >= threshold, 1.0 - image, image)


def random_solarize(key: Array, image: Array, p: float, threshold: float = 0.5) -> Array:
    """:func:`solarize` with probability ``p``."""
    p = check_prob(p, "p")
    return jnp.where(jax.random.uniform(key) < p, solarize(image, threshold), image)
