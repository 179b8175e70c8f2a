"""Tests of the alpha-ReQ analyses (Fig. 2, Theorem 2.1, Algorithm 1).

Each formula is checked against an independent computation written here:
GD iterates against the SVD closed form of Lemma A.1 in float64, the planted
alpha against ``neurojax.metrics.alpha``, steps-to-threshold against a GD
loop, and Algorithm 1 against a hand-worked pool and a brute-force
reimplementation.
"""

import json
import math

import chex
import jax
import numpy as np
import pytest

from neurojax.analysis import alpha_req as ar
from neurojax.data.synthetic import power_law_gaussian
from neurojax.metrics.spectrum import alpha as fit_alpha
from tests._x64 import float64


def svd_iterate(x, y, eta, k):
    """Lemma A.1 through the SVD X = U S V^T: w_k = V diag((1 - (1 - eta s^2)^k) / s) U^T y."""
    u, s, vt = np.linalg.svd(np.asarray(x, np.float64), full_matrices=False)
    factor = (1.0 - (1.0 - eta * s ** 2) ** k) / s
    return vt.T @ (factor[:, None] * (u.T @ np.asarray(y, np.float64)))


# --------------------------------------------------------------------------
# Gradient descent, its closed form, the task
# --------------------------------------------------------------------------


def test_gd_iterates_match_closed_form_in_eigenbasis():
    with float64():
        # Shapes shared with the other float64 tests (compilation dominates).
        task = ar.power_law_regression_task(jax.random.PRNGKey(0), alpha=1.0, num_train=16,
                                            num_test=1, dim=64)
        assert task["x_train"].dtype == np.float64
        x = np.asarray(task["x_train"])
        y = np.concatenate([task["y_train"], np.random.default_rng(0).standard_normal((16, 1))],
                           axis=1)
        eta = ar.learning_rate(x, tau=0.5)
        np.testing.assert_allclose(eta, 0.5 / np.linalg.svd(x, compute_uv=False)[0] ** 2,
                                   rtol=1e-12)
        run = ar.gradient_descent(x, y, learning_rate=eta, num_steps=40, record_every=4)
        chex.assert_shape(run["weights"], (11, 64, 2))
        np.testing.assert_array_equal(run["steps"], np.arange(0, 41, 4))
        expected = np.stack([svd_iterate(x, y, eta, k) for k in run["steps"]])
        np.testing.assert_allclose(np.asarray(run["weights"]), expected, rtol=1e-10, atol=1e-12)
        # The comparison resolves one step: iterate k is not iterate k + 1.
        assert np.abs(expected[-1] - svd_iterate(x, y, eta, 41)).max() > 1e-6
        np.testing.assert_allclose(np.asarray(run["train_mse"]),
                                   np.mean((x @ expected - y) ** 2, axis=1), rtol=1e-10)
        # The library's eigenbasis closed form, finite k and the k -> inf limit
        # (minimum-norm interpolator, pinv(X) y).
        closed = ar.closed_form_iterate(x, y, learning_rate=eta, steps=[7, np.inf])
        np.testing.assert_allclose(closed[0], svd_iterate(x, y, eta, 7), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(closed[1], np.linalg.pinv(x) @ y, rtol=1e-8, atol=1e-10)
    assert not jax.config.jax_enable_x64          # restored


def test_task_statistics_and_normalisation():
    task = ar.power_law_regression_task(jax.random.PRNGKey(1), alpha=1.5, num_train=8,
                                        num_test=32, dim=16, noise_stds=(0.0, 0.5))
    chex.assert_shape([task["x_train"], task["y_train"], task["x_test"], task["y_test"]],
                      [(8, 16), (8, 2), (32, 16), (32, 2)])
    lam = np.asarray(task["eigenvalues"], np.float64)
    np.testing.assert_allclose(lam.sum(), 1.0, rtol=1e-5)          # 'trace': tr Sigma = 1
    np.testing.assert_allclose(lam / lam[0], np.arange(1, 17.) ** -1.5, rtol=1e-5)
    # Noise-free column is exactly the teacher; the other adds 0.5 * the same draw.
    x, th = np.asarray(task["x_train"]), np.asarray(task["theta"])
    np.testing.assert_allclose(task["y_train"][:, 0], x @ th, rtol=1e-4, atol=1e-5)
    noise = np.asarray(task["y_train"][:, 1]) - x @ th
    assert 0 < np.abs(noise).max() < 5 * 0.5
    assert ar.power_law_scale(16, 1.5, "top") == 1.0
    np.testing.assert_allclose(1 / ar.power_law_scale(16, 1.5), np.sum(np.arange(1, 17.) ** -1.5))


@pytest.mark.parametrize("planted", [0.5, 1.0, 2.0])
def test_planted_alpha_recovered(planted):
    task = ar.power_law_regression_task(jax.random.PRNGKey(2), alpha=planted, num_train=4000,
                                        num_test=1, dim=256)
    fit = fit_alpha(task["x_train"])
    assert abs(float(fit.alpha) - planted) < 0.05, (planted, float(fit.alpha))
    assert float(fit.r2) > 0.95


# --------------------------------------------------------------------------
# Theorem 2.1
# --------------------------------------------------------------------------


def test_steps_to_threshold_monotone_in_alpha_and_equal_to_gd():
    alphas = (0.5, 1.0, 1.5, 2.0)
    with float64():
        closed, gd = [], []
        for a in alphas:
            task = ar.power_law_regression_task(jax.random.PRNGKey(3), alpha=a, num_train=16,
                                                num_test=1, dim=64)
            closed.append(ar.steps_to_threshold(task["x_train"], task["y_train"],
                                                tolerance=1e-4))
            gd.append(ar.gd_steps_to_threshold(task["x_train"], task["y_train"],
                                               tolerance=1e-4, max_steps=200_000))
    assert closed == gd, (closed, gd)
    assert all(b > a for a, b in zip(closed, closed[1:])), closed


def test_steps_to_threshold_matches_bruteforce_loss_curve():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 25)) * np.arange(1, 26.) ** -0.75
    y = rng.standard_normal(10)
    eta = ar.learning_rate(x, tau=0.9)
    # Independent: iterate the residual r <- (I - eta X X^T) r in numpy.
    r, k, k_star = y.copy(), 0, None
    while k_star is None:
        if r @ r <= 1e-3 * (y @ y):
            k_star = k
        r = r - eta * (x @ (x.T @ r))
        k += 1
    assert ar.steps_to_threshold(x, y, tau=0.9, tolerance=1e-3) == k_star
    assert ar.steps_to_threshold(x, y, tolerance=1.0) == 0


