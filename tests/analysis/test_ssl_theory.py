"""Theory checks of thesis Part III (neurojax.analysis.ssl_theory) against independent
computations: explicit loops over the finite graph, dense NumPy linear algebra,
scipy's expm and solve_ivp, and jax.grad of a loss written here."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from neurojax.analysis import ssl_theory as st
from tests._x64 import float64 as x64


def random_graph_inputs(seed, n0=5, na=7):
    rng = np.random.default_rng(seed)
    p0 = rng.dirichlet(np.ones(n0))
    P = rng.dirichlet(0.7 * np.ones(na), size=n0)
    return p0, P


# ---------------------------------------------------------------- finite graph

def test_augmentation_graph_matches_loops():
    with x64():
        p0, P = random_graph_inputs(0)
        g = st.augmentation_graph(p0, P)
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
        g = st.augmentation_graph(p0, P)
        tm, tm_adj, tk = (np.asarray(st.averaging_operator(g)),
                          np.asarray(st.averaging_adjoint(g)), np.asarray(st.kernel_operator(g)))
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
        np.testing.assert_allclose(float(st.inner_product(tk @ f, h, px)), rhs, rtol=1e-12)
        # ... and as operators: T_k = T_M^* T_M.
        np.testing.assert_allclose(tk, tm_adj @ tm, rtol=1e-12, atol=1e-14)
        # T_M^* is the adjoint: <T_M f, u>_pX0 = <f, T_M^* u>_pX.
        u = rng.normal(size=n0)
        np.testing.assert_allclose(float(st.inner_product(tm @ f, u, p0)),
                                   float(st.inner_product(f, tm_adj @ u, px)), rtol=1e-12)
        # Orthonormal coordinates: a plain transpose, and T_k-tilde = W-bar.
        tm_w, tk_w = map(np.asarray, st.whitened_operators(g))
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
        st.augmentation_graph(p0 * 2, P)
    with pytest.raises(ValueError, match="p_aug_given_natural"):
        st.augmentation_graph(p0, P[:, :-1])
    with pytest.raises(ValueError, match="p_aug_given_natural"):
        st.augmentation_graph(p0[:-1], P)
    padded = np.concatenate([P, np.zeros((P.shape[0], 1))], 1)
    with pytest.raises(ValueError, match="zero marginal"):
        st.augmentation_graph(p0, padded)
    with pytest.raises(ValueError, match="num_nodes"):
        st.ring_augmentation(2, 0.5)


def test_theorem_b3_eigenvalue_map_symmetric_psd():
    with x64():
        n, t = 9, 0.7
        tm = np.asarray(st.ring_augmentation(n, t))
        lap = 2 * np.eye(n) - np.roll(np.eye(n), 1, 1) - np.roll(np.eye(n), -1, 1)
        np.testing.assert_allclose(tm, scipy.linalg.expm(-t * lap), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(tm, tm.T, atol=1e-14)
        np.testing.assert_allclose(tm.sum(1), 1, rtol=1e-12)
        # Uniform prior: p(x) is uniform, the whitened T_M is T_M itself, T_k = T_M^2.
        g = st.augmentation_graph(np.full(n, 1 / n), tm)
        tm_w, tk_w = map(np.asarray, st.whitened_operators(g))
        np.testing.assert_allclose(tm_w, tm, atol=1e-13)
        np.testing.assert_allclose(tk_w, tm @ tm, atol=1e-13)
        var, inv = np.asarray(st.variance_operator(tm)), np.asarray(st.invariance_operator(tm))
        lam, vecs = np.linalg.eigh(var)
        mapped = np.asarray(st.invariance_eigenvalues(lam))
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
        inv = np.asarray(st.invariance_operator(walk))
        lam = mu ** 2
        naive = np.asarray(st.invariance_eigenvalues(lam))
        signed = np.asarray(st.invariance_eigenvalues(lam, signed_mu=mu))
        for j in range(n):
            np.testing.assert_allclose(inv @ vecs[:, j], signed[j] * vecs[:, j], atol=1e-12)
        neg = mu < -1e-9
        assert np.all(np.abs(naive[neg] - signed[neg]) > 0.5)   # (sqrt(l)-1)^2 wrong for mu < 0
        # Non-normal T_M: eigenvectors of T_M^T T_M are not eigenvectors of B^INV.
        rng = np.random.default_rng(3)
        tm = rng.dirichlet(np.ones(n), size=n)
        lam, vecs = np.linalg.eigh(np.asarray(st.variance_operator(tm)))
        inv = np.asarray(st.invariance_operator(tm))
        resid = max(np.linalg.norm(inv @ v - (v @ inv @ v) * v) for v in vecs.T)
        assert resid > 1e-2
    with pytest.raises(ValueError, match="t_m"):
        st.invariance_operator(np.ones((2, 3)))
    with pytest.raises(ValueError, match="signed_mu"):
        st.invariance_eigenvalues(np.ones(3), signed_mu=np.ones(2))


# ------------------------------------------------- spectral contrastive (App. C.2)

def test_eq42_decomposition_is_exact():
    with x64():
        p0, P = random_graph_inputs(4, n0=6, na=9)
        g = st.augmentation_graph(p0, P)
        _, w_bar = st.whitened_operators(g)
        rng = np.random.default_rng(5)
        for w in (np.asarray(w_bar), rng.normal(size=(9, 9))):   # any square W-bar
            for d in (1, 3, 9):
                z = rng.normal(size=(9, d))
                parts = st.spectral_contrastive_decomposition(z, w)
                total = np.linalg.norm(z @ z.T - w, "fro") ** 2
                np.testing.assert_allclose(float(parts["total"]), total, rtol=1e-12)
                recon = parts["orthogonality"] + parts["invariance"] + parts["constant"]
                assert abs(float(recon) - total) <= 1e-10 * max(1.0, total)
                np.testing.assert_allclose(float(parts["constant"]),
                                           np.sum(w ** 2) - d, rtol=1e-12)
    with pytest.raises(ValueError, match="w_bar"):
        st.spectral_contrastive_decomposition(np.ones((4, 2)), np.ones((3, 3)))


def test_spectral_contrastive_loss_and_invariance_term():
    with x64():
        p0, P = random_graph_inputs(6, n0=4, na=6)
        g = st.augmentation_graph(p0, P)
        n0, na = P.shape
        f = np.random.default_rng(7).normal(size=(na, 3))
        # Eq. 41 by explicit sums over pairs: positives from w, negatives from p x p.
        w, px = np.asarray(g.joint), np.asarray(g.p_aug)
        lc = sum(-2 * w[x, y] * f[x] @ f[y] + px[x] * px[y] * (f[x] @ f[y]) ** 2
                 for x in range(na) for y in range(na))
        np.testing.assert_allclose(float(st.spectral_contrastive_loss(f, g)), lc, rtol=1e-12)
        z = np.asarray(st.embed(f, g))
        _, w_bar = st.whitened_operators(g)
        parts = st.spectral_contrastive_decomposition(z, w_bar)
        np.testing.assert_allclose(float(parts["total"] - jnp.sum(w_bar ** 2)), lc, rtol=1e-10)
        # Eq. 10 in population form, by loops; twice it is Eq. 42's invariance term (Eq. 44).
        inv = 0.0
        for i in range(n0):
            fbar = sum(P[i, x] * f[x] for x in range(na))
            inv += sum(p0[i] * P[i, x] * np.sum((f[x] - fbar) ** 2) for x in range(na))
        np.testing.assert_allclose(float(st.multiview_invariance(f, g)), inv, rtol=1e-12)
        np.testing.assert_allclose(float(parts["invariance"]), 2 * inv, rtol=1e-10)
    with pytest.raises(ValueError, match="features"):
        st.spectral_contrastive_loss(np.ones((5, 2)), g)


# ------------------------------------------------------------ toy graph (App. C.3)

def test_toy_graph_closed_form_eigenpairs():
    rng = np.random.default_rng(8)
    with x64():
        for _ in range(5):
            params = rng.uniform(0, 1, size=4)
            w = np.asarray(st.toy_graph_adjacency(*params))
            eig, vecs = map(np.asarray, st.toy_graph_eigen(*params))
            np.testing.assert_allclose(w @ vecs, vecs * eig[None, :], atol=1e-12)
            np.testing.assert_allclose(vecs.T @ vecs, np.eye(4), atol=1e-12)
            np.testing.assert_allclose(np.sort(eig), np.linalg.eigvalsh(w), atol=1e-12)
        # The class eigenvector separates classes (1, 1, 2, 2), the pixel one groups (1, 2, 1, 2).
        _, vecs = st.toy_graph_eigen(0.4, 0.3, 0.2, 0.1)
        classes, groups = np.array(st.TOY_CLASSES), np.array(st.TOY_GROUPS)
        assert np.all(np.sign(vecs[:, 1]) == np.where(classes == 1, 1, -1))
        assert np.all(np.sign(vecs[:, 2]) == np.where(groups == 1, 1, -1))


def test_toy_population_graph_reconstruction():
    with x64():
        primed = (0.5, 0.25, 0.15, 0.1)
        a = np.asarray(st.toy_augmentation_matrix(*primed))
        # A(x_j | x_i) from Eq. 45's rule, by loops over classes and pixel groups.
        cls, grp = st.TOY_CLASSES, st.TOY_GROUPS
        for i in range(4):
            for j in range(4):
                want = (primed[0] if i == j else primed[1] if cls[i] == cls[j]
                        else primed[2] if grp[i] == grp[j] else primed[3])
                assert a[i, j] == pytest.approx(want)
        w, params = st.toy_population_graph(*primed)
        w_loop = np.array([[sum(0.25 * a[i, x] * a[i, y] for i in range(4)) for y in range(4)]
                           for x in range(4)])
        np.testing.assert_allclose(w, w_loop, rtol=1e-12)
        np.testing.assert_allclose(w, st.toy_graph_adjacency(*params), rtol=1e-12)
        np.testing.assert_allclose(st.toy_graph_parameters(w), params, rtol=1e-12)
        eig_a, _ = st.toy_graph_eigen(*primed)
        eig_w, _ = st.toy_graph_eigen(*params)
        np.testing.assert_allclose(eig_w, np.asarray(eig_a) ** 2 / 4, rtol=1e-12)
        assert float(np.sum(w)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rho_p"):
        st.toy_augmentation_matrix(0.5, 0.2, 0.2, 0.2)
    with pytest.raises(ValueError, match="mu_p"):
        st.toy_augmentation_matrix(0.5, -0.1, 0.3, 0.3)


def test_toy_view_graph_matches_pair_loops():
    rng = np.random.default_rng(9)
    views = rng.integers(0, 4, size=(4, 5))
    got = np.asarray(st.toy_view_graph(views, 4))
    want, want_plugin = np.zeros((4, 4)), np.zeros((4, 4))
    m = views.shape[1]
    for i in range(4):
        for j in range(m):
            for l in range(m):
                want_plugin[views[i, j], views[i, l]] += 1 / (4 * m * m)
                if j != l:
                    want[views[i, j], views[i, l]] += 1 / (4 * m * (m - 1))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(st.toy_view_graph(views, 4, "plugin"), want_plugin, rtol=1e-6)
    with pytest.raises(ValueError, match="num_views"):
        st.toy_empirical_graph(jax.random.PRNGKey(0), np.eye(4), 1)
    with pytest.raises(ValueError, match="estimator"):
        st.toy_view_graph(views, 4, "median")
    # Batched: leading axes are independent graphs; the projection is batched too.
    batch = np.stack([views, views[::-1]])
    np.testing.assert_allclose(st.toy_view_graph(batch, 4)[0], want, rtol=1e-6)
    params = np.asarray(st.toy_graph_parameters(st.toy_view_graph(batch, 4)))
    assert params.shape == (2, 4)
    pattern = np.array([[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]])
    np.testing.assert_allclose(params[0], [want[pattern == k].mean() for k in range(4)],
                               rtol=1e-6)


def numpy_views(rng, aug, m, trials):
    """views[g, i, j] ~ aug[i] by inverse CDF (NumPy, independent of the module's sampler)."""
    cdf = np.cumsum(aug, 1)
    u = rng.random((trials, aug.shape[0], m))
    return np.minimum((u[..., None] > cdf[None, :, None, :]).sum(-1), aug.shape[1] - 1)


def test_toy_empirical_graph_converges_in_m():
    primed = (0.5, 0.25, 0.15, 0.1)
    aug = np.asarray(st.toy_augmentation_matrix(*primed), dtype=np.float64)
    w, params = st.toy_population_graph(*primed)
    w = np.asarray(w, dtype=np.float64)
    eig_true = np.sort(np.asarray(st.toy_graph_eigen(*params)[0], dtype=np.float64))
    trials = 1000
    views = numpy_views(np.random.default_rng(17), aug, 128, trials)
    mses = {}
    for m in (2, 8, 32, 128):
        for estimator in ("pairs", "plugin"):
            ws = np.asarray(st.toy_view_graph(views[..., :m], 4, estimator), dtype=np.float64)
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
    aug = np.asarray(st.toy_augmentation_matrix(0.5, 0.25, 0.15, 0.1))
    # main's smoke test below draws the same shape: one compile for both.
    views = np.asarray(st.sample_views(jax.random.PRNGKey(0), aug, 16, 250))
    assert views.shape == (250, 4, 16) and views.min() >= 0 and views.max() <= 3
    freq = np.stack([(views == x).mean(axis=(0, 2)) for x in range(4)], 1)   # (instance, node)
    np.testing.assert_allclose(freq, aug, atol=5 * np.sqrt(0.25 / 4000))
    got = st.toy_empirical_graph(jax.random.PRNGKey(0), aug, 16, num_graphs=250)
    np.testing.assert_allclose(got, st.toy_view_graph(views, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="num_graphs"):
        st.sample_views(jax.random.PRNGKey(0), aug, 4, 0)


# --------------------------------------------------- linear BT dynamics (App. B)

def loss_here(w, t, beta):
    c = w @ t @ w.T
    off = c - jnp.diag(jnp.diag(c))
    return jnp.sum((jnp.diag(c) - 1) ** 2) + beta * jnp.sum(off ** 2)


grad_here = jax.jit(jax.grad(loss_here))


def random_flow_problem(seed, m=4, n=6):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    return rng.normal(size=(m, n)) * 0.5, (a + a.T) / 4


def test_eq34_is_negative_gradient_of_bt_loss():
    with x64():
        w, t = random_flow_problem(10)
        for beta in (0.0, 0.3, 1.0):
            loss_loop = sum(((w[i] @ t @ w[i]) - 1) ** 2 for i in range(4)) + beta * sum(
                (w[i] @ t @ w[j]) ** 2 for i in range(4) for j in range(4) if i != j)
            np.testing.assert_allclose(float(st.bt_linear_loss(w, t, beta)), loss_loop,
                                       rtol=1e-12)
            grad = grad_here(jnp.asarray(w), jnp.asarray(t), beta)
            np.testing.assert_allclose(st.bt_flow_rhs(w, t, beta, eta=0.7), -0.7 * grad,
                                       rtol=1e-11, atol=1e-12)


def test_eq36_eigenbasis_form():
    with x64():
        w, t = random_flow_problem(11)
        lam, v = np.linalg.eigh(t)
        rhs = np.asarray(st.bt_flow_rhs(w, t, 0.0, eta=0.5)) @ v
        np.testing.assert_allclose(st.bt_flow_rhs_eigenbasis(w @ v, lam, eta=0.5), rhs,
                                   rtol=1e-11, atol=1e-12)


def test_flow_validates_inputs():
    w, t = random_flow_problem(12)
    with pytest.raises(ValueError, match="symmetric"):
        st.bt_flow_rhs(w, t + np.triu(np.ones_like(t)), 0.1)
    with pytest.raises(ValueError, match="beta"):
        st.bt_linear_loss(w, t, 1.5)
    with pytest.raises(ValueError, match="t must be"):
        st.bt_flow_rhs(w, t[:3, :3], 0.1)
    with pytest.raises(ValueError, match="dt"):
        st.integrate_bt_flow(w, t, 0.1, dt=-0.1)
    with pytest.raises(ValueError, match="num_records"):
        st.integrate_bt_flow(w, t, 0.1, num_records=0)


def test_rk4_matches_scipy_solve_ivp():
    with x64():
        w, t = random_flow_problem(13, m=3, n=5)
        w = 0.3 * w
        beta = 0.2
        traj = np.asarray(st.integrate_bt_flow(w, t, beta, dt=0.005, num_records=4,
                                               steps_per_record=100))
        rhs = lambda _, y: np.asarray(st._bt_rhs(y.reshape(w.shape), t, beta, 1.0)).ravel()  # noqa
        sol = scipy.integrate.solve_ivp(rhs, (0, 2.0), w.ravel(), t_eval=[0.5, 1.0, 1.5, 2.0],
                                        method="DOP853", rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(traj[1:], sol.y.T.reshape(4, *w.shape), atol=1e-8)
        # Gradient flow: the loss never increases along the trajectory.
        losses = [float(loss_here(x, t, beta)) for x in traj]
        assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))


def test_augmentation_correlation():
    rng = np.random.default_rng(14)
    x, xp = rng.normal(size=(5, 40)), rng.normal(size=(5, 40))
    t = np.asarray(st.augmentation_correlation(x, xp))
    want = np.zeros((5, 5))
    for b in range(40):
        want += (np.outer(x[:, b], xp[:, b]) + np.outer(xp[:, b], x[:, b])) / 80
    np.testing.assert_allclose(t, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="x_prime"):
        st.augmentation_correlation(x, xp[:, :3])


def test_dynamics_metrics_on_constructed_weights():
    lam = np.array([1.0, 0.5, 0.25, 0.1, -0.3])
    v = np.linalg.qr(np.random.default_rng(15).normal(size=(5, 5)))[0]
    collapsed = np.outer([1.0, -1.0, 1.0], v[:, 0])          # every row along v_1
    m = st.dynamics_metrics(collapsed, v, lam)
    assert float(m["top1_alignment"]) == pytest.approx(1.0, abs=1e-5)
    assert float(m["effective_rank_c"]) == pytest.approx(1.0, abs=1e-3)
    assert float(m["top_d_balance"]) == pytest.approx(0.0, abs=1e-6)
    spanning = (v[:, :3] / np.sqrt(lam[:3])).T                # W T W^T = I on the top 3
    m = st.dynamics_metrics(spanning, v, lam)
    np.testing.assert_allclose(m["share"][:3], 1 / 3, rtol=1e-4)
    assert float(m["effective_rank_c"]) == pytest.approx(3.0, rel=1e-4)
    assert float(m["top_d_balance"]) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="top_d"):
        st.dynamics_metrics(spanning, v, lam, top_d=9)


