"""Example augmentation distributions: a ring and the toy graph of App. C.3.

Ghosh, Richards et al., "Harnessing small projectors and multiple views for
efficient vision pretraining" (NeurIPS 2024), Appendix B (a symmetric PSD
averaging operator, where Theorem B.3 is exact) and Appendix C.3 (the
four-instance toy graph, Eqs. 45-46, and the graph an m-view loss sees).
Each returns plain matrices: ``p(x | x0)`` rows for
``neurojax.metrics.augmentation_graph.augmentation_graph``, or adjacency
matrices W.

Reconstructions (named; the paper defers them to an absent appendix):

* The relation between (rho', mu', nu', delta') of Eq. 45 and
  (rho, mu, nu, delta) of Eq. 46 follows Eq. 39 with a uniform prior over the
  four instances: W = (1/4) A^T A, so rho = (rho'^2 + mu'^2 + nu'^2 +
  delta'^2)/4, mu = (rho' mu' + nu' delta')/2, nu = (rho' nu' + mu' delta')/2,
  delta = (rho' delta' + mu' nu')/2, and W's eigenvalues are a_k^2 / 4 with
  a_k the eigenvalues of A. Class labels are (1, 1, 2, 2) (the printed
  "y3, y4 = 4" is a slip).
* m-view estimate. Each instance gets m sampled views; the empirical graph
  counts ordered pairs of *distinct* views of the same instance (what an
  m-view SSL loss sees as positives): W-hat = (1/4) sum_i (c_i c_i^T -
  diag(c_i)) / (m (m - 1)), c_i the view counts of instance i. It is unbiased
  and E||W-hat - W||_F^2 <= 1/m (U-statistic variance bound, derived in
  ``toy_empirical_graph``). The plug-in (1/4) sum_i c_i c_i^T / m^2 is
  ``estimator='plugin'`` (biased on the diagonal by O(1/m)).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_distribution, check_matrix

_PROB_ATOL = 1e-6


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
    aug = check_distribution("aug", check_matrix("aug", aug), axis=1)
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
