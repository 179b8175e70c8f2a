"""Hand-written forward passes for the conv-net reference tests (float64).

Independent of ``neurojax.models``: convolution is ``lax.conv_general_dilated``
with the 'SAME' padding worked out here (TensorFlow's rule: output
``ceil(size / stride)``, the odd padding pixel at the end), BatchNorm,
pooling and dense layers are written out. The functions take the Flax
parameter (sub)trees of the modules they check, so the same weights run
through both.
"""
import math

import jax.numpy as jnp
from jax import lax

BN_EPSILON = 1e-5   # PyTorch's default, which the models follow
BN_MOMENTUM = 0.9   # Flax's convention: running = 0.9 running + 0.1 batch


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """'SAME' padding of one spatial axis: (before, after)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def conv(x, kernel, strides=(1, 1)):
    """NHWC input, HWIO kernel, 'SAME' padding."""
    pads = [same_padding(x.shape[1 + a], kernel.shape[a], strides[a]) for a in range(2)]
    return lax.conv_general_dilated(x, kernel, tuple(strides), pads,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)


def batch_norm(x, params, stats, train: bool):
    """Returns (output, new running statistics).

    Inference: normalise with the running mean and variance. Training:
    normalise with the batch's mean and biased variance over (N, H, W) and
    move the running statistics towards them.
    """
    if train:
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.mean((x - mean) ** 2, axis=(0, 1, 2))
        new = {"mean": BN_MOMENTUM * stats["mean"] + (1 - BN_MOMENTUM) * mean,
               "var": BN_MOMENTUM * stats["var"] + (1 - BN_MOMENTUM) * var}
    else:
        mean, var, new = stats["mean"], stats["var"], stats
    y = (x - mean) / jnp.sqrt(var + BN_EPSILON)
    return y * params["scale"] + params["bias"], new


def relu(x):
    return jnp.maximum(x, 0.0)


def max_pool_2x2(x):
    """2x2 windows, stride 2, 'SAME' (pads with -inf)."""
    pads = [(0, 0)] + [same_padding(x.shape[a], 2, 2) for a in (1, 2)] + [(0, 0)]
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), pads)


def dense(x, params):
    return x @ params["kernel"] + params["bias"]


def conv_bn(x, params, stats, name, bn_name, train, strides=(1, 1)):
    """conv ``name`` (no bias), then BatchNorm ``bn_name``: (output, new statistics)."""
    y = conv(x, params[name]["kernel"], strides)
    return batch_norm(y, params[bn_name], stats[bn_name], train)


def basic_block(x, params, stats, strides, train):
    """He et al. (2016), Fig. 2 left: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut)."""
    new = {}
    y, new["bn1"] = conv_bn(x, params, stats, "conv1", "bn1", train, strides)
    y, new["bn2"] = conv_bn(relu(y), params, stats, "conv2", "bn2", train)
    shortcut = x
    if "proj_conv" in params:
        shortcut, new["proj_bn"] = conv_bn(x, params, stats, "proj_conv", "proj_bn", train,
                                           strides)
    return relu(y + shortcut), new


def bottleneck_block(x, params, stats, strides, train):
    """1x1, 3x3 carrying the stride ("v1.5"), 1x1, each with BatchNorm."""
    new = {}
    y, new["bn1"] = conv_bn(x, params, stats, "conv1", "bn1", train)
    y, new["bn2"] = conv_bn(relu(y), params, stats, "conv2", "bn2", train, strides)
    y, new["bn3"] = conv_bn(relu(y), params, stats, "conv3", "bn3", train)
    shortcut = x
    if "proj_conv" in params:
        shortcut, new["proj_bn"] = conv_bn(x, params, stats, "proj_conv", "proj_bn", train,
                                           strides)
    return relu(y + shortcut), new
