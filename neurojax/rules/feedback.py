"""Linear layers whose backward pass sends the error through feedback weights B.

One ``jax.custom_vjp`` serves dense and convolutional layers: for the layer's
linear map ``y = op(x, W)`` (``x @ W``, or a convolution) the primitive
returns, for an output cotangent ``dy``,

* ``dx = (d op(x, B) / dx)^T dy``: the error sent to the layer below through
  B instead of W (``dy @ B^T`` for a dense layer; the input gradient of the
  convolution with kernel B);
* ``dW = (d op(x, W) / dW)^T dy``: the ordinary weight gradient (``x^T dy``),
  exact, because it depends on ``x`` and ``dy`` only;
* ``dB``: the cotangent that carries the rule's update of B, by ``mode``:

  - ``'zero'``: no update (feedback alignment, Lillicrap et al. 2016; sign
    symmetry, whose B is recomputed from W each step);
  - ``'tied'``: ``dB = dW`` (+ ``2 alpha B``): Kolen-Pollack (Akrout et al.
    2019, the Kolen-Pollack section), B receives W's update (the optimiser then adds the same
    weight decay to both, so ``W - B`` decays geometrically);
  - ``'local'``: ``dB = d R / dB``, the gradient of the rule's local loss
    (``neurojax.rules.alignment``) at this layer's input (or at noise drawn
    with ``key``), with W held fixed (Kunin et al. 2020).

Both cotangents ``dx`` and ``dW`` come from one ``jax.vjp`` of ``op`` at
``(x, B)``: since ``op`` is linear in the kernel, its weight gradient there
equals the one at ``(x, W)``. With ``B = W`` the primitive therefore runs
exactly the backward pass ``jax.grad`` runs, e.g. through
``neurojax.models.conv.conv2d``'s fast CPU gradients for convolutions.

Dependency direction: this module never imports ``neurojax.models``. A
convolutional layer receives the convolution as a function (``conv``; the
models pass their ``conv2d``), and the models receive a rule object
(:class:`neurojax.rules.Rule`) that builds the layers; the two leaf folders
only meet where a driver composes them.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from neurojax._checks import check_choice
from neurojax.rules.alignment import LinearOp, local_feedback_grad

MODES = ("zero", "tied", "local")


def dense_op(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel`` over the last axis of ``x`` (``flax.linen.Dense``'s product)."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def conv_op(conv: Callable[..., jax.Array], strides: Sequence[int],
            padding: Any) -> LinearOp:
    """``(x, kernel) -> conv(x, kernel, strides, padding)`` as a linear map."""
    return functools.partial(_conv_call, conv, strides, padding)


def _conv_call(conv, strides, padding, x, kernel):
    return conv(x, kernel, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def feedback_linear(rule: Any, op: LinearOp, x: jax.Array, kernel: jax.Array,
                    feedback: jax.Array, key: Optional[jax.Array] = None) -> jax.Array:
    """``op(x, kernel)`` whose VJP uses ``feedback`` for the input cotangent.

    ``rule`` supplies ``mode`` (one of ``MODES``) and, for ``'tied'`` and
    ``'local'``, ``local_name``, ``coefficients`` and ``noise_std``
    (:class:`neurojax.rules.Rule`); ``feedback`` has ``kernel``'s shape and
    dtype (pass it under ``lax.stop_gradient`` when it is a function of W,
    as for sign symmetry). ``key`` is needed only by rules that draw noise.
    """
    return op(x, kernel)


def _feedback_linear_fwd(rule, op, x, kernel, feedback, key):
    y = op(x, kernel)
    # a local loss on the layer's own input reuses its forward projection W x
    keep = rule.mode == "local" and rule.noise_std is None
    return y, (x, kernel, feedback, key, y if keep else None)


def _feedback_linear_bwd(rule, op, residuals, dy):
    x, kernel, feedback, key, projection = residuals
    _, vjp = jax.vjp(op, x, feedback)
    dx, dw = vjp(dy)
    mode = rule.mode
    if mode == "zero":
        df = jnp.zeros_like(feedback)
    elif mode == "tied":
        df = dw
        alpha = rule.coefficients.get("alpha", 0.0)
        if alpha:
            df = df + (2.0 * alpha) * feedback
    elif mode == "local":
        df = local_feedback_grad(rule.local_name, rule.coefficients,
                                 _local_input(rule, x, key), kernel, feedback, op,
                                 projection=projection)
    else:
        raise ValueError(f"rule.mode must be one of {MODES}, got {mode!r}")
    return dx, dw.astype(kernel.dtype), df.astype(feedback.dtype), None


feedback_linear.defvjp(_feedback_linear_fwd, _feedback_linear_bwd)


def rademacher_noise(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """+-1 with probability 1/2 each, iid: the 32 bits of each random uint32
    word are 32 independent fair coins, so ``shape`` takes ceil(size / 32)
    words (a Gaussian sample takes one word and an inverse error function
    per entry)."""
    size = math.prod(shape)
    bits = jax.random.bits(key, (-(-size // 32),), jnp.uint32)
    coins = (bits[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return (1 - 2 * coins.astype(dtype)).reshape(-1)[:size].reshape(shape)


def _local_input(rule, x: jax.Array, key: Optional[jax.Array]) -> jax.Array:
    """The layer input, or noise of its shape (``rule.noise_std``,
    ``rule.noise_distribution``)."""
    if rule.noise_std is None:
        return x
    if key is None:
        raise ValueError(
            f"rule {rule.name!r} draws noise in the backward pass: apply the model "
            "with rngs={'feedback': key} (or {'dropout': key}, which "
            "neurojax.train.step.model_objective passes)")
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    if rule.noise_distribution == "rademacher":
        return rule.noise_std * rademacher_noise(key, x.shape, dtype)
    return rule.noise_std * jax.random.normal(key, x.shape, dtype)


def apply_rule(rule: Any, op: LinearOp, x: jax.Array, kernel: jax.Array,
               feedback: Optional[jax.Array] = None, key: Optional[jax.Array] = None
               ) -> jax.Array:
    """``op(x, kernel)`` with the backward pass of ``rule``.

    ``rule.mode == 'exact'`` (backprop) is plain autodiff. Otherwise the
    feedback weights the backward pass uses are
    ``rule.feedback_weights(kernel, feedback)``: the stored ``feedback``
    parameter, or a function of W (sign symmetry).
    """
    if rule.mode == "exact":
        return op(x, kernel)
    check_choice("rule.mode", rule.mode, MODES)
    b = rule.feedback_weights(kernel, feedback)
    if b.shape != kernel.shape:
        raise ValueError(f"feedback must have the kernel's shape {kernel.shape}, "
                         f"got {b.shape}")
    return feedback_linear(rule, op, x, kernel, b.astype(kernel.dtype), key)


def feedback_dense(rule: Any, x: jax.Array, kernel: jax.Array,
                   feedback: Optional[jax.Array] = None,
                   key: Optional[jax.Array] = None) -> jax.Array:
    """``x @ kernel`` (``x``: (N, in), ``kernel``: (in, out)) with ``rule``'s backward."""
    return apply_rule(rule, dense_op, x, kernel, feedback, key)


def feedback_conv(rule: Any, conv: Callable[..., jax.Array], x: jax.Array,
                  kernel: jax.Array, feedback: Optional[jax.Array] = None,
                  strides: Sequence[int] = (1, 1),
                  padding: Union[str, int, Sequence] = "SAME",
                  key: Optional[jax.Array] = None) -> jax.Array:
    """``conv(x, kernel, strides, padding)`` (NHWC, HWIO) with ``rule``'s backward.

    ``conv`` is the convolution to run, forward and backward (the models
    pass ``neurojax.models.conv.conv2d``).
    """
    return apply_rule(rule, conv_op(conv, strides, padding), x, kernel, feedback, key)
