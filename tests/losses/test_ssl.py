"""SSL losses against NumPy re-implementations written here (explicit loops
where cheap), optax's NT-Xent, transcriptions of FastSSL's loss code, and the
identities behind the multi-view forms (Eq. 10 of the paper)."""
import itertools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.losses import (SSL_LOSSES, barlow_twins, barlow_twins_multiview,
                             eq10_invariance, simclr, spectral_contrastive, vicreg,
                             vicreg_multiview)

F64 = np.float64


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def correlated_views(m, n, d, seed=0, noise=0.5):
    """m noisy views of one signal, so C is far from 0 and from I."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    mix = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    views = [(base + noise * rng.standard_normal((n, d))) @ mix + rng.normal(size=d)
             for _ in range(m)]
    return np.stack(views).astype(np.float32)


# --------------------------------------------------------------------------
# NumPy references (float64)
# --------------------------------------------------------------------------

def np_standardize(z, ddof=0, eps=1e-5):
    """Per column: (z - mean) / sqrt(var + eps), loops over columns."""
    z = np.asarray(z, F64)
    out = np.empty_like(z)
    for i in range(z.shape[1]):
        col = z[:, i]
        mu = sum(col) / len(col)
        var = sum((c - mu) ** 2 for c in col) / (len(col) - ddof)
        out[:, i] = (col - mu) / np.sqrt(var + eps)
    return out


def np_bt_terms(a, b):
    n, d = a.shape
    c = np.array([[sum(a[k, i] * b[k, j] for k in range(n)) / n for j in range(d)]
                  for i in range(d)])
    inv = sum((1 - c[i, i]) ** 2 for i in range(d))
    red = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return inv, red


def np_barlow_twins(za, zb, lambd, ddof=0, eps=1e-5):
    inv, red = np_bt_terms(np_standardize(za, ddof, eps), np_standardize(zb, ddof, eps))
    return inv + lambd * red, inv, red


def np_vic_var(x, target, eps, ddof):
    n, d = x.shape
    out = 0.0
    for i in range(d):
        mu = x[:, i].mean()
        var = sum((x[k, i] - mu) ** 2 for k in range(n)) / (n - ddof)
        out += max(0.0, target - np.sqrt(var + eps))
    return out / d


def np_vic_cov(x, ddof):
    n, d = x.shape
    xc = x - x.mean(0)
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                total += (sum(xc[k, i] * xc[k, j] for k in range(n)) / (n - ddof)) ** 2
    return total / d


def np_vicreg(za, zb, inv=25.0, var=25.0, cov=1.0, target=1.0, eps=1e-4, ddof=1,
              var_reduce="mean"):
    za, zb = np.asarray(za, F64), np.asarray(zb, F64)
    s = np.mean((za - zb) ** 2)
    v = np_vic_var(za, target, eps, ddof) + np_vic_var(zb, target, eps, ddof)
    v = v / 2 if var_reduce == "mean" else v
    c = np_vic_cov(za, ddof) + np_vic_cov(zb, ddof)
    return inv * s + var * v + cov * c, s, v, c


def np_simclr(za, zb, tau):
    z = np.concatenate([za, zb]).astype(F64)
    n2 = len(z)
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for k in range(n2):
        pos = (k + n2 // 2) % n2
        denom = sum(np.exp(u[k] @ u[l] / tau) for l in range(n2) if l != k)
        losses.append(-u[k] @ u[pos] / tau + np.log(denom))
    return np.mean(losses)


def np_spectral(za, zb, max_norm=None):
    za, zb = np.asarray(za, F64), np.asarray(zb, F64)
    if max_norm is not None:
        clip = lambda x: np.array([r * min(1.0, max_norm / np.linalg.norm(r)) for r in x])
        za, zb = clip(za), clip(zb)
    n = len(za)
    inv = -2.0 / n * sum(za[b] @ zb[b] for b in range(n))
    orth = sum((za[b] @ zb[c]) ** 2 for b in range(n) for c in range(n) if b != c)
    return inv + orth / (n * (n - 1))


def np_eq10(z):
    """E_x sum_i sum_j (f_bar_i(x) - f_i(x_j))^2 from the definition."""
    m, n, d = z.shape
    total = 0.0
    for b in range(n):
        for i in range(d):
            fbar = sum(z[j, b, i] for j in range(m)) / m
            total += sum((fbar - z[j, b, i]) ** 2 for j in range(m))
    return total / n


def np_bt_mean_form(zs, lambd):
    """Eq. 10 Barlow Twins (mean form) by loops, on standardised views zs."""
    m, n, d = zs.shape
    zbar = np.array([[sum(zs[j, b, i] for j in range(m)) / m for i in range(d)]
                     for b in range(n)])
    inv = 0.0
    for j in range(m):
        for i in range(d):
            c_ji = sum(zs[j, b, i] * zbar[b, i] for b in range(n)) / n
            inv += (1 - c_ji) ** 2
    inv /= m
    red = sum((sum(zbar[b, i] * zbar[b, k] for b in range(n)) / n) ** 2
              for i in range(d) for k in range(d) if i != k)
    return inv + lambd * red, inv, red


def fastssl_bt(z, lambd):
    """Transcription of FastSSL's BarlowTwinLoss (HEAD): joint z.std(0)
    standardisation, m = 2 branch and m > 2 mean-embedding branch."""
    m, n, _ = z.shape
    stacked = np.concatenate(list(np.asarray(z, F64)))
    stacked = (stacked - stacked.mean(0)) / stacked.std(0, ddof=1)
    views = np.split(stacked, m)
    total = sum(views)
    offd = lambda c: np.sum(c ** 2) - np.sum(np.diag(c) ** 2)
    if m == 2:
        on = off = 0.0
        for i in range(m):
            c = views[i].T @ ((total - views[i]) / (m - 1)) / n
            on += np.sum((np.diag(c) - 1) ** 2)
            off += offd(c)
        return (on + lambd * off) / m
    zbar = total / m
    on = np.sum(((np.stack(views) * zbar).mean(1) - 1) ** 2)
    return on / m + lambd * offd(zbar.T @ zbar / n)


# --------------------------------------------------------------------------
# Two-view losses against NumPy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("ddof, eps", [(0, 1e-5), (1, 0.0)])
def test_barlow_twins_matches_numpy(ddof, eps):
    z = correlated_views(2, 6, 4, seed=1)
    loss, aux = jax.jit(lambda a, b: barlow_twins(a, b, 0.3, ddof=ddof, eps=eps))(z[0], z[1])
    expected, inv, red = np_barlow_twins(z[0], z[1], 0.3, ddof, eps)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose([aux["invariance"], aux["redundancy"]], [inv, red], rtol=1e-5)


def test_barlow_twins_joint_and_none_normalization():
    z = correlated_views(2, 6, 4, seed=2)
    joint_loss, none_loss = jax.jit(lambda z: [
        barlow_twins(z[0], z[1], 0.2, normalization=k, ddof=1, eps=0.0)[0]
        for k in ("joint", "none")])(z)
    joint = np_standardize(np.concatenate(list(z)), ddof=1, eps=0.0)
    inv, red = np_bt_terms(joint[:6], joint[6:])
    np.testing.assert_allclose(joint_loss, inv + 0.2 * red, rtol=1e-5)
    # 'none': the inputs are used as given
    inv, red = np_bt_terms(np.asarray(z[0], F64), np.asarray(z[1], F64))
    np.testing.assert_allclose(none_loss, inv + 0.2 * red, rtol=1e-5)


@pytest.mark.parametrize("var_reduce, ddof", [("mean", 1), ("sum", 0)])
def test_vicreg_matches_numpy(var_reduce, ddof):
    z = correlated_views(2, 6, 4, seed=3, noise=0.3) * 0.4  # some std below 1
    kw = dict(inv=3.0, var=5.0, cov=2.0, eps=1e-4, ddof=ddof, var_reduce=var_reduce)
    loss, aux = jax.jit(lambda a, b: vicreg(a, b, **kw))(z[0], z[1])
    expected, s, v, c = np_vicreg(z[0], z[1], 3.0, 5.0, 2.0, 1.0, 1e-4, ddof, var_reduce)
    assert v > 0  # the hinge is active, so the test exercises it
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose([aux["invariance"], aux["variance"], aux["covariance"]],
                               [s, v, c], rtol=1e-5)


def test_vicreg_official_code_transcription():
    """facebookresearch/vicreg main_vicreg.py, step by step (defaults)."""
    x, y = (np.asarray(v, F64) * 0.5 for v in correlated_views(2, 6, 4, seed=4))
    n, d = x.shape
    repr_loss = np.mean((x - y) ** 2)
    x, y = x - x.mean(0), y - y.mean(0)
    std_x, std_y = np.sqrt(x.var(0, ddof=1) + 1e-4), np.sqrt(y.var(0, ddof=1) + 1e-4)
    std_loss = np.mean(np.maximum(0, 1 - std_x)) / 2 + np.mean(np.maximum(0, 1 - std_y)) / 2
    offd = lambda c: np.sum(c ** 2) - np.sum(np.diag(c) ** 2)
    cov_loss = offd(x.T @ x / (n - 1)) / d + offd(y.T @ y / (n - 1)) / d
    expected = 25 * repr_loss + 25 * std_loss + cov_loss
    z = correlated_views(2, 6, 4, seed=4) * 0.5
    np.testing.assert_allclose(jax.jit(vicreg)(z[0], z[1])[0], expected, rtol=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_simclr_matches_numpy_loop_and_optax(tau):
    za, zb = randn(6, 4, seed=5), randn(6, 4, seed=6)
    loss, aux = jax.jit(simclr)(za, zb, tau)
    np.testing.assert_allclose(loss, np_simclr(za, zb, tau), rtol=1e-5)
    labels = np.concatenate([np.arange(6), np.arange(6)])
    ref = jax.jit(optax.losses.ntxent)(jnp.concatenate([za, zb]), labels, tau)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    np.testing.assert_allclose(aux["invariance"] + aux["uniformity"], loss, rtol=1e-6)


@pytest.mark.parametrize("max_norm", [None, 1.0])
def test_spectral_contrastive_matches_numpy(max_norm):
    za, zb = randn(6, 4, seed=7), randn(6, 4, seed=8)
    loss, _ = jax.jit(lambda a, b: spectral_contrastive(a, b, max_norm=max_norm))(za, zb)
    np.testing.assert_allclose(loss, np_spectral(za, zb, max_norm), rtol=1e-5)


def test_spectral_contrastive_terms_from_the_gram_matrix():
    """The same terms from P = Z_a Z_b^T: -2 tr(P)/n and the off-diagonal
    of P squared over the n(n-1) negative pairs."""
    za, zb = randn(6, 4, seed=9), randn(6, 4, seed=10)
    _, aux = jax.jit(spectral_contrastive)(za, zb)
    p = za.astype(F64) @ zb.T.astype(F64)
    all_pairs = np.sum(p ** 2) - np.sum(np.diag(p) ** 2)
    np.testing.assert_allclose(aux["orthogonality"], all_pairs / 30, rtol=1e-5)
    np.testing.assert_allclose(aux["invariance"], -2 * np.trace(p) / 6, rtol=1e-5)


# --------------------------------------------------------------------------
# Multi-view forms (Eq. 10)
# --------------------------------------------------------------------------

def test_multiview_bt_reduces_to_two_view_at_m2():
    """Default form ('auto', the paper's code): at m = 2 the multi-view loss
    is the two-view loss exactly, for every normalisation."""
    z = correlated_views(2, 6, 4, seed=11)
    settings = (dict(), dict(normalization="joint", ddof=1, eps=0.0),
                dict(normalization="none"))

    @jax.jit
    def both(z):
        return [(barlow_twins_multiview(z, 0.1, **kw),
                 barlow_twins(z[0], z[1], 0.1, **kw),
                 [barlow_twins_multiview(z, 0.1, form=f, **kw)[0]
                  for f in ("leave_one_out", "all_pairs")]) for kw in settings]

    for multi, two, others in both(z):
        chex.assert_trees_all_close(multi, two, rtol=1e-6)
        chex.assert_trees_all_close(others, [two[0], two[0]], rtol=1e-6)


def test_multiview_bt_mean_form_at_m2_is_quarter_invariance():
    """The Eq. 10 (mean) form at m = 2, exactly: with unit-variance views
    c_ji = (1 + C_ii)/2, so its invariance is 1/4 of the two-view one, and
    its redundancy is the off-diagonal of the autocorrelation of the mean
    (z_1 + z_2)/2 rather than of the cross-correlation."""
    z = correlated_views(2, 6, 4, seed=12)
    kw = dict(ddof=0, eps=0.0)
    (_, mean_aux), (_, two_aux) = jax.jit(lambda z: (
        barlow_twins_multiview(z, 0.1, form="mean", **kw),
        barlow_twins(z[0], z[1], 0.1, **kw)))(z)
    np.testing.assert_allclose(mean_aux["invariance"], two_aux["invariance"] / 4, rtol=1e-5)
    zs = np.stack([np_standardize(v, 0, 0.0) for v in z])
    zbar = zs.mean(0)
    auto = zbar.T @ zbar / 6
    np.testing.assert_allclose(mean_aux["redundancy"],
                               np.sum(auto ** 2) - np.sum(np.diag(auto) ** 2), rtol=1e-5)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_multiview_bt_mean_form_brute_force(m):
    z = correlated_views(m, 6, 3, seed=13 + m)
    loss, aux = jax.jit(lambda z: barlow_twins_multiview(z, 0.2, form="mean"))(z)
    zs = np.stack([np_standardize(v) for v in z])
    expected, inv, red = np_bt_mean_form(zs, 0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose([aux["invariance"], aux["redundancy"]], [inv, red], rtol=1e-5)


@pytest.mark.parametrize("m", [3, 4])
def test_multiview_bt_mean_invariance_is_eq10(m):
    """With unit-variance views, sum_j (1 - c_ji) summed over i is Eq. 10's
    invariance E_x sum_i sum_j (f_bar_i - f_i(x_j))^2, computed by loops."""
    z = correlated_views(m, 6, 4, seed=20 + m)
    zs = np.stack([np_standardize(v, 0, 0.0) for v in z])
    zbar = zs.mean(0)
    c = (zs * zbar).mean(1)
    np.testing.assert_allclose(np.sum(1 - c), np_eq10(zs), rtol=1e-9)
    _, aux = jax.jit(lambda z: barlow_twins_multiview(z, 0.1, form="mean", eps=0.0))(z)
    np.testing.assert_allclose(aux["invariance"], np.sum((1 - c) ** 2) / m, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(eq10_invariance)(zs.astype(np.float32)), np_eq10(zs),
                               rtol=1e-5)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_fastssl_transcription(m):
    """The default form with FastSSL's normalisation is FastSSL's loss."""
    z = correlated_views(m, 6, 4, seed=30 + m)
    ours, _ = jax.jit(lambda z: barlow_twins_multiview(
        z, 0.05, normalization="joint", ddof=1, eps=0.0))(z)
    np.testing.assert_allclose(ours, fastssl_bt(z, 0.05), rtol=1e-5)


@pytest.mark.parametrize("m", [3, 4])
def test_multiview_bt_all_pairs_and_loo_against_loops(m):
    z = correlated_views(m, 6, 4, seed=40 + m)
    all_pairs, loo_loss = jax.jit(lambda z: [barlow_twins_multiview(z, 0.3, form=f)[0]
                                             for f in ("all_pairs", "leave_one_out")])(z)
    pairs = [np_barlow_twins(z[j], z[k], 0.3)[0] for j, k in itertools.combinations(range(m), 2)]
    np.testing.assert_allclose(all_pairs, np.mean(pairs), rtol=1e-5)
    zs = np.stack([np_standardize(v) for v in z])
    loo = []
    for j in range(m):
        others = sum(zs[k] for k in range(m) if k != j) / (m - 1)
        inv, red = np_bt_terms(zs[j], others)
        loo.append(inv + 0.3 * red)
    np.testing.assert_allclose(loo_loss, np.mean(loo), rtol=1e-5)


@pytest.mark.parametrize("m", [3, 4])
def test_vicreg_multiview_forms_against_loops(m):
    z = correlated_views(m, 6, 4, seed=50 + m, noise=0.4) * 0.6
    kw = dict(inv=2.0, var=3.0, cov=0.5)
    ours = jax.jit(lambda z: {f: vicreg_multiview(z, form=f, **kw)
                              for f in ("all_pairs", "leave_one_out", "mean")})(z)
    pairs = [np_vicreg(z[j], z[k], 2.0, 3.0, 0.5) for j, k in itertools.combinations(range(m), 2)]
    np.testing.assert_allclose(ours["all_pairs"][0], np.mean([p[0] for p in pairs]), rtol=1e-5)
    loo = [np_vicreg(z[j], (z.sum(0) - z[j]) / (m - 1), 2.0, 3.0, 0.5)[0] for j in range(m)]
    np.testing.assert_allclose(ours["leave_one_out"][0], np.mean(loo), rtol=1e-5)
    # mean form: O(m) invariance == all-pairs invariance (ordered pairs), and
    # == 2 / (d (m - 1)) * Eq. 10; variance/covariance on the mean embedding
    loss, aux = ours["mean"]
    ordered = [np.mean((z[j].astype(F64) - z[k]) ** 2)
               for j in range(m) for k in range(m) if j != k]
    np.testing.assert_allclose(aux["invariance"], np.mean(ordered), rtol=1e-5)
    np.testing.assert_allclose(aux["invariance"], 2 / (4 * (m - 1)) * np_eq10(z.astype(F64)),
                               rtol=1e-5)
    np.testing.assert_allclose(aux["invariance"], np.mean([p[1] for p in pairs]), rtol=1e-5)
    zbar = z.astype(F64).mean(0)
    np.testing.assert_allclose(aux["variance"], np_vic_var(zbar, 1.0, 1e-4, 1), rtol=1e-5)
    np.testing.assert_allclose(aux["covariance"], 2 * np_vic_cov(zbar, 1), rtol=1e-5)


def test_vicreg_multiview_reduces_to_two_view_at_m2():
    z = correlated_views(2, 6, 4, seed=60) * 0.5
    two, auto, pairs, mean = jax.jit(lambda z: (
        vicreg(z[0], z[1]), vicreg_multiview(z), vicreg_multiview(z, form="all_pairs"),
        vicreg_multiview(z, form="mean")))(z)
    chex.assert_trees_all_close(auto, two, rtol=1e-6)
    chex.assert_trees_all_close(pairs, two, rtol=1e-6)
    np.testing.assert_allclose(mean[1]["invariance"], two[1]["invariance"], rtol=1e-6)


def test_identical_views_give_the_two_view_loss():
    v = correlated_views(1, 6, 4, seed=61)[0]
    forms = ("mean", "leave_one_out", "all_pairs")
    multi_bt, two_bt, multi_vic, two_vic = jax.jit(lambda v: (
        [barlow_twins_multiview(jnp.stack([v, v, v]), 0.2, form=f) for f in forms],
        barlow_twins(v, v, 0.2),
        [vicreg_multiview(jnp.stack([v, v, v]), form=f) for f in forms], vicreg(v, v)))(v)
    chex.assert_trees_all_close(multi_bt, [two_bt] * 3, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(multi_vic, [two_vic] * 3, rtol=1e-5, atol=1e-6)


@hypothesis.settings(max_examples=5, deadline=None, derandomize=True)
@hypothesis.given(m=st.integers(2, 4), n=st.integers(2, 5), d=st.integers(1, 4),
                  seed=st.integers(0, 2 ** 16))
def test_shapes_property(m, n, d, seed):
    """Any (m, n, d): mean form matches loops; all-pairs matches the pair loop."""
    z = np.random.default_rng(seed).standard_normal((m, n, d)).astype(np.float32)
    zs = np.stack([np_standardize(v) for v in z])
    mean, pairs_loss, eq10 = jax.jit(lambda z: (
        barlow_twins_multiview(z, 0.1, form="mean")[0],
        barlow_twins_multiview(z, 0.1, form="all_pairs")[0], eq10_invariance(z)))(z)
    np.testing.assert_allclose(mean, np_bt_mean_form(zs, 0.1)[0], rtol=1e-4, atol=1e-5)
    pairs = [np_barlow_twins(z[j], z[k], 0.1)[0] for j, k in itertools.combinations(range(m), 2)]
    np.testing.assert_allclose(pairs_loss, np.mean(pairs), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(eq10, np_eq10(z.astype(F64)), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------
# Contract: jit, vmap, dtypes, gradients, aux weights
# --------------------------------------------------------------------------

# name -> (fn(z, hyper) with z (2, n, d) or (m, n, d), hyper value, aux weights)
CONTRACT = {
    "barlow_twins": (lambda z, h: barlow_twins(z[0], z[1], h), 0.1,
                     lambda h: {"invariance": 1.0, "redundancy": h}),
    "vicreg": (lambda z, h: vicreg(z[0], z[1], inv=h, var=7.0, cov=0.5), 3.0,
               lambda h: {"invariance": h, "variance": 7.0, "covariance": 0.5}),
    "simclr": (lambda z, h: simclr(z[0], z[1], h), 0.5,
               lambda h: {"invariance": 1.0, "uniformity": 1.0}),
    "spectral_contrastive": (lambda z, h: spectral_contrastive(z[0], z[1], max_norm=h), 2.0,
                             lambda h: {"invariance": 1.0, "orthogonality": 1.0}),
    "barlow_twins_multiview": (lambda z, h: barlow_twins_multiview(z, h), 0.1,
                               lambda h: {"invariance": 1.0, "redundancy": h}),
    "vicreg_multiview": (lambda z, h: vicreg_multiview(z, inv=h, var=7.0, cov=0.5), 3.0,
                         lambda h: {"invariance": h, "variance": 7.0, "covariance": 0.5}),
}
MULTI = ("barlow_twins_multiview", "vicreg_multiview")


def _inputs(name, seed=0):
    m = 3 if name in MULTI else 2
    return correlated_views(m, 6, 4, seed=seed) * 0.7


def test_contract_covers_registry():
    assert set(CONTRACT) == set(SSL_LOSSES)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract(name):
    """Every loss: jit, vmap over a hyperparameter axis and over a leading
    config axis, finite gradients, bfloat16 inputs, aux weights. (Without jit:
    ``test_eager_equals_jit``; eager dispatch compiles op by op, so once.)"""
    fn, hyper, weights = CONTRACT[name]
    z = _inputs(name)
    jfn = jax.jit(fn)                       # hyper is traced: one compile
    eager, aux = jfn(z, hyper)
    chex.assert_shape(eager, ())
    # aux terms sum to the loss with their weights
    assert set(aux) == set(weights(hyper))
    total = sum(w * aux[k] for k, w in weights(hyper).items())
    np.testing.assert_allclose(eager, total, rtol=1e-5)

    # vmap over a leading config axis (stacked input sets) of vmap over a
    # hyperparameter axis (inputs shared): one compile, both batching patterns
    hs = [hyper, 2 * hyper, 0.5 * hyper]    # python floats: no recompiles
    zs = np.stack([z, _inputs(name, seed=1)])
    grid = jax.vmap(jax.vmap(lambda z, h: fn(z, h)[0], in_axes=(None, 0)), in_axes=(0, None))
    batched = jax.jit(grid)(zs, np.array(hs, np.float32))
    chex.assert_shape(batched, (2, 3))
    np.testing.assert_allclose(batched, [[jfn(zc, h)[0] for h in hs] for zc in zs], rtol=1e-5)

    # gradients are finite and nonzero
    grad = jax.jit(jax.grad(lambda z: fn(z, hyper)[0]))(z)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)

    # bfloat16 inputs: computed in float32, close to the float32 loss
    z16 = jnp.asarray(z, jnp.bfloat16)
    low, _ = jfn(z16, hyper)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, eager, rtol=3e-2, atol=3e-2)
    np.testing.assert_allclose(low, jfn(np.asarray(z16, np.float32), hyper)[0], rtol=1e-5)


def test_eager_equals_jit():
    """Without jit (op-by-op dispatch, slow to compile, so one loss)."""
    for name in ("barlow_twins",):
        fn, hyper, _ = CONTRACT[name]
        z = _inputs(name)
        chex.assert_trees_all_close(fn(z, hyper), jax.jit(fn)(z, hyper), rtol=1e-5)


def test_float64_inputs_stay_float64():
    with jax.enable_x64(True):
        z = correlated_views(2, 6, 4, seed=70).astype(np.float64)
        loss, _ = jax.jit(barlow_twins)(z[0], z[1], 0.1)
        assert loss.dtype == jnp.float64
        np.testing.assert_allclose(loss, np_barlow_twins(z[0], z[1], 0.1)[0], rtol=1e-10)


# --------------------------------------------------------------------------
# Errors name the argument
# --------------------------------------------------------------------------

Z2 = randn(4, 3)


@pytest.mark.parametrize("call, match", [
    (lambda: barlow_twins(Z2, randn(4, 2), 0.1), "z_a and z_b shapes differ"),
    (lambda: barlow_twins(Z2[None], Z2[None], 0.1), "z_a must have shape"),
    (lambda: barlow_twins(Z2[:1], Z2[:1], 0.1), "batch size n"),
    (lambda: barlow_twins(Z2, Z2, -1.0), "lambd"),
    (lambda: barlow_twins(Z2, Z2, float("nan")), "lambd"),
    (lambda: barlow_twins(Z2, Z2, 0.1, normalization="batch"), "normalization"),
    (lambda: barlow_twins(Z2, Z2, 0.1, ddof=2), "ddof"),
    (lambda: barlow_twins(Z2, Z2, 0.1, eps=-1e-3), "eps"),
    (lambda: barlow_twins(Z2.astype(np.int32), Z2.astype(np.int32), 0.1), "floating"),
    (lambda: vicreg(Z2, Z2, inv=-1.0), "inv"),
    (lambda: vicreg(Z2, Z2, var="a"), "var"),
    (lambda: vicreg(Z2, Z2, cov=-2), "cov"),
    (lambda: vicreg(Z2, Z2, std_target=0.0), "std_target"),
    (lambda: vicreg(Z2, Z2, var_reduce="max"), "var_reduce"),
    (lambda: simclr(Z2, Z2, 0.0), "temperature"),
    (lambda: simclr(Z2, Z2, -0.5), "temperature"),
    (lambda: simclr(Z2, Z2[:3], 0.5), "z_a and z_b shapes differ"),
    (lambda: spectral_contrastive(Z2, Z2, max_norm=0.0), "max_norm"),
    (lambda: barlow_twins_multiview(Z2[None], 0.1), r"number of views m"),
    (lambda: barlow_twins_multiview(Z2, 0.1), r"z must have shape \(m, n, d\)"),
    (lambda: barlow_twins_multiview(np.stack([Z2, Z2]), 0.1, form="pairs"), "form"),
    (lambda: vicreg_multiview(Z2[None]), "number of views m"),
    (lambda: vicreg_multiview(np.stack([Z2[:1], Z2[:1]])), "batch size n"),
    (lambda: eq10_invariance(Z2[None]), "number of views m"),
])
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_validation_happens_at_trace_time_under_jit():
    with pytest.raises(ValueError, match="temperature"):
        jax.jit(lambda a, b: simclr(a, b, -1.0))(Z2, Z2)
    with pytest.raises(ValueError, match="shapes differ"):
        jax.jit(lambda a, b: barlow_twins(a, b, 0.1))(Z2, randn(5, 3))
