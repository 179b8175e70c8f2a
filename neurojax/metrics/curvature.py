"""Curvature of a loss over a parameter PyTree: HVPs, Hessian trace, extremal
eigenvalues, Frobenius norm and the gradient norm.

These are the Hessian quantities of Ghosh et al. (ICLR 2023), "How gradient
estimator variance and bias impact learning in neural networks": the
variance term of Lemma 2.1 (Sec. 2, Eq. 3) is ``(1/2) sigma^2 f(N) Tr[H] /
N dt^2``; Theorem 3.1 (Sec. 3.1) thresholds the extremal eigenvalues
``lambda_1`` (largest) and ``lambda_N`` (smallest) at
``(2/dt) / (1 + sigma^2/||g||^2)``; Theorem 3.2 uses ``psi = ||H||_F``; and
Theorem 2.4 the gradient norm ``||g||``.

Every function takes ``loss_fn(params) -> scalar`` (close over the batch, e.g.
``functools.partial(loss, batch=batch)`` returning only the scalar) and a
parameter PyTree. Hessian-vector products are never formed from the dense
Hessian except in ``dense_hessian`` (for small models only: ``N x N``).

``mode`` picks how second derivatives are taken:

* ``'fwd_rev'`` (default): forward-over-reverse, ``jvp(grad(L))``: one
  gradient's cost plus a forward tangent; the usual choice.
* ``'rev_rev'``: reverse-over-reverse, ``grad(<grad(L), v>)``. Useful when a
  primitive's JVP of its VJP is missing or slow; e.g. the project's CPU
  convolution is a ``jax.custom_jvp`` (``neurojax/models/conv.py``) whose
  tangent rule is transposed for the backward pass, and both modes are
  checked against the dense Hessian through it.

All functions run under ``jax.jit`` (keys, counts and modes are Python values
at trace time). Results are in the parameters' dtype (float32 at least);
enable x64 and pass float64 parameters for tight comparisons.
"""
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from neurojax._checks import check_choice, check_int

MODES = ("fwd_rev", "rev_rev")

LossFn = Callable[[Any], jax.Array]


def _acc_dtype(tree):
    dtypes = [jnp.asarray(x).dtype for x in jax.tree.leaves(tree)]
    return jnp.result_type(jnp.float32, *dtypes) if dtypes else jnp.float32


def _tree_vdot(a, b, dtype):
    """<a, b> over whole PyTrees, accumulated in ``dtype``."""
    return optax.tree.vdot(optax.tree.cast(a, dtype), optax.tree.cast(b, dtype))


def _cast_like(v, params):
    """``v``'s leaves (arrays or Python numbers) as arrays of ``params``' dtypes."""
    return jax.tree.map(lambda x, p: jnp.asarray(x, jnp.asarray(p).dtype), v, params)


def hvp(loss_fn: LossFn, params, v, *, mode: str = "fwd_rev"):
    """Hessian-vector product ``H v`` with ``H = d^2 loss_fn / d params^2``.

    Args:
        loss_fn: ``params -> scalar``.
        params: the point where the Hessian is taken (any PyTree of arrays).
        v: a PyTree with the structure and shapes of ``params`` (cast to the
            parameters' dtypes).
        mode: ``'fwd_rev'`` (``jvp`` of ``grad``) or ``'rev_rev'``
            (``grad`` of ``<grad, v>``).

    Returns:
        ``H v`` as a PyTree like ``params``.
    """
    check_choice("mode", mode, MODES)
    v = _cast_like(v, params)
    if mode == "fwd_rev":
        return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]
    dtype = _acc_dtype(params)
    return jax.grad(lambda p: _tree_vdot(jax.grad(loss_fn)(p), v, dtype))(params)


def dense_hessian(loss_fn: LossFn, params, *, mode: str = "fwd_rev") -> jax.Array:
    """The full Hessian as an ``(N, N)`` matrix over the flattened parameters.

    The flattening is ``jax.flatten_util.ravel_pytree(params)`` (leaves in
    ``jax.tree.leaves`` order, each raveled row-major), so ``H[i, j] =
    d^2 L / d flat_i d flat_j``. Costs ``N`` HVPs and ``N^2`` memory: small
    models only. ``mode`` as in ``hvp`` (``jacfwd`` or ``jacrev`` of the
    gradient).
    """
    check_choice("mode", mode, MODES)
    flat, unravel = ravel_pytree(params)

    def grad_flat(x):
        return ravel_pytree(jax.grad(loss_fn)(unravel(x)))[0]

    jac = jax.jacfwd if mode == "fwd_rev" else jax.jacrev
    return jac(grad_flat)(flat)


def gradient_norm(loss_fn: LossFn, params) -> jax.Array:
    """``||grad L||_2`` over the whole PyTree (accumulated in float32 or better)."""
    g = jax.grad(loss_fn)(params)
    dtype = _acc_dtype(g)
    return optax.tree.norm(optax.tree.cast(g, dtype))


def _rademacher_like(key, params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [
        jax.random.rademacher(k, jnp.shape(x), jnp.asarray(x).dtype)
        for k, x in zip(keys, leaves)])


def _hutchinson_samples(loss_fn, params, key, num_samples, mode, statistic):
    dtype = _acc_dtype(params)

    def one(k):
        v = _rademacher_like(k, params)
        return statistic(v, hvp(loss_fn, params, v, mode=mode), dtype)

    return jax.lax.map(one, jax.random.split(key, num_samples))


