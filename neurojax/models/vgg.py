"""VGG networks, CIFAR-style.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (ICLR 2015), Table 1, configurations A (VGG-11), B (VGG-13),
D (VGG-16) and E (VGG-19): stacks of 3x3 convolutions separated by 2x2
max-pools, channels 64 -> 512. The CIFAR variant (as in the widely used
pytorch-cifar code) adds BatchNorm after each conv (Ioffe & Szegedy 2015) and
replaces the three 4096-wide FC layers by global pooling and a small
classifier: on 32x32 inputs the five pools leave a 1x1x512 map.
"""
from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax

from neurojax._checks import check_bool
from neurojax.models._common import (block_range, check_positive_float, check_positive_int,
                                     check_widths, float32_output, freeze_sequences,
                                     scale_width, set_compute_dtype)
from neurojax.models.layers import Act, GlobalAvgPool, MaxPool
from neurojax.models.rule_layers import check_rule, conv_layer, dense_layer, head_rule

# Table 1 of Simonyan & Zisserman; "M" is a 2x2 max-pool.
VGG_CONFIGS: dict[int, tuple[Union[int, str], ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
         "M", 512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """VGG-{11,13,16,19} for 32x32 images.

    Layers: ``conv_{i}``, ``bn_{i}`` (if ``use_batchnorm``), ``act_{i}`` for
    the i-th conv (0-based, across the whole net), ``pool_{j}`` for the j-th
    pool, ``gap`` (global average pool), ``fc_{k}`` / ``fc_act_{k}`` for the
    hidden classifier layers and ``head``.

    Attributes:
        depth: 11, 13, 16 or 19 (weight layers in the paper's count).
        width_factor: multiplies every channel count (64..512).
        num_classes: number of logits; ``None`` returns the globally pooled
            features.
        use_batchnorm: BatchNorm after each conv (then convs have no bias).
        classifier_widths: hidden dense layers between pooling and ``head``;
            empty (default) is the single linear classifier of the CIFAR variant.
        dtype: computation dtype (``None``, 'float32', 'bfloat16', 'float16');
            parameters, BatchNorm statistics and the output stay float32.
        rule, rule_head: the learning rule of every conv and dense layer
            and whether ``head`` uses it, as for ``neurojax.models.MLP``.
    """
    depth: int = 11
    width_factor: float = 1.0
    num_classes: Optional[int] = 10
    use_batchnorm: bool = True
    classifier_widths: Sequence[int] = ()
    dtype: Any = None
    rule: Any = "backprop"
    rule_head: bool = True

    def __post_init__(self) -> None:
        freeze_sequences(self, "classifier_widths")
        if self.depth not in VGG_CONFIGS:
            raise ValueError(
                f"depth must be one of {sorted(VGG_CONFIGS)}, got {self.depth!r}")
        check_positive_float("width_factor", self.width_factor)
        check_positive_int("num_classes", self.num_classes, allow_none=True)
        check_widths("classifier_widths", self.classifier_widths)
        set_compute_dtype(self)
        check_rule("rule", self.rule)
        check_bool("rule_head", self.rule_head)
        super().__post_init__()

    def _conv_plan(self) -> list[tuple[int, Optional[int]]]:
        """``(channels, index of the pool after it or None)`` per conv."""
        plan, n_pool = [], 0
        for item in VGG_CONFIGS[self.depth]:
            if item == "M":
                plan[-1] = (plan[-1][0], n_pool)
                n_pool += 1
            else:
                plan.append((scale_width(item, self.width_factor), None))
        return plan

    @property
    def num_blocks(self) -> int:
        """Blocks below the top: one per conv (with its BatchNorm, ReLU and
        the pool after it), then one per hidden classifier layer."""
        return len(self._conv_plan()) + len(self.classifier_widths)

    def block_params(self, block: int) -> tuple[str, ...]:
        """Parameter entries of ``block`` (``num_blocks``: the top, ``head``)."""
        n_conv = len(self._conv_plan())
        if block < n_conv:
            return (f"conv_{block}",) + ((f"bn_{block}",) if self.use_batchnorm else ())
        return (f"fc_{block - n_conv}",) if block < self.num_blocks else ("head",)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, start: int = 0,
                 stop: Optional[int] = None) -> jax.Array:
        """Forward pass on NHWC images; ``train`` selects batch statistics in
        BatchNorm (and requires ``mutable=['batch_stats']``). ``start``/``stop``:
        run only blocks ``[start, stop)`` (``stop=None``: through the head), for
        layer-wise training (``block_range``)."""
        start, end, top = block_range(self.num_blocks, start, stop)
        plan = self._conv_plan()
        for c in range(start, min(end, len(plan))):
            width, pool = plan[c]
            x = conv_layer(self.rule, width, kernel_size=(3, 3),
                           use_bias=not self.use_batchnorm, dtype=self.dtype,
                           name=f"conv_{c}")(x)
            if self.use_batchnorm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype,
                                 force_float32_reductions=True,
                                 name=f"bn_{c}")(x)
            x = Act(nn.relu, name=f"act_{c}")(x)
            if pool is not None:
                x = MaxPool(name=f"pool_{pool}")(x)
        if end <= len(plan) and not top:
            return x  # a conv block's feature map
        if start <= len(plan):
            x = GlobalAvgPool(name="gap")(x)
        if self.num_classes is None:
            return float32_output(x)
        for k in range(max(start - len(plan), 0), min(end - len(plan),
                                                      len(self.classifier_widths))):
            x = dense_layer(self.rule, self.classifier_widths[k], dtype=self.dtype,
                            name=f"fc_{k}")(x)
            x = Act(nn.relu, name=f"fc_act_{k}")(x)
        if not top:
            return x
        return float32_output(dense_layer(head_rule(self.rule, self.rule_head),
                                          self.num_classes, dtype=self.dtype, name="head")(x))
