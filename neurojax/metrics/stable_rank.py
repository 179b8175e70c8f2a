"""Stable rank of weight matrices (Oland 2024, Efficient Deep Learning,
Sec. 6.6 and Fig. 6.3: per-layer stable rank of VGG-13 trained bottom-up, by
Random Robin and by backprop).

    srank(W) = ||W||_F^2 / ||W||_2^2 = sum_i s_i^2 / s_1^2

with s_i the singular values of W. It lies in [1, rank(W)]: 1 for a rank-one
matrix, min(m, n) when every singular value is equal. The thesis does not
define it; this is the usual definition (Rudelson & Vershynin 2007).

A convolution kernel ``(kh, kw, c_in, c_out)`` (any array of 2 or more
dimensions) is read as the matrix ``(kh * kw * c_in, c_out)``: every output
channel a column, as PyTorch's ``weight.view(c_out, -1)`` (its transpose,
with the same singular values).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

__all__ = ["stable_rank", "kernel_stable_ranks"]


def _as_matrix(w) -> jax.Array:
    w = jnp.asarray(w)
    if w.ndim < 2:
        raise ValueError(f"w must be a weight matrix or kernel with 2 or more dimensions "
                         f"(the last one the outputs), got shape {w.shape}")
    return w.reshape(-1, w.shape[-1])


@jax.jit
def _stable_rank(m: jax.Array) -> jax.Array:
    m = m.astype(jnp.promote_types(m.dtype, jnp.float32))
    s = jnp.linalg.svd(m, compute_uv=False)
    return jnp.sum(s ** 2) / s[0] ** 2


def stable_rank(w) -> jax.Array:
    """``||W||_F^2 / ||W||_2^2`` of ``w`` reshaped to ``(-1, w.shape[-1])``.

    NaN for an all-zero matrix (0 / 0). Runs under ``jax.jit``/``vmap``."""
    return _stable_rank(_as_matrix(w))


def kernel_stable_ranks(params: Mapping, *, kernel: str = "kernel") -> dict[str, float]:
    """``{layer: stable rank}`` of every ``kernel`` entry of a nested
    parameter dict, keyed by the '/'-joined path of its layer (e.g.
    ``'conv_0'``, ``'block/dense'``), in the tree's order."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a nested dict of parameters, got "
                         f"{type(params).__name__}")
    out: dict[str, float] = {}

    def walk(tree, path):
        for name, value in tree.items():
            if isinstance(value, Mapping):
                walk(value, path + (str(name),))
            elif name == kernel and jnp.ndim(value) >= 2:
                out["/".join(path)] = float(stable_rank(value))
    walk(params, ())
    return out
