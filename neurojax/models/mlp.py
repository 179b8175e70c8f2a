"""Fully connected networks: a multilayer perceptron and a deep linear network.

``DeepLinear`` is the model of Saxe, McClelland & Ganguli, "Exact solutions to
the nonlinear dynamics of learning in deep linear neural networks" (ICLR 2014,
Sec. 1-2): a chain of weight matrices with no nonlinearity, so the network
computes the product ``W_L ... W_1 x`` while its learning dynamics stay
nonlinear in the weights.
"""
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax

from neurojax._checks import check_bool
from neurojax.models._common import (Activation, block_range, check_positive_int,
                                     check_widths, flatten, float32_output,
                                     freeze_sequences, resolve_activation,
                                     set_compute_dtype)
from neurojax.models.layers import Act
from neurojax.models.rule_layers import check_rule, dense_layer, head_rule


class MLP(nn.Module):
    """Multilayer perceptron on flattened inputs.

    Layers are named ``dense_{i}`` (pre-activation), ``act_{i}``
    (post-activation) and ``head`` (the logits).

    Attributes:
        widths: hidden layer widths, e.g. ``(256, 256)``; may be empty.
        num_outputs: size of the output layer; ``None`` returns the last
            hidden representation (post-activation) instead of logits.
        activation: a name from ``neurojax.models._common.ACTIVATIONS``
            ('relu', 'gelu', 'tanh', ...) or a callable.
        use_bias: whether the dense layers have biases.
        dtype: computation dtype, ``None`` (inferred from inputs and params),
            'float32', 'bfloat16' or 'float16' (name or dtype); parameters
            stay float32 and the output is float32 (``float32_output``).
        rule: 'backprop' (default: the model as before) or a learning rule
            from ``neurojax.rules.get_rule(name)``: every dense layer then
            sends its error to its input through the rule's feedback weights;
            all else keeps exact gradients (``neurojax.models.rule_layers``).
        rule_head: whether ``head`` uses the rule too (default True).
    """
    widths: Sequence[int] = (256, 256)
    num_outputs: Optional[int] = 10
    activation: Activation = "relu"
    use_bias: bool = True
    dtype: Any = None
    rule: Any = "backprop"
    rule_head: bool = True

    def __post_init__(self) -> None:
        freeze_sequences(self, "widths")
        check_widths("widths", self.widths)
        check_positive_int("num_outputs", self.num_outputs, allow_none=True)
        resolve_activation(self.activation)
        set_compute_dtype(self)
        check_rule("rule", self.rule)
        check_bool("rule_head", self.rule_head)
        super().__post_init__()

    @property
    def num_blocks(self) -> int:
        """Blocks below the top: one per hidden layer (``dense_i`` + ``act_i``)."""
        return len(self.widths)

    def block_params(self, block: int) -> tuple[str, ...]:
        """Parameter entries of ``block`` (``num_blocks``: the top, ``head``)."""
        return (f"dense_{block}",) if block < self.num_blocks else ("head",)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, start: int = 0,
                 stop: Optional[int] = None) -> jax.Array:
        """Forward pass; ``train`` is accepted for a uniform API and ignored.
        ``start``/``stop``: run only blocks ``[start, stop)`` (``stop=None``:
        through the head), for layer-wise training (``block_range``)."""
        del train
        start, end, top = block_range(self.num_blocks, start, stop)
        act = resolve_activation(self.activation)
        if start == 0:
            x = flatten(x)
        for i in range(start, end):
            x = dense_layer(self.rule, self.widths[i], use_bias=self.use_bias,
                            dtype=self.dtype, name=f"dense_{i}")(x)
            x = Act(act, name=f"act_{i}")(x)
        if not top:
            return x
        if self.num_outputs is None:
            return float32_output(x)
        return float32_output(dense_layer(head_rule(self.rule, self.rule_head),
                                          self.num_outputs, use_bias=self.use_bias,
                                          dtype=self.dtype, name="head")(x))


class DeepLinear(nn.Module):
    """Deep linear network (Saxe et al., 2014): dense layers, no nonlinearity.

    Computes ``head(dense_{L-1}(... dense_0(flatten(x))))``; without biases this
    is ``x @ W_0 @ W_1 ... @ W_head``.

    Attributes:
        widths: hidden widths; may be empty (a single linear map).
        num_outputs: output size; ``None`` returns the last hidden layer.
        use_bias: biases on every layer (off by default, as in Saxe et al.).
        kernel_init: weight initializer; the learning dynamics depend strongly
            on its scale (small init gives the stage-like transitions).
        dtype: computation dtype, as for ``MLP``.
        rule, rule_head: as for ``MLP``.
    """
    widths: Sequence[int] = (64, 64)
    num_outputs: Optional[int] = 10
    use_bias: bool = False
    kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
    dtype: Any = None
    rule: Any = "backprop"
    rule_head: bool = True

    def __post_init__(self) -> None:
        freeze_sequences(self, "widths")
        check_widths("widths", self.widths)
        check_positive_int("num_outputs", self.num_outputs, allow_none=True)
        if self.num_outputs is None and len(self.widths) == 0:
            raise ValueError("widths must not be empty when num_outputs is None")
        set_compute_dtype(self)
        check_rule("rule", self.rule)
        check_bool("rule_head", self.rule_head)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Forward pass; ``train`` is ignored."""
        del train
        x = flatten(x)
        dense = lambda rule, n, name: dense_layer(  # noqa: E731
            rule, n, use_bias=self.use_bias, dtype=self.dtype,
            kernel_init=self.kernel_init, name=name)
        for i, width in enumerate(self.widths):
            x = dense(self.rule, width, f"dense_{i}")(x)
        if self.num_outputs is None:
            return float32_output(x)
        return float32_output(dense(head_rule(self.rule, self.rule_head),
                                    self.num_outputs, "head")(x))
