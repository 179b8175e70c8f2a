"""Saliency scores of parameters for pruning at initialisation: SynFlow,
SNIP, GraSP, magnitude and random. Each is a pure function of the parameters
and a loss or apply function, higher = keep; ``neurojax.optim.pruning``
turns scores into global masks and ``neurojax.train.pruning.pruning_masks``
picks a score by name and runs the iterative pruning.

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by
iteratively conserving synaptic flow" (NeurIPS 2020). The scores:

* **SynFlow** (Sec. 6, Algorithm 1): ``R = 1^T (prod_l |W^[l]|) 1``, the
  network's output summed over units for an all-ones input with every
  parameter replaced by its absolute value, and ``S = |theta * dR/dtheta|``.
  Data-free. For a network that is homogeneous of degree one in each
  layer's weights (no biases, ReLU, max/avg pooling, BatchNorm in eval mode
  with zero shift and mean), Euler's theorem gives the layer-wise
  conservation of Theorem 2 (Sec. 5): ``sum_{theta in layer l} S(theta) = R``
  for every layer, so iterating with a slowly shrinking mask (an
  exponential compression schedule over ``n = 100`` iterations, Sec. 6)
  never removes a whole layer before the last weights of the others
  (Theorem 3: no layer collapse).
* **SNIP** (Lee et al. 2019, Eq. 6): ``S = |theta * dL/dtheta|`` on a batch
  (the derivative of the loss with respect to a multiplicative mask at 1).
* **GraSP** (Wang et al. 2020, Eq. 8): the paper's score is
  ``S(-theta) = -theta * H g`` with ``g`` the loss gradient, ``H`` its
  Hessian, the loss taken on logits divided by a temperature ``T = 200``,
  and it *removes* the highest ``S(-theta)``. So the keep-score here is
  ``theta * H g`` (as in the Synaptic-Flow code, which stores ``p.grad *
  p`` after back-propagating ``g_stopped . g``); ``H g`` is the library's
  ``neurojax.metrics.curvature.hvp``.
* **magnitude**: ``|theta|``; **random**: i.i.d. standard normal.

Numerical conventions (and where the references differ):

* SynFlow is computed in the parameters' dtype, float64 by the design's
  named convention (``R`` grows like a product of layer sums and reaches
  ~1e24 in a VGG-16; the reference's ``model.double()`` is commented out, so
  its published runs used float32); ``neurojax.train.pruning.pruning_masks``
  casts to float64 inside ``jax.enable_x64``. All parameters and model state
  (BatchNorm statistics included) are made absolute, as the reference's
  ``linearize`` does to its ``state_dict``, and the model runs in evaluation
  mode (BatchNorm with running statistics).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from neurojax.metrics.curvature import hvp

GRASP_TEMPERATURE = 200.0  # Wang et al. 2020 / the Synaptic-Flow code's GraSP.temp

PyTree = Any


def magnitude_scores(params: PyTree) -> PyTree:
    """``|theta|``."""
    return jax.tree.map(jnp.abs, params)


def random_scores(key: jax.Array, params: PyTree) -> PyTree:
    """I.i.d. standard normal scores (random pruning), drawn with ``key``."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x, jnp.float32))
        for k, x in zip(keys, leaves)])


def snip_scores(loss_fn: Callable[[PyTree], jax.Array], params: PyTree) -> PyTree:
    """SNIP (Lee et al. 2019, Eq. 6): ``|theta * dL/dtheta|`` for
    ``loss_fn(params) -> scalar`` on a data batch (the gradient with respect
    to a multiplicative mask, ``dL/dm = theta * dL/dtheta`` at ``m = 1``)."""
    grads = jax.grad(loss_fn)(params)
    return jax.tree.map(lambda g, p: jnp.abs(g * p), grads, params)


def grasp_scores(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *,
                 mode: str = "fwd_rev") -> PyTree:
    """GraSP (Wang et al. 2020, Eq. 8) as a keep-score: ``theta * (H g)``.

    ``g = dL/dtheta`` (held fixed) and ``H g`` is the Hessian-vector product
    of ``loss_fn`` (``neurojax.metrics.curvature.hvp``, ``mode`` as there).
    The paper's score is ``S(-theta) = -theta * H g`` and it prunes the
    highest ``S(-theta)``, i.e. keeps the highest ``theta * H g`` (what is
    returned). Build ``loss_fn`` on logits divided by the temperature
    (``GRASP_TEMPERATURE = 200`` in the paper's code; ``batch_loss_fn``).
    """
    g = jax.lax.stop_gradient(jax.grad(loss_fn)(params))
    hg = hvp(loss_fn, params, g, mode=mode)
    return jax.tree.map(lambda h, p: h * p, hg, params)


def synflow_objective(apply_fn: Callable[[dict, jax.Array], jax.Array], params: PyTree,
                      input_shape, *, model_state: Optional[dict] = None) -> jax.Array:
    """``R = 1^T f_{|theta|}(1)``: the summed output of the network with
    absolute parameters (and absolute model state) on one all-ones input of
    ``input_shape`` (without the batch axis), in the parameters' dtype.

    ``apply_fn(variables, x)`` must run the model in evaluation mode (e.g.
    ``lambda v, x: model.apply(v, x, train=False)``). ``params`` are taken as
    they are: ``synflow_scores`` passes them through ``abs``.
    """
    dtype = jnp.result_type(*jax.tree.leaves(params))
    state = jax.tree.map(lambda s: jnp.abs(s).astype(dtype)
                         if jnp.issubdtype(jnp.asarray(s).dtype, jnp.floating) else s,
                         dict(model_state or {}))
    x = jnp.ones((1,) + tuple(input_shape), dtype)
    return jnp.sum(apply_fn({"params": params, **state}, x))


def synflow_scores(apply_fn: Callable[[dict, jax.Array], jax.Array], params: PyTree,
                   input_shape, *, model_state: Optional[dict] = None) -> PyTree:
    """SynFlow (Tanaka et al. 2020, Sec. 6): ``S = |theta * dR/dtheta|`` with
    ``R`` of ``synflow_objective`` at ``|theta|`` (so ``S = |theta| dR/d|theta|``).

    Computed in ``params``' dtype: pass float64 parameters with
    ``jax_enable_x64`` on (``neurojax.train.pruning.pruning_masks(..., dtype='float64')``
    does both).
    """
    absolute = jax.tree.map(jnp.abs, params)
    grads = jax.grad(lambda p: synflow_objective(apply_fn, p, input_shape,
                                                 model_state=model_state))(absolute)
    # no signs to restore (the reference's nonlinearize): the score is
    # |theta * dR/dtheta| = |theta| * dR/d|theta| and params are not changed
    return jax.tree.map(lambda g, p: jnp.abs(g * p), grads, absolute)


def batch_loss_fn(apply_fn, loss: Callable[[jax.Array, dict], jax.Array], variables_rest,
                  batch: dict, *, temperature: float = 1.0, input_key: str = "image"):
    """``params -> loss(apply_fn(variables, batch[input_key]) / temperature, batch)``:
    SNIP's loss (``temperature=1``) and GraSP's (``GRASP_TEMPERATURE``)."""
    def fn(params):
        out = apply_fn({"params": params, **variables_rest}, batch[input_key])
        return loss(out / temperature, batch)
    return fn
