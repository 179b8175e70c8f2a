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
from neurojax.models._common import (check_positive_float, check_positive_int,
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

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Forward pass on NHWC images; ``train`` selects batch statistics in
        BatchNorm (and requires ``mutable=['batch_stats']``)."""
        n_conv = n_pool = 0
        for item in VGG_CONFIGS[self.depth]:
            if item == "M":
                x = MaxPool(name=f"pool_{n_pool}")(x)
                n_pool += 1
                continue
            x = conv_layer(self.rule, scale_width(item, self.width_factor),
                           kernel_size=(3, 3), use_bias=not self.use_batchnorm,
                           dtype=self.dtype, name=f"conv_{n_conv}")(x)
            if self.use_batchnorm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype,
                                 force_float32_reductions=True,
                                 name=f"bn_{n_conv}")(x)
            x = Act(nn.relu, name=f"act_{n_conv}")(x)
            n_conv += 1
        x = GlobalAvgPool(name="gap")(x)
        if self.num_classes is None:
            return float32_output(x)
        for k, width in enumerate(self.classifier_widths):
            x = dense_layer(self.rule, width, dtype=self.dtype, name=f"fc_{k}")(x)
            x = Act(nn.relu, name=f"fc_act_{k}")(x)
        return float32_output(dense_layer(head_rule(self.rule, self.rule_head),
                                          self.num_classes, dtype=self.dtype, name="head")(x))
