"""The weight layers a model builds for its ``rule`` field.

Every model with a ``rule`` field creates its dense and convolutional layers
here. ``rule='backprop'`` (the default) gives exactly the layers the models
had before the field existed (``flax.linen.Dense`` and :class:`Conv`), so
the parameter tree and every output and gradient are unchanged. Any other
value is a learning-rule object (``neurojax.rules.get_rule(name)``) that
builds the layers itself: same parameters plus a ``feedback_kernel`` where
the rule stores feedback weights, and a backward pass that sends each
layer's error to its input through them (convolutions run this package's
:func:`conv2d`, forward and backward). Under every rule these keep exact
gradients (ordinary autodiff): each layer's own weight and bias gradients,
activations, pooling, BatchNorm, residual additions and the loss; only the
error a dense or conv layer passes to its input changes. A model's
``rule_head`` field says whether its last layer uses the rule as well.

This package does not import ``neurojax.rules`` (leaf folders stay
independent): a rule is recognised by its ``dense`` and ``conv`` methods.
"""
from typing import Any, Sequence

import flax.linen as nn

from neurojax.models.conv import Conv, Padding, conv2d

BACKPROP = "backprop"


def is_backprop(rule: Any) -> bool:
    """Whether ``rule`` is the string 'backprop' (the models' default)."""
    return isinstance(rule, str) and rule == BACKPROP


def check_rule(field: str, rule: Any) -> None:
    """Raise ``ValueError`` unless ``rule`` is 'backprop' or a learning-rule
    object with ``dense`` and ``conv`` layer builders (``neurojax.rules.Rule``)."""
    if is_backprop(rule):
        return
    if callable(getattr(rule, "dense", None)) and callable(getattr(rule, "conv", None)):
        return
    raise ValueError(f"{field} must be 'backprop' or a rule from "
                     f"neurojax.rules.get_rule(name) (e.g. get_rule('feedback_alignment')), "
                     f"got {rule!r}")


def head_rule(rule: Any, rule_head: bool) -> Any:
    """The rule of a model's last layer: ``rule``, or 'backprop' when
    ``rule_head`` is False (the classifier then sends the error to the layer
    below through ``W^T``)."""
    return rule if rule_head else BACKPROP


def dense_layer(rule: Any, features: int, **kwargs: Any) -> nn.Module:
    """``nn.Dense(features, **kwargs)`` for 'backprop', else ``rule.dense(...)``."""
    if is_backprop(rule):
        return nn.Dense(features, **kwargs)
    return rule.dense(features, **kwargs)


def conv_layer(rule: Any, features: int, kernel_size: Sequence[int] = (3, 3),
               strides: Sequence[int] = (1, 1), padding: Padding = "SAME",
               **kwargs: Any) -> nn.Module:
    """:class:`Conv` for 'backprop', else ``rule.conv(..., conv=conv2d)``."""
    if is_backprop(rule):
        return Conv(features, kernel_size, strides, padding, **kwargs)
    return rule.conv(features, kernel_size, strides, padding, conv=conv2d, **kwargs)