@pytest.fixture(scope="module")
def flows():
    """Eq. 34 from one small initialisation, beta in {0, 0.01, 0.1, 1}, t in [0, 40]."""
    with x64():
        lam = np.array([1.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.2, -0.5])
        v = np.linalg.qr(np.random.default_rng(18).normal(size=(10, 10)))[0]
        t = (v * lam) @ v.T
        w0 = 1e-4 * np.random.default_rng(16).normal(size=(4, 10)) / np.sqrt(10)
        out = {beta: np.asarray(st.integrate_bt_flow(w0, t, beta, dt=0.02, num_records=20,
                                                     steps_per_record=100))
               for beta in (0.0, 0.01, 0.1, 1.0)}
        return lam, t, v, w0, out


def test_correlation_with_spectrum():
    lam = np.asarray(st.DEFAULT_SPECTRUM, np.float32)   # main's shapes: compiled once
    t, v = map(np.asarray, st.correlation_with_spectrum(lam, jax.random.PRNGKey(0)))
    np.testing.assert_allclose(v.T @ v, np.eye(len(lam)), atol=1e-5)
    np.testing.assert_allclose(t, t.T, atol=1e-6)
    np.testing.assert_allclose(t @ v, v * lam[None, :], atol=1e-5)


def test_beta0_small_init_collapses_onto_top_eigenvector(flows):
    lam, t, v, w0, out = flows
    traj = out[0.0]
    metrics = st.dynamics_metrics(traj[-1], v, lam)
    assert float(metrics["top1_alignment"]) > 0.99
    assert float(metrics["effective_rank_c"]) < 1.05
    assert float(metrics["effective_rank_w"]) < 1.5
    assert float(loss_here(traj[-1], t, 0.0)) < 1e-8      # every C_pp = 1: a minimum
    # Eq. 36-37 exactly for beta = 0: log(z_pi(t)/z_pi(0)) / lambda_i is the same for all i,
    # so lambda_i < 0 components shrink, lambda_i = 0 ones stay, positive ones grow.
    z0, z = w0 @ v, traj[5] @ v
    ratio = np.log(np.abs(z / z0))
    nonzero = np.abs(lam) > 0
    per_row = ratio[:, nonzero] / lam[None, nonzero]
    np.testing.assert_allclose(per_row, per_row[:, :1] * np.ones_like(per_row), rtol=1e-6)
    np.testing.assert_allclose(ratio[:, lam == 0], 0, atol=1e-9)
    assert np.all(ratio[:, lam < 0] < 0) and np.all(ratio[:, lam > 0] > 0)


