"""Argument checks shared by every folder of the package.

Each raises ``ValueError`` naming the argument (``name``) and the allowed
values, before anything is compiled. Number checks skip traced values (under
``jax.jit`` or ``jax.vmap`` over a hyperparameter the value is not known yet:
the caller checks it where it is concrete) and return their argument, so
they can be used inline. Like ``neurojax/types.py``-style aliases, this module
imports nothing from the package, so the leaf folders (``losses``,
``metrics``, ``optim``, ``compress``, ``data``, ...) may all use it.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Collection

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_concrete", "check_int", "check_choice", "check_bool", "check_real",
           "check_matrix", "check_distribution"]


def is_concrete(value: Any) -> bool:
    """False for a JAX tracer (a value under ``jit``/``vmap``/``grad``), else True."""
    return not isinstance(value, jax.core.Tracer)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not a
    bool) ``>= minimum``; else ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, allowed: Collection) -> Any:
    """``value`` if it is one of ``allowed``; else ``ValueError`` naming ``name``."""
    try:
        ok = value in allowed
    except TypeError:  # unhashable value against a set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a ``bool``; else ``ValueError`` naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def _range_text(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(low) and math.isinf(high):
        return ""
    if math.isinf(high):
        return f" {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_real(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False, high_open: bool = False) -> Any:
    """``value`` (returned as given) if it is a finite real number, or an array
    of them, within ``[low, high]`` (an end excluded with ``low_open`` /
    ``high_open``); else ``ValueError`` naming ``name`` and the range.

    Python and NumPy scalars, NumPy and concrete JAX arrays are checked
    element by element; bools and non-numeric values are refused; traced
    values pass unchecked. ``check_real('lr', lr, low=0, low_open=True)``
    asks for ``lr > 0``.
    """
    if not is_concrete(value):
        return value
    rng = _range_text(low, high, low_open, high_open)
    bad = ValueError(f"{name} must be a finite number{rng}, got {value!r}")
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise bad
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise bad from None
    # jnp.issubdtype knows bfloat16 (NumPy's does not count it as a number)
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise bad
    arr = arr.astype(np.float64)
    ok = np.isfinite(arr) & ((arr > low) if low_open else (arr >= low)) \
        & ((arr < high) if high_open else (arr <= high))
    if not np.all(ok):
        raise bad
    return value


def check_matrix(name: str, value: Any, *, square: bool = False) -> jax.Array:
    """``value`` as a JAX array if it is 2-D (and square with ``square=True``);
    else ``ValueError`` naming ``name`` and the shape. Shapes are static, so
    traced values are checked too."""
    x = jnp.asarray(value)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {x.shape}")
    if square and x.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must be square, got shape {x.shape}")
    return x


def check_distribution(name: str, value: Any, *, axis: int = -1, atol: float = 1e-6) -> Any:
    """``value`` (returned as given) if its entries are finite, non-negative and
    sum to 1 within ``atol`` along ``axis``: a probability vector, or a
    row-stochastic matrix with ``axis=1``; else ``ValueError`` naming ``name``.

    Only concrete values are checked; traced values pass unchecked.
    """
    if not is_concrete(value):
        return value
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    sums = a.sum(axis=axis)
    if not np.allclose(sums, 1.0, atol=atol):
        raise ValueError(f"{name} must sum to 1 along axis {axis}, got sums "
                         f"in [{sums.min():.6g}, {sums.max():.6g}]")
    return value
