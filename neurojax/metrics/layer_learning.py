"""What layers learn: least-squares distance, selection entropy, pure Voronoi maps.

Oland 2024, Efficient Deep Learning, Ch. 5:

* :func:`least_squares_distance` (Sec 5.3.1, Eq 5.3): how far a layer's
  representation Z_i is from a linear map onto the targets,
  LSD = (1/m) ||Y - Z_i Z_i^+ Y||_F^2; Fig 5.6 records it per layer.
* :func:`selection_entropy` (Sec 5.5.3-5.5.4): for a ReLU feature
  z = relu(X w + b), the selection S+(z) is the set of examples where z > 0;
  H(Y | S+(z)) is the Shannon entropy (bits) of the class histogram over
  S+(z). :func:`layer_selection_entropy` averages it over a layer's
  features (Fig 5.21's H(Y | Z_i)).
* :func:`pure_voronoi_map` (Sec 5.3.4, Defs 5-7): labelled centroids whose
  Voronoi cells each hold examples of the centroid's label only, and the
  pure entropy H(V(D)) = -sum_v p(v) log p(v), p(v) = |v| / |D|, over the
  cells (Figs 5.11-5.12).

Every function runs under ``jax.jit``; ``selection_entropy`` and
``layer_selection_entropy`` also under ``jax.vmap`` (over replicas or
checkpoints), as does ``pure_voronoi_map`` (over datasets of one shape).
Inputs are validated on the host (``ValueError`` naming the argument)
before anything compiles.
"""
from __future__ import annotations

import functools
from typing import Mapping, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_bool, check_int, check_real
from neurojax.metrics._probe_inputs import check_features, check_labels, check_num_classes

ArrayLike = Union[jax.Array, np.ndarray]

__all__ = ["least_squares_distance", "least_squares_distances", "selection_entropy",
           "layer_selection_entropy", "PureVoronoiMap", "pure_voronoi_map"]


def _floating(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _entropy_bits(counts: jax.Array, axis: int = -1) -> jax.Array:
    """Shannon entropy in bits of histograms along ``axis`` (0 log 0 = 0;
    NaN for an empty histogram)."""
    total = jnp.sum(counts, axis=axis, keepdims=True)
    p = counts / jnp.where(total > 0, total, 1)
    h = 0.0 - jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1)), 0), axis=axis)
    return jnp.where(jnp.squeeze(total, axis) > 0, h, jnp.nan)


# --- least-squares distance (Eq 5.3) ------------------------------------------------

def least_squares_distance(z: ArrayLike, y_onehot: ArrayLike, *, rtol: Optional[float] = None,
                           bias: bool = False) -> jax.Array:
    """LSD = (1/m) ||Y - Z Z^+ Y||_F^2 (Oland 2024, Sec 5.3.1, Eq 5.3).

    Z Z^+ is the orthogonal projection onto Z's column space, computed from
    the thin SVD Z = U S V^T as U_r U_r^T with the singular values
    s > rtol * s_max kept (the pseudo-inverse's cut-off); the residual
    Y - U_r (U_r^T Y) is formed directly, so the result is >= 0.

    Args:
        z: (m, ...) features of a layer (flattened per example).
        y_onehot: (m, C) targets, one-hot rows for a classifier (any real
            targets work).
        rtol: relative cut-off on the singular values; default
            max(m, F) * eps of the compute dtype, the rcond of NumPy's
            ``lstsq`` and the rtol of PyTorch's ``pinv`` (``jnp.linalg.pinv``
            uses 10x that). Must be in [0, 1).
        bias: append a column of ones to Z (an affine fit). The thesis does
            not say; Eq 5.3 as printed has none (the default).

    Returns:
        A scalar in [0, ||Y||_F^2 / m].
    """
    z = _floating(check_features("z", z))
    y = _targets(y_onehot, z.shape[0])
    check_bool("bias", bias)
    dtype = jnp.promote_types(z.dtype, y.dtype)
    if rtol is None:
        rtol = max(z.shape[0], z.shape[1] + int(bias)) * float(jnp.finfo(dtype).eps)
    check_real("rtol", rtol, low=0.0, high=1.0, high_open=True)
    return _least_squares_distance(z.astype(dtype), y.astype(dtype), jnp.asarray(rtol, dtype),
                                   bias)


