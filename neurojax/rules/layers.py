"""Flax Linen dense and convolutional layers that learn with a rule's feedback.

Each layer has the parameters of its backprop counterpart (``kernel``,
``bias``; same names, shapes, initialisers and creation order, so the same
init key gives the same values) plus, when the rule stores feedback weights,
``feedback_kernel``: B in the kernel's layout, initialised independently
with the kernel's initialiser (Lillicrap et al. 2016; the Neural-Alignment
code's ``backward_kernel``). ``make_train_step`` needs no change: the
rule's update of B arrives as B's gradient (``neurojax.rules.feedback``),
and ``neurojax.rules.optim.rule_optimizer`` routes it to B's own optimiser.

What stays exact: the bias gradient and the kernel's own gradient (both
read only the layer's input and output cotangent); everything outside
these layers (BatchNorm, activations, pooling, residual additions, the loss)
is differentiated by ordinary autodiff. Only the error a layer sends to its
input goes through B.

Noise for the weight mirror is drawn from the ``'feedback'`` rng stream, or
from ``'dropout'`` (which the library's training objective passes) when no
``'feedback'`` stream is given.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from neurojax.rules.feedback import apply_rule, conv_op, dense_op

FEEDBACK_PARAM = "feedback_kernel"


class _RuleLayer(nn.Module):
    """Fields and parameters shared by the rule's dense and conv layers."""
    features: int
    rule: Any
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    def _parameters(self, shape: tuple[int, ...]):
        """``(kernel, bias, feedback, key)``: created in ``nn.Dense``'s order
        (kernel, bias) and then B; the noise key if the rule draws noise."""
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        feedback = (self.param(FEEDBACK_PARAM, self.kernel_init, shape, self.param_dtype)
                    if self.rule.stores_feedback else None)
        key = None
        if self.rule.needs_noise:
            for stream in ("feedback", "dropout"):
                if self.has_rng(stream):
                    key = self.make_rng(stream)
                    break
        return kernel, bias, feedback, key


class FeedbackDense(_RuleLayer):
    """``flax.linen.Dense`` (same parameters) whose backward pass follows ``rule``.

    Attributes:
        features: output width.
        rule: a :class:`neurojax.rules.Rule`.
        use_bias, dtype, param_dtype, kernel_init, bias_init: as for
            ``flax.linen.Dense``; B uses ``kernel_init``.
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias, feedback, key = self._parameters((jnp.shape(x)[-1], self.features))
        x, kernel, feedback, bias = nn.dtypes.promote_dtype(x, kernel, feedback, bias,
                                                            dtype=self.dtype)
        lead = x.shape[:-1]
        y = apply_rule(self.rule, dense_op, x.reshape(-1, x.shape[-1]), kernel, feedback, key)
        y = y.reshape(lead + (self.features,))
        return y if bias is None else y + bias


class FeedbackConv(_RuleLayer):
    """``neurojax.models.conv.Conv`` (same parameters) whose backward pass follows ``rule``.

    Attributes:
        features, kernel_size, strides, padding, use_bias, dtype, param_dtype,
        kernel_init, bias_init: as for the models' ``Conv``.
        rule: a :class:`neurojax.rules.Rule`.
        conv: the convolution ``conv(x, kernel, strides, padding)`` (NHWC,
            HWIO) run forward and backward; required (the models pass their
            ``conv2d``).
    """
    conv: Optional[Callable[..., jax.Array]] = None
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: Union[str, int, Sequence] = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not callable(self.conv):
            raise ValueError(f"FeedbackConv.conv must be a convolution function, got "
                             f"{self.conv!r}")
        if isinstance(self.kernel_size, int) or len(self.kernel_size) != 2:
            raise ValueError(f"FeedbackConv.kernel_size must be (kh, kw), got "
                             f"{self.kernel_size!r}")
        kernel, bias, feedback, key = self._parameters(
            (*self.kernel_size, x.shape[-1], self.features))
        x, kernel, feedback = nn.dtypes.promote_dtype(x, kernel, feedback, dtype=self.dtype)
        lead = x.shape[:-3]
        op = conv_op(self.conv, self.strides, self.padding)
        y = apply_rule(self.rule, op, x.reshape((-1,) + x.shape[-3:]), kernel, feedback, key)
        y = y.reshape(lead + y.shape[1:])
        return y if bias is None else y + bias.astype(y.dtype)
