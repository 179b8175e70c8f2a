"""The chapter-7 driver (neurojax.analysis.platonic) at tiny sizes: its rows
against independent numpy computations, the backprop baseline through the
training program, the figure and strict JSON, and the committed results."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.analysis import platonic as pa
from neurojax.analysis.outputs import write_json
from neurojax.analysis.platonic_figure import plot
from tests.analysis._json import strict_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """As the driver runs: jaxlib's CPU LAPACK calls OpenBLAS, whose threads
    stall for ~1 s per SVD on oversubscribed cores."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, so that the limit reaches it)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _digits_like(m=240, m_test=80, n=64, k=10, seed=0):
    """Class means plus noise, pixel-like values in [0, 1]."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(0, 1, (k, n))
    def draw(size):
        y = rng.integers(0, k, size)
        return np.clip(means[y] + 0.3 * rng.standard_normal((size, n)), 0, 1), y
    x, y = draw(m)
    xt, yt = draw(m_test)
    return {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y),
            "x_test": jnp.asarray(xt, jnp.float32), "y_test": jnp.asarray(yt)}


def test_spread_counts_failed_fits_and_orders_its_statistics():
    s = pa.spread([0.5, np.nan, 0.9, 0.7])
    assert s["n"] == 4 and s["failed"] == 1
    assert s["min"] == 0.5 and s["median"] == 0.7 and s["max"] == 0.9
    np.testing.assert_allclose([s["mean"], s["std"]], [0.7, np.std([0.5, 0.9, 0.7])])
    assert pa.spread([np.nan, np.inf]) == {"n": 2, "failed": 2}


def test_accuracies_against_numpy():
    out = jnp.asarray([[0.3], [-0.1], [np.nan], [2.0]])
    assert pa.binary_accuracy(out, jnp.asarray([1, 0, 1, 0])) == 0.5   # NaN counts wrong
    logits = jnp.asarray([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]])
    assert pa.class_accuracy(logits, jnp.asarray([1, 0, 0])) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def digits_rows():
    task = _digits_like()
    cfg = {"digits_widths": (74, 75), "digits_trials": 1, "digits_ridge": 3.0}
    return task, pa.digits_single(cfg, task)


@pytest.mark.slow
def test_elm_row_equals_a_direct_numpy_elm_fit(digits_rows):
    """Table 7.2's ELM row: the hidden layer is W ~ N(0, 1) drawn as
    fit_platonic documents (candidate 0 of layer 0: fold_in(fold_in(key, 0),
    0)), the output layer a ridge fit on [1 | relu(x W + b)]; here recomputed
    in float64 numpy and scored on train and test."""
    task, rows = digits_rows
    elm = rows[0]
    assert (elm["method"], elm["width"]) == ("elm", 74)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), 0), 0)
    w = np.asarray(jax.random.normal(key, (65, 74), jnp.float32), np.float64)
    x, xt = np.asarray(task["x"], np.float64), np.asarray(task["x_test"], np.float64)
    hid = lambda a: np.concatenate([np.ones((len(a), 1)), np.maximum(a @ w[1:] + w[0], 0)], 1)
    h = hid(x)
    y = np.eye(10)[np.asarray(task["y"])]
    head = np.linalg.solve(h.T @ h + 3.0 * np.eye(75), h.T @ y)
    train = np.mean(np.argmax(h @ head, 1) == np.asarray(task["y"]))
    test = np.mean(np.argmax(hid(xt) @ head, 1) == np.asarray(task["y_test"]))
    assert elm["train_accuracy"]["mean"] == pytest.approx(train, abs=1.5 / len(x))
    assert elm["test_accuracy"]["mean"] == pytest.approx(test, abs=1.5 / len(xt))


def test_platonic_pca_rows_stop_at_n_plus_k(digits_rows):
    _, rows = digits_rows
    methods = [(r["method"], r["width"]) for r in rows]
    # n + k = 64 + 10: Platonic PCA at 74, not at 75; the others at both
    assert methods == [("elm", 74), ("random", 74), ("pca", 74), ("sorted_pca", 74),
                       ("elm", 75), ("random", 75), ("sorted_pca", 75)]
    # the deterministic methods have one run, so no spread
    for r in rows[2:4]:
        assert r["test_accuracy"]["n"] == 1 and r["test_accuracy"]["std"] == 0.0


def test_fit_binary_scores_the_fitted_network_on_both_sets():
    """Separable blobs: every fit classifies train and test perfectly; the
    train accuracy (from the fit's outputs) and the test one (through MLP.apply)
    must both be 1, and flipping the test labels must give 0."""
    rng = np.random.default_rng(0)
    def blobs(m):
        y = rng.integers(0, 2, m)
        return jnp.asarray(rng.standard_normal((m, 2)) * 0.2 + (2 * y - 1)[:, None],
                           jnp.float32), jnp.asarray(y)
    x, y = blobs(200)
    xt, yt = blobs(100)
    task = {"x": x, "y": y, "x_test": xt, "y_test": yt}
    r = pa.fit_binary(3, task, (8,), "tanh", alpha=1.0, beta=2.0)
    assert r["finite"] and r["train_accuracy"] == 1.0 and r["test_accuracy"] == 1.0
    flipped = pa.fit_binary(3, dict(task, y_test=1 - yt), (8,), "tanh", alpha=1.0, beta=2.0)
    assert flipped["test_accuracy"] == 0.0


@pytest.fixture(scope="module")
def deep_small():
    cfg = {"deep_examples": 200, "deep_layers": 6, "deep_widths": (3,), "deep_tries": (1, 3)}
    return pa.deep(cfg, dtype="float32")


def test_deep_lsd_curve_has_one_entry_per_layer_and_first_layer_nested_tries(deep_small):
    """The first layer's LSD with N_tries = 3 is at most that with 1: the
    candidates are nested and layer 1's input is the same (by construction).
    Deeper layers have no such guarantee (their inputs differ)."""
    out = deep_small
    one, three = out["runs"]["w3_n1"], out["runs"]["w3_n3"]
    for run in (one, three):
        assert len(run["lsd"]) == 6 and np.all(np.isfinite(run["lsd"]))
        np.testing.assert_array_equal(run["layers"], np.arange(1, 7))   # all of 6 kept
        assert run["min_lsd"] == pytest.approx(np.min(run["lsd"]))
        assert run["lsd"][run["argmin_layer"] - 1] == pytest.approx(run["min_lsd"])
    assert three["lsd"][0] <= one["lsd"][0] + 1e-7
    # the sine's variance is 1/2: a useful layer explains part of it
    assert 0 < one["min_lsd"] < 0.5


@pytest.mark.slow
def test_train_backprop_learns_through_the_program_and_reports_curves():
    task = _digits_like(m=256, m_test=64)
    bp = pa.train_backprop(task, (16,), "relu", num_classes=10, epochs=4, batch_size=32,
                           optim={"name": "sgd", "lr": 0.1, "momentum": 0.9}, seeds=(0, 1))
    assert np.shape(bp["test_accuracy_curve"]) == (4, 2)
    assert len(bp["epoch_seconds"]) == 4 and bp["steps_per_epoch"] == 8
    assert bp["train_accuracy"]["n"] == 2 and bp["train_accuracy"]["min"] > 0.9
    # two seeds are two different runs
    assert not np.allclose(bp["train_accuracy_curve"][0, 0], bp["train_accuracy_curve"][0, 1]) \
        or not np.allclose(bp["test_accuracy_curve"][0, 0], bp["test_accuracy_curve"][0, 1])


def test_bad_parts_and_blas_threads_are_named(tmp_path):
    with pytest.raises(ValueError, match="--parts must be a non-empty subset"):
        pa.check_parts(["sine", "mnist2"])
    with pytest.raises(ValueError, match="--parts"):
        pa.check_parts([])
    with pytest.raises(ValueError, match="blas_threads"):
        pa.run(str(tmp_path), quick=True, parts=("sine",), blas_threads=0)


def test_figure_and_strict_json_from_tiny_parts(tmp_path, deep_small):
    cfg = {"sine_seeds": 1, "sine_examples": 500, "sine_dtypes": ("float32",)}
    results = {"sine": pa.sine(cfg), "deep": deep_small}
    assert set(results["sine"]) == {"float32"}
    assert 0 < results["sine"]["float32"]["median"] < 0.05   # 1-16-16-1 fits the sine
    results["sine"]["float32"]["mse"].append(float("nan"))     # a failed fit -> null
    write_json(results, str(tmp_path / "platonic_t.json"), digits=5)
    got = strict_json(tmp_path / "platonic_t.json")
    assert got["sine"]["float32"]["mse"][-1] is None
    plot(got, str(tmp_path / "platonic_t.png"))
    assert (tmp_path / "platonic_t.png").stat().st_size > 0


def test_committed_results_are_strict_json_and_consistent():
    path = os.path.join(ROOT, "benchmarks", "results", "platonic_full.json")
    if not os.path.exists(path):
        pytest.skip("benchmarks/results/platonic_full.json not committed yet")
    r = strict_json(path)
    assert not r["quick"]
    for part in pa.PARTS:   # every part records how it was run
        if part in r:
            assert f"--parts {part}" in r["commands"][part] or "," in r["commands"][part]
            assert part in r["configs"] and part in r["seconds"]
    for run in r["deep"]["runs"].values():
        assert len(run["lsd"]) == len(run["layers"]) == len(run["log10_max_abs"])
        assert run["layers"][0] == 1 and run["layers"][-1] == r["deep"]["num_layers"]
        assert run["argmin_layer"] in run["layers"]
        assert run["lsd"][run["layers"].index(run["argmin_layer"])] == run["min_lsd"]
        if run.get("first_nonfinite_layer") is None:
            assert run["final_train_mse"] == pytest.approx(run["lsd"][-1])
    rows = r["spirals"]["table"] + r["digits"]["single"]
    rows += r.get("spirals_tries", {}).get("rows", [])
    rows += r.get("ablation", {}).get("spirals", []) + r.get("ablation", {}).get("digits", [])
    for row in rows:
        s = row["test_accuracy"]
        if s["failed"] < s["n"]:
            assert s["min"] <= s["median"] <= s["max"] and 0 <= s["min"] and s["max"] <= 1
    widths = [row["width"] for row in r["checkerboard"]["rows"]]
    assert widths == sorted(widths)
    assert r["checkerboard"]["rows"][-1]["params"] == 2 * widths[-1] ** 2 + 6 * widths[-1] + 1