def _targets(y: ArrayLike, m: int) -> jax.Array:
    """(m, C) real targets (for integer labels use ``jax.nn.one_hot``)."""
    y = check_features("y_onehot", y)
    if y.shape[0] != m:
        raise ValueError(f"y_onehot has {y.shape[0]} rows but z has {m} examples")
    return _floating(y)


@functools.partial(jax.jit, static_argnames=("bias",))
def _least_squares_distance(z, y, rtol, bias):
    if bias:
        z = jnp.concatenate([z, jnp.ones((z.shape[0], 1), z.dtype)], axis=1)
    u, s, _ = jnp.linalg.svd(z, full_matrices=False)
    u = u * (s > rtol * s[0])[None, :]          # Z = 0: nothing kept, Z^+ = 0
    hp = jax.lax.Precision.HIGHEST
    r = y - jnp.matmul(u, jnp.matmul(u.T, y, precision=hp), precision=hp)
    return jnp.sum(r * r) / z.shape[0]


def least_squares_distances(features: Mapping[str, ArrayLike], y_onehot: ArrayLike, *,
                            rtol: Optional[float] = None,
                            bias: bool = False) -> dict[str, jax.Array]:
    """:func:`least_squares_distance` of every layer: ``{name: LSD}`` for a
    dict ``{name: (m, ...) features}`` (Fig 5.6's curves, one per layer)."""
    if not isinstance(features, Mapping) or not features:
        raise ValueError("features must be a non-empty dict {layer name: (m, ...) array}")
    return {name: least_squares_distance(z, y_onehot, rtol=rtol, bias=bias)
            for name, z in features.items()}


# --- selection entropy (Sec 5.5.4) ----------------------------------------------------

def selection_entropy(z: ArrayLike, labels: ArrayLike,
                      num_classes: Optional[int] = None) -> jax.Array:
    """H(Y | S+(z_j)) in bits for every feature j of a ReLU layer (Oland
    2024, Sec 5.5.3-5.5.4; Figs 5.18-5.20's "H(Y|Z)" of a feature).

    S+(z_j) = {i : z_ij > 0}, the examples the feature selects (for
    z = relu(x w + b): x w + b > 0; pre-activations give the same set);
    the entropy is that of the class histogram n_jc = |{i in S+(z_j) :
    y_i = c}|:  H = -sum_c p_jc log2 p_jc,  p_jc = n_jc / sum_c n_jc.
    0 <= H <= log2(num_classes); a feature that selects one class only has
    H = 0. A dead feature (empty selection) has no histogram: NaN.

    Args:
        z: (m, ...) ReLU features (flattened per example: (m, F)).
        labels: (m,) integer labels in [0, num_classes).
        num_classes: C; inferred from concrete labels if None.

    Returns:
        float (F,) bits.
    """
    z, labels, num_classes = _check_selection(z, labels, num_classes)
    return _entropy_bits(_selection_counts(z, labels, num_classes))


def layer_selection_entropy(z: ArrayLike, labels: ArrayLike,
                            num_classes: Optional[int] = None) -> dict[str, jax.Array]:
    """A layer's H(Y | Z_i): the mean of :func:`selection_entropy` over its
    features (Oland 2024, Sec 5.5.4, Fig 5.21: "the average entropy over the
    class distributions of the selections of all the individual features").

    Dead features (empty selection, entropy undefined) are left out of the
    mean and counted. Returns ``{'entropy': bits (NaN if every feature is
    dead), 'num_dead': int32, 'num_features': int32}``.
    """
    z, labels, num_classes = _check_selection(z, labels, num_classes)
    counts = _selection_counts(z, labels, num_classes)
    alive = jnp.sum(counts, axis=1) > 0
    h = jnp.where(alive, _entropy_bits(counts), 0)
    num_alive = jnp.sum(alive)
    return {"entropy": jnp.where(num_alive > 0, jnp.sum(h) / jnp.maximum(num_alive, 1), jnp.nan),
            "num_dead": (counts.shape[0] - num_alive).astype(jnp.int32),
            "num_features": jnp.asarray(counts.shape[0], jnp.int32)}


