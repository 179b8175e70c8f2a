"""What every analysis writes: a strict JSON of its numbers and a PNG of its figure.

``jsonable`` turns arrays into nested lists and NaN/inf into ``null`` (strict
JSON), optionally rounding floats to a number of significant digits;
``write_json`` and ``save_figure`` create the output directory as needed.
Figures are ``matplotlib.figure.Figure`` objects (drawn without a backend
switch).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional, Sequence

import jax
import numpy as np


def jsonable(obj: Any, digits: Optional[int] = None) -> Any:
    """``obj`` with arrays as lists, NumPy scalars as Python ones, NaN/inf as None,
    and (if ``digits``) floats rounded to that many significant digits."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, digits) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return jsonable(np.asarray(obj).tolist(), digits)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if not math.isfinite(v):
            return None
        return float(f"{v:.{digits}g}") if digits is not None and v != 0.0 else v
    return obj


def write_json(obj: Any, path: str, *, digits: Optional[int] = None,
               exclude: Sequence[str] = (), indent: Optional[int] = 1) -> None:
    """Write ``jsonable(obj, digits)`` to ``path`` (top-level keys in ``exclude`` dropped)."""
    if exclude:
        obj = {k: v for k, v in obj.items() if k not in exclude}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(jsonable(obj, digits), fh, indent=indent, allow_nan=False)


def save_figure(fig, path: str, *, dpi: int = 90) -> None:
    """Save a ``matplotlib.figure.Figure`` as PNG at ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
