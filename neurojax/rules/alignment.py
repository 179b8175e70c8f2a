"""Local losses on the feedback weights B: Kunin et al.'s primitives and rules.

Kunin, Nayebi, Sagastuy-Brena, Ganguli, Bloom & Yamins, "Two Routes to
Scalable Credit Assignment without Weight Symmetry" (ICML 2020; the section
on regularisation primitives and its table of rules), write each learning
rule that trains B from local signals as a weighted sum of five
regularisation primitives. For one layer with input
``x`` (a batch; axis 0 is the batch), forward weights ``W`` and feedback
weights ``B`` (both in W's layout: ``(in, out)`` for a dense layer, HWIO
for a convolution) and the layer's linear map ``op`` (``x @ K`` or the
convolution ``conv(x, K)``):

* forward projection ``r = op(x, W)``, backward projection ``r_B = op(x, B)``;
* forward reconstruction ``op_B^T(r)``: ``r`` sent back through B, the
  transpose of ``x -> op(x, B)`` (``r @ B^T`` for a dense layer, the
  transposed convolution for a conv layer).

The primitives (the official Neural-Alignment code's definitions: sums over
features and kernel entries, means over the batch, no factor 1/2):

==========  ===============================================  ================
primitive   value                                            gradient in B
==========  ===============================================  ================
decay       ``||W||^2 + ||B||^2``                            ``2 B``
sparse      ``mean_n ||r||^2 + mean_n ||r_B||^2``            ``2 x^T x B / n``
null        ``mean_n ||op_B^T(r)||^2`` (+ a backward term)   ``2 B r^T r / n``
self        ``-<W, B>`` (``-tr(W^T B)``)                     ``-W``
amp         ``-mean_n <r, r_B>``                             ``-x^T x W / n``
==========  ===============================================  ================

(gradients for a dense layer, ``n`` examples; ``x^T x`` and ``r^T r`` are
summed over the batch.) And the rules (each with W held fixed: the local loss trains B only):

* weight mirror (Akrout et al. 2019, "Deep learning without weight
  transport", the weight-mirror section; Kunin et al. 2020):
  ``alpha * decay + beta * amp`` on an input of Gaussian noise
  ``xi ~ N(0, noise_std^2)`` in place of ``x``. Its expected gradient
  ``2 alpha B - beta noise_std^2 W`` (dense layers) vanishes at
  ``B* = (beta noise_std^2 / 2 alpha) W``.
* symmetric alignment: ``alpha * decay + beta * self``; gradient
  ``2 alpha B - beta W``, fixed point ``B* = (beta / 2 alpha) W``.
* activation alignment: ``alpha * sparse + beta * amp`` on the layer's
  input; fixed point ``(beta / 2 alpha) W`` where ``x^T x`` is invertible.
* information alignment: ``alpha * amp + beta * null + gamma * decay`` on
  the layer's input (the official code's default form: amp on the two
  projections, null on the forward reconstruction, decay on the weights).

Conventions, named: the projections are taken without the layer's bias and
before its activation (the official code's ``use_bias_*`` flags default to
adding the bias and ``activation_*`` to leaving it out; with zero-mean noise
the bias drops out of the mirror's expected gradient). ``noise_std=None``
uses the layer's own input for any rule (the official code's
``input_distribution=None``); only the mirror defaults to noise.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

LinearOp = Callable[[jax.Array, jax.Array], jax.Array]

PRIMITIVE_NAMES = ("decay", "sparse", "null", "self", "amp")
# rule -> the metaparameters weighting its primitives, in order
LOCAL_RULES: dict[str, tuple[str, ...]] = {
    "weight_mirror": ("alpha", "beta"),
    "symmetric_alignment": ("alpha", "beta"),
    "activation_alignment": ("alpha", "beta"),
    "information_alignment": ("alpha", "beta", "gamma"),
}


def _batch_sum_sq(t: jax.Array) -> jax.Array:
    """``mean_n sum_features t^2`` (axis 0 is the batch)."""
    return jnp.sum(jnp.mean(jnp.square(t), axis=0))


def decay(kernel: jax.Array, feedback: jax.Array) -> jax.Array:
    """``||W||^2 + ||B||^2`` (Kunin et al. 2020, "decay")."""
    return jnp.sum(jnp.square(kernel)) + jnp.sum(jnp.square(feedback))


def sparse(forward_projection: jax.Array, backward_projection: jax.Array) -> jax.Array:
    """``mean_n ||W x||^2 + mean_n ||B^T x||^2`` ("sparse"): the projections'
    energies, summed over features and averaged over the batch."""
    return _batch_sum_sq(forward_projection) + _batch_sum_sq(backward_projection)


def null(forward_reconstruction: jax.Array,
         backward_reconstruction: Optional[jax.Array] = None) -> jax.Array:
    """``mean_n ||B W x||^2 (+ mean_n ||W^T B^T x||^2)`` ("null"): the energy
    of the reconstructions; information alignment uses only the forward one
    (pass ``None`` for the other)."""
    out = _batch_sum_sq(forward_reconstruction)
    if backward_reconstruction is not None:
        out = out + _batch_sum_sq(backward_reconstruction)
    return out


def self_alignment(kernel: jax.Array, feedback: jax.Array) -> jax.Array:
    """``-<W, B>`` ("self", ``-tr(B W)`` in the paper's orientation)."""
    return -jnp.sum(kernel * feedback)


def amp(forward_projection: jax.Array, backward_projection: jax.Array) -> jax.Array:
    """``-mean_n <W x, B^T x>`` ("amp", ``-x^T B W x``): minus the batch
    mean of the projections' inner product."""
    return -jnp.sum(jnp.mean(forward_projection * backward_projection, axis=0))


PRIMITIVES: dict[str, Callable[..., jax.Array]] = {
    "decay": decay, "sparse": sparse, "null": null, "self": self_alignment, "amp": amp}


def reconstruct(op: LinearOp, x: jax.Array, feedback: jax.Array,
                projection: jax.Array) -> jax.Array:
    """``projection`` sent back through B: the transpose of ``z -> op(z, B)``
    (at any ``z`` of ``x``'s shape) applied to ``projection``."""
    _, transpose = jax.vjp(lambda z: op(z, feedback), x)
    return transpose(projection)[0]


def local_loss(name: str, coefficients: dict[str, float], x: jax.Array,
               kernel: jax.Array, feedback: jax.Array, op: LinearOp) -> jax.Array:
    """The local loss of rule ``name`` (one of ``LOCAL_RULES``) for one layer.

    ``x`` is the layer's input, or the noise that replaces it (weight
    mirror); ``coefficients`` maps 'alpha', 'beta' (and 'gamma') to floats.
    ``kernel`` is not held fixed here: :func:`local_feedback_grad` does that.
    """
    if name not in LOCAL_RULES:
        raise ValueError(f"name must be one of {tuple(LOCAL_RULES)}, got {name!r}")
    c = coefficients
    if name == "symmetric_alignment":
        return c["alpha"] * decay(kernel, feedback) + c["beta"] * self_alignment(kernel, feedback)
    r, r_b = op(x, kernel), op(x, feedback)
    if name == "weight_mirror":
        return c["alpha"] * decay(kernel, feedback) + c["beta"] * amp(r, r_b)
    if name == "activation_alignment":
        return c["alpha"] * sparse(r, r_b) + c["beta"] * amp(r, r_b)
    # information alignment
    return (c["alpha"] * amp(r, r_b) + c["beta"] * null(reconstruct(op, x, feedback, r))
            + c["gamma"] * decay(kernel, feedback))


def weight_gradient(op: LinearOp, z: jax.Array, cotangent: jax.Array,
                    kernel: jax.Array) -> jax.Array:
    """``d/dK <op(z, K), cotangent>``: the layer's weight gradient at input
    ``z`` (``z^T c`` for a dense layer), bilinear in ``(z, cotangent)``;
    ``kernel`` gives K's shape and dtype (the map is linear in K)."""
    _, vjp = jax.vjp(lambda k: op(z, k), kernel)
    return vjp(cotangent.astype(kernel.dtype))[0]


def local_feedback_grad(name: str, coefficients: dict[str, float], x: jax.Array,
                        kernel: jax.Array, feedback: jax.Array, op: LinearOp, *,
                        projection: Optional[jax.Array] = None) -> jax.Array:
    """``d local_loss / dB`` with ``x`` and ``W`` held fixed, computed in at
    least float32 and returned in B's dtype.

    In closed form, through the layer's weight gradient ``wg(z, c) =
    d/dB <op(z, B), c>`` (bilinear, so terms with the same cotangent share
    one call), with ``r = op(x, W)`` (``projection``, when the caller has
    it: the forward pass's output), ``n`` the batch size:

    * decay ``2 B``; self ``-W``;
    * amp ``-wg(x, r) / n``; sparse ``2 wg(x, op(x, B)) / n``;
    * null (forward) ``2 wg(op_B^T(r), r) / n``, by the adjoint identity
      ``<z, op_B^T(r)> = <op(z, B), r>``.

    So information alignment costs one transposed and one weight-gradient
    convolution per layer beyond backprop (plus ``r`` when not given), where
    differentiating :func:`local_loss` costs about twice that; the tests
    check the two agree.
    """
    acc = jnp.promote_types(feedback.dtype, jnp.float32)
    x, kernel = jax.lax.stop_gradient(x.astype(acc)), jax.lax.stop_gradient(kernel.astype(acc))
    b = jax.lax.stop_gradient(feedback.astype(acc))
    c = coefficients
    if name not in LOCAL_RULES:
        raise ValueError(f"name must be one of {tuple(LOCAL_RULES)}, got {name!r}")
    if name == "symmetric_alignment":
        return (2.0 * c["alpha"] * b - c["beta"] * kernel).astype(feedback.dtype)
    n = x.shape[0]
    r = (op(x, kernel) if projection is None
         else jax.lax.stop_gradient(projection.astype(acc)))
    if name == "weight_mirror":
        grad = 2.0 * c["alpha"] * b + weight_gradient(op, x, (-c["beta"] / n) * r, b)
    elif name == "activation_alignment":
        grad = weight_gradient(op, x, (2.0 * c["alpha"] * op(x, b) - c["beta"] * r) / n, b)
    else:  # information alignment: amp and null share the cotangent r
        rec = reconstruct(op, x, b, r)
        grad = (weight_gradient(op, (2.0 * c["beta"] * rec - c["alpha"] * x) / n, r, b)
                + 2.0 * c["gamma"] * b)
    return grad.astype(feedback.dtype)