def _check_selection(z, labels, num_classes):
    z = check_features("z", z)
    labels = check_labels("labels", labels, z.shape[0], "z")
    num_classes = check_num_classes(num_classes, {"labels": labels})
    return z, labels, num_classes


def _selection_counts(z, labels, num_classes):
    """(F, C) class histograms of the features' selections."""
    selected = (z > 0).astype(jnp.float32)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    # 0/1 products summed in float32: exact up to 2^24 examples.
    return jnp.matmul(selected.T, onehot, precision=jax.lax.Precision.HIGHEST)


# --- pure Voronoi map and pure entropy (Defs 5-7) ----------------------------------

class PureVoronoiMap(NamedTuple):
    """A labelled-centroid Voronoi map of a dataset (Oland 2024, Def 6) and
    its pure entropy (Def 7).

    centroids: (max_centroids, D); the first ``num_centroids`` rows are used.
    centroid_labels: (max_centroids,) int32; -1 for unused rows.
    num_centroids: |C|, int32.
    assignment: (m,) int32, each example's cell (nearest centroid).
    cell_sizes: (max_centroids,) int32, |v| per cell.
    entropy: H(V(D)) in bits, over the cells' frequencies |v| / m.
    pure: whether every example's cell carries its label (the map is a pure
        Voronoi map); when False (capacity or iterations ran out) ``entropy``
        is that of an impure map.
    iterations: assignment rounds run (in the last one the map was found
        pure, unless a limit stopped it first).
    """
    centroids: jax.Array
    centroid_labels: jax.Array
    num_centroids: jax.Array
    assignment: jax.Array
    cell_sizes: jax.Array
    entropy: jax.Array
    pure: jax.Array
    iterations: jax.Array


def pure_voronoi_map(x: ArrayLike, labels: ArrayLike, num_classes: Optional[int] = None, *,
                     max_centroids: int = 1024, max_iterations: int = 100) -> PureVoronoiMap:
    """A pure Voronoi map built greedily, and its pure entropy (Oland 2024,
    Sec 5.3.4, Defs 5-7, Figs 5.11-5.12).

    Def 6: labelled centroids (c_i, y_i); the cell of c_i holds the examples
    (x, y) with y = y_i whose nearest centroid (Euclidean) is c_i, and the
    map is pure when the cells cover the dataset, i.e. every example's
    nearest centroid carries its label. Def 7: H(V(D)) = -sum_v p(v) log
    p(v), p(v) = |v| / |D|, here in bits. The thesis builds its maps with "a
    naive, and very inefficient, recursive algorithm" that it does not give
    and that is not optimal; any pure map's H bounds from above the H*(X; Y)
    of the optimal map (the one minimising H). This reading of it:

    1. One centroid per class present: the class mean.
    2. Assign every example to its nearest centroid (ties: the lower
       centroid index; Def 5's ``<=`` would put a tied example in every
       tied cell). If every cell is pure, stop.
    3. In every impure cell, for every label other than the centroid's
       found there, add a centroid with that label at the mean of those
       examples (the cell's minority-class subsets). If that mean is no
       nearer to any of them than their current centroid (e.g. two class
       means that coincide, as in XOR), the member nearest the mean is used
       instead, so each new centroid is strictly nearer than the current
       one to at least one of the examples it was made for. Repeat 2.

    A pure map's cells refine the classes, so H >= H(Y). With its
    ``max_centroids`` slots full or ``max_iterations`` rounds run the map
    may stay impure (``pure`` False); two identical points with different
    labels make a pure map impossible.

    Args:
        x: (m, ...) points (flattened per example).
        labels: (m,) integer labels in [0, num_classes).
        num_classes: inferred from concrete labels if None.
        max_centroids: centroid capacity (static; >= num_classes). Memory is
            O(m * max_centroids + max_centroids * num_classes * D).
        max_iterations: refinement rounds at most (>= 1).

    Returns:
        :class:`PureVoronoiMap`.
    """
    x = _floating(check_features("x", x))
    labels = check_labels("labels", labels, x.shape[0], "x")
    num_classes = check_num_classes(num_classes, {"labels": labels})
    max_centroids = check_int("max_centroids", max_centroids, num_classes)
    max_iterations = check_int("max_iterations", max_iterations)
    return _pure_voronoi_map(x, labels, num_classes, max_centroids, max_iterations)


