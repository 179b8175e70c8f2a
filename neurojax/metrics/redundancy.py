"""k-redundancy and k-filtering (Oland 2024, Efficient Deep Learning, Sec 5.4, Def 8).

Redundancy criterion (Sec 5.4): "a sample is considered redundant if all of
its k nearest neighbors belong to its own class"; k-filtering removes the
redundant samples, and the k-redundancy of a dataset (Def 8) is the
percentage of samples it removes. On a hidden representation Z_i it
measures how far the classes have separated at that layer (Fig 5.14).

Conventions (the thesis leaves them open):

* Distance: Euclidean on the examples flattened to vectors.
* The example itself is excluded by index, not by distance, so an exact
  duplicate of an example is one of its neighbours (at distance 0).
* Ties: neighbours are ordered by (squared distance, index): at equal
  distance the lower example index is the nearer neighbour (the order
  ``lax.top_k`` gives; scikit-learn breaks such ties in no documented way).

One pass serves every k. :func:`same_label_neighbours` returns, per
example, c_i = the number of its neighbours, in the order above, that share
its label before the first neighbour with another label (n - 1 when no
other label exists). Example i is k-redundant iff c_i >= k, so redundant
for k implies redundant for k - 1 and the kept fraction is non-decreasing
in k by construction.

How it is computed (on device, memory O(n d + block_size^2)): every pair
of examples is ranked, so the result is exact up to float rounding (which
can swap two neighbours at nearly equal distances). The examples are sorted
by label and cut into blocks of ``block_size``; for each pair of blocks
(I <= J) one product X_I X_J^T serves both the rows of I (against the
columns of J) and the rows of J (against those of I), ranking by
||x - x_c||^2 ~ -(<x, x_c> - ||x_c||^2 / 2) (the query's own norm does not
rank). A first pass keeps, per example, the nearest example of another
label (m_i, j_i) (largest score, then lowest index); a second counts the
same-label examples ranked before it. Because blocks are sorted by label,
the first pass skips the pairs of blocks that both hold one and the same
label only, and the second the pairs with no label in common
(``lax.cond``; under ``vmap`` both branches run, same result). On 10
balanced classes the two passes cost about half the n^2 d product that a
query-chunk kNN pays, and need no top-k selection.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_int, is_concrete
from neurojax.metrics._probe_inputs import check_features, check_labels

ArrayLike = Union[jax.Array, np.ndarray]

DEFAULT_BLOCK_SIZE = 512

__all__ = ["DEFAULT_BLOCK_SIZE", "same_label_neighbours", "k_redundancy",
           "k_redundancy_fractions", "k_filter_mask", "k_filter_indices", "k_filter_arrays"]


# --- validation ---------------------------------------------------------------

def _check_inputs(x: ArrayLike, labels: ArrayLike, block_size: int):
    x = check_features("x", x)
    labels = check_labels("labels", labels, x.shape[0], "x")
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least two examples (one and its neighbours), "
                         f"got {x.shape[0]}")
    if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("x must be finite (no NaN or Inf)")
    if is_concrete(labels) and int(jnp.min(labels)) < 0:
        raise ValueError(f"labels must be >= 0, got a minimum of {int(jnp.min(labels))}")
    block_size = check_int("block_size", block_size)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32)), labels, block_size


def _check_k(name: str, k: Any, n: int) -> int:
    k = check_int(name, k)
    if k > n - 1:
        raise ValueError(f"{name} must be <= the number of examples - 1 ({n - 1}), got {k}")
    return k


# --- the two passes -------------------------------------------------------------

def _lex_max(scores, mask, col_idx, sentinel):
    """Per row, the largest masked score and the lowest column index attaining it."""
    m = jnp.max(jnp.where(mask, scores, -jnp.inf), axis=1)
    j = jnp.min(jnp.where(mask & (scores == m[:, None]), col_idx[None, :], sentinel), axis=1)
    return m, j


def _lex_merge(m0, j0, m1, j1):
    take = (m1 > m0) | ((m1 == m0) & (j1 < j0))
    return jnp.where(take, m1, m0), jnp.where(take, j1, j0)


def _ahead(scores, same, m, j, col_idx):
    """Same-label entries ranked before the row's nearest other-label example."""
    before = (scores > m[:, None]) | ((scores == m[:, None]) & (col_idx[None, :] < j[:, None]))
    return jnp.sum(same & before, axis=1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _same_label_neighbours(x, labels, block_size):
    n = x.shape[0]
    bsz = min(block_size, n)
    nb = -(-n // bsz)
    pad = nb * bsz - n
    order = jnp.argsort(labels, stable=True)
    valid = jnp.arange(nb * bsz) < n
    xs = jnp.pad(x[order], ((0, pad), (0, 0)))
    ls = jnp.pad(labels[order], (0, pad), constant_values=-1)   # labels are >= 0
    idx = jnp.pad(order.astype(jnp.int32), (0, pad), constant_values=n)
    # Padded columns get score -inf: never nearer than a real example.
    half = jnp.where(valid, 0.5 * jnp.sum(xs * xs, axis=1), jnp.inf)
    big = jnp.iinfo(jnp.int32).max
    lo = jnp.min(jnp.where(valid, ls, big).reshape(nb, bsz), axis=1)
    hi = jnp.max(jnp.where(valid, ls, -1).reshape(nb, bsz), axis=1)
    rows, cols = (jnp.asarray(a, jnp.int32) for a in np.triu_indices(nb))

    def block(i):
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, i * bsz, bsz)
        return sl(xs), sl(half), sl(ls), sl(idx)

    def scores(a, b):
        xa, ha, la, ia = block(a)
        xb, hb, lb, ib = block(b)
        s = jnp.matmul(xa, xb.T, precision=jax.lax.Precision.HIGHEST)
        return (s - hb[None, :], la, ia), (s.T - ha[None, :], lb, ib)

    def first_pass(carry, ab):
        a, b = ab

        def update(carry):
            m, j = carry
            (sr, la, ia), (sc, lb, ib) = scores(a, b)
            other = la[:, None] != lb[None, :]
            ma, ja = _lex_merge(*(jax.lax.dynamic_slice_in_dim(v, a * bsz, bsz) for v in (m, j)),
                                *_lex_max(sr, other, ib, n))
            m = jax.lax.dynamic_update_slice_in_dim(m, ma, a * bsz, 0)
            j = jax.lax.dynamic_update_slice_in_dim(j, ja, a * bsz, 0)
            # On a diagonal block the row side already saw every pair.
            mb0, jb0 = (jax.lax.dynamic_slice_in_dim(v, b * bsz, bsz) for v in (m, j))
            mb, jb = _lex_merge(mb0, jb0, *_lex_max(sc, other.T, ia, n))
            mb, jb = jnp.where(a == b, mb0, mb), jnp.where(a == b, jb0, jb)
            m = jax.lax.dynamic_update_slice_in_dim(m, mb, b * bsz, 0)
            j = jax.lax.dynamic_update_slice_in_dim(j, jb, b * bsz, 0)
            return m, j

        one_label = (lo[a] == hi[a]) & (lo[b] == hi[b]) & (lo[a] == lo[b])
        return jax.lax.cond(one_label, lambda c: c, update, carry), None

    init = (jnp.full((nb * bsz,), -jnp.inf, x.dtype), jnp.full((nb * bsz,), n, jnp.int32))
    (m, j), _ = jax.lax.scan(first_pass, init, (rows, cols))

    def second_pass(count, ab):
        a, b = ab

        def update(count):
            (sr, la, ia), (sc, lb, ib) = scores(a, b)
            same = (la[:, None] == lb[None, :]) & (ia[:, None] != ib[None, :])
            ma, ja, ca = (jax.lax.dynamic_slice_in_dim(v, a * bsz, bsz) for v in (m, j, count))
            count = jax.lax.dynamic_update_slice_in_dim(
                count, ca + _ahead(sr, same, ma, ja, ib), a * bsz, 0)
            mb, jb, cb = (jax.lax.dynamic_slice_in_dim(v, b * bsz, bsz) for v in (m, j, count))
            add = jnp.where(a == b, 0, _ahead(sc, same.T, mb, jb, ia))
            return jax.lax.dynamic_update_slice_in_dim(count, cb + add, b * bsz, 0)

        shared = jnp.maximum(lo[a], lo[b]) <= jnp.minimum(hi[a], hi[b])
        return jax.lax.cond(shared, update, lambda c: c, count), None

    count, _ = jax.lax.scan(second_pass, jnp.zeros((nb * bsz,), jnp.int32), (rows, cols))
    return jnp.zeros((n,), jnp.int32).at[order].set(count[:n])


# --- public API -------------------------------------------------------------------

def same_label_neighbours(x: ArrayLike, labels: ArrayLike, *,
                          block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
    """c_i: how many nearest neighbours of example i share its label before
    the first neighbour with another label (Oland 2024, Sec 5.4).

    Neighbours are ordered by squared Euclidean distance, then index; the
    example itself is excluded by index (duplicates count). c_i = n - 1 when
    no other label is present. Example i is k-redundant (Def 8) iff
    c_i >= k, for every k at once.

    Args:
        x: (n, ...) real features (flattened per example), finite.
        labels: (n,) integer labels >= 0.
        block_size: examples per block (>= 1); memory is O(block_size^2)
            besides the features. The default suits CPUs; on accelerators a
            larger block (2048-4096) feeds the matrix units better.

    Returns:
        int32 (n,).

    Runs under ``jax.jit`` and ``jax.vmap`` (over datasets of one shape);
    the module docstring gives the algorithm.
    """
    return _same_label_neighbours(*_check_inputs(x, labels, block_size))


def k_redundancy(x: ArrayLike, labels: ArrayLike, k: int, *,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
    """Per example, whether all of its k nearest neighbours share its label
    (Oland 2024, Sec 5.4 redundancy criterion; Def 8's k-redundancy is
    ``100 * mean`` of this mask).

    Euclidean distance, the example excluded by index (an exact duplicate is
    a neighbour at distance 0), ties at equal distance broken towards the
    lower index. ``k`` in [1, n - 1]. Returns bool (n,). See
    :func:`same_label_neighbours`.
    """
    x, labels, block_size = _check_inputs(x, labels, block_size)
    k = _check_k("k", k, x.shape[0])
    return _same_label_neighbours(x, labels, block_size) >= k


def k_redundancy_fractions(x: ArrayLike, labels: ArrayLike, ks: Sequence[int], *,
                           block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
    """The fraction of k-redundant examples for each k in ``ks`` (Def 8's
    k-redundancy / 100), from one pass: float32 (len(ks),). One minus it is
    the kept fraction of k-filtering (Table 5.1's percentages)."""
    x, labels, block_size = _check_inputs(x, labels, block_size)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise ValueError(f"ks must be a non-empty sequence of ints, got {ks!r}")
    ks = [_check_k("ks", k, x.shape[0]) for k in ks]
    c = _same_label_neighbours(x, labels, block_size)
    return jnp.mean(c[None, :] >= jnp.asarray(ks, jnp.int32)[:, None], axis=1,
                    dtype=jnp.float32)


def k_filter_mask(x: ArrayLike, labels: ArrayLike, k: int, *,
                  block_size: int = DEFAULT_BLOCK_SIZE) -> jax.Array:
    """k-filtering's keep mask (Oland 2024, Sec 5.4): True for the examples
    that are not k-redundant. Jittable (fixed shape); inside a compiled
    training step it can weight a mini-batch's per-example losses, the
    thesis' online filtering "on large mini-batches"."""
    return jnp.logical_not(k_redundancy(x, labels, k, block_size=block_size))


def k_filter_indices(x: ArrayLike, labels: ArrayLike, k: int, *,
                     batch_size: Optional[int] = None, key: Optional[jax.Array] = None,
                     block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
    """Indices (sorted, int64 NumPy) of the examples k-filtering keeps.

    With ``batch_size=None`` the neighbours come from the whole set
    (pre-filtering). With ``batch_size = B`` the examples are cut into
    consecutive groups of B (the last may be smaller; after a permutation
    drawn from ``key`` if one is given, else in stored order) and each group
    is filtered on its own, the thesis' "KNN on large mini-batches"
    (Sec 5.4); ``batch_size`` must exceed ``k``, and a last group of at
    most k examples is kept whole (no example in it has k neighbours).
    Host function: the output size depends on the data.
    """
    x, labels, block_size = _check_inputs(x, labels, block_size)
    n = x.shape[0]
    k = _check_k("k", k, n)
    if batch_size is None:
        groups = [np.arange(n)]
    else:
        batch_size = check_int("batch_size", batch_size, k + 1)
        perm = (np.arange(n) if key is None
                else np.asarray(jax.random.permutation(key, n)))
        groups = [perm[s:s + batch_size] for s in range(0, n, batch_size)]
    kept = []
    for g in groups:
        if len(g) <= k:     # fewer than k neighbours: none is k-redundant
            kept.append(g)
            continue
        c = _same_label_neighbours(x[g], labels[g], block_size)
        kept.append(g[np.asarray(c) < k])
    return np.sort(np.concatenate(kept))


def k_filter_arrays(arrays: Mapping[str, ArrayLike], k: int, *, feature_key: str = "image",
                    label_key: str = "label", features: Optional[ArrayLike] = None,
                    batch_size: Optional[int] = None, key: Optional[jax.Array] = None,
                    block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, Any]:
    """A split's arrays with the k-redundant examples dropped (Sec 5.4).

    ``arrays`` is a split as :func:`neurojax.data.on_device.load_split_arrays`
    returns it (a dict of arrays with one leading example axis); the result
    is the same dict restricted to the kept examples, each array keeping its
    type (NumPy stays NumPy, JAX stays JAX), ready for the on-device data
    path. Neighbours are found on ``arrays[feature_key]``, or on
    ``features`` (n, ...) if given (e.g. a hidden layer's activations, to
    filter by a representation); labels are ``arrays[label_key]``.
    ``batch_size`` and ``key`` as in :func:`k_filter_indices`.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise ValueError("arrays must be a non-empty dict of arrays")
    for name in (feature_key, label_key):
        if features is not None and name == feature_key:
            continue
        if name not in arrays:
            raise ValueError(f"arrays has no {name!r} entry (keys: {sorted(arrays)})")
    x = arrays[feature_key] if features is None else features
    n = np.shape(arrays[label_key])[0]
    for name, v in arrays.items():
        if np.ndim(v) < 1 or np.shape(v)[0] != n:
            raise ValueError(f"arrays[{name!r}] must have {n} examples on its first axis, "
                             f"got shape {np.shape(v)}")
    keep = k_filter_indices(x, arrays[label_key], k, batch_size=batch_size, key=key,
                            block_size=block_size)
    return {name: (jnp.take(v, jnp.asarray(keep), axis=0) if isinstance(v, jax.Array)
                   else np.asarray(v)[keep]) for name, v in arrays.items()}
