"""Parameter-free layers wrapped as modules.

They exist so that ``capture_intermediates`` (``neurojax.models.features``)
records post-activation and post-pooling features under a readable name,
with no change to the model that uses them.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Act(nn.Module):
    """An elementwise nonlinearity ``fn`` as a module."""
    fn: Callable[[jax.Array], jax.Array]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


class MaxPool(nn.Module):
    """Max pooling over NHWC inputs ('SAME' padding, so tiny inputs never
    shrink to zero size)."""
    window: Sequence[int] = (2, 2)
    strides: Sequence[int] = (2, 2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.max_pool(x, tuple(self.window), strides=tuple(self.strides),
                           padding="SAME")


class GlobalAvgPool(nn.Module):
    """Mean over the spatial axes: NHWC -> NC."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=(1, 2))
