"""The ring and toy augmentation graphs (App. B, App. C.3) and the m-view estimate."""
import jax
import numpy as np
import pytest

from neurojax.data import augmentation_graphs as graphs
from tests._x64 import float64 as x64


def numpy_views(rng, aug, m, trials):
    """views[g, i, j] ~ aug[i] by inverse CDF (NumPy, independent of the module's sampler)."""
    cdf = np.cumsum(aug, 1)
    u = rng.random((trials, aug.shape[0], m))
    return np.minimum((u[..., None] > cdf[None, :, None, :]).sum(-1), aug.shape[1] - 1)


def test_toy_graph_closed_form_eigenpairs():
    rng = np.random.default_rng(8)
    with x64():
        for _ in range(5):
            params = rng.uniform(0, 1, size=4)
            w = np.asarray(graphs.toy_graph_adjacency(*params))
            eig, vecs = map(np.asarray, graphs.toy_graph_eigen(*params))
            np.testing.assert_allclose(w @ vecs, vecs * eig[None, :], atol=1e-12)
            np.testing.assert_allclose(vecs.T @ vecs, np.eye(4), atol=1e-12)
            np.testing.assert_allclose(np.sort(eig), np.linalg.eigvalsh(w), atol=1e-12)
        # The class eigenvector separates classes (1, 1, 2, 2), the pixel one groups (1, 2, 1, 2).
        _, vecs = graphs.toy_graph_eigen(0.4, 0.3, 0.2, 0.1)
        classes, groups = np.array(graphs.TOY_CLASSES), np.array(graphs.TOY_GROUPS)
        assert np.all(np.sign(vecs[:, 1]) == np.where(classes == 1, 1, -1))
        assert np.all(np.sign(vecs[:, 2]) == np.where(groups == 1, 1, -1))


