"""k-redundancy and k-filtering (Oland 2024, Sec 5.4, Def 8) against a
brute-force NumPy loop (exact integer data: ties and duplicates) and
scikit-learn's NearestNeighbors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from neurojax.metrics.redundancy import (k_filter_arrays, k_filter_indices, k_filter_mask,
                                         k_redundancy, k_redundancy_fractions,
                                         same_label_neighbours)


def brute_run_lengths(x, y):
    """Per example: same-label neighbours before the first other-label one,
    neighbours sorted by (float64 squared distance, index), self excluded."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    n = len(x)
    out = np.zeros(n, np.int64)
    for i in range(n):
        d = ((x - x[i]) ** 2).sum(axis=1)
        order = [j for j in np.lexsort((np.arange(n), d)) if j != i]
        c = 0
        for j in order:
            if y[j] != y[i]:
                break
            c += 1
        out[i] = c
    return out


def brute_redundant(x, y, k):
    """Def 8's criterion literally: the k nearest (ties: lower index) share the label."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    n = len(x)
    red = np.zeros(n, bool)
    for i in range(n):
        d = ((x - x[i]) ** 2).sum(axis=1)
        order = [j for j in np.lexsort((np.arange(n), d)) if j != i][:k]
        red[i] = all(y[j] == y[i] for j in order)
    return red


def grid_data(seed, n, d=2, classes=3, span=2):
    """Small integer coordinates: many exact ties and duplicates, distances
    exact in float32."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-span, span + 1, size=(n, d)).astype(np.float32)
    return x, rng.integers(0, classes, n).astype(np.int32)


@pytest.mark.parametrize("seed,n,block", [(0, 37, 8), (1, 50, 7), (2, 23, 64), (3, 40, 1)])
def test_run_lengths_equal_brute_force_with_ties_and_duplicates(seed, n, block):
    x, y = grid_data(seed, n)
    assert len({tuple(r) for r in x}) < n            # the data holds duplicates
    got = np.asarray(same_label_neighbours(x, y, block_size=block))
    np.testing.assert_array_equal(got, brute_run_lengths(x, y))
    for k in (1, 2, 3, 5):
        np.testing.assert_array_equal(np.asarray(k_redundancy(x, y, k, block_size=block)),
                                      brute_redundant(x, y, k))


def test_one_label_and_two_labels_blocks():
    # One label: every example has n - 1 same-label neighbours.
    x, _ = grid_data(4, 19)
    np.testing.assert_array_equal(same_label_neighbours(x, np.zeros(19, np.int32), block_size=4),
                                  np.full(19, 18))
    # Labels sorted into blocks of one label each exercise the skipped pairs.
    x, _ = grid_data(5, 48, d=3)
    y = np.repeat(np.arange(4), 12).astype(np.int32)[np.random.default_rng(0).permutation(48)]
    np.testing.assert_array_equal(same_label_neighbours(x, y, block_size=6),
                                  brute_run_lengths(x, y))


def test_ties_go_to_the_lower_index():
    # Example 0 at 0 has two neighbours at distance 1: -1 and +1.
    x = np.array([[0.0], [-1.0], [1.0], [10.0], [11.0]], np.float32)
    # The lower index (1) is the nearer one: label 1 ends the run at once.
    np.testing.assert_array_equal(same_label_neighbours(x, np.array([0, 1, 0, 1, 1])),
                                  brute_run_lengths(x, np.array([0, 1, 0, 1, 1])))
    assert int(same_label_neighbours(x, np.array([0, 1, 0, 1, 1]))[0]) == 0
    assert int(same_label_neighbours(x, np.array([0, 0, 1, 1, 1]))[0]) == 1


def test_duplicates_are_neighbours():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 6.0], [6.0, 5.0]], np.float32)
    # Example 0's duplicate (index 1) has another label: 0 is not 1-redundant.
    y = np.array([0, 1, 0, 0, 0])
    assert not bool(k_redundancy(x, y, 1)[0])
    # Same label: the duplicate is the first neighbour, then the far cluster.
    y = np.array([0, 0, 1, 1, 1])
    np.testing.assert_array_equal(same_label_neighbours(x, y), [1, 1, 2, 2, 2])


def test_separated_clusters_are_redundant_below_the_cluster_size():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(10, 4)), 100 + rng.normal(size=(10, 4))])
    y = np.repeat([0, 1], 10)
    assert bool(jnp.all(k_redundancy(x, y, 9)))
    assert not bool(jnp.any(k_redundancy(x, y, 10)))


def test_equals_sklearn_nearest_neighbors_on_continuous_data():
    rng = np.random.default_rng(1)
    means = 2 * rng.normal(size=(4, 6))
    y = rng.integers(0, 4, 300)
    x = (means[y] + rng.normal(size=(300, 6))).astype(np.float32)
    k = 7
    ind = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(
        return_distance=False)
    ref = np.all(y[ind] == y[:, None], axis=1)
    got = np.asarray(k_redundancy(x, y, k, block_size=64))
    np.testing.assert_array_equal(got, ref)
    assert 0.1 < ref.mean() < 0.9                     # a non-trivial case


