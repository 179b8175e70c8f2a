"""Lambda-balanced two-layer linear networks: initialisation, the exact
solution of gradient flow, and the neural tangent kernel it implies.

Dominé, Anguita, Proca, Braun, Kunin, Mediano, Saxe, "From lazy to rich:
exact learning dynamics in deep linear networks" (ICLR 2025), the
lambda-balanced solution (their Sec. 4; the code behind it is
Nico31415/LinearNetworkDynamics, ``qqt_lambda_balanced.py``). At
``lam = 0`` and with a task-aligned initialisation it reduces to Saxe,
McClelland & Ganguli (ICLR 2014), Sec. 2, the logistic
``u(t) = s e^{2st} / (e^{2st} - 1 + s/u0)`` of each mode (``saxe_mode_strength``).

Conventions (named, because the references and the library differ):

* Weights are in the paper's orientation, ``f(x) = W2 W1 x`` with ``W1``
  ``(N_h, N_i)`` and ``W2`` ``(N_o, N_h)``. The library's
  ``DeepLinear(widths=(N_h,), num_outputs=N_o, use_bias=False)`` computes
  ``x @ K0 @ K_head``: ``dense_0.kernel = W1^T``, ``head.kernel = W2^T``
  (``weights_from_params`` / ``params_from_weights``).
* Loss ``L = 1/(2n) sum_i ||y_i - W2 W1 x_i||^2`` on whitened inputs
  (``X^T X / n = I``), so ``Sigma_yx = Y^T X / n`` (``(N_o, N_i)``) is the only
  statistic of the task. Gradient descent ``W <- W - lr grad L`` follows the
  flow ``dW1/dt = W2^T (Sigma_yx - W2 W1)``, ``dW2/dt = (Sigma_yx - W2 W1) W1^T``
  at time ``t = lr * step`` (the paper's ``tau = 1/lr``).
* Balance ``B = W2^T W2 - W1 W1^T`` (``(N_h, N_h)``, ``balance``) is
  conserved by the flow; lambda-balanced means ``B = lam I``, so ``lam > 0``
  is a larger second (output-side) layer. This is the sign of the paper and
  of the repository's ``get_lambda_balanced``; the same repository's
  ``balanced_weights`` helper uses the opposite sign ``W1 W1^T - W2^T W2``.
  Under gradient descent ``B`` moves by exactly
  ``lr^2 (G2^T G2 - G1 G1^T)`` per step (``balance_step_drift``; ``G`` the
  gradients): zero at first order, so it drifts as ``lr^2`` per step.
* Exact solution: with ``Q = [W1^T; W2]`` (``(N_i + N_o, N_h)``),
  ``QQ^T = [[W1^T W1, W1^T W2^T], [W2 W1, W2 W2^T]]`` obeys the matrix
  Riccati equation ``d(QQ^T)/dt = F QQ^T + QQ^T F - (QQ^T)^2`` with
  ``F = [[-lam/2 I, Sigma_yx^T], [Sigma_yx, lam/2 I]]`` (``riccati_matrix``),
  whose solution is
  ``QQ^T(t) = e^{Ft} Q0 [I + Q0^T Phi(t) Q0]^{-1} Q0^T e^{Ft}``,
  ``Phi(t) = int_0^t e^{2Fs} ds``. ``F``'s eigenvalues are
  ``+-sqrt(s_a^2 + lam^2/4)`` for each singular value ``s_a`` of ``Sigma_yx``
  (the rates of the paper) and ``sign(N_o - N_i) lam/2`` for the
  ``|N_o - N_i|`` extra dimensions (``riccati_rates``). The paper writes the
  solution in ``F``'s eigenbasis with ``e^{-rate t}`` factors for stability;
  here ``F`` is diagonalised once with ``eigh`` and the solution is applied
  over each interval of the requested time grid from the previous time
  (``P(t + d) = E P (I + Phi(d) P)^{-1} E``, ``E = e^{F d}``, exact by the
  semigroup property), so no factor larger than ``e^{2 rate d}`` appears;
  ``substeps`` splits each interval further. ``F`` may be singular (e.g.
  ``lam = 0`` with ``N_i != N_o``): ``Phi``'s eigenvalues are
  ``expm1(2 mu d) / (2 mu)`` with the limit ``d`` at ``mu = 0``.
* NTK: with both layers at the same learning rate, the tangent kernel of
  ``f(x) = W2 W1 x`` between inputs ``x, x'`` (outputs ``o, p``) is
  ``(W2 W2^T)_{op} x^T x' + delta_{op} x^T W1^T W1 x'``: the diagonal blocks
  of ``QQ^T`` (``deep_linear_ntk``, ``ntk_from_qqt``). Flattened
  ``(sample, output)`` row-major, as ``jax.jacobian`` of ``DeepLinear``'s
  ``(n, N_o)`` output gives it.

Every function is pure and runs under ``jax.jit`` (dimensions and ``lam`` for
the initialisation are static). Use float64 (``jax_enable_x64``) to compare
with gradient descent at small step sizes.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_int, check_matrix, check_real, is_concrete

__all__ = ["balance", "balance_step_drift", "weights_from_params", "params_from_weights",
           "lambda_balanced_weights", "lambda_balanced_init", "riccati_matrix",
           "riccati_rates", "qqt", "qqt_blocks", "qqt_trajectory", "saxe_mode_strength",
           "deep_linear_ntk", "ntk_from_qqt"]


def _pair(w1, w2) -> tuple[jax.Array, jax.Array]:
    w1 = check_matrix("w1", w1)
    w2 = check_matrix("w2", w2)
    if w2.shape[1] != w1.shape[0]:
        raise ValueError(f"w2 must be (N_o, N_h) with N_h = w1.shape[0] = {w1.shape[0]}, "
                         f"got w2 {w2.shape}")
    return w1, w2


def balance(w1, w2) -> jax.Array:
    """``B = W2^T W2 - W1 W1^T`` (``(N_h, N_h)``), conserved by gradient flow.

    ``lam I`` for a lambda-balanced network (Dominé et al. 2025); ``w1``
    ``(N_h, N_i)``, ``w2`` ``(N_o, N_h)`` as in ``f(x) = W2 W1 x``.
    """
    w1, w2 = _pair(w1, w2)
    return w2.T @ w2 - w1 @ w1.T


def balance_step_drift(g1, g2, lr) -> jax.Array:
    """Exact change of ``balance`` in one gradient-descent step:
    ``B' - B = lr^2 (G2^T G2 - G1 G1^T)`` for ``W <- W - lr G``.

    Expanding ``(W2 - lr G2)^T (W2 - lr G2) - (W1 - lr G1)(W1 - lr G1)^T``:
    the first-order terms ``-lr (W2^T G2 + G2^T W2 - W1 G1^T - G1 W1^T)``
    vanish because ``W2^T G2 = G1 W1^T`` for any loss of ``W2 W1`` (the
    rescaling symmetry ``W1 -> A W1, W2 -> W2 A^{-1}``; Kunin et al. ICLR
    2021, "Neural mechanics", Sec. 5), leaving the ``lr^2`` term. Holds for
    any loss of the product, not only the squared error.
    """
    g1, g2 = _pair(g1, g2)
    check_real("lr", lr)
    return lr ** 2 * (g2.T @ g2 - g1 @ g1.T)


def weights_from_params(params) -> tuple[jax.Array, jax.Array]:
    """``(W1, W2)`` of a one-hidden-layer, bias-free ``DeepLinear`` parameter tree
    (``dense_0.kernel = W1^T``, ``head.kernel = W2^T``)."""
    p = params.get("params", params)
    if set(p) != {"dense_0", "head"} or set(p["dense_0"]) != {"kernel"} \
            or set(p["head"]) != {"kernel"}:
        raise ValueError("params must be a bias-free DeepLinear(widths=(N_h,)) tree "
                         "{'dense_0': {'kernel'}, 'head': {'kernel'}}, got "
                         f"{jax.tree.map(jnp.shape, p)}")
    return p["dense_0"]["kernel"].T, p["head"]["kernel"].T


def params_from_weights(w1, w2) -> dict:
    """The ``DeepLinear(widths=(N_h,), num_outputs=N_o, use_bias=False)`` tree
    ``{'params': {'dense_0': {'kernel': W1^T}, 'head': {'kernel': W2^T}}}``."""
    w1, w2 = _pair(w1, w2)
    return {"params": {"dense_0": {"kernel": w1.T}, "head": {"kernel": w2.T}}}


def _check_lam_dims(lam, in_dim, hidden_dim, out_dim) -> float:
    check_int("in_dim", in_dim)
    check_int("hidden_dim", hidden_dim)
    check_int("out_dim", out_dim)
    lam = float(check_real("lam", lam))
    if lam > 0 and hidden_dim > out_dim:
        raise ValueError(f"lam > 0 needs hidden_dim <= out_dim (W2^T W2 = W1 W1^T + lam I "
                         f"must have full rank), got hidden_dim={hidden_dim}, out_dim={out_dim}")
    if lam < 0 and hidden_dim > in_dim:
        raise ValueError(f"lam < 0 needs hidden_dim <= in_dim (W1 W1^T = W2^T W2 - lam I "
                         f"must have full rank), got hidden_dim={hidden_dim}, in_dim={in_dim}")
    return lam


@jax.jit
def _balanced_factors(u, c, v, r, lam):
    n_o, n_i, n_h = u.shape[0], v.shape[0], r.shape[0]
    m = min(n_i, n_o, n_h)
    dtype = jnp.result_type(u.dtype, v.dtype, r.dtype, c.dtype)
    root = jnp.sqrt(lam ** 2 + 4.0 * c ** 2)
    a = jnp.sqrt(jnp.maximum(root - lam, 0.0) / 2.0)
    b = jnp.sqrt(jnp.maximum(root + lam, 0.0) / 2.0)
    extra = n_h - m
    ones = jnp.ones((extra,), dtype)
    a_full = jnp.concatenate([a, jnp.sqrt(jnp.maximum(-lam, 0.0)) * ones]).astype(dtype)
    b_full = jnp.concatenate([b, jnp.sqrt(jnp.maximum(lam, 0.0)) * ones]).astype(dtype)
    k1, k2 = min(n_h, n_i), min(n_h, n_o)
    s1 = jnp.zeros((n_h, n_i), dtype).at[jnp.arange(k1), jnp.arange(k1)].set(a_full[:k1])
    s2 = jnp.zeros((n_o, n_h), dtype).at[jnp.arange(k2), jnp.arange(k2)].set(b_full[:k2])
    return r @ s1 @ v.T, u @ s2 @ r.T


def lambda_balanced_weights(u, strengths, v, rotation, lam) -> tuple[jax.Array, jax.Array]:
    """``(W1, W2)`` with ``W2 W1 = U diag(strengths) V^T`` and
    ``W2^T W2 - W1 W1^T = lam I``.

    Each mode ``a`` splits its product singular value ``c_a`` into
    ``W1``'s ``sqrt((sqrt(lam^2 + 4 c_a^2) - lam)/2)`` and ``W2``'s
    ``sqrt((sqrt(lam^2 + 4 c_a^2) + lam)/2)`` (their squares differ by ``lam``
    and multiply to ``c_a^2``; Dominé et al. 2025, the lambda-balanced
    initialisation). Hidden units beyond ``min(N_i, N_o)`` get ``W2``'s
    ``sqrt(lam)`` (``lam >= 0``) or ``W1``'s ``sqrt(-lam)`` (``lam <= 0``) and no
    product. ``W1 = R S1 V^T``, ``W2 = U S2 R^T``.

    Args:
        u: ``(N_o, N_o)`` orthogonal (output singular vectors).
        strengths: ``(m,)`` non-negative product singular values,
            ``m = min(N_i, N_o, N_h)``.
        v: ``(N_i, N_i)`` orthogonal (input singular vectors).
        rotation: ``(N_h, N_h)`` orthogonal ``R`` (the hidden basis is free).
        lam: the balance, a Python number (see ``lambda_balanced_init`` for
            which dimensions allow which sign).
    """
    u = check_matrix("u", u, square=True)
    v = check_matrix("v", v, square=True)
    r = check_matrix("rotation", rotation, square=True)
    n_o, n_i, n_h = u.shape[0], v.shape[0], r.shape[0]
    lam = _check_lam_dims(lam, n_i, n_h, n_o)
    m = min(n_i, n_o, n_h)
    c = jnp.asarray(strengths)
    if c.shape != (m,):
        raise ValueError(f"strengths must have shape ({m},) = min(N_i, N_o, N_h), got {c.shape}")
    check_real("strengths", strengths, low=0.0)
    return _balanced_factors(u, c, v, r, lam)


def lambda_balanced_init(key, in_dim: int, hidden_dim: int, out_dim: int, lam: float, *,
                         scale: float = 1.0, dtype: Any = None) -> tuple[jax.Array, jax.Array]:
    """A random lambda-balanced ``(W1, W2)``: the product of Gaussian layers of
    std ``scale``, refactored so that ``W2^T W2 - W1 W1^T = lam I``.

    As ``get_lambda_balanced`` of Nico31415/LinearNetworkDynamics: draw
    ``G1 ~ N(0, scale^2)^{N_h x N_i}``, ``G2 ~ N(0, scale^2)^{N_o x N_h}``,
    take the SVD ``G2 G1 = U C V^T`` and a random orthogonal ``R``, and split
    each singular value by ``lambda_balanced_weights``; the product is
    exactly ``G2 G1``. ``lam > 0`` needs ``N_h <= N_o``, ``lam < 0`` needs
    ``N_h <= N_i`` (else ``B = lam I`` is impossible: ``W2^T W2`` or
    ``W1 W1^T`` would need rank ``N_h``); ``ValueError`` otherwise.
    ``|lam| -> inf`` is the lazy limit, ``lam = 0`` with small ``scale`` the
    rich one (Dominé et al. 2025, Sec. 5).
    """
    lam = _check_lam_dims(lam, in_dim, hidden_dim, out_dim)
    check_real("scale", scale, low=0.0, low_open=True)
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.asarray(1.0).dtype
    return _init(key, in_dim, hidden_dim, out_dim, lam, scale, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 6))
def _init(key, in_dim, hidden_dim, out_dim, lam, scale, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    g1 = scale * jax.random.normal(k1, (hidden_dim, in_dim), dtype)
    g2 = scale * jax.random.normal(k2, (out_dim, hidden_dim), dtype)
    u, c, vt = jnp.linalg.svd(g2 @ g1, full_matrices=True)
    r, _ = jnp.linalg.qr(jax.random.normal(k3, (hidden_dim, hidden_dim), dtype))
    m = min(in_dim, out_dim, hidden_dim)
    return _balanced_factors(u, c[:m], vt.T, r, lam)


def riccati_matrix(sigma_yx, lam) -> jax.Array:
    """``F = [[-lam/2 I_{N_i}, Sigma_yx^T], [Sigma_yx, lam/2 I_{N_o}]]``, the
    symmetric matrix of the Riccati equation of ``QQ^T`` (Dominé et al. 2025)."""
    s = check_matrix("sigma_yx", sigma_yx)
    check_real("lam", lam)
    n_o, n_i = s.shape
    lam = jnp.asarray(lam, s.dtype)
    return jnp.block([[-lam / 2 * jnp.eye(n_i, dtype=s.dtype), s.T],
                      [s, lam / 2 * jnp.eye(n_o, dtype=s.dtype)]])


def riccati_rates(sigma_yx, lam) -> jax.Array:
    """``F``'s eigenvalues in closed form, ascending: ``+-sqrt(s_a^2 + lam^2/4)``
    for the ``min(N_i, N_o)`` singular values ``s_a`` of ``Sigma_yx`` and
    ``sign(N_o - N_i) lam/2`` for the ``|N_o - N_i|`` remaining dimensions
    (the input null space of ``Sigma_yx`` if ``N_i > N_o``, the output one
    otherwise). The rates of the lambda-balanced solution (Dominé et al. 2025)."""
    s = check_matrix("sigma_yx", sigma_yx)
    check_real("lam", lam)
    n_o, n_i = s.shape
    sv = jnp.linalg.svd(s, compute_uv=False)
    rate = jnp.sqrt(sv ** 2 + jnp.asarray(lam, s.dtype) ** 2 / 4)
    extra = jnp.full((abs(n_o - n_i),), np.sign(n_o - n_i) * jnp.asarray(lam, s.dtype) / 2,
                     dtype=s.dtype)
    return jnp.sort(jnp.concatenate([-rate, rate, extra]))


def qqt(w1, w2) -> jax.Array:
    """``QQ^T`` for ``Q = [W1^T; W2]``: ``[[W1^T W1, W1^T W2^T], [W2 W1, W2 W2^T]]``."""
    w1, w2 = _pair(w1, w2)
    q = jnp.concatenate([w1.T, w2], axis=0)
    return q @ q.T


def qqt_blocks(p, in_dim: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(W1^T W1, W2 W1, W2 W2^T)`` read from ``QQ^T`` (the last axes of ``p``):
    the input-side kernel, the network function and the output-side kernel."""
    check_int("in_dim", in_dim)
    p = jnp.asarray(p)
    if p.ndim < 2 or p.shape[-1] != p.shape[-2] or p.shape[-1] <= in_dim:
        raise ValueError(f"p must be (..., N, N) with N > in_dim={in_dim}, got {p.shape}")
    return p[..., :in_dim, :in_dim], p[..., in_dim:, :in_dim], p[..., in_dim:, in_dim:]


