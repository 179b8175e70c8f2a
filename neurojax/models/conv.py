"""The one convolution every neurojax model uses (NHWC inputs, HWIO kernels).

Initial version: a thin wrapper over ``jax.lax.conv_general_dilated``. The fast
CPU backward pass (issue 8) replaces ``conv2d``'s internals; the API stays.
"""
from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

Padding = Union[str, Sequence[tuple[int, int]]]


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
                      padding: Padding = "SAME") -> jax.Array:
    """2-D convolution, ``x`` NHWC, ``kernel`` HWIO, returns NHWC."""
    return jax.lax.conv_general_dilated(
            x, kernel, window_strides=tuple(strides), padding=padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv(nn.Module):
    """Drop-in for ``flax.linen.Conv`` (same parameter names and shapes)."""
    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init,
                                                (kh, kw, x.shape[-1], self.features), self.param_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        y = conv2d(x, kernel, self.strides, self.padding)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(y.dtype)
        return y
