"""A small convolutional network for 8x8 digits and 32x32 images.

The layout follows the classic LeNet-style stack (LeCun et al., "Gradient-based
learning applied to document recognition", Proc. IEEE 1998, Sec. II) as used
in the Flax MNIST example: ``[conv -> activation -> 2x2 max-pool] x stages``,
flatten, one hidden dense layer, then the classifier.
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax

from neurojax._checks import check_bool
from neurojax.models._common import (Activation, block_range, check_positive_int,
                                     check_widths, flatten, float32_output,
                                     freeze_sequences, resolve_activation,
                                     set_compute_dtype)
from neurojax.models.layers import Act, MaxPool
from neurojax.models.rule_layers import check_rule, conv_layer, dense_layer, head_rule


class SmallCNN(nn.Module):
    """Small CNN; layers ``conv_{i}``, ``act_{i}``, ``pool_{i}``, ``hidden``,
    ``hidden_act``, ``head``.

    Attributes:
        widths: channels of the conv stages (one 3x3 conv + pool per stage).
        hidden: width of the dense layer before the classifier (``None``: none).
        num_classes: number of logits; ``None`` returns the representation
            that the classifier would see (post-activation hidden layer, or the
            flattened pooled conv features when ``hidden`` is ``None``).
        kernel_size: spatial size of every conv kernel.
        activation: activation name or callable.
        batch_norm: BatchNorm between each conv and its activation (as in
            the ResNets SSL methods are usually trained with; layers
            ``bn_{i}``). Off by default (the LeNet-style stack).
        global_pool: average the last stage's features over space instead of
            flattening them, so the representation has ``widths[-1]``
            entries whatever the input size (needed for mixed-resolution
            views).
        dtype: computation dtype (``None``, 'float32', 'bfloat16', 'float16');
            parameters, BatchNorm statistics and the output stay float32.
        rule, rule_head: the learning rule of every conv and dense layer
            and whether ``head`` uses it, as for ``neurojax.models.MLP``.
    """
    widths: Sequence[int] = (32, 64)
    hidden: Optional[int] = 128
    num_classes: Optional[int] = 10
    kernel_size: int = 3
    activation: Activation = "relu"
    batch_norm: bool = False
    global_pool: bool = False
    dtype: Any = None
    rule: Any = "backprop"
    rule_head: bool = True

    def __post_init__(self) -> None:
        freeze_sequences(self, "widths")
        check_widths("widths", self.widths, allow_empty=False)
        check_positive_int("hidden", self.hidden, allow_none=True)
        check_positive_int("num_classes", self.num_classes, allow_none=True)
        check_positive_int("kernel_size", self.kernel_size)
        resolve_activation(self.activation)
        set_compute_dtype(self)
        check_rule("rule", self.rule)
        check_bool("rule_head", self.rule_head)
        super().__post_init__()

    @property
    def num_blocks(self) -> int:
        """Blocks below the top: one per conv stage (conv, BatchNorm,
        activation, pool), then the hidden dense layer (with the flatten or
        global pool before it) if there is one."""
        return len(self.widths) + (self.hidden is not None)

    def block_params(self, block: int) -> tuple[str, ...]:
        """Parameter entries of ``block`` (``num_blocks``: the top, ``head``)."""
        if block < len(self.widths):
            return (f"conv_{block}",) + ((f"bn_{block}",) if self.batch_norm else ())
        return ("hidden",) if block < self.num_blocks else ("head",)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, start: int = 0,
                 stop: Optional[int] = None) -> jax.Array:
        """Forward pass on NHWC images; with ``batch_norm``, ``train=True``
        normalises with batch statistics and updates ``batch_stats``.
        ``start``/``stop``: run only blocks ``[start, stop)`` (``stop=None``:
        through the head), for layer-wise training (``block_range``)."""
        start, end, top = block_range(self.num_blocks, start, stop)
        act = resolve_activation(self.activation)
        k = (self.kernel_size, self.kernel_size)
        for i in range(start, min(end, len(self.widths))):
            x = conv_layer(self.rule, self.widths[i], kernel_size=k,
                           use_bias=not self.batch_norm, dtype=self.dtype, name=f"conv_{i}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, force_float32_reductions=True,
                                 name=f"bn_{i}")(x)
            x = Act(act, name=f"act_{i}")(x)
            x = MaxPool(name=f"pool_{i}")(x)
        if end <= len(self.widths) and not top:
            return x  # a conv stage's feature map
        if start <= len(self.widths):  # the hidden block or the top starts from the map
            x = x.mean(axis=(1, 2)) if self.global_pool else flatten(x)
        if self.hidden is not None and start <= len(self.widths) < end:
            x = dense_layer(self.rule, self.hidden, dtype=self.dtype, name="hidden")(x)
            x = Act(act, name="hidden_act")(x)
        if not top:
            return x
        if self.num_classes is None:
            return float32_output(x)
        return float32_output(dense_layer(head_rule(self.rule, self.rule_head),
                                          self.num_classes, dtype=self.dtype, name="head")(x))