def qqt_trajectory(w1, w2, sigma_yx, lam, times, *, substeps: int = 1) -> jax.Array:
    """The exact ``QQ^T(t)`` of gradient flow from lambda-balanced ``(W1, W2)``
    at each of ``times`` (ascending, ``>= 0``; ``t = lr * step``).

    ``QQ^T(t + d) = E P (I + Phi(d) P)^{-1} E`` with ``P = QQ^T(t)``,
    ``E = e^{F d}``, ``Phi(d) = int_0^d e^{2Fs} ds`` (the Riccati solution of
    Dominé et al. 2025 restarted at each grid point, which the semigroup
    property makes exact; ``substeps`` equal pieces per interval keep
    ``e^{2 rate d}`` small when the grid is coarse: aim for
    ``max rate * d <~ 10`` in float64). Exact only if ``balance(w1, w2) = lam I``
    and the inputs are whitened (``sigma_yx = Y^T X / n``, ``X^T X / n = I``).

    Returns ``(len(times), N_i + N_o, N_i + N_o)``; ``qqt_blocks`` reads the
    weights' products from it.
    """
    w1, w2 = _pair(w1, w2)
    s = check_matrix("sigma_yx", sigma_yx)
    if s.shape != (w2.shape[0], w1.shape[1]):
        raise ValueError(f"sigma_yx must be (N_o, N_i) = {(w2.shape[0], w1.shape[1])}, "
                         f"got {s.shape}")
    check_int("substeps", substeps)
    times = jnp.asarray(times)
    if times.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {times.shape}")
    if is_concrete(times):
        t = np.asarray(times, dtype=np.float64)
        if t.size and (t[0] < 0 or np.any(np.diff(t) < 0) or not np.all(np.isfinite(t))):
            raise ValueError("times must be finite, >= 0 and ascending")
    return _trajectory(w1, w2, s, jnp.asarray(lam), times, substeps)


