"""Closed-form critical points of (regularised) linear autoencoders and measures of
how well a trained one recovers the principal directions.

Kunin, Bloom, Goeva & Seed, "Loss Landscapes of Regularized Linear
Autoencoders", ICML 2019. The paper's conventions, used throughout:

* ``X`` is the ``m x n`` data matrix whose *columns* are the ``n`` examples
  (this module takes ``x`` of shape ``(n, m)``, rows as examples as
  elsewhere in the library, and uses ``X = x^T``). The data are *not*
  centred or divided by ``n``: centre them first to get PCA.
* ``sigma_1 > ... > sigma_m`` are the singular values of ``X`` itself (so
  ``sigma_i^2`` are the eigenvalues of ``X X^T``, *not* of the covariance
  ``X X^T / n``; with the per-example mean loss ``(1/n) ||.||^2`` replace
  ``lambda`` by ``n lambda``) and ``U`` its left singular vectors, the
  principal directions.
* Encoder ``W1`` is ``k x m``, decoder ``W2`` is ``m x k``; the three losses
  (Sec. 1) are, with squared Frobenius norms,

      L_0     = ||X - W2 W1 X||^2                          ('none')
      L_pi    = L_0 + lambda ||W2 W1||^2                    ('product')
      L_sigma = L_0 + lambda (||W1||^2 + ||W2||^2)          ('sum').

Results (the paper's theorems on the critical points of the three losses and
its smooth parametrisation of their critical manifolds):

* ``L_sigma`` (separate L2 on encoder and decoder): at every critical point
  ``W1 = W2^T``; the global minimum is
  ``W2 = U_k (I - lambda Sigma_k^{-2})^{1/2} O`` for any orthogonal ``O``,
  so the decoder's left singular vectors are the top-``k`` principal
  directions and its singular values are
  ``sqrt(1 - lambda / sigma_i^2)`` (``0`` where ``sigma_i^2 <= lambda``:
  that direction is not learned). Distinct singular values make the left
  singular vectors unique up to sign.
* ``L_0``: ``W2 W1 = U_k U_k^T`` with ``W2 = U_k G``, ``W1 = G^{-1} U_k^T``
  for any invertible ``G``: only the principal *subspace* is recovered.
* ``L_pi``: ``W2 W1 = U_k diag(sigma_i^2 / (sigma_i^2 + lambda)) U_k^T``, again
  with an invertible ``G`` left free: the subspace, not the directions.

``principal_angles`` measures subspace recovery and ``direction_alignment``
the recovery of each direction (``|u_i^T v_i|``, sign-free).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from neurojax._checks import check_choice, check_int, check_matrix, check_real

__all__ = ["REGULARIZATIONS", "lae_loss", "lae_decoder_singular_values", "lae_optimum",
           "principal_angles", "direction_alignment", "lae_recovery"]

REGULARIZATIONS = ("none", "product", "sum")


def _float(x):
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_params(params, m=None):
    if not isinstance(params, dict) or set(params) != {"encoder", "decoder"}:
        raise ValueError("params must be a dict with keys 'encoder' (k x m) and 'decoder' "
                         f"(m x k), got {params if not isinstance(params, dict) else list(params)}")
    w1 = check_matrix("params['encoder']", params["encoder"])
    w2 = check_matrix("params['decoder']", params["decoder"])
    if w1.shape[::-1] != w2.shape:
        raise ValueError(f"params['encoder'] must be k x m and params['decoder'] m x k, got "
                         f"{w1.shape} and {w2.shape}")
    if m is not None and w2.shape[0] != m:
        raise ValueError(f"params['decoder'] must have {m} rows (the data dimension), "
                         f"got {w2.shape}")
    return _float(w1), _float(w2)


def lae_loss(params, x, lam=0.0, *, regularization: str = "sum"):
    """``L_0``, ``L_pi`` or ``L_sigma`` of Kunin et al. 2019 (module docstring).

    Args:
        params: ``{'encoder': W1 (k, m), 'decoder': W2 (m, k)}``.
        x: ``(n, m)`` data, rows as examples (``X = x^T``).
        lam: ``lambda >= 0`` (ignored for ``'none'``).
        regularization: ``'none'``, ``'product'`` or ``'sum'``.

    Returns:
        The scalar loss (sums, not means, as in the paper).
    """
    check_choice("regularization", regularization, REGULARIZATIONS)
    check_real("lam", lam, low=0)
    x = _float(check_matrix("x", x))
    w1, w2 = _check_params(params, x.shape[1])
    recon = x @ w1.T @ w2.T
    loss = jnp.sum((x - recon) ** 2)
    if regularization == "product":
        loss = loss + lam * jnp.sum((w2 @ w1) ** 2)
    elif regularization == "sum":
        loss = loss + lam * (jnp.sum(w1 ** 2) + jnp.sum(w2 ** 2))
    return loss


def _top_svd(x, k):
    x = _float(check_matrix("x", x))
    k = check_int("k", k)
    if k > min(x.shape):
        raise ValueError(f"k must be <= min(n, m) = {min(x.shape)} for x of shape {x.shape}, "
                         f"got {k}")
    u, s, _ = jnp.linalg.svd(x.T, full_matrices=False)  # X = x^T = U S V^T
    return u[:, :k], s[:k]


def lae_decoder_singular_values(x, k: int, lam):
    """``sqrt(max(0, 1 - lambda / sigma_i^2))``, ``i = 1..k``: the decoder's
    singular values at the minimum of ``L_sigma`` (Kunin et al. 2019, the
    theorem on the minima of ``L_sigma``), ``sigma_i`` the singular values of
    ``X = x^T`` (not of the covariance; see the module docstring)."""
    check_real("lam", lam, low=0)
    _, s = _top_svd(x, k)
    return jnp.sqrt(jnp.maximum(0.0, 1.0 - lam / s ** 2))


def lae_optimum(x, k: int, lam=0.0, *, regularization: str = "sum"):
    """A global minimum of the chosen loss, from the SVD of ``X = x^T``.

    ``'sum'``: ``W2 = U_k D``, ``W1 = W2^T`` with
    ``D = diag(sqrt(max(0, 1 - lambda/sigma_i^2)))`` (the gauge ``O = I``);
    ``'product'``: ``W2 = U_k diag(sigma_i^2/(sigma_i^2+lambda))``,
    ``W1 = U_k^T`` (``G = I``); ``'none'``: ``W2 = U_k``, ``W1 = U_k^T``.
    Every other minimiser differs by the gauge (``O`` orthogonal for 'sum',
    ``G`` invertible otherwise), which leaves the loss unchanged.

    Returns:
        ``{'encoder': (k, m), 'decoder': (m, k)}``.
    """
    check_choice("regularization", regularization, REGULARIZATIONS)
    check_real("lam", lam, low=0)
    u, s = _top_svd(x, k)
    if regularization == "sum":
        w2 = u * jnp.sqrt(jnp.maximum(0.0, 1.0 - lam / s ** 2))
        return {"encoder": w2.T, "decoder": w2}
    if regularization == "product":
        return {"encoder": u.T, "decoder": u * (s ** 2 / (s ** 2 + lam))}
    return {"encoder": u.T, "decoder": u}


def _orthonormal_basis(a):
    q, _ = jnp.linalg.qr(a)
    return q


def principal_angles(a, b):
    """Principal angles (radians, ascending) between the column spaces of
    ``a`` (m, p) and ``b`` (m, q), ``min(p, q)`` of them.

    With orthonormal bases ``Qa``, ``Qb``: the cosines are the singular values
    of ``Qa^T Qb`` and the sines those of ``Qb - Qa Qa^T Qb``; the angle is
    ``arctan2(sin, cos)``, accurate for small angles too (``arccos`` alone
    loses half the digits there). Same angles as
    ``scipy.linalg.subspace_angles`` (which lists them descending). Both
    inputs should have full column rank.
    """
    a = _float(check_matrix("a", a))
    b = _float(check_matrix("b", b))
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of rows, got {a.shape} and {b.shape}")
    if a.shape[1] < b.shape[1]:
        a, b = b, a
    qa, qb = _orthonormal_basis(a), _orthonormal_basis(b)
    cos = jnp.linalg.svd(qa.T @ qb, compute_uv=False)           # descending
    sin = jnp.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False)[::-1]  # ascending
    return jnp.arctan2(jnp.clip(sin, 0.0, 1.0), jnp.clip(cos, 0.0, 1.0))


def direction_alignment(w, directions):
    """``|u_i^T v_i|`` for ``i = 1..k``: how well the left singular vectors
    ``v_i`` of ``w`` (m, k), sorted by singular value, match the columns
    ``u_i`` of ``directions`` (m, k) (e.g. the principal directions). Sign-free
    (singular vectors are defined up to sign); 1 means recovered. For a
    matrix with repeated singular values its singular vectors are not unique
    and this is not meaningful."""
    w = _float(check_matrix("w", w))
    u = _float(check_matrix("directions", directions))
    if u.shape != w.shape:
        raise ValueError(f"directions must have the shape of w {w.shape}, got {u.shape}")
    v, _, _ = jnp.linalg.svd(w, full_matrices=False)
    return jnp.abs(jnp.sum(u * v, axis=0))


def lae_recovery(params, x, lam=0.0) -> dict:
    """How a trained LAE's decoder compares with the SVD of ``X = x^T``.

    Returns ``{'singular_values', 'predicted_singular_values',
    'singular_value_error' (max |s - s_pred| / max(s_pred)),
    'direction_alignment' (|u_i^T v_i| per i), 'max_principal_angle'
    (radians, between span(W2) and span(U_k)), 'symmetry_error'
    (||W1 - W2^T|| / ||W2||)}``; the prediction is the ``L_sigma`` one
    (``lae_decoder_singular_values``), meaningful for ``regularization='sum'``.
    """
    w1, w2 = _check_params(params)
    x = _float(check_matrix("x", x))
    if w2.shape[0] != x.shape[1]:
        raise ValueError(f"params['decoder'] must have {x.shape[1]} rows (the data dimension), "
                         f"got {w2.shape}")
    k = w2.shape[1]
    u, _ = _top_svd(x, k)
    s = jnp.linalg.svd(w2, compute_uv=False)
    pred = lae_decoder_singular_values(x, k, lam)
    return {
        "singular_values": s,
        "predicted_singular_values": pred,
        "singular_value_error": jnp.max(jnp.abs(s - pred)) / jnp.max(pred),
        "direction_alignment": direction_alignment(w2, u),
        "max_principal_angle": jnp.max(principal_angles(w2, u)),
        "symmetry_error": jnp.linalg.norm(w1 - w2.T) / jnp.linalg.norm(w2),
    }
