"""Parameter-free layers wrapped as modules.

They exist so that ``capture_intermediates`` (``neurojax.models.intermediates``)
records post-activation and post-pooling features under a readable name,
with no change to the model that uses them.
"""
import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class Act(nn.Module):
    """An elementwise nonlinearity ``fn`` as a module."""
    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def _first_max_rank(blocks: jax.Array, top: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(rank of each window position, rank of each window's first maximum).

    ``blocks`` is (n, ho, ph, wo, pw, c) and ``top`` its max over (2, 4) with
    kept dims; the rank is row-major, ``i * pw + j``, and a window without a
    hit (a nan) gets ``ph * pw``.
    """
    ph, pw = blocks.shape[2], blocks.shape[4]
    rank = (lax.broadcasted_iota(jnp.int32, (1, 1, ph, 1, pw, 1), 2) * pw
            + lax.broadcasted_iota(jnp.int32, (1, 1, ph, 1, pw, 1), 4))
    first = jnp.min(jnp.where(blocks == top, rank, ph * pw), axis=(2, 4), keepdims=True)
    return rank, first


def _blocks(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // window[0], window[0], w // window[1], window[1], c)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_divisible(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Max over non-overlapping windows of an input whose H and W they divide."""
    return jnp.max(_blocks(x, window), axis=(2, 4))


@_max_pool_divisible.defjvp
def _max_pool_divisible_jvp(window, primals, tangents):
    (x,), (t,) = primals, tangents
    blocks = _blocks(x, window)
    top = jnp.max(blocks, axis=(2, 4), keepdims=True)
    rank, first = _first_max_rank(blocks, top)
    # Linear in t: its transpose routes each cotangent to the first maximum.
    t_out = jnp.sum(jnp.where(rank == first, _blocks(t, window), jnp.zeros((), t.dtype)),
                    axis=(2, 4))
    return top[:, :, 0, :, 0, :], t_out


def _max_pool_blocks(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Non-overlapping max pooling (window = strides, 'SAME') by reshaping.

    The same function as ``nn.max_pool(x, window, window, 'SAME')`` in value
    and in every derivative: the value is the max over each window; the JVP
    reads the tangent of the *first* maximum in row-major order (the element
    XLA's select-and-scatter routes the gradient to), so the VJP, its
    transpose, routes each cotangent to that one element; the choice is a
    comparison, so all higher derivatives of the pooling are zero, as for
    XLA's. (On exact ties XLA's own JVP may read another maximum than its VJP
    routes to; here both use the first, so the JVP and VJP stay transposes.)
    A ``custom_jvp`` keeps the forward pass a plain max and the backward pass
    one select. Why: XLA:CPU (jaxlib 0.10.2) lowers the gradient of
    ``reduce_window`` max into a variadic argmax reduce-window over int32
    iotas plus a scatter, ~45 of the 64 ms of the small CNN's training step
    at batch 64.
    """
    _, h, w, _ = x.shape
    (ph, pw), ho, wo = window, -(-h // window[0]), -(-w // window[1])
    pad_h, pad_w = ho * ph - h, wo * pw - w
    if pad_h or pad_w:  # XLA's SAME: the extra row/column goes at the end
        lowest = (-jnp.inf if jnp.issubdtype(x.dtype, jnp.floating)
                  else jnp.iinfo(x.dtype).min)
        x = lax.pad(x, jnp.array(lowest, x.dtype),
                    ((0, 0, 0), (pad_h // 2, pad_h - pad_h // 2, 0),
                     (pad_w // 2, pad_w - pad_w // 2, 0), (0, 0, 0)))
    return _max_pool_divisible(x, window)


def max_pool(x: jax.Array, window: Sequence[int] = (2, 2),
             strides: Sequence[int] | None = None) -> jax.Array:
    """``nn.max_pool(x, window, strides, padding='SAME')`` on NHWC inputs.

    Non-overlapping windows (``strides == window``, the default) take the
    reshape formulation ``_max_pool_blocks`` on the CPU backend; overlapping
    windows and other backends use ``nn.max_pool`` unchanged.
    """
    window = tuple(int(k) for k in window)
    strides = window if strides is None else tuple(int(s) for s in strides)
    if len(window) != 2 or len(strides) != 2 or min(window + strides) < 1:
        raise ValueError(f"window and strides must be two positive ints each, got "
                         f"window={window}, strides={strides}")
    if x.ndim < 3:
        raise ValueError(f"x must be (..., H, W, C), got shape {x.shape}")
    reference = lambda x: nn.max_pool(x, window, strides=strides, padding="SAME")  # noqa: E731
    if strides != window or window == (1, 1):
        return reference(x)
    lead = x.shape[:-3]
    x4 = x.reshape((-1,) + x.shape[-3:])
    y = lax.platform_dependent(x4, cpu=lambda x: _max_pool_blocks(x, window),
                               default=reference)
    return y.reshape(lead + y.shape[1:])


class MaxPool(nn.Module):
    """Max pooling over NHWC inputs ('SAME' padding, so tiny inputs never
    shrink to zero size); see ``max_pool``."""
    window: Sequence[int] = (2, 2)
    strides: Sequence[int] = (2, 2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.window, self.strides)


class GlobalAvgPool(nn.Module):
    """Mean over the spatial axes: NHWC -> NC."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=(1, 2))
