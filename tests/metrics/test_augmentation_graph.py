"""Finite augmentation graph identities (Ghosh et al. 2024, App. B-C.2) against loops
and dense linear algebra."""
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from neurojax.data import augmentation_graphs as graphs
from neurojax.metrics import augmentation_graph as ag
from tests._x64 import float64 as x64


def random_graph_inputs(seed, n0=5, na=7):
    rng = np.random.default_rng(seed)
    p0 = rng.dirichlet(np.ones(n0))
    P = rng.dirichlet(0.7 * np.ones(na), size=n0)
    return p0, P


def test_augmentation_graph_matches_loops():
    with x64():
        p0, P = random_graph_inputs(0)
        g = ag.augmentation_graph(p0, P)
        n0, na = P.shape
        px = np.array([sum(p0[i] * P[i, x] for i in range(n0)) for x in range(na)])
        k = np.zeros((na, na))
        w = np.zeros((na, na))
        for x in range(na):
            for z in range(na):
                w[x, z] = sum(p0[i] * P[i, x] * P[i, z] for i in range(n0))
                k[x, z] = sum(p0[i] * P[i, x] * P[i, z] / (px[x] * px[z]) for i in range(n0))
        np.testing.assert_allclose(g.p_aug, px, rtol=1e-12)
        np.testing.assert_allclose(g.joint, w, rtol=1e-12)
        np.testing.assert_allclose(g.kernel, k, rtol=1e-12)
        assert g.kernel.dtype == jnp.float64
        # Eq. 40: the graph's degrees are the marginals; the joint sums to 1.
        np.testing.assert_allclose(np.sum(g.joint, 1), px, rtol=1e-12)
        np.testing.assert_allclose(np.sum(g.joint), 1.0, rtol=1e-12)


def test_lemma_b2_kernel_operator_factorises():
    with x64():
        p0, P = random_graph_inputs(1)
        g = ag.augmentation_graph(p0, P)
        tm, tm_adj, tk = (np.asarray(ag.averaging_operator(g)),
                          np.asarray(ag.averaging_adjoint(g)), np.asarray(ag.kernel_operator(g)))
        n0, na = P.shape
        rng = np.random.default_rng(2)
        f, h = rng.normal(size=na), rng.normal(size=na)
        px = np.asarray(g.p_aug)
        # T_k f(x) = E_z[k(x, z) f(z)] by an explicit sum (Eq. 6).
        tk_f = np.array([sum(px[z] * g.kernel[x, z] * f[z] for z in range(na)) for x in range(na)])
        np.testing.assert_allclose(tk @ f, tk_f, rtol=1e-12)
        # Lemma B.2 as bilinear forms: <T_k f, h>_pX = <T_M f, T_M h>_pX0 (Eqs. 17-22).
        avg = lambda fn, i: sum(P[i, x] * fn[x] for x in range(na))  # noqa: E731
        rhs = sum(p0[i] * avg(f, i) * avg(h, i) for i in range(n0))
        np.testing.assert_allclose(float(ag.inner_product(tk @ f, h, px)), rhs, rtol=1e-12)
        # ... and as operators: T_k = T_M^* T_M.
        np.testing.assert_allclose(tk, tm_adj @ tm, rtol=1e-12, atol=1e-14)
        # T_M^* is the adjoint: <T_M f, u>_pX0 = <f, T_M^* u>_pX.
        u = rng.normal(size=n0)
        np.testing.assert_allclose(float(ag.inner_product(tm @ f, u, p0)),
                                   float(ag.inner_product(f, tm_adj @ u, px)), rtol=1e-12)
        # Orthonormal coordinates: a plain transpose, and T_k-tilde = W-bar.
        tm_w, tk_w = map(np.asarray, ag.whitened_operators(g))
        np.testing.assert_allclose(tk_w, tm_w.T @ tm_w, rtol=1e-12, atol=1e-14)
        d = np.diag(px ** -0.5)
        np.testing.assert_allclose(tk_w, d @ np.asarray(g.joint) @ d, rtol=1e-12)
        # Eigenvalues of T_k in [0, 1], the top one 1 (constant eigenfunction).
        eig = np.linalg.eigvalsh(tk_w)
        assert eig.min() > -1e-12 and abs(eig.max() - 1) < 1e-12
        np.testing.assert_allclose(tk @ np.ones(na), np.ones(na), rtol=1e-12)


def test_augmentation_graph_validates_inputs():
    p0, P = random_graph_inputs(0)
    with pytest.raises(ValueError, match="p_natural"):
        ag.augmentation_graph(p0 * 2, P)
    with pytest.raises(ValueError, match="p_aug_given_natural"):
        ag.augmentation_graph(p0, P[:, :-1])
    with pytest.raises(ValueError, match="p_aug_given_natural"):
        ag.augmentation_graph(p0[:-1], P)
    padded = np.concatenate([P, np.zeros((P.shape[0], 1))], 1)
    with pytest.raises(ValueError, match="zero marginal"):
        ag.augmentation_graph(p0, padded)
    with pytest.raises(ValueError, match="num_nodes"):
        graphs.ring_augmentation(2, 0.5)


