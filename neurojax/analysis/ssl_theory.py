"""Theory checks of the kernel view of non-contrastive SSL (thesis Part III).

Seed thesis ``000_2aa972ababc1c511.txt`` Part III ("Harnessing small
projectors and multiple views for efficient vision pretraining", NeurIPS
2024), Sec. 2-3 and Appendices B and C, read through
``shared/specs/000_partB.md`` (garbled formulas reconstructed there).

Finite augmentation graph (Sec. 2-3, App. B, App. C.1-C.2)
    Natural samples x0 in {0..N0-1} with prior p(x0); augmentations x in
    {0..Na-1} with ``P[x0, x] = p(x | x0)`` (Eq. 2). Functions on either set
    are vectors of their values; ``<f, g>_p = sum_x p(x) f(x) g(x)``.

    * ``augmentation_graph``: marginal p(x) (Eq. 40), joint edge weights
      w_{xx'} = E_{x0}[p(x|x0) p(x'|x0)] (Eq. 39) and the kernel
      k^DAF(x, z) = w_{xz} / (p(x) p(z)) (Eq. 3).
    * ``averaging_operator`` T_M, ``averaging_adjoint`` T_M^*,
      ``kernel_operator`` T_k (Eqs. 6, 8) as matrices in the natural basis,
      and ``whitened_operators`` in L2-orthonormal coordinates, where
      Lemma B.2's T_k = T_M^T T_M is a plain matrix transpose and T_k is the
      normalised adjacency W-bar of Eq. 41.
    * ``variance_operator`` / ``invariance_operator`` / ``invariance_eigenvalues``
      (Theorem B.3, Eqs. 23-25) for a square T_M.
    * ``spectral_contrastive_loss`` (Eq. 41) and
      ``spectral_contrastive_decomposition`` (Eq. 42), ``multiview_invariance``
      (the population form of Eq. 10; Eq. 44).

Toy augmentation graph (App. C.3, Eqs. 45-46)
    ``toy_augmentation_matrix``, ``toy_graph_adjacency``, ``toy_graph_eigen``
    (closed form), ``toy_population_graph`` and the m-view empirical estimate
    ``toy_empirical_graph``, plus ``toy_graph_parameters``.

Linear Barlow Twins dynamics (Theorem B.4, Eqs. 31-37)
    ``bt_linear_loss``, ``bt_flow_rhs`` (Eq. 34), ``bt_flow_rhs_eigenbasis``
    (Eq. 36), ``integrate_bt_flow`` (RK4 under ``lax.scan``) and
    ``dynamics_metrics`` (effective rank, alignment with the top eigenvectors).

Run ``python -m neurojax.analysis.ssl_theory --outdir DIR`` for the figure
(``ssl_theory.png`` + ``ssl_theory.json``): effective rank of W and alignment
with the top eigenvectors over time for several beta, and the toy-graph
estimate against the number of views m.

Measured (defaults: n = 12 inputs, T's spectrum ``DEFAULT_SPECTRUM``, m = 4
outputs, W0 ~ 1e-4 N(0, 1/n), eta = 1, RK4 dt = 0.01, t <= 1000; float32,
CPU; ``benchmarks/results/ssl_theory_default.{png,json}``):

* Every beta first aligns all rows with v_1 (effective rank of W falls from
  3.6 to 1.23-1.28 at t ~ 2.7; mean cos^2(w_p, v_1) peaks at 0.97-0.997):
  the primacy bias of Theorem B.4.
* beta = 0 stays there: at t = 1000 effective rank of W 1.255 (of the output
  correlation C 1.013), cos^2 with v_1 0.997, 99.8% of tr C on v_1, loss 2e-12
  (a minimum: every C_pp = 1).
* beta > 0 then decorrelates the rows on a time scale ~ 1/beta: the effective
  rank of C passes 3.9 at t = 7.6 (beta = 1), 30 (0.1), 258 (0.01); at t = 1000
  W has effective rank 3.947 and each of the top-4 eigenvectors carries 25% of
  tr C; beta = 0.001 is still in transit (effective rank of C 2.69).
* Toy graph (rho', mu', nu', delta') = (0.5, 0.25, 0.15, 0.1), 400 draws:
  E||W-hat - W||_F^2 = 0.139, 0.044, 0.018, 0.008, 0.004, 0.002, 0.001 for
  m = 2, 4, ..., 128 (bound 1/m); the estimated class eigenvalue exceeds the
  pixel one in 56%, 65%, 79%, 90%, 96%, 99.5%, 100% of draws. The estimate is
  unbiased, so the Ansatz's |mu - nu| -> 0, delta -> 0 does not hold on
  average; what few views do is make the class-vs-pixel ordering a near coin flip.

Reconstructions and choices (the paper is silent or garbled; named here):

* Direction of T_M. Eq. 8 prints T_M f(x) = sum_{x0} p(x0|x) f(x0); the proof
  of Lemma B.2 (Eqs. 21-22) uses T_M f(x0) = sum_x p(x|x0) f(x), the
  average of f over the augmentations of x0. Lemma B.2 holds for the latter
  (spec 1A), which is ``averaging_operator``; the printed Eq. 8 is its
  adjoint, ``averaging_adjoint``.
* Theorem B.3's map lambda -> (sqrt(lambda) - 1)^2 needs T_M symmetric (normal)
  *and* positive semi-definite: for a symmetric T_M with eigenvalue mu the
  invariance eigenvalue is (mu - 1)^2, which equals (sqrt(mu^2) - 1)^2 only
  when mu >= 0. ``invariance_eigenvalues`` takes ``signed_mu`` for the general
  symmetric case.
* Eq. 42's constant is kappa = ||W-bar||_F^2 - d (derived; the thesis leaves
  it unnamed). Eq. 44's printed sign is reversed: the invariance term is
  2 E_{x-bar} sum_x A(x|x-bar) (||f(x)||^2 - f(x)^T f-bar(x-bar))
  = 2 E_{x-bar} sum_x A(x|x-bar) ||f(x) - f-bar(x-bar)||^2 >= 0.
* Toy graph. The relation between (rho', mu', nu', delta') of Eq. 45 and
  (rho, mu, nu, delta) of Eq. 46 is "deferred to the appendix" and absent.
  Here it follows Eq. 39 with a uniform prior over the four instances:
  W = (1/4) A^T A, so rho = (rho'^2 + mu'^2 + nu'^2 + delta'^2)/4,
  mu = (rho' mu' + nu' delta')/2, nu = (rho' nu' + mu' delta')/2,
  delta = (rho' delta' + mu' nu')/2, and W's eigenvalues are a_k^2 / 4 with
  a_k the eigenvalues of A. Class labels are (1, 1, 2, 2) (the printed
  "y3, y4 = 4" is a slip).
* m-view estimate. Each instance gets m sampled views; the empirical graph
  counts ordered pairs of *distinct* views of the same instance (what an
  m-view SSL loss sees as positives): W-hat = (1/4) sum_i
  (c_i c_i^T - diag(c_i)) / (m (m - 1)), c_i the view counts of instance i.
  It is unbiased and E||W-hat - W||_F^2 <= 1/m (U-statistic variance bound,
  derived in ``toy_empirical_graph``). The plug-in (1/4) sum_i c_i c_i^T / m^2
  is available as ``estimator='plugin'`` (biased on the diagonal by O(1/m)).
* Eq. 34 assumes a symmetric T (T = V Lambda V^T in Eq. 36); with it, Eq. 34
  is exactly -eta grad of L_BT = sum_i (C_ii - 1)^2 + beta sum_{i != j} C_ij^2
  (checked by autodiff in the tests). ``augmentation_correlation``
  symmetrises X X'^T and divides by the batch size (the paper's T = X X'^T;
  the factor b is absorbed in W's scale).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.metrics.spectrum import effective_rank

_PROB_ATOL = 1e-6


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_matrix(name: str, x, square: bool = False) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {x.shape}")
    if square and x.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must be square, got shape {x.shape}")
    return x


def _check_distribution(name: str, p, axis: int = -1) -> None:
    """Non-negative entries summing to 1 along ``axis`` (values checked only when concrete)."""
    if not _is_concrete(p):
        return
    a = np.asarray(p, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    sums = a.sum(axis=axis)
    if not np.allclose(sums, 1.0, atol=_PROB_ATOL):
        raise ValueError(f"{name} must sum to 1 along axis {axis}, got sums "
                         f"in [{sums.min():.6g}, {sums.max():.6g}]")


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
    P = _check_matrix("p_aug_given_natural", p_aug_given_natural)
    if P.shape[0] != p0.shape[0]:
        raise ValueError(f"p_aug_given_natural must have one row per natural sample "
                         f"({p0.shape[0]}), got shape {P.shape}")
    _check_distribution("p_natural", p0)
    _check_distribution("p_aug_given_natural", P, axis=1)
    dtype = jnp.promote_types(jnp.result_type(p0, P), jnp.float32)
    graph = _graph(p0.astype(dtype), P.astype(dtype))
    if _is_concrete(graph.p_aug) and np.any(np.asarray(graph.p_aug) <= 0):
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


def ring_augmentation(num_nodes: int, t: float) -> jax.Array:
    """A symmetric, doubly stochastic, PSD averaging operator: expm(-t L) on a ring.

    L is the Laplacian of the cycle graph with ``num_nodes`` nodes (augmentation
    = a random walk of "time" t along the ring, e.g. small translations). With a
    uniform prior, p(x) is uniform and T_M = expm(-t L) is its own adjoint with
    eigenvalues exp(-t (2 - 2 cos(2 pi k / n))) in (0, 1]: the setting in which
    Theorem B.3 (App. B) is exact.
    """
    if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 3:
        raise ValueError(f"num_nodes must be an int >= 3, got {num_nodes!r}")
    if not t >= 0:
        raise ValueError(f"t must be >= 0, got {t!r}")
    return _ring(int(num_nodes), jnp.asarray(t, jnp.promote_types(jnp.result_type(t),
                                                                   jnp.float32)))


@functools.partial(jax.jit, static_argnums=0)
def _ring(n, t):
    # L's eigenvectors are the Fourier modes: expm(-t L)_ij =
    # (1/n) sum_k exp(-t (2 - 2 cos(2 pi k / n))) cos(2 pi k (i - j) / n).
    theta = 2 * jnp.pi * jnp.arange(n, dtype=t.dtype) / n
    decay = jnp.exp(-t * (2 - 2 * jnp.cos(theta)))
    lag = jnp.arange(n)[:, None] - jnp.arange(n)[None, :]
    return jnp.einsum("k,ijk->ij", decay, jnp.cos(theta[None, None, :] * lag[..., None])) / n


def variance_operator(t_m) -> jax.Array:
    """T_MM = T_M^T T_M, the operator of B^VAR(f, g) = <T_M f, T_M g> (App. B, Eqs. 15, 24).

    ``t_m`` in L2-orthonormal coordinates (e.g. ``whitened_operators``).
    """
    t_m = _check_matrix("t_m", t_m)
    return t_m.T @ t_m


def invariance_operator(t_m) -> jax.Array:
    """T_Ms = (T_M - I)^T (T_M - I), the operator of
    B^INV(f, g) = <T_M f - f, T_M g - g> (App. B, Theorem B.3, Eqs. 23, 25).

    Needs a square ``t_m`` (functions on one set, orthonormal coordinates).
    """
    t_m = _check_matrix("t_m", t_m, square=True)
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
    if _is_concrete(lam) and np.any(np.asarray(lam) < -1e-12):
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
    z = _check_matrix("z", z)
    w_bar = _check_matrix("w_bar", w_bar, square=True)
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


# --------------------------------------------------------------------------
# Toy augmentation graph (App. C.3)
# --------------------------------------------------------------------------

#: Class labels and pixel groups of the four toy instances (App. C.3).
TOY_CLASSES = (1, 1, 2, 2)
TOY_GROUPS = (1, 2, 1, 2)


def _toy_structure(a, b, c, e) -> jax.Array:
    """[[a,b,c,e],[b,a,e,c],[c,e,a,b],[e,c,b,a]]: same/same, same class, same group, neither."""
    return jnp.array([[a, b, c, e], [b, a, e, c], [c, e, a, b], [e, c, b, a]])


def toy_augmentation_matrix(rho_p: float, mu_p: float, nu_p: float,
                            delta_p: float) -> jax.Array:
    """A(x_j | x_i) of Eq. 45 (App. C.3) as a 4x4 row-stochastic matrix.

    rho' if j = i; mu' if same class, different pixel group; nu' if different
    class, same group; delta' if both differ. Requires rho'+mu'+nu'+delta' = 1
    and non-negative entries. (The paper also assumes rho' > max(mu', nu') and
    min(mu', nu') > delta'; not required here.)
    """
    vals = {"rho_p": rho_p, "mu_p": mu_p, "nu_p": nu_p, "delta_p": delta_p}
    for k, v in vals.items():
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{k} must be finite and >= 0, got {v!r}")
    if abs(sum(vals.values()) - 1) > _PROB_ATOL:
        raise ValueError(f"rho_p + mu_p + nu_p + delta_p must be 1, got {sum(vals.values())!r}")
    return _toy_structure(rho_p, mu_p, nu_p, delta_p)


def toy_graph_adjacency(rho: float, mu: float, nu: float, delta: float) -> jax.Array:
    """W of Eq. 46 (App. C.3): [[rho,mu,nu,delta],[mu,rho,delta,nu],[nu,delta,rho,mu],
    [delta,nu,mu,rho]]."""
    return _toy_structure(rho, mu, nu, delta)


TOY_EIGENVECTOR_NAMES = ("constant", "class", "pixel", "class_x_pixel")


def toy_graph_eigen(rho, mu, nu, delta) -> tuple[jax.Array, jax.Array]:
    """Closed-form eigenpairs of Eq. 46's W (App. C.3).

    Eigenvalues (rho+mu+nu+delta, rho+mu-nu-delta, rho-mu+nu-delta,
    rho-mu-nu+delta) with unit eigenvectors along [1,1,1,1] (constant),
    [1,1,-1,-1] (class), [1,-1,1,-1] (pixel group), [1,-1,-1,1] (both);
    returned in that order (``TOY_EIGENVECTOR_NAMES``), vectors as columns.
    """
    eig = jnp.array([rho + mu + nu + delta, rho + mu - nu - delta,
                     rho - mu + nu - delta, rho - mu - nu + delta])
    vecs = 0.5 * jnp.array([[1, 1, 1, 1], [1, 1, -1, -1],
                            [1, -1, 1, -1], [1, -1, -1, 1]], dtype=eig.dtype).T
    return eig, vecs


def toy_population_graph(rho_p, mu_p, nu_p, delta_p) -> tuple[jax.Array, tuple]:
    """W = E_{x-bar}[A(x|x-bar) A(x'|x-bar)] = (1/4) A^T A (Eq. 39, uniform prior; App. C.3).

    Returns (W, (rho, mu, nu, delta)) with rho = (rho'^2+mu'^2+nu'^2+delta'^2)/4,
    mu = (rho' mu' + nu' delta')/2, nu = (rho' nu' + mu' delta')/2,
    delta = (rho' delta' + mu' nu')/2 (reconstruction; see the module docstring).
    W's entries sum to 1 and it has Eq. 46's structure.
    """
    a = toy_augmentation_matrix(rho_p, mu_p, nu_p, delta_p)
    w = a.T @ a / 4
    params = ((rho_p ** 2 + mu_p ** 2 + nu_p ** 2 + delta_p ** 2) / 4,
              (rho_p * mu_p + nu_p * delta_p) / 2,
              (rho_p * nu_p + mu_p * delta_p) / 2,
              (rho_p * delta_p + mu_p * nu_p) / 2)
    return w, params


def toy_graph_parameters(w) -> jax.Array:
    """Projects 4x4 graphs onto Eq. 46's structure: mean entry of each relation type.

    ``w``: (..., 4, 4). Returns (..., 4) = (rho, mu, nu, delta), the means over
    (i = j), (same class, other group), (other class, same group), (both differ);
    each type has four entries. Exact for a W of Eq. 46's form.
    """
    w = jnp.asarray(w)
    if w.ndim < 2 or w.shape[-2:] != (4, 4):
        raise ValueError(f"w must have shape (..., 4, 4), got {w.shape}")
    pattern = np.asarray(_toy_structure(0, 1, 2, 3), dtype=int)
    masks = (pattern[None] == np.arange(4)[:, None, None]).astype(np.float32)  # (4, 4, 4)
    return jnp.einsum("...xy,kxy->...k", w, jnp.asarray(masks, w.dtype)) / 4


def toy_view_graph(views, num_nodes: int, estimator: str = "pairs") -> jax.Array:
    """The augmentation graph seen by an m-view loss, from sampled views (App. C.3).

    ``views``: (..., N, m) integer node of view j of instance i (uniform prior
    over the N instances; leading axes are independent graphs). With c_i the
    per-node view counts of instance i:

    * ``'pairs'``: ordered pairs of distinct views of one instance,
      W-hat = mean_i (c_i c_i^T - diag(c_i)) / (m (m - 1)) (needs m >= 2);
    * ``'plugin'``: W-hat = mean_i c_i c_i^T / m^2 (each view also paired with itself).

    Returns (..., num_nodes, num_nodes).
    """
    views = jnp.asarray(views)
    if views.ndim < 2 or not jnp.issubdtype(views.dtype, jnp.integer):
        raise ValueError(f"views must be an integer array (..., instances, m), got "
                         f"{views.dtype} {views.shape}")
    if estimator not in ("pairs", "plugin"):
        raise ValueError(f"estimator must be 'pairs' or 'plugin', got {estimator!r}")
    if estimator == "pairs" and views.shape[-1] < 2:
        raise ValueError(f"views must hold m >= 2 views per instance for 'pairs', "
                         f"got {views.shape[-1]}")
    if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an int >= 1, got {num_nodes!r}")
    return _view_graph(views, int(num_nodes), estimator)


@functools.partial(jax.jit, static_argnames=("num_nodes", "estimator"))
def _view_graph(views, num_nodes, estimator):
    m = views.shape[-1]
    counts = jnp.sum(jax.nn.one_hot(views, num_nodes, dtype=jnp.float32), axis=-2)  # (..., N, Na)
    outer = counts[..., :, None] * counts[..., None, :]
    if estimator == "pairs":
        outer = outer - counts[..., :, None] * jnp.eye(num_nodes, dtype=outer.dtype)
        return jnp.mean(outer, axis=-3) / (m * (m - 1))
    return jnp.mean(outer, axis=-3) / m ** 2


@functools.partial(jax.jit, static_argnames=("num_views", "num_graphs"))
def _sample_views(key, aug, num_views, num_graphs):
    shape = (num_graphs, num_views, aug.shape[0])
    views = jax.random.categorical(key, jnp.log(aug), axis=-1, shape=shape)
    return jnp.swapaxes(views, -1, -2)                       # (num_graphs, N, m)


def sample_views(key, aug, num_views: int, num_graphs: int = 1) -> jax.Array:
    """Draws ``num_views`` augmentations of every instance: views[g, i, j] ~ aug[i] (App. C.3).

    ``aug``: row-stochastic (N, Na). Returns int (num_graphs, N, num_views);
    the first m < num_views views of a draw are themselves an m-view draw.
    """
    aug = _check_matrix("aug", aug)
    _check_distribution("aug", aug, axis=1)
    for name, v in (("num_views", num_views), ("num_graphs", num_graphs)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return _sample_views(key, aug.astype(jnp.float32), int(num_views), int(num_graphs))


def toy_empirical_graph(key, aug, num_views: int, estimator: str = "pairs",
                        num_graphs: Optional[int] = None) -> jax.Array:
    """Augmentation graph estimated from ``num_views`` sampled views per instance (App. C.3).

    Each instance i (uniform prior) draws m = ``num_views`` views from
    A(.|x_i) = ``aug[i]``; ``toy_view_graph`` turns them into W-hat.
    ``num_graphs``: draw that many independent estimates at once (leading axis).

    * ``'pairs'`` (default) is unbiased and E||W-hat - W||_F^2 <= 4/(N m)
      (= 1/m for the toy's N = 4): for each instance the entry is a U-statistic
      with a [0, 1]-valued kernel h of mean A_ix A_ix', so its variance is
      <= (2/(m(m-1))) (2(m-2) + 1) E[h] <= 4 A_ix A_ix' / m; averaging the N
      instances' independent estimates gives Var(W-hat_xx') <= 4 W_xx' / (N m),
      and the entries of W sum to 1.
    * ``'plugin'`` is biased on the diagonal by mean_i A_ix (1 - A_ix) / m.

    ``aug`` is any row-stochastic (N, Na) matrix; the result is (Na, Na) (or
    (num_graphs, Na, Na)) and estimates W = (1/N) A^T A (Eq. 39, uniform prior).
    """
    if estimator == "pairs" and isinstance(num_views, (int, np.integer)) and num_views < 2:
        raise ValueError(f"num_views must be >= 2 for estimator 'pairs', got {num_views!r}")
    views = sample_views(key, aug, num_views, 1 if num_graphs is None else num_graphs)
    graphs = toy_view_graph(views, jnp.shape(aug)[1], estimator)
    return graphs[0] if num_graphs is None else graphs


# --------------------------------------------------------------------------
# Linear Barlow Twins gradient flow (App. B, Theorem B.4, Eqs. 31-37)
# --------------------------------------------------------------------------

def _check_flow_args(w, t, beta=None) -> tuple[jax.Array, jax.Array]:
    w = _check_matrix("w", w)
    t = _check_matrix("t", t, square=True)
    if t.shape[0] != w.shape[1]:
        raise ValueError(f"t must be ({w.shape[1]}, {w.shape[1]}) to match w's columns, "
                         f"got {t.shape}")
    if _is_concrete(t) and not np.allclose(np.asarray(t), np.asarray(t).T,
                                           rtol=1e-5, atol=1e-6 * float(np.abs(t).max() or 1)):
        raise ValueError("t must be symmetric (Eq. 36 assumes T = V Lambda V^T); "
                         "use augmentation_correlation to symmetrise X X'^T")
    if beta is not None and _is_concrete(beta) and not (0 <= float(beta) <= 1):
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


def bt_linear_loss(w, t, beta) -> jax.Array:
    """Barlow Twins loss of a linear net (App. B, before Eq. 31; Eq. 26):

    L_BT(W) = sum_i (C_ii - 1)^2 + beta sum_i sum_{j != i} C_ij^2,  C = W T W^T.
    ``w``: (m, n) weights (m outputs), ``t``: (n, n) symmetric correlation.
    """
    w, t = _check_flow_args(w, t, beta)
    return _bt_loss(w, t, beta)


@jax.jit
def _bt_loss(w, t, beta):
    hi = jax.lax.Precision.HIGHEST
    c = jnp.matmul(jnp.matmul(w, t, precision=hi), w.T, precision=hi)
    off = c * (1 - jnp.eye(c.shape[0], dtype=c.dtype))
    return jnp.sum((jnp.diagonal(c) - 1) ** 2) + beta * jnp.sum(off ** 2)


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


def correlation_with_spectrum(eigenvalues, key) -> tuple[jax.Array, jax.Array]:
    """A symmetric T = V diag(eigenvalues) V^T with a random orthogonal V (Haar, via QR).

    Returns (T, V) with V's columns ordered like ``eigenvalues``.
    """
    lam = jnp.asarray(eigenvalues)
    if lam.ndim != 1 or lam.shape[0] < 1:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
    return _correlation(key, lam.astype(jnp.promote_types(lam.dtype, jnp.float32)))


@jax.jit
def _correlation(key, lam):
    n = lam.shape[0]
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype=lam.dtype))
    v = q * jnp.sign(jnp.diagonal(r))[None, :]
    return jnp.matmul(v * lam[None, :], v.T, precision=jax.lax.Precision.HIGHEST), v


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


# --------------------------------------------------------------------------
# Figure (python -m neurojax.analysis.ssl_theory --outdir DIR)
# --------------------------------------------------------------------------

#: Spectrum of T in the figure: a gap after lambda_1, a null and two negative directions.
DEFAULT_SPECTRUM = (1.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, -0.2, -0.4, -0.6)
DEFAULT_BETAS = (0.0, 0.001, 0.01, 0.1, 1.0)
DEFAULT_TOY = (0.5, 0.25, 0.15, 0.1)       # rho', mu', nu', delta' (Eq. 45 assumptions hold)
DEFAULT_VIEWS = (2, 4, 8, 16, 32, 64, 128)


def run_dynamics(*, spectrum=DEFAULT_SPECTRUM, betas=DEFAULT_BETAS, out_dim: int = 4,
                 init_scale: float = 1e-4, dt: float = 0.01,
                 phases: Sequence[tuple[int, int]] = ((100, 20), (99, 1000)),
                 seed: int = 0) -> dict:
    """Eq. 34 from one small initialisation for each beta; metrics over time.

    W0 = init_scale * N(0, 1/n), T = V diag(spectrum) V^T (``correlation_with_spectrum``),
    eta = 1. ``phases``: (num_records, steps_per_record) segments integrated one
    after the other (fine records early, coarse late; default t in [0, 1000]).
    Returns a JSON-ready dict.
    """
    lam = jnp.sort(jnp.asarray(spectrum, jnp.float32))[::-1]
    k_t, k_w = jax.random.split(jax.random.PRNGKey(seed))
    t, v = correlation_with_spectrum(lam, k_t)
    n = lam.shape[0]
    if not 1 <= out_dim <= n:
        raise ValueError(f"out_dim must be in [1, {n}], got {out_dim!r}")
    w0 = init_scale * jax.random.normal(k_w, (out_dim, n)) / np.sqrt(n)
    times = [0.0]
    for num_records, steps in phases:
        times += [times[-1] + k * steps * dt for k in range(1, num_records + 1)]
    metrics_fn = jax.vmap(lambda w: _dynamics_metrics(w, v, lam, out_dim))
    runs = []
    for beta in betas:
        start = time.perf_counter()
        segments, w = [w0[None]], w0
        for num_records, steps in phases:
            traj = integrate_bt_flow(w, t, beta, dt=dt, num_records=num_records,
                                     steps_per_record=steps)
            segments.append(traj[1:])
            w = traj[-1]
        traj = jnp.concatenate(segments, 0)
        m = jax.device_get(metrics_fn(traj))
        final_loss = float(bt_linear_loss(traj[-1], t, beta))
        runs.append({
            "beta": float(beta),
            "effective_rank_w": np.asarray(m["effective_rank_w"]).tolist(),
            "effective_rank_c": np.asarray(m["effective_rank_c"]).tolist(),
            "top1_alignment": np.asarray(m["top1_alignment"]).tolist(),
            "top_d_share": np.asarray(m["top_d_share"]).tolist(),
            "top_d_balance": np.asarray(m["top_d_balance"]).tolist(),
            "final_share": np.asarray(m["share"][-1]).tolist(),
            "final_loss": final_loss,
            "seconds": time.perf_counter() - start,
        })
    return {"spectrum": np.asarray(lam).tolist(), "out_dim": out_dim, "init_scale": init_scale,
            "dt": dt, "eta": 1.0, "seed": seed, "times": times, "runs": runs}


def run_toy(*, params=DEFAULT_TOY, views=DEFAULT_VIEWS, num_trials: int = 400,
            seed: int = 0) -> dict:
    """Toy-graph estimate vs number of views m (App. C.3).

    Per m, over ``num_trials`` draws (m views = the first m of one draw of
    max(views) views, ``sample_views``; graph by ``toy_view_graph``): mean squared
    Frobenius error (and its bound 1/m), Rayleigh quotients of the closed-form
    eigenvectors, the class-minus-pixel eigenvalue gap 2 (mu-hat - nu-hat) of the
    structure-projected estimate and how often it is positive (class information
    preferred), and the Ansatz's quantities delta-hat and |mu-hat - nu-hat|.
    """
    w, wp = toy_population_graph(*params)
    eig, vecs = toy_graph_eigen(*wp)
    aug = toy_augmentation_matrix(*params)
    # One draw of max(views) views per instance; m views = its first m (nested).
    all_views = sample_views(jax.random.PRNGKey(seed), aug, max(views), num_trials)
    rows = []
    for m in views:
        ws = toy_view_graph(all_views[..., :m], 4)
        err2 = np.asarray(jnp.sum((ws - w) ** 2, axis=(1, 2)))
        proj = np.asarray(toy_graph_parameters(ws))                    # (trials, 4)
        gap = 2 * (proj[:, 1] - proj[:, 2])                            # class - pixel eigenvalue
        eig_hat = np.asarray(jnp.einsum("ik,tij,jk->tk", vecs, ws, vecs))  # Rayleigh quotients
        rows.append({"m": int(m), "mse": float(err2.mean()), "mse_bound": 1.0 / m,
                     "eig_mean": eig_hat.mean(0).tolist(), "eig_std": eig_hat.std(0).tolist(),
                     "class_minus_pixel_mean": float(gap.mean()),
                     "class_minus_pixel_std": float(gap.std()),
                     # ties (gap == 0, frequent at small m) count one half
                     "p_class_above_pixel": float(np.mean(gap > 0) + 0.5 * np.mean(gap == 0)),
                     "delta_hat_mean": float(proj[:, 3].mean()),
                     "delta_hat_median": float(np.median(proj[:, 3])),
                     "p_delta_hat_zero": float(np.mean(proj[:, 3] == 0)),
                     "abs_mu_minus_nu_median": float(np.median(np.abs(proj[:, 1] - proj[:, 2])))})
    return {"params_prime": list(params), "params": [float(x) for x in wp],
            "eigenvalues": np.asarray(eig).tolist(), "eigenvector_names": TOY_EIGENVECTOR_NAMES,
            "num_trials": num_trials, "rows": rows}


def plot(results: dict, path: str) -> None:
    """Three panels of dynamics (effective rank, top-1 alignment, top-d balance) + toy graph."""
    from matplotlib.figure import Figure

    dyn, toy = results["dynamics"], results["toy"]
    fig = Figure(figsize=(18, 3.8))
    axes = fig.subplots(1, 4)
    times = np.asarray(dyn["times"])
    for run in dyn["runs"]:
        lab = f"beta={run['beta']:g}"
        axes[0].plot(times, run["effective_rank_w"], label=lab)
        axes[1].plot(times, run["top1_alignment"], label=lab)
        axes[2].plot(times, run["top_d_balance"], label=lab)
    axes[0].set_ylabel("effective rank of W (RankMe)")
    axes[1].set_ylabel("mean cos^2(w_p, v_1)")
    axes[2].set_ylabel(f"top-{dyn['out_dim']} balance  d * min_i share_i")
    for ax in axes[:3]:
        ax.set_xlabel("time (eta = 1)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[0].set_title(f"linear BT flow (Eq. 34), m={dyn['out_dim']}, n={len(dyn['spectrum'])}")
    ms = np.array([r["m"] for r in toy["rows"]])
    ax = axes[3]
    ax.loglog(ms, [r["mse"] for r in toy["rows"]], "o-", label="E||W_hat - W||_F^2")
    ax.loglog(ms, 1 / ms, "k--", label="bound 1/m")
    ax2 = ax.twinx()
    ax2.plot(ms, [r["p_class_above_pixel"] for r in toy["rows"]], "s-", color="C3",
             label="P(class eig > pixel eig)")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("P(class eig > pixel eig)", color="C3")
    ax.set_xlabel("views per instance m")
    ax.set_title("toy graph (App. C.3): m-view estimate")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _rounded(tree, digits: int = 5):
    """Floats to ``digits`` significant digits (a compact JSON)."""
    if isinstance(tree, dict):
        return {k: _rounded(v, digits) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_rounded(v, digits) for v in tree]
    if isinstance(tree, float):
        return float(f"{tree:.{digits}g}")
    return tree


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outdir", required=True, help="directory for ssl_theory.{png,json}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out_dim", type=int, default=4, help="outputs m of the linear net")
    parser.add_argument("--init_scale", type=float, default=1e-4)
    parser.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS))
    parser.add_argument("--t_end", type=float, default=1000.0,
                        help="integration horizon (dt = 0.01; 100 records on [0, 20], 99 after)")
    parser.add_argument("--num_trials", type=int, default=400)
    parser.add_argument("--views", type=int, nargs="+", default=list(DEFAULT_VIEWS),
                        help="views per instance m of the toy-graph estimate")
    args = parser.parse_args(argv)
    if not args.t_end > 0:
        raise ValueError(f"t_end must be > 0, got {args.t_end}")
    if args.t_end <= 20:       # one phase of 100 records
        phases = ((100, max(1, int(round(args.t_end / 0.01 / 100)))),)
    else:                      # 100 records on [0, 20], then 99 up to t_end
        phases = ((100, 20), (99, max(1, int(round((args.t_end - 20) / 0.01 / 99)))))
    os.makedirs(args.outdir, exist_ok=True)
    start = time.perf_counter()
    results = {
        "dynamics": run_dynamics(betas=args.betas, out_dim=args.out_dim,
                                 init_scale=args.init_scale,
                                 phases=phases, seed=args.seed),
        "toy": run_toy(views=args.views, num_trials=args.num_trials, seed=args.seed),
    }
    results["seconds"] = time.perf_counter() - start
    with open(os.path.join(args.outdir, "ssl_theory.json"), "w") as fh:
        json.dump(_rounded(results), fh)
    plot(results, os.path.join(args.outdir, "ssl_theory.png"))
    for run in results["dynamics"]["runs"]:
        print(f"beta={run['beta']:g}: effective rank W {run['effective_rank_w'][-1]:.3f}, "
              f"C {run['effective_rank_c'][-1]:.3f}, top-1 alignment "
              f"{run['top1_alignment'][-1]:.3f}, top-d balance {run['top_d_balance'][-1]:.3f}, "
              f"final loss {run['final_loss']:.2e}")
    for row in results["toy"]["rows"]:
        print(f"m={row['m']}: mse {row['mse']:.4f} (bound {row['mse_bound']:.4f}), "
              f"P(class>pixel) {row['p_class_above_pixel']:.3f}")
    return results


if __name__ == "__main__":
    main()