def test_convergence_time_exponent_close_to_alpha():
    # float32 data (shapes shared with the CLI test); the count itself is float64.
    res = ar.convergence_time_sweep(jax.random.PRNGKey(4), alphas=(1.0, 2.0),
                                    num_trains=(16, 32, 64), num_seeds=2, progress=False)
    chex.assert_shape([res["steps"], res["condition"]], [(2, 3, 2)] * 2)
    assert np.all(np.diff(res["steps"], axis=0) > 0)          # more steps at larger alpha
    assert np.all(np.diff(np.log(res["steps"]).mean(-1), axis=1) > 0)   # and larger N
    np.testing.assert_allclose(res["steps_exponent"], res["theory_exponent"], atol=0.3)
    # The condition number mu_1 / mu_N (the proof's bound) is noisier at these sizes.
    assert res["condition_exponent"][1] > res["condition_exponent"][0] > 0.5


# --------------------------------------------------------------------------
# Algorithm 1
# --------------------------------------------------------------------------


def make_pool(alphas, perfs):
    feats = [np.full((2, 2), i, np.float32) for i in range(len(alphas))]
    table = {id(f): p for f, p in zip(feats, perfs)}
    calls = []

    def probe(f, labels):
        calls.append(int(f[0, 0]))
        assert labels is None
        return table[id(f)]

    return feats, probe, calls