def hessian_trace(loss_fn: LossFn, params, key: jax.Array, num_samples: int, *,
                  mode: str = "fwd_rev") -> jax.Array:
    """Hutchinson's estimate of ``Tr H`` with Rademacher probes.

        Tr H ~= (1/S) sum_s v_s^T H v_s,   v_s entries i.i.d. +-1,

    unbiased since ``E[v v^T] = I``; one sample's variance is
    ``2 (||H||_F^2 - sum_i H_ii^2)`` (zero for a diagonal ``H``), so the
    standard error is ``sqrt(that / S)``. ``Tr H / N`` is the factor in the
    variance term of Lemma 2.1 (Ghosh et al. 2023, Eq. 3). Probes are
    evaluated one at a time (``lax.map``), so memory is that of one HVP.

    Args:
        loss_fn: ``params -> scalar``.
        params: parameter PyTree.
        key: PRNG key for the probes.
        num_samples: ``S >= 1``.
        mode: as in ``hvp``.
    """
    check_choice("mode", mode, MODES)
    check_int("num_samples", num_samples)
    samples = _hutchinson_samples(loss_fn, params, key, num_samples, mode,
                                  lambda v, hv, dt: _tree_vdot(v, hv, dt))
    return jnp.mean(samples)


def hessian_frobenius_norm(loss_fn: LossFn, params, key: jax.Array, num_samples: int, *,
                           mode: str = "fwd_rev") -> jax.Array:
    """Estimate of ``psi = ||H||_F = sqrt(sum_i lambda_i^2)`` (Theorem 3.2's psi).

        ||H||_F^2 = Tr(H^T H) ~= (1/S) sum_s ||H v_s||^2,   v_s Rademacher,

    and the square root of that unbiased estimate is returned (so the norm
    itself carries a small downward bias, of relative size ~ var / (8 mean^2)).
    One sample's variance is ``2 (||A||_F^2 - sum_i A_ii^2)`` with ``A = H^T H``.
    """
    check_choice("mode", mode, MODES)
    check_int("num_samples", num_samples)
    samples = _hutchinson_samples(loss_fn, params, key, num_samples, mode,
                                  lambda v, hv, dt: _tree_vdot(hv, hv, dt))
    return jnp.sqrt(jnp.mean(samples))


def lanczos_eigenvalues(loss_fn: LossFn, params, key: jax.Array, num_iterations: int, *,
                        mode: str = "fwd_rev") -> dict:
    """Extremal Hessian eigenvalues by Lanczos with full reorthogonalisation.

    Builds an orthonormal Krylov basis ``q_0 .. q_{m-1}`` of ``H`` from a
    random Gaussian start ``q_0`` (drawn with ``key``), with
    ``m = min(num_iterations, N)``, and the tridiagonal ``T = Q^T H Q``
    (``alpha_j = q_j^T H q_j`` on the diagonal, ``beta_j = ||r_j||`` off it).
    Each new residual is orthogonalised against *all* previous ``q`` twice
    (classical Gram-Schmidt, "twice is enough"), so ``Q`` stays orthonormal
    to working precision and no spurious copies of converged eigenvalues
    appear. If the Krylov space becomes invariant (``beta_j`` below
    ``sqrt(eps) * ||H q_j||``, e.g. a low-rank ``H``), the iteration continues
    from a fresh random vector orthogonal to ``Q`` with ``beta_j = 0``, so
    ``m = N`` gives the exact spectrum. The Ritz values (``eigvalsh(T)``)
    interlace the eigenvalues of ``H``: the largest converges to
    ``lambda_1`` and the smallest to ``lambda_N`` from inside (Theorem 3.1,
    Ghosh et al. 2023, Sec. 3.1). The loop is a ``lax.fori_loop`` of HVPs;
    memory is ``(m + 1) N`` for ``Q``.

    Returns:
        ``{'lambda_max': largest Ritz value, 'lambda_min': smallest,
        'ritz_values': all m, ascending}``.
    """
    check_choice("mode", mode, MODES)
    check_int("num_iterations", num_iterations)
    flat0, unravel = ravel_pytree(params)
    n = flat0.size
    m = min(num_iterations, n)
    dtype = _acc_dtype(params)
    eps = float(jnp.finfo(dtype).eps)

    def matvec(x):
        hv = hvp(loss_fn, params, unravel(x.astype(flat0.dtype)), mode=mode)
        return ravel_pytree(hv)[0].astype(dtype)

    def orthogonalise(w, basis):
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        return w

    key, start_key = jax.random.split(key)
    q0 = jax.random.normal(start_key, (n,), dtype)
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(q0 / jnp.linalg.norm(q0))

    def body(j, carry):
        basis, alphas, betas, key = carry
        q = basis[j]
        hq = matvec(q)
        alpha = jnp.vdot(q, hq)
        w = orthogonalise(hq, basis)  # rows > j are zero
        beta = jnp.linalg.norm(w)
        key, sub = jax.random.split(key)
        fresh = orthogonalise(jax.random.normal(sub, (n,), dtype), basis)
        fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), jnp.finfo(dtype).tiny)
        breakdown = beta <= math.sqrt(eps) * jnp.linalg.norm(hq)
        safe_beta = jnp.where(breakdown, 1.0, beta)
        q_next = jnp.where(breakdown, fresh, w / safe_beta)
        beta = jnp.where(breakdown, 0.0, beta)
        return (basis.at[j + 1].set(q_next), alphas.at[j].set(alpha),
                betas.at[j].set(beta), key)

    init = (basis, jnp.zeros((m,), dtype), jnp.zeros((m,), dtype), key)
    _, alphas, betas, _ = jax.lax.fori_loop(0, m, body, init)
    off = betas[:m - 1]
    tri = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    ritz = jnp.linalg.eigvalsh(tri)
    return {"lambda_max": ritz[-1], "lambda_min": ritz[0], "ritz_values": ritz}
