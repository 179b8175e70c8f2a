"""Finite augmentation graphs and the kernel view of non-contrastive SSL.

Ghosh, Richards et al., "Harnessing small projectors and multiple views for
efficient vision pretraining" (NeurIPS 2024), Sec. 2-3 and Appendices B and
C.1-C.2.

Natural samples x0 in {0..N0-1} with prior p(x0); augmentations x in
{0..Na-1} with ``P[x0, x] = p(x | x0)`` (Eq. 2). Functions on either set are
vectors of their values; ``<f, g>_p = sum_x p(x) f(x) g(x)``.

* ``augmentation_graph``: marginal p(x) (Eq. 40), joint edge weights
  w_{xx'} = E_{x0}[p(x|x0) p(x'|x0)] (Eq. 39) and the kernel
  k^DAF(x, z) = w_{xz} / (p(x) p(z)) (Eq. 3).
* ``averaging_operator`` T_M, ``averaging_adjoint`` T_M^*, ``kernel_operator``
  T_k (Eqs. 6, 8) as matrices in the natural basis, and ``whitened_operators``
  in L2-orthonormal coordinates, where Lemma B.2's T_k = T_M^T T_M is a plain
  matrix transpose and T_k is the normalised adjacency W-bar of Eq. 41.
* ``variance_operator`` / ``invariance_operator`` / ``invariance_eigenvalues``
  (Theorem B.3, Eqs. 23-25) for a square T_M.
* ``spectral_contrastive_loss`` (Eq. 41; a population functional of the
  features on the graph, so it lives with the graph) and
  ``spectral_contrastive_decomposition`` (Eq. 42), ``multiview_invariance``
  (the population form of Eq. 10; Eq. 44).

Reconstructions (the paper is garbled or silent; named here):

* Direction of T_M. Eq. 8 prints T_M f(x) = sum_{x0} p(x0|x) f(x0); the proof
  of Lemma B.2 (Eqs. 21-22) uses T_M f(x0) = sum_x p(x|x0) f(x), the average
  of f over the augmentations of x0. Lemma B.2 holds for the latter, which is
  ``averaging_operator``; the printed Eq. 8 is its adjoint,
  ``averaging_adjoint``.
* Theorem B.3's map lambda -> (sqrt(lambda) - 1)^2 needs T_M symmetric
  (normal) *and* positive semi-definite: for a symmetric T_M with eigenvalue
  mu the invariance eigenvalue is (mu - 1)^2, which equals (sqrt(mu^2) - 1)^2
  only when mu >= 0. ``invariance_eigenvalues`` takes ``signed_mu`` for the
  general symmetric case.
* Eq. 42's constant is kappa = ||W-bar||_F^2 - d (derived; the paper leaves
  it unnamed). Eq. 44's printed sign is reversed: the invariance term is
  2 E_{x-bar} sum_x A(x|x-bar) (||f(x)||^2 - f(x)^T f-bar(x-bar))
  = 2 E_{x-bar} sum_x A(x|x-bar) ||f(x) - f-bar(x-bar)||^2 >= 0.

Example graphs (a ring, the toy graph of App. C.3) are in
``neurojax.data.augmentation_graphs``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_distribution, check_matrix, is_concrete


# --------------------------------------------------------------------------
# Finite augmentation graph (Sec. 2-3, App. B, App. C.1)
# --------------------------------------------------------------------------

class AugmentationGraph(NamedTuple):
    """A finite augmentation graph (Sec. 2, Eqs. 2-3; App. C.1, Eqs. 39-40).

    p_natural: (N0,) prior p(x0) over natural samples.
    p_aug_given_natural: (N0, Na) ``P[x0, x] = p(x | x0)`` (Eq. 2), rows sum to 1.
    p_aug: (Na,) marginal p(x) = sum_{x0} p(x0) p(x|x0) = w_x (Eq. 40).
    joint: (Na, Na) edge weights w_{xx'} = E_{x0}[p(x|x0) p(x'|x0)] (Eq. 39),
        the probability that x and x' are two augmentations of one sample.
    kernel: (Na, Na) k^DAF(x, z) = w_{xz} / (p(x) p(z)) (Eq. 3).
    """
    p_natural: jax.Array
    p_aug_given_natural: jax.Array
    p_aug: jax.Array
    joint: jax.Array
    kernel: jax.Array


def augmentation_graph(p_natural, p_aug_given_natural) -> AugmentationGraph:
    """Builds k^DAF and the augmentation graph from p(x0) and p(x | x0).

    k^DAF(x, z) = E_{x0 ~ p_X}[ p(x|x0) p(z|x0) / (p(x) p(z)) ]   (Sec. 2, Eq. 3)
    w_{xz} = E_{x0}[ p(x|x0) p(z|x0) ],  w_x = sum_z w_{xz} = p(x)  (App. C, Eqs. 39-40)

    Raises ValueError if ``p_natural`` is not a distribution, if the rows of
    ``p_aug_given_natural`` are not distributions or its row count differs
    from ``p_natural``'s length, or if some augmentation has p(x) = 0 (its
    kernel row is undefined; drop it).
    """
    p0 = jnp.asarray(p_natural)
    if p0.ndim != 1:
        raise ValueError(f"p_natural must be 1-D, got shape {p0.shape}")
    P = check_matrix("p_aug_given_natural", p_aug_given_natural)
    if P.shape[0] != p0.shape[0]:
        raise ValueError(f"p_aug_given_natural must have one row per natural sample "
                         f"({p0.shape[0]}), got shape {P.shape}")
    check_distribution("p_natural", p0)
    check_distribution("p_aug_given_natural", P, axis=1)
    dtype = jnp.promote_types(jnp.result_type(p0, P), jnp.float32)
    graph = _graph(p0.astype(dtype), P.astype(dtype))
    if is_concrete(graph.p_aug) and np.any(np.asarray(graph.p_aug) <= 0):
        raise ValueError("p_aug_given_natural gives some augmentation zero marginal "
                         "probability p(x); remove that column")
    return graph


@jax.jit
def _graph(p0, P):
    hi = jax.lax.Precision.HIGHEST
    p_aug = jnp.matmul(p0, P, precision=hi)
    joint = jnp.matmul(P.T, p0[:, None] * P, precision=hi)
    kernel = joint / (p_aug[:, None] * p_aug[None, :])
    return AugmentationGraph(p0, P, p_aug, joint, kernel)


def inner_product(f, g, p) -> jax.Array:
    """<f, g>_p = sum_x p(x) f(x) g(x), the L2(p) inner product of Eq. 7 / Lemma B.2."""
    f, g, p = jnp.asarray(f), jnp.asarray(g), jnp.asarray(p)
    if f.shape != g.shape or f.shape[:1] != p.shape:
        raise ValueError(f"f and g must have equal shapes with leading axis len(p)="
                         f"{p.shape[0]}, got {f.shape} and {g.shape}")
    return _inner(f, g, p)


@jax.jit
def _inner(f, g, p):
    return jnp.einsum("x,x...,x...->...", p, f, g, precision=jax.lax.Precision.HIGHEST)


def averaging_operator(graph: AugmentationGraph) -> jax.Array:
    """T_M as an (N0, Na) matrix: (T_M f)(x0) = sum_x p(x | x0) f(x).

    The average of f over the augmentations of x0 (Sec. 3.1, Eq. 8, in the
    direction used by the proof of Lemma B.2, App. B Eqs. 21-22). It maps
    L2(p_X) on augmentations to L2(p_X0) on natural samples.
    """
    return graph.p_aug_given_natural


@jax.jit
def averaging_adjoint(graph: AugmentationGraph) -> jax.Array:
    """T_M^* as an (Na, N0) matrix: (T_M^* g)(x) = sum_{x0} p(x0 | x) g(x0).

    The adjoint of ``averaging_operator`` between L2(p_X0) and L2(p_X):
    <T_M f, g>_{p_X0} = <f, T_M^* g>_{p_X}; p(x0|x) = p(x0) p(x|x0) / p(x)
    by Bayes' rule. This is Eq. 8 as printed (Sec. 3.1).
    """
    P, p0, p = graph.p_aug_given_natural, graph.p_natural, graph.p_aug
    return (P * p0[:, None]).T / p[:, None]


@jax.jit
def kernel_operator(graph: AugmentationGraph) -> jax.Array:
    """T_k as an (Na, Na) matrix: (T_k f)(x) = E_{z ~ p_X}[k^DAF(x, z) f(z)] (Sec. 3.1, Eq. 6).

    Lemma B.2 (App. B): T_k = T_M^* T_M, i.e. ``kernel_operator(g) ==
    averaging_adjoint(g) @ averaging_operator(g)``; its eigenvalues lie in [0, 1].
    """
    return graph.kernel * graph.p_aug[None, :]


@jax.jit
def whitened_operators(graph: AugmentationGraph) -> tuple[jax.Array, jax.Array]:
    """(T_M, T_k) in L2-orthonormal coordinates, where adjoints are transposes.

    With D0 = diag(p(x0)) and D = diag(p(x)):
    T_M-tilde = D0^{1/2} P D^{-1/2}  (N0, Na),
    T_k-tilde = D^{1/2} T_k D^{-1/2} = D^{-1/2} W D^{-1/2} = W-bar  (Na, Na),
    so Lemma B.2 (App. B) reads T_k-tilde = T_M-tilde^T T_M-tilde and T_k-tilde
    is the normalised adjacency W-bar of the spectral contrastive loss (App. C.2, Eq. 41).
    """
    s0, s = jnp.sqrt(graph.p_natural), jnp.sqrt(graph.p_aug)
    tm = s0[:, None] * graph.p_aug_given_natural / s[None, :]
    tk = graph.joint / (s[:, None] * s[None, :])
    return tm, tk


def variance_operator(t_m) -> jax.Array:
    """T_MM = T_M^T T_M, the operator of B^VAR(f, g) = <T_M f, T_M g> (App. B, Eqs. 15, 24).

    ``t_m`` in L2-orthonormal coordinates (e.g. ``whitened_operators``).
    """
    t_m = check_matrix("t_m", t_m)
    return t_m.T @ t_m


def invariance_operator(t_m) -> jax.Array:
    """T_Ms = (T_M - I)^T (T_M - I), the operator of
    B^INV(f, g) = <T_M f - f, T_M g - g> (App. B, Theorem B.3, Eqs. 23, 25).

    Needs a square ``t_m`` (functions on one set, orthonormal coordinates).
    """
    t_m = check_matrix("t_m", t_m, square=True)
    a = t_m - jnp.eye(t_m.shape[0], dtype=t_m.dtype)
    return a.T @ a


def invariance_eigenvalues(var_eigenvalues, signed_mu=None) -> jax.Array:
    """Theorem B.3's eigenvalue map (App. B): lambda_j -> (sqrt(lambda_j) - 1)^2.

    If f_j is an eigenfunction of B^VAR with eigenvalue lambda_j = mu_j^2 (mu_j
    an eigenvalue of a symmetric T_M), it is an eigenfunction of B^INV with
    eigenvalue (mu_j - 1)^2. The theorem's (sqrt(lambda_j) - 1)^2 is that value
    when mu_j >= 0 (PSD T_M); pass ``signed_mu`` (the eigenvalues of T_M) to get
    (mu_j - 1)^2 for any symmetric T_M.
    """
    lam = jnp.asarray(var_eigenvalues)
    if is_concrete(lam) and np.any(np.asarray(lam) < -1e-12):
        raise ValueError("var_eigenvalues must be >= 0 (eigenvalues of T_M^T T_M)")
    if signed_mu is None:
        return (jnp.sqrt(jnp.maximum(lam, 0)) - 1) ** 2
    mu = jnp.asarray(signed_mu)
    if mu.shape != lam.shape:
        raise ValueError(f"signed_mu must have var_eigenvalues' shape {lam.shape}, got {mu.shape}")
    return (mu - 1) ** 2


# --------------------------------------------------------------------------
# Spectral contrastive loss and its decomposition (App. C.2)
# --------------------------------------------------------------------------

def _check_features(features, num_aug: int) -> jax.Array:
    f = jnp.asarray(features)
    if f.ndim != 2 or f.shape[0] != num_aug:
        raise ValueError(f"features must have shape (num_augmentations={num_aug}, d), "
                         f"got {f.shape}")
    return f


def spectral_contrastive_loss(features, graph: AugmentationGraph) -> jax.Array:
    """Population spectral contrastive loss (HaoChen et al. 2021; App. C.2, Eq. 41).

    L_c(f) = -2 E_{(x, x+) ~ w}[f(x)^T f(x+)] + E_{x, x' ~ p_X}[(f(x)^T f(x'))^2]
           = ||Z Z^T - W-bar||_F^2 - ||W-bar||_F^2,
    with z_x = sqrt(w_x) f(x) and W-bar = D^{-1/2} W D^{-1/2} (Eq. 41).
    ``features``: (Na, d), row x is f(x).
    """
    f = _check_features(features, graph.joint.shape[0])
    return _spectral_contrastive(f, graph)


@jax.jit
def _spectral_contrastive(f, graph):
    gram = jnp.matmul(f, f.T, precision=jax.lax.Precision.HIGHEST)
    pos = jnp.sum(graph.joint * gram)
    neg = jnp.sum(graph.p_aug[:, None] * graph.p_aug[None, :] * gram ** 2)
    return -2 * pos + neg


def embed(features, graph: AugmentationGraph) -> jax.Array:
    """Z with rows z_x = sqrt(w_x) f(x) (App. C.2, below Eq. 41)."""
    f = _check_features(features, graph.joint.shape[0])
    return jnp.sqrt(graph.p_aug)[:, None] * f


def spectral_contrastive_decomposition(z, w_bar) -> dict[str, jax.Array]:
    """Eq. 42 (App. C.2): ||Z Z^T - W-bar||_F^2 = ||Z^T Z - I_d||_F^2
    + 2 Tr[Z^T (I_N - W-bar) Z] + kappa, with kappa = ||W-bar||_F^2 - d.

    An exact identity for any Z (N, d) and square W-bar (N, N). Returns
    ``total`` (left side), ``orthogonality`` (covariance regulariser),
    ``invariance`` (2 Tr[Z^T (I - W-bar) Z]) and ``constant`` (kappa, independent of Z).
    """
    z = check_matrix("z", z)
    w_bar = check_matrix("w_bar", w_bar, square=True)
    if w_bar.shape[0] != z.shape[0]:
        raise ValueError(f"w_bar must be ({z.shape[0]}, {z.shape[0]}) to match z's rows, "
                         f"got {w_bar.shape}")
    return _decomposition(z, w_bar)


@jax.jit
def _decomposition(z, w_bar):
    d = z.shape[1]
    hi = jax.lax.Precision.HIGHEST
    zzt = jnp.matmul(z, z.T, precision=hi)
    ztz = jnp.matmul(z.T, z, precision=hi)
    total = jnp.sum((zzt - w_bar) ** 2)
    orth = jnp.sum((ztz - jnp.eye(d, dtype=ztz.dtype)) ** 2)
    inv = 2 * (jnp.trace(ztz) - jnp.sum(z * jnp.matmul(w_bar, z, precision=hi)))
    const = jnp.sum(w_bar ** 2) - d
    return {"total": total, "orthogonality": orth, "invariance": inv, "constant": const}


def multiview_invariance(features, graph: AugmentationGraph) -> jax.Array:
    """Population multi-augmentation invariance (Sec. 3.3, Eq. 10; App. C.2, Eq. 44).

    E_{x0} sum_x p(x|x0) ||f(x) - f-bar(x0)||^2, with f-bar(x0) = (T_M f)(x0)
    the mean of f over the augmentations of x0 (Eq. 10's (1/m) sum_j f(x_j) as
    m -> infinity). Twice this is Eq. 42's invariance term
    2 Tr[Z^T (I - W-bar) Z] for z_x = sqrt(w_x) f(x) (Eqs. 43-44, sign fixed:
    see the module docstring).
    """
    f = _check_features(features, graph.joint.shape[0])
    return _multiview_invariance(f, graph)


@jax.jit
def _multiview_invariance(f, graph):
    P, p0 = graph.p_aug_given_natural, graph.p_natural
    fbar = jnp.matmul(P, f, precision=jax.lax.Precision.HIGHEST)   # (N0, d)
    sq = jnp.sum((f[None, :, :] - fbar[:, None, :]) ** 2, -1)   # (N0, Na)
    return jnp.sum(p0[:, None] * P * sq)
