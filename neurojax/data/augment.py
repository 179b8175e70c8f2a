"""Jittable image augmentations for self-supervised pretraining.

The views of the multi-augmentation SSL study (Ghosh, thesis Part III, Sec. 4
and App. D; the NeurIPS 2024 paper on small projectors and multiple views)
are made by the FastSSL recipe: random resized crop -> horizontal flip ->
colour jitter (p = 0.8) -> grayscale -> normalise.
Every augmentation takes one image ``(H, W, C)``, floating point in
[0, 1], with ``C = 3`` (``C = 1`` is accepted: the colour-only operations,
saturation, hue and grayscale, leave a one-channel image unchanged), and is
driven by an explicit PRNG key, so it runs under ``jax.jit`` and
``jax.vmap`` (see :mod:`neurojax.data.views` for many views of a batch).

The operations are in :mod:`neurojax.data.augment_spatial` (random resized
crop, flip, Gaussian blur) and :mod:`neurojax.data.augment_color` (colour
jitter, grayscale, solarize); this module holds what chains them: the
dataset statistics, ``normalize``, :class:`AugmentRecipe`, :func:`augment`
and the paper's recipes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice
from neurojax.data._augment_checks import (Array, check_interval, check_nonneg, check_prob,
                                           check_size, is_number)
from neurojax.data.augment_color import color_jitter, random_grayscale, random_solarize
from neurojax.data.augment_spatial import (horizontal_flip, random_gaussian_blur,
                                           random_padded_crop, random_resized_crop)

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
    one-channel dataset's statistics as 1-tuples. ``crop_padding`` > 0
    replaces the random resized crop by the padded crop of supervised CIFAR
    training (``random_padded_crop``: zero-pad by ``crop_padding``, take an
    ``out_size`` window; ``crop_scale``/``crop_ratio``/``antialias`` unused).
    """

    out_size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    antialias: bool = True
    crop_padding: int = 0
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
        check_size(self.out_size, "out_size")
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_interval(self.crop_scale, "crop_scale", high=1.0)
        check_interval(self.crop_ratio, "crop_ratio")
        check_interval(self.blur_sigma, "blur_sigma")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            check_prob(getattr(self, name), name)
        for name in ("brightness", "contrast", "saturation", "hue"):
            check_nonneg(getattr(self, name), name)
        if self.hue > 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        for name in ("antialias", "jitter_random_order"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        c = self.crop_padding
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {c!r}")
        k = self.blur_kernel_size
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
            raise ValueError(f"blur_kernel_size must be a positive odd int, got {k!r}")
        if not is_number(self.solarize_threshold) or not 0 <= self.solarize_threshold <= 1:
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

    FastSSL's CIFAR order (spec section 2, Part III): random resized crop
    (or the padded crop, ``crop_padding`` > 0) ->
    horizontal flip -> colour jitter (with ``jitter_p``) -> grayscale (with
    ``grayscale_p``) -> [Gaussian blur] -> [solarize] -> normalise. Each
    step gets its own subkey of ``key``.
    """
    if not isinstance(recipe, AugmentRecipe):
        raise ValueError(f"recipe must be an AugmentRecipe, got {type(recipe).__name__}")
    keys = jax.random.split(key, 6)
    r = recipe
    if r.crop_padding > 0:
        x = random_padded_crop(keys[0], image, r.out_size, r.crop_padding)
    else:
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
    check_choice("variant", variant, _VARIANTS)
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
    check_choice("variant", variant, _VARIANTS)
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
