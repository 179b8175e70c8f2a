"""Gradient flow of the Barlow Twins loss of a linear network (Theorem B.4).

Ghosh, Richards et al., "Harnessing small projectors and multiple views for
efficient vision pretraining" (NeurIPS 2024), Appendix B, Theorem B.4,
Eqs. 31-37: ``bt_flow_rhs`` (Eq. 34), ``bt_flow_rhs_eigenbasis`` (Eq. 36),
``integrate_bt_flow`` (classical RK4 under ``lax.scan``) and
``dynamics_metrics`` (effective rank, alignment with the top eigenvectors);
``augmentation_correlation`` builds T from two augmented batches. The loss
itself is ``neurojax.losses.ssl.bt_linear_loss``.

Eq. 34 assumes a symmetric T (T = V Lambda V^T in Eq. 36); with it, Eq. 34 is
exactly -eta grad of L_BT = sum_i (C_ii - 1)^2 + beta sum_{i != j} C_ij^2
(checked by autodiff in the tests). ``augmentation_correlation`` symmetrises
X X'^T and divides by the batch size (the paper's T = X X'^T; the factor b is
absorbed in W's scale).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_matrix as _check_matrix, is_concrete
from neurojax.metrics.spectrum import effective_rank

def _check_flow_args(w, t, beta=None) -> tuple[jax.Array, jax.Array]:
    w = _check_matrix("w", w)
    t = _check_matrix("t", t, square=True)
    if t.shape[0] != w.shape[1]:
        raise ValueError(f"t must be ({w.shape[1]}, {w.shape[1]}) to match w's columns, "
                         f"got {t.shape}")
    if is_concrete(t) and not np.allclose(np.asarray(t), np.asarray(t).T,
                                           rtol=1e-5, atol=1e-6 * float(np.abs(t).max() or 1)):
        raise ValueError("t must be symmetric (Eq. 36 assumes T = V Lambda V^T); "
                         "use augmentation_correlation to symmetrise X X'^T")
    if beta is not None and is_concrete(beta) and not (0 <= float(beta) <= 1):
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return w, t


def augmentation_correlation(x, x_prime) -> jax.Array:
    """T = (X X'^T + X' X^T) / (2 b), the augmentation-defined correlation (App. B, Thm B.4).

    ``x``, ``x_prime``: (n, b) inputs of two augmentations of b images (columns).
    The paper's T = X X'^T; symmetrised here (Eq. 36 assumes T symmetric) and
    divided by b so it does not grow with the batch.
    """
    x = _check_matrix("x", x)
    xp = _check_matrix("x_prime", x_prime)
    if x.shape != xp.shape:
        raise ValueError(f"x_prime must have x's shape {x.shape}, got {xp.shape}")
    hi = jax.lax.Precision.HIGHEST
    c = jnp.matmul(x, xp.T, precision=hi)
    return (c + c.T) / (2 * x.shape[1])


def bt_flow_rhs(w, t, beta, eta: float = 1.0) -> jax.Array:
    """Right-hand side of the gradient flow of Eq. 34 (App. B, Theorem B.4):

    dW_pq/dt = -4 eta (1 - beta) (C_pp - 1) [W T]_pq - 4 eta beta [(C - I) W T]_pq,

    with C = W T W^T. For symmetric T this is -eta grad_W L_BT (``bt_linear_loss``);
    beta = 1 gives Simon et al. (2023)'s dynamics, beta = 0 Eq. 35.
    """
    w, t = _check_flow_args(w, t, beta)
    return _bt_rhs(w, t, beta, eta)


@jax.jit
def _bt_rhs(w, t, beta, eta):
    hi = jax.lax.Precision.HIGHEST
    wt = jnp.matmul(w, t, precision=hi)
    c = jnp.matmul(wt, w.T, precision=hi)
    eye = jnp.eye(c.shape[0], dtype=c.dtype)
    diag_term = (jnp.diagonal(c) - 1)[:, None] * wt
    full_term = jnp.matmul(c - eye, wt, precision=hi)
    return -4 * eta * ((1 - beta) * diag_term + beta * full_term)


def bt_flow_rhs_eigenbasis(z, eigenvalues, eta: float = 1.0) -> jax.Array:
    """Eq. 36 (App. B; beta = 0) in the eigenbasis of T = V Lambda V^T, z = W V:

    dz_pi/dt = -4 eta (sum_j z_pj^2 lambda_j - 1) lambda_i z_pi.

    Hence sign(d log|z_pi|/dt) = sign(lambda_i) while h_p = 1 - sum_j z_pj^2
    lambda_j > 0 (Eq. 37), and (1/lambda_i) d log z_pi/dt is the same for all i.
    """
    z = _check_matrix("z", z)
    lam = jnp.asarray(eigenvalues)
    if lam.shape != (z.shape[1],):
        raise ValueError(f"eigenvalues must have shape ({z.shape[1]},), got {lam.shape}")
    h = jnp.sum(z ** 2 * lam[None, :], axis=1) - 1
    return -4 * eta * h[:, None] * lam[None, :] * z


@functools.partial(jax.jit, static_argnames=("num_records", "steps_per_record"))
def _integrate(w0, t, beta, eta, dt, num_records, steps_per_record):
    def f(w):
        return _bt_rhs(w, t, beta, eta)

    def rk4(w, _):
        k1 = f(w)
        k2 = f(w + 0.5 * dt * k1)
        k3 = f(w + 0.5 * dt * k2)
        k4 = f(w + dt * k3)
        return w + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    def record(w, _):
        w, _ = jax.lax.scan(rk4, w, None, length=steps_per_record)
        return w, w

    _, traj = jax.lax.scan(record, w0, None, length=num_records)
    return jnp.concatenate([w0[None], traj], 0)


def integrate_bt_flow(w0, t, beta, *, eta: float = 1.0, dt: float = 0.01,
                      num_records: int = 100, steps_per_record: int = 10) -> jax.Array:
    """Integrates Eq. 34 (App. B) with classical RK4 (jitted ``lax.scan``).

    Returns the trajectory, shape (num_records + 1, m, n): W at times
    k * steps_per_record * dt for k = 0..num_records. ``beta`` in [0, 1]; the
    step must resolve the fastest rate, about 8 eta lambda_max (1 + beta m) for
    W near the solution (dt <= 0.02 / eta for ||T|| <= 1 and m <= 8 is safe).
    """
    w0, t = _check_flow_args(w0, t, beta)
    for name, v in (("num_records", num_records), ("steps_per_record", steps_per_record)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not (dt > 0 and np.isfinite(dt)):
        raise ValueError(f"dt must be a positive finite float, got {dt!r}")
    if not (eta > 0 and np.isfinite(eta)):
        raise ValueError(f"eta must be a positive finite float, got {eta!r}")
    dtype = jnp.promote_types(jnp.result_type(w0, t), jnp.float32)
    return _integrate(w0.astype(dtype), t.astype(dtype), jnp.asarray(beta, dtype),
                      jnp.asarray(eta, dtype), jnp.asarray(dt, dtype),
                      int(num_records), int(steps_per_record))


def dynamics_metrics(w, eigenvectors, eigenvalues, top_d: Optional[int] = None
                     ) -> dict[str, jax.Array]:
    """Collapse and alignment of a linear net's weights (App. B, Theorem B.4 consequences).

    ``eigenvectors``: (n, n) columns v_i of T sorted by decreasing ``eigenvalues``.
    With z = W V (Eq. 36) and C = W T W^T = Z Lambda Z^T:

    * ``effective_rank_w``: RankMe (entropy effective rank) of W's singular
      values (``neurojax.metrics.spectrum.effective_rank``).
    * ``effective_rank_c``: the same on the eigenvalues of C (the output
      correlation; ~1 when all outputs are copies of one feature, m when C = I).
    * ``top1_alignment``: mean over rows p of cos^2(w_p, v_1).
    * ``share``: (n,) share of tr(C) carried by each eigenvector,
      lambda_i ||W v_i||^2 / sum_j lambda_j ||W v_j||^2 (negative lambda_i
      clipped to 0).
    * ``top_d_share``: sum of ``share`` over the top d (= m by default).
    * ``top_d_balance``: d * min_{i <= d} share_i, in [0, 1]: 1 when each of the
      top-d eigenvectors carries an equal share (W spans them, C = I as in
      Simon et al.), 0 when one is missing.
    """
    w = _check_matrix("w", w)
    v = _check_matrix("eigenvectors", eigenvectors, square=True)
    lam = jnp.asarray(eigenvalues)
    if v.shape[0] != w.shape[1] or lam.shape != (v.shape[1],):
        raise ValueError(f"eigenvectors must be ({w.shape[1]}, {w.shape[1]}) and eigenvalues "
                         f"({w.shape[1]},), got {v.shape} and {lam.shape}")
    d = w.shape[0] if top_d is None else top_d
    if not isinstance(d, (int, np.integer)) or not 1 <= d <= v.shape[1]:
        raise ValueError(f"top_d must be an int in [1, {v.shape[1]}], got {top_d!r}")
    return _dynamics_metrics(w, v, lam, int(d))


@functools.partial(jax.jit, static_argnums=3)
def _dynamics_metrics(w, v, lam, d):
    hi = jax.lax.Precision.HIGHEST
    z = jnp.matmul(w, v, precision=hi)
    s = jnp.linalg.svd(w, compute_uv=False)
    c = jnp.matmul(z * lam[None, :], z.T, precision=hi)
    c_eig = jnp.clip(jnp.linalg.eigvalsh((c + c.T) / 2), 0)
    energy = jnp.clip(lam, 0) * jnp.sum(z ** 2, 0)
    share = energy / jnp.sum(energy)
    cos2 = z[:, 0] ** 2 / jnp.sum(w ** 2, 1)
    return {
        "effective_rank_w": effective_rank(s ** 2, convention="singular_values"),
        "effective_rank_c": effective_rank(c_eig, convention="eigenvalues"),
        "top1_alignment": jnp.mean(cos2),
        "share": share,
        "top_d_share": jnp.sum(share[:d]),
        "top_d_balance": d * jnp.min(share[:d]),
    }
