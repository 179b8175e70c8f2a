"""Many augmented views of a batch, in one or two resolution groups.

The multi-augmentation loss (thesis Part III, Eq. 10; spec section 2, E2/E3)
needs m views of every image; the SwAV-like multi-crop experiment (E6,
Fig. 20, STL-10) uses two 64 x 64 views plus 2 (m = 4) or 6 (m = 8) extra
32 x 32 views. FastSSL makes the small views with the same recipe at the
small size (``STLTransformFFCV(side_len=32)``, crop scale (0.2, 1)), not
SwAV's small-scale crops; that is the default here too (pass
``small_recipe`` with ``crop_scale=(0.05, 0.14)`` for SwAV's).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from neurojax._checks import check_int
from neurojax.data.augment import AugmentRecipe, augment

Array = jax.Array


def _small_recipe(
    recipe: AugmentRecipe, small_size: int | None, small_recipe: AugmentRecipe | None
) -> AugmentRecipe:
    """The small views' recipe: ``small_recipe``, else ``recipe`` at ``small_size``."""
    if small_recipe is None:
        if small_size is None:
            raise ValueError("small_size (or small_recipe) is required when small_views > 0")
        try:
            return dataclasses.replace(recipe, out_size=small_size)
        except ValueError as e:
            raise ValueError(f"small_size: {e}") from None
    if not isinstance(small_recipe, AugmentRecipe):
        raise ValueError(
            f"small_recipe must be an AugmentRecipe, got {type(small_recipe).__name__}"
        )
    if small_size is not None and small_size != small_recipe.out_size:
        raise ValueError(
            f"small_size={small_size!r} disagrees with small_recipe.out_size="
            f"{small_recipe.out_size!r}"
        )
    return small_recipe


def _view_group(key: Array, images: Array, count: int, recipe: AugmentRecipe) -> Array:
    """``count`` views of ``images (n, H, W, C)`` -> ``(count, n, S, S, C)``.

    View ``v`` of image ``i`` uses ``jax.random.split(key, (count, n))[v, i]``.
    The (view, image) pairs are flattened into one vmapped axis (a nested
    vmap compiles about 1.6x slower and runs no faster).
    """
    n = images.shape[0]
    keys = jax.random.split(key, (count, n))
    keys = keys.reshape((count * n,) + keys.shape[2:])  # typed or raw uint32 keys
    tiled = jnp.broadcast_to(images, (count, *images.shape)).reshape(count * n, *images.shape[1:])
    views = jax.vmap(lambda k, x: augment(k, x, recipe))(keys, tiled)
    return views.reshape(count, n, *views.shape[1:])


def make_views(
    key: Array,
    images: Array,
    num_views: int,
    recipe: AugmentRecipe,
    *,
    small_views: int = 0,
    small_size: int | None = None,
    small_recipe: AugmentRecipe | None = None,
) -> tuple[Array, ...]:
    """``num_views`` (+ ``small_views``) independent augmentations of every image.

    Args:
        key: PRNG key, split into ``(k_large, k_small)``; large view ``v`` of
            image ``i`` uses ``jax.random.split(k_large, (num_views, n))[v, i]``
            and small views likewise from ``k_small``: one independent key per
            (view, image), and adding small views leaves the large ones as
            they were.
        images: ``(n, H, W, C)`` floating point in [0, 1].
        num_views: large views per image (m for Eq. 10; >= 1).
        recipe: the large views' :class:`~neurojax.data.augment.AugmentRecipe`
            (its ``out_size`` is the large size).
        small_views: extra low-resolution views per image (E6: 2 or 6).
        small_size: their side; defaults to ``small_recipe.out_size``.
        small_recipe: their recipe; defaults to ``recipe`` at ``small_size``.
            ``small_size``/``small_recipe`` are ignored when ``small_views`` is 0.

    Returns:
        ``(large,)`` with ``large`` of shape ``(num_views, n, S, S, C)``, or
        ``(large, small)`` with ``small`` of shape
        ``(small_views, n, s, s, C)`` when ``small_views > 0``.

    The counts and recipes are static (Python values): under ``jax.jit`` close
    over them or mark them static. Cost: one :func:`augment` per (view,
    image), vmapped over both, so work and memory grow linearly in the number
    of views: per view about ``S H W C + S^2 W C`` multiply-adds for the
    separable crop-resize plus O(S^2 C) per colour step (the random-order
    jitter evaluates all its k <= 4 branches at each of its k steps under
    vmap), and the output holds ``(num_views S^2 + small_views s^2) n C``
    floats (m = 8 views of 256 CIFAR images: 25 MB in float32).
    """
    num_views = check_int("num_views", num_views, 1)
    small_views = check_int("small_views", small_views, 0)
    if not isinstance(recipe, AugmentRecipe):
        raise ValueError(f"recipe must be an AugmentRecipe, got {type(recipe).__name__}")
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W, C), got {images.shape}")
    small = _small_recipe(recipe, small_size, small_recipe) if small_views > 0 else None
    k_large, k_small = jax.random.split(key)
    groups = (_view_group(k_large, images, num_views, recipe),)
    if small is not None:
        groups += (_view_group(k_small, images, small_views, small),)
    return groups