def test_theorem_b3_eigenvalue_map_symmetric_psd():
    with x64():
        n, t = 9, 0.7
        tm = np.asarray(graphs.ring_augmentation(n, t))
        lap = 2 * np.eye(n) - np.roll(np.eye(n), 1, 1) - np.roll(np.eye(n), -1, 1)
        np.testing.assert_allclose(tm, scipy.linalg.expm(-t * lap), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(tm, tm.T, atol=1e-14)
        np.testing.assert_allclose(tm.sum(1), 1, rtol=1e-12)
        # Uniform prior: p(x) is uniform, the whitened T_M is T_M itself, T_k = T_M^2.
        g = ag.augmentation_graph(np.full(n, 1 / n), tm)
        tm_w, tk_w = map(np.asarray, ag.whitened_operators(g))
        np.testing.assert_allclose(tm_w, tm, atol=1e-13)
        np.testing.assert_allclose(tk_w, tm @ tm, atol=1e-13)
        var, inv = np.asarray(ag.variance_operator(tm)), np.asarray(ag.invariance_operator(tm))
        lam, vecs = np.linalg.eigh(var)
        mapped = np.asarray(ag.invariance_eigenvalues(lam))
        for j in range(n):   # every B^VAR eigenvector is a B^INV eigenvector, (sqrt(l) - 1)^2
            np.testing.assert_allclose(inv @ vecs[:, j], mapped[j] * vecs[:, j], atol=1e-12)
        np.testing.assert_allclose(np.sort(mapped), np.linalg.eigvalsh(inv), atol=1e-12)
        assert lam.max() <= 1 + 1e-12   # eigenvalues of T_M^T T_M <= 1 ([45])


def test_theorem_b3_needs_psd_and_normal_t_m():
    with x64():
        n = 8
        # Random walk on a ring: symmetric, eigenvalues cos(2 pi k / n), some negative.
        walk = 0.5 * (np.roll(np.eye(n), 1, 1) + np.roll(np.eye(n), -1, 1))
        mu, vecs = np.linalg.eigh(walk)
        assert mu.min() < 0
        inv = np.asarray(ag.invariance_operator(walk))
        lam = mu ** 2
        naive = np.asarray(ag.invariance_eigenvalues(lam))
        signed = np.asarray(ag.invariance_eigenvalues(lam, signed_mu=mu))
        for j in range(n):
            np.testing.assert_allclose(inv @ vecs[:, j], signed[j] * vecs[:, j], atol=1e-12)
        neg = mu < -1e-9
        assert np.all(np.abs(naive[neg] - signed[neg]) > 0.5)   # (sqrt(l)-1)^2 wrong for mu < 0
        # Non-normal T_M: eigenvectors of T_M^T T_M are not eigenvectors of B^INV.
        rng = np.random.default_rng(3)
        tm = rng.dirichlet(np.ones(n), size=n)
        lam, vecs = np.linalg.eigh(np.asarray(ag.variance_operator(tm)))
        inv = np.asarray(ag.invariance_operator(tm))
        resid = max(np.linalg.norm(inv @ v - (v @ inv @ v) * v) for v in vecs.T)
        assert resid > 1e-2
    with pytest.raises(ValueError, match="t_m"):
        ag.invariance_operator(np.ones((2, 3)))
    with pytest.raises(ValueError, match="signed_mu"):
        ag.invariance_eigenvalues(np.ones(3), signed_mu=np.ones(2))


def test_eq42_decomposition_is_exact():
    with x64():
        p0, P = random_graph_inputs(4, n0=6, na=9)
        g = ag.augmentation_graph(p0, P)
        _, w_bar = ag.whitened_operators(g)
        rng = np.random.default_rng(5)
        for w in (np.asarray(w_bar), rng.normal(size=(9, 9))):   # any square W-bar
            for d in (1, 3, 9):
                z = rng.normal(size=(9, d))
                parts = ag.spectral_contrastive_decomposition(z, w)
                total = np.linalg.norm(z @ z.T - w, "fro") ** 2
                np.testing.assert_allclose(float(parts["total"]), total, rtol=1e-12)
                recon = parts["orthogonality"] + parts["invariance"] + parts["constant"]
                assert abs(float(recon) - total) <= 1e-10 * max(1.0, total)
                np.testing.assert_allclose(float(parts["constant"]),
                                           np.sum(w ** 2) - d, rtol=1e-12)
    with pytest.raises(ValueError, match="w_bar"):
        ag.spectral_contrastive_decomposition(np.ones((4, 2)), np.ones((3, 3)))


def test_spectral_contrastive_loss_and_invariance_term():
    with x64():
        p0, P = random_graph_inputs(6, n0=4, na=6)
        g = ag.augmentation_graph(p0, P)
        n0, na = P.shape
        f = np.random.default_rng(7).normal(size=(na, 3))
        # Eq. 41 by explicit sums over pairs: positives from w, negatives from p x p.
        w, px = np.asarray(g.joint), np.asarray(g.p_aug)
        lc = sum(-2 * w[x, y] * f[x] @ f[y] + px[x] * px[y] * (f[x] @ f[y]) ** 2
                 for x in range(na) for y in range(na))
        np.testing.assert_allclose(float(ag.spectral_contrastive_loss(f, g)), lc, rtol=1e-12)
        z = np.asarray(ag.embed(f, g))
        _, w_bar = ag.whitened_operators(g)
        parts = ag.spectral_contrastive_decomposition(z, w_bar)
        np.testing.assert_allclose(float(parts["total"] - jnp.sum(w_bar ** 2)), lc, rtol=1e-10)
        # Eq. 10 in population form, by loops; twice it is Eq. 42's invariance term (Eq. 44).
        inv = 0.0
        for i in range(n0):
            fbar = sum(P[i, x] * f[x] for x in range(na))
            inv += sum(p0[i] * P[i, x] * np.sum((f[x] - fbar) ** 2) for x in range(na))
        np.testing.assert_allclose(float(ag.multiview_invariance(f, g)), inv, rtol=1e-12)
        np.testing.assert_allclose(float(parts["invariance"]), 2 * inv, rtol=1e-10)
    with pytest.raises(ValueError, match="features"):
        ag.spectral_contrastive_loss(np.ones((5, 2)), g)
