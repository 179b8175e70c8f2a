"""alpha-ReQ Algorithm 1 (select_models) against hand-worked pools and a brute-force
reference; its default probe is the library's ridge probe."""
import jax
import numpy as np
import pytest

from neurojax.data.synthetic import power_law_gaussian
from neurojax.metrics import model_selection as msel
from neurojax.metrics.spectrum import alpha as fit_alpha


def make_pool(alphas, perfs):
    feats = [np.full((2, 2), i, np.float32) for i in range(len(alphas))]
    table = {id(f): p for f, p in zip(feats, perfs)}
    calls = []

    def probe(f, labels):
        calls.append(int(f[0, 0]))
        assert labels is None
        return table[id(f)]

    return feats, probe, calls


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


def test_select_models_hand_worked_bracket():
    #          A     B     C     D     E     F
    alphas = [0.5, 2.0, 0.3, 1.0, 2.5, 1.5]
    perfs = [0.60, 0.70, 0.95, 0.90, 0.99, 0.80]
    feats, probe, calls = make_pool(alphas, perfs)
    r = msel.select_models(feats, None, num_parallel=2, top_k=2, probe_fn=probe,
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
    r = msel.select_models(feats, None, num_parallel=4, top_k=2, probe_fn=probe,
                         alphas=alphas, window_rule="fastssl")
    # Step 1 probes all; top-2 = B, C, inside the alpha range on both sides
    # -> [1.0, 1.5]. Step 2: E (0.9) and H (2.0) skipped, F and G (1.5, on the
    # boundary) probed; top-2 = B, F -> [1.0, 1.2].
    assert calls == [0, 1, 2, 3, 5, 6]
    np.testing.assert_array_equal(r["windows"], [[1.0, 1.5], [1.0, 1.2]])
    assert r["selected"] == [1, 5] and r["best_performance"] == 0.90
    # With the top model at the extreme alpha the window stays open on that side.
    feats, probe, _ = make_pool([0.5, 1.0, 2.0], [0.9, 0.5, 0.8])
    r = msel.select_models(feats, None, num_parallel=3, top_k=1, probe_fn=probe,
                         alphas=[0.5, 1.0, 2.0], window_top_k=2)
    np.testing.assert_array_equal(r["windows"], [[0.0, np.inf]])


@pytest.mark.parametrize("rule", msel.WINDOW_RULES)
def test_select_models_matches_bruteforce_on_random_pools(rule):
    rng = np.random.default_rng(5)
    for _ in range(60):
        p = int(rng.integers(1, 25))
        alphas = list(np.round(rng.uniform(0.2, 3.0, p), 1))       # ties included
        perfs = list(rng.permutation(p) / p)
        m, k_keep, k_window = (int(rng.integers(1, 7)), int(rng.integers(1, 5)),
                               int(rng.integers(1, 5)))
        feats, probe, calls = make_pool(alphas, perfs)
        r = msel.select_models(feats, None, num_parallel=m, top_k=k_keep, probe_fn=probe,
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
    r = msel.select_models(feats, labels, num_parallel=3, top_k=3, fit_range=(2, 12))
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
    assert msel.ridge_probe_accuracy(f, y) == 1.0
    shuffled = msel.ridge_probe_accuracy(f, rng.permutation(y))
    assert 0.15 < shuffled < 0.55


@pytest.mark.parametrize("call, name", [
    (lambda: msel.select_models([], num_parallel=1, top_k=1), "features_list"),
    (lambda: msel.select_models([np.ones((4, 2))], num_parallel=0, top_k=1), "num_parallel"),
    (lambda: msel.select_models([np.ones((4, 2))], num_parallel=1, top_k=0), "top_k"),
    (lambda: msel.select_models([np.ones((4, 2))], num_parallel=1, top_k=1,
                              window_rule="median"), "window_rule"),
    (lambda: msel.select_models([np.ones((4, 2))] * 2, [np.ones(4)] * 3, num_parallel=1,
                              top_k=1), "labels_list"),
    (lambda: msel.select_models([np.ones((4, 2))] * 2, num_parallel=1, top_k=1,
                              alphas=[1.0]), "alphas"),
    (lambda: msel.select_models([np.ones((4, 2))], num_parallel=1, top_k=1, probe_fn=3),
     "probe_fn"),
    (lambda: msel.ridge_probe_accuracy(np.ones((8, 2)), None), "labels"),
])
def test_invalid_arguments_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_random_search_best_against_every_subset():
    import itertools
    acc = np.array([0.3, 0.9, 0.5, 0.7, 0.5, 0.1])
    for k in range(1, acc.size + 1):
        brute = np.mean([acc[list(c)].max() for c in itertools.combinations(range(acc.size), k)])
        assert msel.random_search_best(acc, k) == pytest.approx(brute)
    with pytest.raises(ValueError, match="num_probes must be at most"):
        msel.random_search_best(acc, 7)


def test_selection_over_orders_matches_select_models_on_each_order():
    """Against select_models run directly, its probe looking models up by
    their own feature arrays."""
    rng = np.random.default_rng(1)
    acc, alphas = rng.random(12), 0.5 + rng.random(12)
    features = [np.full((4, 2), float(i)) for i in range(12)]
    orders = [rng.permutation(12) for _ in range(4)]
    out = msel.selection_over_orders(acc, alphas, orders, num_parallel=3, top_k=2)
    for rule in msel.WINDOW_RULES:
        found, probes = [], []
        for order in orders:
            r = msel.select_models([features[i] for i in order], None, num_parallel=3,
                                   top_k=2, alphas=alphas[order], window_rule=rule,
                                   probe_fn=lambda f, _: acc[int(f[0, 0])])
            found.append(r["best_performance"])
            probes.append(r["num_probes"])
        assert out[rule]["mean_shortfall"] == pytest.approx(np.mean(acc.max() - np.array(found)))
        assert out[rule]["mean_probes"] == pytest.approx(np.mean(probes))
        expected_random = np.mean([acc.max() - msel.random_search_best(acc, k) for k in probes])
        assert out[rule]["random_search_mean_shortfall"] == pytest.approx(expected_random)
