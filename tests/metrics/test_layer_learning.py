"""Least-squares distance, selection entropy and pure Voronoi maps (Oland
2024, Ch. 5) against NumPy: float64 lstsq / pinv, direct class histograms,
and a float64 nearest-centroid check of the returned maps."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.metrics.layer_learning import (PureVoronoiMap, layer_selection_entropy,
                                             least_squares_distance, least_squares_distances,
                                             pure_voronoi_map, selection_entropy)


def one_hot(y, c):
    return np.eye(c, dtype=np.float32)[y]


def lstsq_lsd(z, y, rcond=None):
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    w = np.linalg.lstsq(z, y, rcond=rcond)[0]
    return float(np.sum((y - z @ w) ** 2) / len(z))


def entropy_bits(counts):
    p = np.asarray(counts, np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.fixture
def layer():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 7)).astype(np.float32)
    y = one_hot(rng.integers(0, 4, 120), 4)
    return z, y


# --- least-squares distance ------------------------------------------------------------

def test_lsd_equals_numpy_lstsq(layer):
    z, y = layer
    got = float(least_squares_distance(z, y))
    np.testing.assert_allclose(got, lstsq_lsd(z, y), rtol=1e-5)
    assert 0 < got < np.sum(y ** 2) / len(y)
    # The affine fit is the lstsq with a column of ones.
    zb = np.concatenate([z, np.ones((120, 1), np.float32)], axis=1)
    np.testing.assert_allclose(float(least_squares_distance(z, y, bias=True)),
                               lstsq_lsd(zb, y), rtol=1e-5)
    assert float(least_squares_distance(z, y, bias=True)) < got


def test_lsd_is_zero_in_the_column_space_and_invariant_to_invertible_maps(layer):
    z, y = layer
    a = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    scale = float(np.mean((z @ a) ** 2))
    assert float(least_squares_distance(z, z @ a)) < 1e-5 * scale
    r = np.random.default_rng(2).normal(size=(7, 7)).astype(np.float32)
    assert np.linalg.cond(r) < 100
    np.testing.assert_allclose(float(least_squares_distance(z @ r, y)),
                               float(least_squares_distance(z, y)), rtol=1e-4)


def test_lsd_never_increases_when_columns_are_added(layer):
    z, y = layer
    values = np.array([float(least_squares_distance(z[:, :j], y)) for j in range(1, 8)])
    assert np.all(np.diff(values) <= 1e-6)
    assert values[-1] < values[0]
    np.testing.assert_allclose(values, [lstsq_lsd(z[:, :j], y) for j in range(1, 8)], rtol=1e-5)


def test_lsd_rank_deficient_and_rtol():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(60, 3))
    z = np.concatenate([z, z[:, :1] + z[:, 1:2]], axis=1).astype(np.float32)   # rank 3
    y = one_hot(rng.integers(0, 3, 60), 3)
    # In float32 the 4th singular value is round-off (~1e-7 s_max): the default
    # cut-off 60 eps drops it, as lstsq with that rcond does.
    eps32 = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(float(least_squares_distance(z, y)),
                               lstsq_lsd(z, y, rcond=60 * eps32), rtol=1e-5)
    assert float(least_squares_distance(z, y)) > lstsq_lsd(z, y) + 1e-3   # float64 keeps it
    # A direction with a small singular value: rtol above it drops it, as pinv's rcond.
    u, _, vt = np.linalg.svd(rng.normal(size=(60, 4)), full_matrices=False)
    z = (u * np.array([3.0, 2.0, 1.0, 1e-3])) @ vt
    y = (u[:, 3:] * 5 + 0.1 * rng.normal(size=(60, 1))).astype(np.float32)
    keep_all = float(least_squares_distance(z.astype(np.float32), y))
    drop = float(least_squares_distance(z.astype(np.float32), y, rtol=1e-2))
    np.testing.assert_allclose(drop, lstsq_lsd(z, y, rcond=1e-2), rtol=1e-4)
    np.testing.assert_allclose(keep_all, lstsq_lsd(z, y), rtol=1e-3)
    assert drop > 10 * keep_all
    # Z = 0: Z^+ = 0 and LSD = ||Y||^2 / m.
    np.testing.assert_allclose(float(least_squares_distance(np.zeros((60, 2)), y)),
                               np.sum(y.astype(np.float64) ** 2) / 60, rtol=1e-6)


def test_lsd_per_layer_and_under_jit(layer):
    z, y = layer
    feats = {"h1": z, "h2": z[:, :3], "conv": z.reshape(120, 7, 1)}
    out = least_squares_distances(feats, y)
    assert set(out) == set(feats)
    np.testing.assert_allclose(float(out["h2"]), lstsq_lsd(z[:, :3], y), rtol=1e-5)
    np.testing.assert_allclose(float(out["conv"]), float(out["h1"]), rtol=1e-6)
    jitted = jax.jit(least_squares_distance)(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(float(jitted), lstsq_lsd(z, y), rtol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(y_onehot=np.zeros(120)), "y_onehot must have shape"),
    (dict(y_onehot=np.zeros((120, 2), bool)), "y_onehot must be a real"),
    (dict(y_onehot=np.zeros((119, 4))), "y_onehot has 119 rows but z has 120"),
    (dict(rtol=-1.0), r"rtol must be a finite number in \[0, 1\)"),
    (dict(rtol=1.0), "rtol must be"),
    (dict(bias=1), "bias must be a bool"),
    (dict(z=np.zeros(120)), "z must have shape"),
])
def test_lsd_errors(layer, kwargs, match):
    z, y = layer
    args = {"z": z, "y_onehot": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        least_squares_distance(args.pop("z"), args.pop("y_onehot"), **args)
    with pytest.raises(ValueError, match="features must be a non-empty dict"):
        least_squares_distances({}, y)


# --- selection entropy -------------------------------------------------------------------

def test_selection_entropy_equals_direct_histograms():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 200)
    a = rng.normal(size=(200, 9)) + 0.8 * (y[:, None] == np.arange(9) % 5)
    z = np.maximum(a, 0).astype(np.float32)
    ref = np.array([entropy_bits(np.bincount(y[z[:, j] > 0], minlength=5)) for j in range(9)])
    got = np.asarray(selection_entropy(z, y, 5))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert np.all((got >= 0) & (got <= np.log2(5) + 1e-6))
    np.testing.assert_allclose(selection_entropy(a.astype(np.float32), y, 5), got)  # pre-ReLU


def test_selection_entropy_edge_cases():
    y = np.repeat(np.arange(4), 5)
    z = np.zeros((20, 4), np.float32)
    z[y == 2, 0] = 1.0          # selects exactly class 2: 0 bits
    z[:, 1] = 0.5               # selects everything, balanced: log2(4) = 2 bits
    z[y < 2, 2] = 3.0           # two classes, equal counts: 1 bit
    # feature 3 is dead
    h = np.asarray(selection_entropy(z, y))
    np.testing.assert_allclose(h[:3], [0.0, 2.0, 1.0], atol=1e-6)
    assert np.isnan(h[3])
    layer = layer_selection_entropy(z, y)
    np.testing.assert_allclose(float(layer["entropy"]), 1.0, atol=1e-6)   # mean of 0, 2, 1
    assert int(layer["num_dead"]) == 1 and int(layer["num_features"]) == 4
    dead = layer_selection_entropy(np.zeros((20, 3)), y)
    assert np.isnan(float(dead["entropy"])) and int(dead["num_dead"]) == 3


def test_selection_entropy_jit_and_vmap():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 50)
    zs = np.maximum(rng.normal(size=(4, 50, 6)), 0).astype(np.float32)
    batched = jax.vmap(lambda z: selection_entropy(z, y, 3))(zs)
    np.testing.assert_allclose(batched, np.stack([selection_entropy(z, y, 3) for z in zs]),
                               rtol=1e-6)
    layer = jax.jit(jax.vmap(lambda z: layer_selection_entropy(z, y, 3)))(zs)
    ref = [np.mean([entropy_bits(np.bincount(y[z[:, j] > 0], minlength=3)) for j in range(6)])
           for z in zs]
    np.testing.assert_allclose(layer["entropy"], ref, rtol=1e-5)


def test_selection_entropy_errors():
    y = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes\)"):
        selection_entropy(np.ones((4, 2)), y, 3)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        selection_entropy(np.ones((4, 2)), np.zeros(4, int), 1)
    with pytest.raises(ValueError, match="labels has 3 labels but z has 4"):
        layer_selection_entropy(np.ones((4, 2)), y[:3])
    with pytest.raises(ValueError, match="num_classes must be given"):
        jax.jit(lambda z, y: selection_entropy(z, y))(np.ones((4, 2)), y)


# --- pure Voronoi map -----------------------------------------------------------------------

def check_map(vmap_result: PureVoronoiMap, x, y):
    """Purity, cells and entropy recomputed in float64 from the centroids alone."""
    n_c = int(vmap_result.num_centroids)
    cent = np.asarray(vmap_result.centroids, np.float64)[:n_c]
    clab = np.asarray(vmap_result.centroid_labels)
    assert np.all(clab[:n_c] >= 0) and np.all(clab[n_c:] == -1)
    d = ((np.asarray(x, np.float64)[:, None, :] - cent[None]) ** 2).sum(-1)
    a = np.argmin(d, axis=1)
    np.testing.assert_array_equal(vmap_result.assignment, a)
    assert bool(vmap_result.pure) == bool(np.all(clab[a] == y))
    sizes = np.bincount(a, minlength=len(clab))
    np.testing.assert_array_equal(vmap_result.cell_sizes, sizes)
    np.testing.assert_allclose(float(vmap_result.entropy), entropy_bits(sizes), rtol=1e-5)
    return n_c


def sinusoid(frequency, m=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(m, 2)).astype(np.float32)
    y = (x[:, 1] > 0.5 * np.sin(np.pi * frequency * x[:, 0])).astype(np.int32)
    return x, y


def test_pure_voronoi_map_on_sinusoids():
    h_y = []
    sizes, entropies = [], []
    for f in (1, 8):
        x, y = sinusoid(f)
        res = pure_voronoi_map(x, y, 2)
        assert bool(res.pure)
        sizes.append(check_map(res, x, y))
        entropies.append(float(res.entropy))
        h_y.append(entropy_bits(np.bincount(y)))
        assert entropies[-1] >= h_y[-1]          # a pure map refines the classes
    assert sizes[1] > sizes[0] > 2 and entropies[1] > entropies[0]   # Fig 5.11's trend


def test_pure_voronoi_map_separable_blobs_and_xor():
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(3), [10, 20, 30])
    x = (10 * np.eye(3)[y] + rng.normal(size=(60, 3))).astype(np.float32)
    res = pure_voronoi_map(x, y)
    assert bool(res.pure) and int(res.num_centroids) == 3 and int(res.iterations) == 1
    np.testing.assert_allclose(float(res.entropy), entropy_bits([10, 20, 30]), rtol=1e-6)
    check_map(res, x, y)
    # XOR: both class means are exactly the origin; the member fallback splits them.
    x = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]] * 3, np.float32) \
        * np.repeat([1.0, 2.0, 3.0], 4)[:, None].astype(np.float32)
    y = np.array([0, 0, 1, 1] * 3)
    res = pure_voronoi_map(x, y, 2)
    assert bool(res.pure)
    check_map(res, x, y)
    assert float(res.entropy) >= 1.0


def test_pure_voronoi_map_impossible_or_out_of_capacity():
    x, y = sinusoid(8)
    res = pure_voronoi_map(x, y, 2, max_centroids=8)
    assert not bool(res.pure) and int(res.num_centroids) == 8
    check_map(res, x, y)
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]], np.float32)   # one point, two labels
    res = pure_voronoi_map(x, np.array([0, 1, 1]), 2, max_iterations=5, max_centroids=16)
    assert not bool(res.pure)
    check_map(res, x, np.array([0, 1, 1]))


def test_pure_voronoi_map_jit_and_vmap():
    data = [sinusoid(2, m=100, seed=s) for s in range(2)]
    xs, ys = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
    f = lambda x, y: pure_voronoi_map(x, y, 2, max_centroids=64)
    batched = jax.jit(jax.vmap(f))(xs, ys)
    for i, (x, y) in enumerate(data):
        one = f(x, y)
        np.testing.assert_array_equal(batched.assignment[i], one.assignment)
        np.testing.assert_allclose(batched.entropy[i], one.entropy, rtol=1e-6)
        assert bool(batched.pure[i])


def test_pure_voronoi_map_errors():
    x, y = sinusoid(1, m=20)
    with pytest.raises(ValueError, match="max_centroids must be an int >= 2"):
        pure_voronoi_map(x, y, 2, max_centroids=1)
    with pytest.raises(ValueError, match="max_iterations must be an int >= 1"):
        pure_voronoi_map(x, y, 2, max_iterations=0)
    with pytest.raises(ValueError, match="labels has 19 labels but x has 20"):
        pure_voronoi_map(x, y[:19], 2)
