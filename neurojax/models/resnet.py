"""Residual networks (ResNet-18/34/50/101/152) with CIFAR or ImageNet stems.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition" (CVPR
2016): Sec. 3.3 and Table 1 (stage sizes, basic and bottleneck blocks, stem:
7x7/2 conv + 3x3/2 max-pool), Sec. 4.2 (CIFAR: 3x3 stem, no max-pool).
Shortcuts are identity when shapes match and a 1x1 projection conv + BN
otherwise (option B of Sec. 3.3). The stride of a bottleneck sits on its 3x3
conv ("ResNet v1.5", as in torchvision and the Flax ImageNet example); the
parameter count is the same as v1. BatchNorm follows PyTorch's defaults
(momentum 0.1, i.e. Flax ``momentum=0.9``; ``epsilon=1e-5``).

With ``stem='cifar'`` and four stages of widths 64..512 this is the ResNet-18
of the common CIFAR code (11,173,962 parameters with 10 classes), not the
three-stage 16..64 ResNet-20/32/56 family of the paper's Sec. 4.2.

Layer names: ``stem`` (its output is the input of stage 1), ``stage{s}_block{b}``
(1-based; stage s is conv{s+1}_x of Table 1), inside a block ``conv1``, ``bn1``,
..., ``proj_conv`` / ``proj_bn`` for a projection shortcut, then ``gap`` and
``head``.

Layer-wise training (``neurojax.train.layerwise``): the stem is block 0 on
its own and every residual block is one block after it (block ``1 + k``
is the k-th residual block, counted over all stages), so ``num_blocks =
1 + sum(stage_sizes)``; the top (global pooling and ``head``) is block
``num_blocks``. The stem is its own block rather than merged with the
first residual block so that every block has one residual unit's memory
and the chapter's "one block per layer" holds for the stem's convolution as
for VGG's first convolution (Oland 2024, Sec. 6.2: a "layer" may be a
residual block; parameter-free layers, e.g. the ImageNet stem's max-pool,
belong to the parameter layer before them).

``rule`` (``neurojax.rules.get_rule(name)``; default 'backprop') makes every
convolution (stem, blocks, projection shortcuts) and ``head`` learn with a
rule's feedback weights; BatchNorm, ReLU, the residual additions, pooling
and the loss keep exact gradients (``neurojax.models.rule_layers``).
"""
import functools
from typing import Any, Optional, Sequence, Type, Union

import flax.linen as nn
import jax

from neurojax._checks import check_bool
from neurojax.models._common import (block_range, check_positive_float, check_positive_int,
                                     check_widths, float32_output, freeze_sequences,
                                     scale_width, set_compute_dtype)
from neurojax.models.layers import GlobalAvgPool
from neurojax.models.rule_layers import (check_rule, conv_layer, dense_layer, head_rule,
                                         is_backprop)

STEMS = ("cifar", "imagenet")


def _batch_norm(train: bool, dtype: Any, name: str, zero_scale: bool = False
                ) -> nn.BatchNorm:
    # statistics computed and kept in float32 whatever the compute dtype
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=dtype, force_float32_reductions=True, name=name,
                        scale_init=nn.initializers.zeros if zero_scale
                        else nn.initializers.ones)