@functools.partial(jax.jit, static_argnums=5)
def _trajectory(w1, w2, s, lam, times, substeps):
    dtype = jnp.result_type(w1.dtype, w2.dtype, s.dtype, jnp.float32)
    mu, o = jnp.linalg.eigh(riccati_matrix(s.astype(dtype), lam))
    p0 = qqt(w1.astype(dtype), w2.astype(dtype))
    eye = jnp.eye(p0.shape[0], dtype=dtype)

    def advance(p, d):
        e = (o * jnp.exp(mu * d)) @ o.T
        small = jnp.abs(mu * d) < 1e-8
        phi_eig = jnp.where(small, d * (1 + mu * d),
                            jnp.expm1(2 * mu * d) / jnp.where(small, 1.0, 2 * mu))
        phi = (o * phi_eig) @ o.T
        p_inv_a = jnp.linalg.solve(eye + p @ phi, p).T       # P (I + Phi P)^{-1}
        new = e @ p_inv_a @ e
        return (new + new.T) / 2

    def interval(p, d):
        piece = d / substeps
        p = jax.lax.fori_loop(0, substeps, lambda _, q: advance(q, piece), p)
        return p, p

    gaps = jnp.diff(times.astype(dtype), prepend=jnp.zeros((1,), dtype))
    _, out = jax.lax.scan(interval, p0, gaps)
    return out


