"""Decision heads for layer-wise training (Oland 2024, Efficient Deep
Learning, Sec. 6.2 and 6.7).

A stage of deep layer-wise learning trains one block of a network together
with a small *decision* head on the block's output; the head is discarded
when the stage ends (except the last, which is the network's own top).

* :class:`DecisionLayer`: the "decision layer" of Algorithm 3, one affine
  map to the logits: kind 'flat' on the block's output flattened (the
  thesis's single fully connected head, Sec. 6.2, E1's "1 affine layer"),
  kind 'layer' on its globally average-pooled features (cheaper on wide
  feature maps, but it discards the spatial layout). A flat (N, D) input is
  used as it is by both.
* :class:`DecisionBlock`: the "decision block" of Sec. 6.7: ``num_convs``
  stride-2 3x3 "down-convolutions" (each halving the spatial size, ReLU
  after each) before the pooled affine map. It costs less memory than an
  affine map on a wide feature map; the thesis tunes the number of
  convolutions and their channels per layer to hit a memory target and does
  not state the head's final pooling, so global average pooling is this
  library's reading.
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax

from neurojax.models._common import check_positive_int, check_widths, freeze_sequences
from neurojax.models.conv import Conv

HEAD_KINDS = ("layer", "flat", "block")


def _pooled(x: jax.Array) -> jax.Array:
    """Feature maps (N, H, W, C) averaged over space; (N, D) unchanged."""
    if x.ndim == 4:
        return x.mean(axis=(1, 2))
    if x.ndim != 2:
        raise ValueError(f"a decision head takes (N, D) features or (N, H, W, C) feature "
                         f"maps, got shape {x.shape}")
    return x


class DecisionLayer(nn.Module):
    """``Dense(num_classes)`` on block features, averaged over space
    (``pool=True``) or flattened (``pool=False``); layer ``dense``."""
    num_classes: int
    dtype: Any = None
    pool: bool = True

    def __post_init__(self) -> None:
        check_positive_int("num_classes", self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pool:
            x = _pooled(x)
        elif x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="dense")(x)


class DecisionBlock(nn.Module):
    """Stride-2 3x3 convolutions with ReLU (``down_{i}``, widths
    ``channels``), then global average pooling and ``Dense(num_classes)``
    (``dense``). On flat (N, D) features there is nothing to convolve and
    the block is a decision layer."""
    num_classes: int
    channels: Sequence[int] = (128,)
    dtype: Any = None

    def __post_init__(self) -> None:
        freeze_sequences(self, "channels")
        check_positive_int("num_classes", self.num_classes)
        check_widths("channels", self.channels)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 4:
            for i, width in enumerate(self.channels):
                x = Conv(width, kernel_size=(3, 3), strides=(2, 2), dtype=self.dtype,
                         name=f"down_{i}")(x)
                x = nn.relu(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="dense")(_pooled(x))


def decision_head(kind: str, num_classes: int, *, channels: Sequence[int] = (128,),
                  dtype: Optional[Any] = None) -> nn.Module:
    """The head ``kind`` ('layer', 'flat' or 'block') with ``num_classes`` outputs."""
    if kind in ("layer", "flat"):
        return DecisionLayer(num_classes, dtype=dtype, pool=kind == "layer")
    if kind == "block":
        return DecisionBlock(num_classes, channels=tuple(channels), dtype=dtype)
    raise ValueError(f"head must be one of {HEAD_KINDS}, got {kind!r}")