class BasicBlock(nn.Module):
    """Two 3x3 convs (He et al. 2016, Fig. 2 left); output has ``features``
    channels (``expansion = 1``)."""
    features: int
    strides: tuple[int, int] = (1, 1)
    zero_init_residual: bool = False
    dtype: Any = None
    rule: Any = "backprop"

    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(conv_layer, self.rule, use_bias=False, dtype=self.dtype)
        y = conv(self.features, (3, 3), self.strides, name="conv1")(x)
        y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
        y = conv(self.features, (3, 3), name="conv2")(y)
        y = _batch_norm(train, self.dtype, "bn2", self.zero_init_residual)(y)
        return nn.relu(y + _shortcut(x, self.features, self.strides, train, self.dtype,
                                     self.rule))


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (He et al. 2016, Fig. 5 right);
    output has ``4 * features`` channels."""
    features: int
    strides: tuple[int, int] = (1, 1)
    zero_init_residual: bool = False
    dtype: Any = None
    rule: Any = "backprop"

    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = self.features * self.expansion
        conv = functools.partial(conv_layer, self.rule, use_bias=False, dtype=self.dtype)
        y = conv(self.features, (1, 1), name="conv1")(x)
        y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
        y = conv(self.features, (3, 3), self.strides, name="conv2")(y)
        y = nn.relu(_batch_norm(train, self.dtype, "bn2")(y))
        y = conv(out, (1, 1), name="conv3")(y)
        y = _batch_norm(train, self.dtype, "bn3", self.zero_init_residual)(y)
        return nn.relu(y + _shortcut(x, out, self.strides, train, self.dtype, self.rule))


def _shortcut(x: jax.Array, features: int, strides: tuple[int, int], train: bool,
              dtype: Any, rule: Any = "backprop") -> jax.Array:
    """Identity, or 1x1 projection + BN when the shape changes (option B).

    Called from inside a block's compact ``__call__``, so the submodules it
    creates belong to that block.
    """
    if x.shape[-1] == features and tuple(strides) == (1, 1):
        return x
    x = conv_layer(rule, features, (1, 1), strides, use_bias=False, dtype=dtype,
                   name="proj_conv")(x)
    return _batch_norm(train, dtype, "proj_bn")(x)


BLOCKS: dict[str, Type[nn.Module]] = {"basic": BasicBlock,
                                      "bottleneck": BottleneckBlock}


def _resolve_block(block_cls: Union[str, Type[nn.Module]]) -> Type[nn.Module]:
    if isinstance(block_cls, str):
        if block_cls not in BLOCKS:
            raise ValueError(f"block_cls must be one of {sorted(BLOCKS)} or a "
                             f"module class, got {block_cls!r}")
        return BLOCKS[block_cls]
    if isinstance(block_cls, type) and issubclass(block_cls, nn.Module):
        return block_cls
    raise ValueError(f"block_cls must be one of {sorted(BLOCKS)} or a module "
                     f"class, got {block_cls!r}")


class Stem(nn.Module):
    """'cifar': 3x3/1 conv, BN, ReLU. 'imagenet': 7x7/2 conv, BN, ReLU,
    3x3/2 max-pool (224 -> 56)."""
    features: int
    kind: str = "cifar"
    dtype: Any = None
    rule: Any = "backprop"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.kind == "imagenet":
            x = conv_layer(self.rule, self.features, (7, 7), (2, 2),
                           padding=[(3, 3), (3, 3)], use_bias=False, dtype=self.dtype,
                           name="conv")(x)
        else:
            x = conv_layer(self.rule, self.features, (3, 3), use_bias=False,
                           dtype=self.dtype, name="conv")(x)
        x = nn.relu(_batch_norm(train, self.dtype, "bn")(x))
        if self.kind == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        return x


class ResNet(nn.Module):
    """Generic ResNet.

    Attributes:
        stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        block_cls: ``BasicBlock``, ``BottleneckBlock`` (or 'basic' /
            'bottleneck', or any module class with fields ``features``,
            ``strides``, ``zero_init_residual``, ``dtype``, a class attribute
            ``expansion`` and ``__call__(x, train)``).
        num_classes: number of logits; ``None`` returns the globally
            average-pooled features (e.g. for SSL backbones).
        stem: 'cifar' or 'imagenet' (see ``Stem``).
        width: multiplies all channel counts (stage s has ``64 * 2**s * width``
            channels before the block expansion).
        zero_init_residual: initialise each block's last BN scale to zero
            (Goyal et al. 2017, Sec. 5.1); off by default as in the paper.
        dtype: computation dtype (``None``, 'float32', 'bfloat16', 'float16');
            parameters, BatchNorm statistics and the output stay float32.
        rule, rule_head: the learning rule of every convolution and of
            ``head``, and whether ``head`` uses it, as for
            ``neurojax.models.MLP``; a custom ``block_cls`` needs a ``rule``
            field for a rule other than 'backprop'.
    """
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block_cls: Union[str, Type[nn.Module]] = BasicBlock
    num_classes: Optional[int] = 10
    stem: str = "cifar"
    width: float = 1.0
    zero_init_residual: bool = False
    dtype: Any = None
    rule: Any = "backprop"
    rule_head: bool = True

    def __post_init__(self) -> None:
        freeze_sequences(self, "stage_sizes")
        check_widths("stage_sizes", self.stage_sizes, allow_empty=False)
        _resolve_block(self.block_cls)
        check_positive_int("num_classes", self.num_classes, allow_none=True)
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        check_positive_float("width", self.width)
        set_compute_dtype(self)
        check_rule("rule", self.rule)
        check_bool("rule_head", self.rule_head)
        super().__post_init__()

    def _block_names(self) -> list[str]:
        """``stage{s}_block{b}`` of every residual block, in order."""
        return [f"stage{s + 1}_block{b + 1}" for s, n in enumerate(self.stage_sizes)
                for b in range(n)]

    @property
    def num_blocks(self) -> int:
        """Blocks below the top: the stem, then one per residual block."""
        return 1 + sum(self.stage_sizes)

    def block_params(self, block: int) -> tuple[str, ...]:
        """Parameter entries of ``block`` (0: ``stem``; ``num_blocks``: the
        top, ``head``)."""
        if block == 0:
            return ("stem",)
        return (self._block_names()[block - 1],) if block < self.num_blocks else ("head",)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, start: int = 0,
                 stop: Optional[int] = None) -> jax.Array:
        """Forward pass on NHWC images; with ``train=True`` BatchNorm uses
        batch statistics and updates ``batch_stats`` (pass
        ``mutable=['batch_stats']`` to ``apply``). ``start``/``stop``: run
        only blocks ``[start, stop)`` (``stop=None``: through the head), for
        layer-wise training (``block_range``; block 0 is the stem)."""
        start, end, top = block_range(self.num_blocks, start, stop)
        block_cls = _resolve_block(self.block_cls)
        # Blocks get a rule only when there is one, so custom block classes
        # without a ``rule`` field keep working with backprop.
        block_rule = {} if is_backprop(self.rule) else {"rule": self.rule}
        if start == 0 < end:
            x = Stem(scale_width(64, self.width), self.stem, self.dtype, self.rule,
                     name="stem")(x, train)
        index = 1
        for s, num_blocks in enumerate(self.stage_sizes):
            features = scale_width(64 * 2 ** s, self.width)
            for b in range(num_blocks):
                if start <= index < end:
                    strides = (2, 2) if s > 0 and b == 0 else (1, 1)
                    x = block_cls(features=features, strides=strides,
                                  zero_init_residual=self.zero_init_residual,
                                  dtype=self.dtype, **block_rule,
                                  name=f"stage{s + 1}_block{b + 1}")(x, train)
                index += 1
        if not top:
            return x  # a block's feature map
        x = GlobalAvgPool(name="gap")(x)
        if self.num_classes is None:
            return float32_output(x)
        return float32_output(dense_layer(head_rule(self.rule, self.rule_head),
                                          self.num_classes, dtype=self.dtype, name="head")(x))


def ResNet18(**kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks, stages (2, 2, 2, 2) (He et al. 2016, Table 1)."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock, **kwargs)


def ResNet34(**kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks, stages (3, 4, 6, 3)."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock, **kwargs)


def ResNet50(**kwargs: Any) -> ResNet:
    """ResNet-50: bottleneck blocks, stages (3, 4, 6, 3)."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock, **kwargs)


def ResNet101(**kwargs: Any) -> ResNet:
    """ResNet-101: bottleneck blocks, stages (3, 4, 23, 3)."""
    return ResNet(stage_sizes=(3, 4, 23, 3), block_cls=BottleneckBlock, **kwargs)


def ResNet152(**kwargs: Any) -> ResNet:
    """ResNet-152: bottleneck blocks, stages (3, 8, 36, 3)."""
    return ResNet(stage_sizes=(3, 8, 36, 3), block_cls=BottleneckBlock, **kwargs)