def test_toy_population_graph_reconstruction():
    with x64():
        primed = (0.5, 0.25, 0.15, 0.1)
        a = np.asarray(graphs.toy_augmentation_matrix(*primed))
        # A(x_j | x_i) from Eq. 45's rule, by loops over classes and pixel groups.
        cls, grp = graphs.TOY_CLASSES, graphs.TOY_GROUPS
        for i in range(4):
            for j in range(4):
                want = (primed[0] if i == j else primed[1] if cls[i] == cls[j]
                        else primed[2] if grp[i] == grp[j] else primed[3])
                assert a[i, j] == pytest.approx(want)
        w, params = graphs.toy_population_graph(*primed)
        w_loop = np.array([[sum(0.25 * a[i, x] * a[i, y] for i in range(4)) for y in range(4)]
                           for x in range(4)])
        np.testing.assert_allclose(w, w_loop, rtol=1e-12)
        np.testing.assert_allclose(w, graphs.toy_graph_adjacency(*params), rtol=1e-12)
        np.testing.assert_allclose(graphs.toy_graph_parameters(w), params, rtol=1e-12)
        eig_a, _ = graphs.toy_graph_eigen(*primed)
        eig_w, _ = graphs.toy_graph_eigen(*params)
        np.testing.assert_allclose(eig_w, np.asarray(eig_a) ** 2 / 4, rtol=1e-12)
        assert float(np.sum(w)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rho_p"):
        graphs.toy_augmentation_matrix(0.5, 0.2, 0.2, 0.2)
    with pytest.raises(ValueError, match="mu_p"):
        graphs.toy_augmentation_matrix(0.5, -0.1, 0.3, 0.3)


def test_toy_view_graph_matches_pair_loops():
    rng = np.random.default_rng(9)
    views = rng.integers(0, 4, size=(4, 5))
    got = np.asarray(graphs.toy_view_graph(views, 4))
    want, want_plugin = np.zeros((4, 4)), np.zeros((4, 4))
    m = views.shape[1]
    for i in range(4):
        for j in range(m):
            for l in range(m):
                want_plugin[views[i, j], views[i, l]] += 1 / (4 * m * m)
                if j != l:
                    want[views[i, j], views[i, l]] += 1 / (4 * m * (m - 1))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(graphs.toy_view_graph(views, 4, "plugin"), want_plugin, rtol=1e-6)
    with pytest.raises(ValueError, match="num_views"):
        graphs.toy_empirical_graph(jax.random.PRNGKey(0), np.eye(4), 1)
    with pytest.raises(ValueError, match="estimator"):
        graphs.toy_view_graph(views, 4, "median")
    # Batched: leading axes are independent graphs; the projection is batched too.
    batch = np.stack([views, views[::-1]])
    np.testing.assert_allclose(graphs.toy_view_graph(batch, 4)[0], want, rtol=1e-6)
    params = np.asarray(graphs.toy_graph_parameters(graphs.toy_view_graph(batch, 4)))
    assert params.shape == (2, 4)
    pattern = np.array([[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]])
    np.testing.assert_allclose(params[0], [want[pattern == k].mean() for k in range(4)],
                               rtol=1e-6)


def test_toy_empirical_graph_converges_in_m():
    primed = (0.5, 0.25, 0.15, 0.1)
    aug = np.asarray(graphs.toy_augmentation_matrix(*primed), dtype=np.float64)
    w, params = graphs.toy_population_graph(*primed)
    w = np.asarray(w, dtype=np.float64)
    eig_true = np.sort(np.asarray(graphs.toy_graph_eigen(*params)[0], dtype=np.float64))
    trials = 1000
    views = numpy_views(np.random.default_rng(17), aug, 128, trials)
    mses = {}
    for m in (2, 8, 32, 128):
        for estimator in ("pairs", "plugin"):
            ws = np.asarray(graphs.toy_view_graph(views[..., :m], 4, estimator), dtype=np.float64)
            # Unbiasedness within 5 standard errors, SE from the bound Var <= W_xx' / m.
            se = np.sqrt(w / m / trials)
            biased = np.any(np.abs(ws.mean(0) - w) > 5 * se)
            if estimator == "plugin":
                if m == 2:
                    assert biased   # diagonal bias mean_i A_ix (1 - A_ix) / m is detected
                continue
            assert not biased
            err2 = np.sum((ws - w) ** 2, axis=(1, 2))
            mses[m] = err2.mean()
            # E||W-hat - W||_F^2 <= 1/m (U-statistic bound); Monte-Carlo slack of
            # 5 standard errors of the mean.
            assert mses[m] <= 1 / m + 5 * err2.std() / np.sqrt(trials)
            # Hoffman-Wielandt: sorted eigenvalues are no further than the Frobenius error.
            eig_hat = np.linalg.eigvalsh(ws)
            eig_err2 = np.sum((eig_hat - eig_true) ** 2, axis=1)
            assert np.all(eig_err2 <= err2 + 1e-6)   # W-hat is float32
    # The error falls like 1/m: x64 more views, >= 30x smaller error.
    assert mses[2] > mses[8] > mses[32] > mses[128]
    assert mses[2] / mses[128] > 30


def test_sample_views_and_empirical_graph():
    aug = np.asarray(graphs.toy_augmentation_matrix(0.5, 0.25, 0.15, 0.1))
    # main's smoke test below draws the same shape: one compile for both.
    views = np.asarray(graphs.sample_views(jax.random.PRNGKey(0), aug, 16, 250))
    assert views.shape == (250, 4, 16) and views.min() >= 0 and views.max() <= 3
    freq = np.stack([(views == x).mean(axis=(0, 2)) for x in range(4)], 1)   # (instance, node)
    np.testing.assert_allclose(freq, aug, atol=5 * np.sqrt(0.25 / 4000))
    got = graphs.toy_empirical_graph(jax.random.PRNGKey(0), aug, 16, num_graphs=250)
    np.testing.assert_allclose(got, graphs.toy_view_graph(views, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="num_graphs"):
        graphs.sample_views(jax.random.PRNGKey(0), aug, 4, 0)