def test_larger_beta_spans_top_d_eigenvectors(flows):
    lam, t, v, _, out = flows
    final = {beta: st.dynamics_metrics(traj[-1], v, lam) for beta, traj in out.items()}
    for beta in (0.1, 1.0):
        m = final[beta]
        assert float(m["effective_rank_c"]) > 3.95
        assert float(m["top_d_balance"]) > 0.9            # each top-4 eigenvector ~1/4 of tr C
        assert float(m["top_d_share"]) > 0.98
        assert float(m["top1_alignment"]) < 0.3
        assert float(loss_here(out[beta][-1], t, beta)) < 1e-3
    ranks = [float(final[b]["effective_rank_c"]) for b in (0.0, 0.01, 0.1)]
    assert ranks[0] < ranks[1] < ranks[2]                 # at a fixed horizon, rank grows with beta


def test_main_writes_png_and_json(tmp_path):
    results = st.main(["--outdir", str(tmp_path), "--betas", "0", "1", "--t_end", "2",
                       "--num_trials", "250", "--views", "2", "16"])
    data = json.loads((tmp_path / "ssl_theory.json").read_text())
    assert (tmp_path / "ssl_theory.png").stat().st_size > 1000
    assert [r["beta"] for r in data["dynamics"]["runs"]] == [0.0, 1.0]
    assert len(data["dynamics"]["times"]) == len(data["dynamics"]["runs"][0]["top1_alignment"])
    assert [r["m"] for r in data["toy"]["rows"]] == [2, 16]
    assert results["toy"]["params"] == pytest.approx(data["toy"]["params"])