def _sq_distances(x, sq, cent, active):
    """||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, inactive centroids at +inf."""
    d2 = sq[:, None] - 2 * jnp.matmul(x, cent.T, precision=jax.lax.Precision.HIGHEST) \
        + jnp.sum(cent * cent, axis=1)[None, :]
    return jnp.where(active[None, :], jnp.maximum(d2, 0), jnp.inf)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _pure_voronoi_map(x, labels, num_classes, capacity, max_iterations):
    m = x.shape[0]
    k = num_classes
    sq = jnp.sum(x * x, axis=1)
    ones = jnp.ones((m,), jnp.int32)

    def assign(cent, clab):
        d2 = _sq_distances(x, sq, cent, clab >= 0)
        a = jnp.argmin(d2, axis=1)
        return a, jnp.take_along_axis(d2, a[:, None], axis=1)[:, 0]

    def add(cent, clab, count, need, new, new_labels):
        """Write the ``need``ed rows of ``new`` into the next free slots."""
        slot = count + jnp.cumsum(need) - 1
        slot = jnp.where(need & (slot < capacity), slot, capacity)     # capacity: dropped
        cent = cent.at[slot].set(new, mode="drop")
        clab = clab.at[slot].set(new_labels, mode="drop")
        return cent, clab, jnp.minimum(count + jnp.sum(need), capacity)

    # 1. class means
    sizes = jax.ops.segment_sum(ones, labels, k)
    means = jax.ops.segment_sum(x, labels, k) / jnp.maximum(sizes, 1)[:, None]
    cent0 = jnp.zeros((capacity, x.shape[1]), x.dtype)
    clab0 = jnp.full((capacity,), -1, jnp.int32)
    cent0, clab0, count0 = add(cent0, clab0, 0, sizes > 0, means, jnp.arange(k, dtype=jnp.int32))

    def refine(state):
        cent, clab, count, it, _ = state
        a, dmin = assign(cent, clab)
        wrong = labels != clab[a]
        # (cell, label) subsets of examples in a cell of another label
        seg = jnp.where(wrong, a * k + labels, capacity * k)
        nseg = capacity * k + 1
        pcount = jax.ops.segment_sum(ones, seg, nseg)[:-1]
        pmean = (jax.ops.segment_sum(x, seg, nseg)[:-1]
                 / jnp.maximum(pcount, 1)[:, None].astype(x.dtype))
        own = jnp.take(pmean, jnp.minimum(seg, capacity * k - 1), axis=0)
        dm = sq - 2 * jnp.sum(x * own, axis=1) + jnp.sum(own * own, axis=1)
        claims = jax.ops.segment_max((wrong & (dm < dmin)).astype(jnp.int32), seg, nseg)[:-1]
        best = jax.ops.segment_min(jnp.where(wrong, dm, jnp.inf), seg, nseg)
        member = jax.ops.segment_min(
            jnp.where(wrong & (dm == best[seg]), jnp.arange(m), m), seg, nseg)[:-1]
        new = jnp.where(claims[:, None] > 0, pmean, jnp.take(x, member, axis=0, mode="clip"))
        new_labels = (jnp.arange(capacity * k) % k).astype(jnp.int32)
        cent, clab, count = add(cent, clab, count, pcount > 0, new, new_labels)
        return cent, clab, count, it + 1, ~jnp.any(wrong)

    def go_on(state):
        _, _, count, it, done = state
        return ~done & (it < max_iterations) & (count < capacity)

    cent, clab, count, it, _ = jax.lax.while_loop(
        go_on, refine, (cent0, clab0, count0, jnp.int32(0), jnp.bool_(False)))
    a, _ = assign(cent, clab)
    cell_sizes = jax.ops.segment_sum(ones, a, capacity)
    return PureVoronoiMap(
        centroids=cent, centroid_labels=clab, num_centroids=count, assignment=a.astype(jnp.int32),
        cell_sizes=cell_sizes, entropy=_entropy_bits(cell_sizes.astype(x.dtype)),
        pure=jnp.all(labels == clab[a]), iterations=it)
