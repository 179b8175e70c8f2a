"""What every analysis writes: a strict JSON of its numbers and a PNG of its figure.

``jsonable`` turns arrays into nested lists and NaN/inf into ``null`` (strict
JSON), optionally rounding floats to a number of significant digits;
``write_json`` and ``save_figure`` create the output directory as needed.
Figures are ``matplotlib.figure.Figure`` objects (drawn without a backend
switch). The seed statistics every experiment reports (``spread``,
``paired_difference``, ``verdict``, ``rank_correlation``) live here too.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional, Sequence

import jax
import numpy as np
import scipy.stats


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


def check_parts(parts: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    """A driver's ``parts`` as a tuple; ``ValueError`` naming the ``known``
    ones unless they are a non-empty list of distinct known names."""
    parts = tuple(parts)
    if not parts or any(p not in known for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"parts must be a non-empty list of distinct names from "
                         f"{list(known)}, got {list(parts)}")
    return parts


def merge_parts(path: str, results: dict, known: Sequence[str]) -> dict:
    """``results`` (``{'quick', 'parts', 'seconds', 'commands', ...}``) with
    the parts of an earlier JSON at ``path`` that this run did not redo, so
    a driver's parts can run as separate commands into one file. A file of
    the other size (``quick``) is not merged; one written with a single
    ``command`` gives it to each of its parts. Parts are ordered as ``known``."""
    if not os.path.exists(path):
        return results
    with open(path) as f:
        old = json.load(f)
    if old.get("quick") != results["quick"]:
        return results
    if "command" in old and "commands" not in old:
        old["commands"] = {p: old["command"] for p in old.get("parts", {})}
    redone = set(results["parts"])
    for key in ("parts", "seconds", "commands"):
        results[key] = {**{k: v for k, v in old.get(key, {}).items() if k not in redone},
                        **results[key]}
    results["parts"] = {p: results["parts"][p] for p in known if p in results["parts"]}
    return results


# ----------------------------------------------------------------- seed statistics

def spread(values) -> dict:
    """``{'mean', 'std', 'per_seed'}`` of per-seed values (sample std,
    ddof = 1; 0 for one seed)."""
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if v.size > 1 else 0.0,
            "per_seed": v.tolist()}


def mean_interval(values) -> dict:
    """:func:`spread` of per-seed values with ``ci95``: the Student-t 95%
    interval of their mean, mean +- t_{0.975, n-1} std / sqrt(n) (NaN bounds
    for one seed)."""
    out = spread(values)
    n = len(out["per_seed"])
    half = (float(scipy.stats.t.ppf(0.975, n - 1)) * out["std"] / math.sqrt(n)
            if n > 1 else float("nan"))
    out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def paired_difference(values, reference) -> dict:
    """:func:`mean_interval` of ``values - reference`` seed by seed (runs
    paired by seed): the mean difference, its spread and its 95% interval."""
    v, r = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    if v.shape != r.shape:
        raise ValueError(f"values and reference must have the same shape, got {v.shape} "
                         f"and {r.shape}")
    return mean_interval(v - r)


#: A "match or beat" claim holds when the 95% interval of (setting - reference)
#: lies above -MATCH_TOLERANCE (accuracy as a fraction: 1 point).
MATCH_TOLERANCE = 0.01
CLAIMS = ("greater", "match_or_beat")


def verdict(difference: dict, claim: str) -> str:
    """'reproduced', 'not reproduced' or 'unresolved' for a seed-paired
    ``difference`` (``outputs.paired_difference``: setting - reference).
    ``'greater'``: reproduced when the 95% interval lies above 0, not
    reproduced when below. ``'match_or_beat'``: reproduced when it lies above
    -MATCH_TOLERANCE, not reproduced when it lies below 0."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    low, high = difference["ci95"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return "unresolved"
    floor = 0.0 if claim == "greater" else -MATCH_TOLERANCE
    if low > floor:
        return "reproduced"
    if high < 0:
        return "not reproduced"
    return "unresolved"


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy), nan when undefined."""
    rho = scipy.stats.spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else float("nan")


def rank_correlation(x: Sequence[float], y: Sequence[float], *, draws: int = 2000,
                     seed: int = 0) -> dict:
    """Spearman's rho of (x, y) and a bootstrap 95% interval (points resampled
    with replacement; draws where rho is undefined are skipped)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    boot = []
    for idx in rng.integers(0, x.size, (draws, x.size)):
        rho = spearman(x[idx], y[idx])
        if np.isfinite(rho):
            boot.append(rho)
    low, high = np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
    return {"rho": spearman(x, y), "ci95": [float(low), float(high)], "n": int(x.size)}