def test_kept_fraction_is_non_decreasing_in_k():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 200)
    x = (rng.normal(size=(3, 5))[y] * 1.5 + rng.normal(size=(200, 5))).astype(np.float32)
    ks = list(range(1, 31))
    redundant = np.asarray(k_redundancy_fractions(x, y, ks, block_size=48))
    kept = 1 - redundant
    assert np.all(np.diff(kept) >= 0)
    assert kept[-1] > kept[0]                         # the property is not vacuous here
    # Each k separately, and per example: redundant for k implies for k - 1.
    masks = np.stack([np.asarray(k_redundancy(x, y, k, block_size=48)) for k in ks])
    np.testing.assert_allclose(masks.mean(axis=1), redundant, atol=1e-7)
    assert np.all(masks[1:] <= masks[:-1])
    np.testing.assert_array_equal(masks[4], brute_redundant(x, y, 5))


def test_jit_and_vmap():
    xs, ys = zip(*(grid_data(s, 30, d=3) for s in range(3)))
    xs, ys = np.stack(xs), np.stack(ys)
    f = jax.jit(lambda x, y: same_label_neighbours(x, y, block_size=8))
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(f(x, y), brute_run_lengths(x, y))
    batched = jax.vmap(lambda x, y: k_redundancy(x, y, 2, block_size=8))(xs, ys)
    np.testing.assert_array_equal(batched, np.stack([brute_redundant(x, y, 2)
                                                     for x, y in zip(xs, ys)]))
    mask = jax.jit(lambda x, y: k_filter_mask(x, y, 2, block_size=8))(xs[0], ys[0])
    np.testing.assert_array_equal(mask, ~brute_redundant(xs[0], ys[0], 2))


def test_k_filter_indices_whole_set_and_mini_batches():
    x, y = grid_data(6, 40, d=2, span=3)
    keep = k_filter_indices(x, y, 2)
    np.testing.assert_array_equal(keep, np.flatnonzero(~brute_redundant(x, y, 2)))
    # Groups of 20 in stored order, each filtered on its own.
    keep = k_filter_indices(x, y, 2, batch_size=20)
    ref = np.concatenate([s + np.flatnonzero(~brute_redundant(x[s:s + 20], y[s:s + 20], 2))
                          for s in (0, 20)])
    np.testing.assert_array_equal(keep, ref)
    assert not np.array_equal(keep, k_filter_indices(x, y, 2))   # the groups matter
    # A permutation from the key: groups of the permuted order.
    key = jax.random.key(3)
    perm = np.asarray(jax.random.permutation(key, 40))
    keep = k_filter_indices(x, y, 2, batch_size=20, key=key)
    ref = np.sort(np.concatenate([g[~brute_redundant(x[g], y[g], 2)]
                                  for g in (perm[:20], perm[20:])]))
    np.testing.assert_array_equal(keep, ref)
    # A last group of at most k examples is kept whole.
    keep = k_filter_indices(x[:22], y[:22], 2, batch_size=20)
    np.testing.assert_array_equal(
        keep, np.concatenate([np.flatnonzero(~brute_redundant(x[:20], y[:20], 2)), [20, 21]]))


def test_k_filter_arrays_keeps_types_and_uses_given_features():
    x, y = grid_data(6, 40, d=2, span=3)
    arrays = {"image": x.reshape(40, 1, 2), "label": y, "index": jnp.arange(40)}
    out = k_filter_arrays(arrays, 3)
    keep = np.flatnonzero(~brute_redundant(x, y, 3))
    assert isinstance(out["image"], np.ndarray) and isinstance(out["index"], jax.Array)
    np.testing.assert_array_equal(out["index"], keep)
    np.testing.assert_array_equal(out["image"], arrays["image"][keep])
    np.testing.assert_array_equal(out["label"], y[keep])
    # Filtering by another representation (here: the first coordinate only).
    out = k_filter_arrays(arrays, 3, features=x[:, :1])
    np.testing.assert_array_equal(out["index"], np.flatnonzero(~brute_redundant(x[:, :1], y, 3)))


@pytest.mark.parametrize("call,match", [
    (lambda x, y: k_redundancy(x, y, 0), "k must be an int >= 1"),
    (lambda x, y: k_redundancy(x, y, 10), r"k must be <= the number of examples - 1 \(9\)"),
    (lambda x, y: k_redundancy(x, y, 2.0), "k must be an int"),
    (lambda x, y: k_redundancy(x, y, 2, block_size=0), "block_size must be an int >= 1"),
    (lambda x, y: k_redundancy(x[:1], y[:1], 1), "x must hold at least two examples"),
    (lambda x, y: k_redundancy(x, y[:5], 1), "labels has 5 labels but x has 10"),
    (lambda x, y: k_redundancy(x, y - 1, 1), "labels must be >= 0"),
    (lambda x, y: k_redundancy(x, y.astype(np.float32), 1), "labels must hold integer"),
    (lambda x, y: k_redundancy(np.where(x > 0, np.nan, x), y, 1), "x must be finite"),
    (lambda x, y: k_redundancy(x[:, 0], y, 1), "x must have shape"),
    (lambda x, y: k_redundancy_fractions(x, y, []), "ks must be a non-empty sequence"),
    (lambda x, y: k_redundancy_fractions(x, y, [1, 0]), "ks must be an int >= 1"),
    (lambda x, y: k_filter_indices(x, y, 3, batch_size=3), "batch_size must be an int >= 4"),
    (lambda x, y: k_filter_arrays({"image": x}, 1), "arrays has no 'label' entry"),
    (lambda x, y: k_filter_arrays({"image": x, "label": y, "z": x[:3]}, 1),
     r"arrays\['z'\] must have 10 examples"),
])
def test_errors_name_the_argument(call, match):
    x, y = grid_data(8, 10)
    with pytest.raises(ValueError, match=match):
        call(x, y)