def test_select_models_hand_worked_bracket():
    #          A     B     C     D     E     F
    alphas = [0.5, 2.0, 0.3, 1.0, 2.5, 1.5]
    perfs = [0.60, 0.70, 0.95, 0.90, 0.99, 0.80]
    feats, probe, calls = make_pool(alphas, perfs)
    r = ar.select_models(feats, None, num_parallel=2, top_k=2, probe_fn=probe,
                         alphas=alphas, window_rule="bracket")
    # Step 1 probes A, B; B beats A from the right -> alpha_min = 0.5.
    # Step 2: C (0.3) is outside [0.5, inf) and is skipped although it is the
    # best model (alpha is necessary, not sufficient); D is probed, D beats B
    # from the left -> alpha_max = 2.0.
    # Step 3: E (2.5) skipped; F probed; D beats F from the left -> alpha_max = 1.5.
    assert calls == [0, 1, 3, 5]
    np.testing.assert_array_equal(r["windows"], [[0.5, np.inf], [0.5, 2.0], [0.5, 1.5]])
    np.testing.assert_array_equal(r["probes_per_step"], [2, 1, 1])
    assert r["selected"] == [3, 5] and r["best_index"] == 3
    assert r["best_performance"] == 0.90 and r["num_probes"] == 4
    np.testing.assert_array_equal(r["probed"], [True, True, False, True, False, True])


def test_select_models_hand_worked_fastssl():
    #          A     B     C     D     E     F     G     H
    alphas = [0.5, 1.0, 1.5, 3.0, 0.9, 1.2, 1.5, 2.0]
    perfs = [0.60, 0.90, 0.85, 0.50, 0.95, 0.88, 0.70, 0.99]
    feats, probe, calls = make_pool(alphas, perfs)
    r = ar.select_models(feats, None, num_parallel=4, top_k=2, probe_fn=probe,
                         alphas=alphas, window_rule="fastssl")
    # Step 1 probes all; top-2 = B, C, inside the alpha range on both sides
    # -> [1.0, 1.5]. Step 2: E (0.9) and H (2.0) skipped, F and G (1.5, on the
    # boundary) probed; top-2 = B, F -> [1.0, 1.2].
    assert calls == [0, 1, 2, 3, 5, 6]
    np.testing.assert_array_equal(r["windows"], [[1.0, 1.5], [1.0, 1.2]])
    assert r["selected"] == [1, 5] and r["best_performance"] == 0.90
    # With the top model at the extreme alpha the window stays open on that side.
    feats, probe, _ = make_pool([0.5, 1.0, 2.0], [0.9, 0.5, 0.8])
    r = ar.select_models(feats, None, num_parallel=3, top_k=1, probe_fn=probe,
                         alphas=[0.5, 1.0, 2.0], window_top_k=2)
    np.testing.assert_array_equal(r["windows"], [[0.0, np.inf]])


def reference_selection(alphas, perfs, m, k_keep, rule, k_window):
    """Brute-force Algorithm 2, written from the paper's pseudo-code independently."""
    lo, hi = 0.0, float("inf")
    log = []                       # (alpha, perf, index) of every probed model
    models = {}                    # index -> perf, trimmed to top K
    windows = []
    for start in range(0, len(alphas), m):
        for i in range(start, min(start + m, len(alphas))):
            if lo <= alphas[i] <= hi:
                log.append((alphas[i], perfs[i], i))
                models[i] = perfs[i]
        if rule == "bracket":
            for aj, pj, _ in log:
                for am, pm, _ in log:
                    if am > aj and pm > pj:
                        lo = max(lo, aj)
                    if am < aj and pm > pj:
                        hi = min(hi, aj)
        elif log:
            top = sorted(log, key=lambda t: (-t[1], t[2]))[:k_window]
            by_alpha = sorted(log, key=lambda t: t[0])
            # stable sort on alpha: ties keep the order of probing = index order
            pos = [j for j, t in enumerate(by_alpha) if t in top]
            if pos[0] != 0:
                lo = by_alpha[pos[0]][0]
            if pos[-1] != len(by_alpha) - 1:
                hi = by_alpha[pos[-1]][0]
        models = dict(sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))[:k_keep])
        windows.append((lo, hi))
    return sorted(models, key=lambda i: (-models[i], i)), [t[2] for t in log], windows