def saxe_mode_strength(t, s, u0) -> jax.Array:
    """Saxe et al. (ICLR 2014), Sec. 2: the strength of a mode of singular
    value ``s`` from a balanced (``lam = 0``), task-aligned start ``u0 > 0``,
    ``u(t) = s e^{2st} / (e^{2st} - 1 + s/u0)`` (time ``t = lr * step``, the
    paper's ``tau = 1``). Written with ``expm1`` so small ``s t`` stays exact."""
    check_real("s", s, low=0.0, low_open=True)
    check_real("u0", u0, low=0.0, low_open=True)
    t = jnp.asarray(t)
    e = jnp.expm1(2 * s * t)
    return s * (e + 1) / (e + s / u0)


def deep_linear_ntk(x, w1tw1, w2w2t) -> jax.Array:
    """Tangent kernel of ``f(x) = W2 W1 x`` (both layers at one learning rate).

    ``K[(i,o), (j,p)] = x_i^T x_j (W2 W2^T)_{op} + x_i^T W1^T W1 x_j delta_{op}``,
    i.e. ``kron(X X^T, W2 W2^T) + kron(X W1^T W1 X^T, I)``; ``(n N_o, n N_o)``
    indexed ``sample * N_o + output`` (Dominé et al. 2025: the NTK is read
    from ``QQ^T``'s diagonal blocks, ``ntk_from_qqt``).

    Args:
        x: ``(n, N_i)`` inputs (rows).
        w1tw1: ``W1^T W1`` ``(N_i, N_i)``.
        w2w2t: ``W2 W2^T`` ``(N_o, N_o)``.
    """
    x = check_matrix("x", x)
    w1tw1 = check_matrix("w1tw1", w1tw1, square=True)
    w2w2t = check_matrix("w2w2t", w2w2t, square=True)
    if w1tw1.shape[0] != x.shape[1]:
        raise ValueError(f"w1tw1 must be ({x.shape[1]}, {x.shape[1]}) to match x, "
                         f"got {w1tw1.shape}")
    n_o = w2w2t.shape[0]
    return (jnp.kron(x @ x.T, w2w2t)
            + jnp.kron(x @ w1tw1 @ x.T, jnp.eye(n_o, dtype=w2w2t.dtype)))


def ntk_from_qqt(p, x, in_dim: Optional[int] = None) -> jax.Array:
    """``deep_linear_ntk`` from a ``QQ^T`` (e.g. one time of ``qqt_trajectory``)."""
    x = check_matrix("x", x)
    w1tw1, _, w2w2t = qqt_blocks(p, x.shape[1] if in_dim is None else in_dim)
    return deep_linear_ntk(x, w1tw1, w2w2t)
