"""Argument checks shared by the augmentation modules of ``neurojax.data``.

``augment`` (the recipe), ``augment_spatial`` and ``augment_color`` validate
their Python-number arguments and images with these: each raises
``ValueError`` naming the argument and the allowed values, before anything
is compiled.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def is_number(x: Any) -> bool:
    """True for a real Python or NumPy number that is not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_prob(p: Any, name: str) -> float:
    """``p`` as a float if it is a number in [0, 1]."""
    if not is_number(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_nonneg(x: Any, name: str) -> float:
    """``x`` as a float if it is a finite number >= 0."""
    if not is_number(x) or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    return float(x)


def check_interval(pair: Any, name: str, *, low: float = 0.0, high: float = math.inf):
    """A pair ``(a, b)`` with ``low < a <= b <= high``."""
    try:
        a, b = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max) of numbers, got {pair!r}") from None
    if not (low < a <= b <= high) or not all(is_number(v) for v in pair):
        raise ValueError(f"{name} must satisfy {low} < min <= max <= {high}, got {pair!r}")
    return a, b


def check_size(size: Any, name: str) -> tuple[int, int]:
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


def check_image(image: Any, name: str = "image") -> Array:
    """``image`` as an array if it is ``(H, W, C)``, ``C`` = 1 or 3, floating point."""
    image = jnp.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} must have shape (H, W, C) with C = 1 or 3, got {image.shape}"
        )
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point in [0, 1], got dtype {image.dtype}")
    return image