@pytest.mark.parametrize("rule", ar.WINDOW_RULES)
def test_select_models_matches_bruteforce_on_random_pools(rule):
    rng = np.random.default_rng(5)
    for _ in range(60):
        p = int(rng.integers(1, 25))
        alphas = list(np.round(rng.uniform(0.2, 3.0, p), 1))       # ties included
        perfs = list(rng.permutation(p) / p)
        m, k_keep, k_window = (int(rng.integers(1, 7)), int(rng.integers(1, 5)),
                               int(rng.integers(1, 5)))
        feats, probe, calls = make_pool(alphas, perfs)
        r = ar.select_models(feats, None, num_parallel=m, top_k=k_keep, probe_fn=probe,
                             alphas=alphas, window_rule=rule, window_top_k=k_window)
        kept, probed, windows = reference_selection(alphas, perfs, m, k_keep, rule, k_window)
        assert calls == probed
        assert r["selected"] == kept
        np.testing.assert_array_equal(r["windows"], windows)
        assert r["best_performance"] == max(perfs[i] for i in probed)


def test_select_models_computes_alpha_and_uses_default_probe():
    key = jax.random.PRNGKey(6)
    planted = (0.6, 1.0, 2.0)
    feats = [power_law_gaussian(jax.random.fold_in(key, i), num_examples=200, dim=16,
                                   alpha=a)["x"] for i, a in enumerate(planted)]
    labels = (np.asarray(feats[0][:, 0]) > 0).astype(np.int32)   # linear in model 0 only
    r = ar.select_models(feats, labels, num_parallel=3, top_k=3, fit_range=(2, 12))
    np.testing.assert_allclose(r["alphas"], [float(fit_alpha(f, (2, 12)).alpha) for f in feats],
                               rtol=1e-6)
    np.testing.assert_allclose(r["alphas"], planted, atol=0.3)
    assert r["num_probes"] == 3 and r["best_index"] == 0
    assert r["best_performance"] > 0.8
    assert max(r["performance"][1:]) < 0.7


def test_ridge_probe_accuracy():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 400)
    f = rng.standard_normal((400, 10)) + 6.0 * np.eye(10)[y]
    assert ar.ridge_probe_accuracy(f, y) == 1.0
    shuffled = ar.ridge_probe_accuracy(f, rng.permutation(y))
    assert 0.15 < shuffled < 0.55


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("call, name", [
    (lambda: ar.select_models([], num_parallel=1, top_k=1), "features_list"),
    (lambda: ar.select_models([np.ones((4, 2))], num_parallel=0, top_k=1), "num_parallel"),
    (lambda: ar.select_models([np.ones((4, 2))], num_parallel=1, top_k=0), "top_k"),
    (lambda: ar.select_models([np.ones((4, 2))], num_parallel=1, top_k=1,
                              window_rule="median"), "window_rule"),
    (lambda: ar.select_models([np.ones((4, 2))] * 2, [np.ones(4)] * 3, num_parallel=1,
                              top_k=1), "labels_list"),
    (lambda: ar.select_models([np.ones((4, 2))] * 2, num_parallel=1, top_k=1,
                              alphas=[1.0]), "alphas"),
    (lambda: ar.select_models([np.ones((4, 2))], num_parallel=1, top_k=1, probe_fn=3),
     "probe_fn"),
    (lambda: ar.ridge_probe_accuracy(np.ones((8, 2)), None), "labels"),
    (lambda: ar.learning_rate(np.ones((3, 4)), tau=0.0), "tau"),
    (lambda: ar.gradient_descent(np.ones((3, 4)), np.ones(3), learning_rate=0.1,
                                 num_steps=10, record_every=3), "num_steps"),
    (lambda: ar.gradient_descent(np.ones((3, 4)), np.ones(2), learning_rate=0.1,
                                 num_steps=10), "y"),
    (lambda: ar.power_law_regression_task(jax.random.PRNGKey(0), alpha=1.0, num_train=4,
                                          num_test=4, dim=8, normalization="max"),
     "normalization"),
    (lambda: ar.power_law_regression_task(jax.random.PRNGKey(0), alpha=1.0, num_train=4,
                                          num_test=4, dim=8, noise_stds=(-1.0,)),
     "noise_stds"),
    (lambda: ar.power_law_regression_task(jax.random.PRNGKey(0), alpha=-1.0, num_train=4,
                                          num_test=4, dim=8), "alpha"),
    (lambda: ar.fig2_sweep(jax.random.PRNGKey(0), (1.0,), num_train=16, dim=16), "num_train"),
    (lambda: ar.fig2_sweep(jax.random.PRNGKey(0), (), num_train=4, dim=16), "alphas"),
    (lambda: ar.steps_to_threshold(np.ones((2, 3)), np.ones(2), tolerance=0.0), "tolerance"),
    (lambda: ar.convergence_time_sweep(jax.random.PRNGKey(0), (1.0,), (8,)), "num_trains"),
    (lambda: ar.convergence_time_sweep(jax.random.PRNGKey(0), (1.0,), (8, 16), dim_ratio=1),
     "dim_ratio"),
])
def test_invalid_arguments_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_steps_to_threshold_unreachable_raises():
    x = np.array([[1.0, 0.0], [2.0, 0.0]])      # rank 1: part of y is out of reach
    with pytest.raises(ValueError, match="max_steps"):
        ar.steps_to_threshold(x, np.array([1.0, -0.5]), tolerance=1e-6, max_steps=1000)


# --------------------------------------------------------------------------
# Sweeps, figures, JSON, CLI (tiny sizes)
# --------------------------------------------------------------------------


TINY = {
    "fig2": dict(alphas=(0.5, 2.0), num_train=8, dim=16, num_test=32, noise_stds=(0.1, 1.0),
                 num_steps=20, record_every=10, num_seeds=1),
    "thm21": dict(alphas=(0.5, 1.5), num_trains=(16, 32), num_seeds=1),
    "selection": dict(pool_size=8, num_parallel=4, num_examples=200, dim=16,
                      num_orderings=3, alpha_range=(0.5, 2.0)),
}


def test_fig2_sweep_shapes_and_consistency(tmp_path):
    res = ar.fig2_sweep(jax.random.PRNGKey(8), progress=False, **TINY["fig2"])
    chex.assert_shape([res["train_mse"], res["test_mse"]], [(2, 1, 3, 2)] * 2)
    chex.assert_shape([res["test_mse_final"], res["test_mse_converged"]], [(2, 2)] * 2)
    # Converged = interpolation (N < d): training error ~ 0; GD's train MSE decreases.
    assert np.all(res["train_mse_converged"] < 1e-6)
    assert np.all(np.diff(res["train_mse"], axis=2) <= 1e-7)
    assert set(res["best_alpha_final"]) <= {0.5, 2.0}
    ar.plot_fig2(res, str(tmp_path / "fig2.png"))
    np.testing.assert_allclose(res["test_mse_mean"], res["test_mse"].mean(1))
    ar.write_json(res, str(tmp_path / "fig2.json"))
    back = json.loads((tmp_path / "fig2.json").read_text())
    np.testing.assert_allclose(back["test_mse_final"], res["test_mse_final"])
    ar.write_json(res, str(tmp_path / "slim.json"), exclude=("test_mse",), significant_digits=3)
    slim = json.loads((tmp_path / "slim.json").read_text())
    assert "test_mse" not in slim and "train_mse" in slim
    np.testing.assert_allclose(slim["test_mse_final"], res["test_mse_final"], rtol=5e-3)
    ar.plot_fig2(slim, str(tmp_path / "from_json.png"))
    assert (tmp_path / "fig2.png").stat().st_size > 1000


def test_cli_writes_pngs_and_json(tmp_path, monkeypatch):
    monkeypatch.setattr(ar, "QUICK", TINY)
    summary = ar.main(["--outdir", str(tmp_path), "--quick"])
    for name in ("fig2", "thm21", "model_selection"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        json.loads((tmp_path / f"{name}.json").read_text())
    assert set(summary) == {"fig2", "thm21", "model_selection"}
    sel = json.loads((tmp_path / "model_selection.json").read_text())
    assert all(0 <= sel[r]["p_within_1pt"] <= 1 for r in ar.WINDOW_RULES)
    assert not any(isinstance(v, float) and math.isnan(v) for v in sel["accuracy"])
