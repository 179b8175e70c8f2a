"""The chapter-7 driver's later parts: the scanned deep fit against
``fit_platonic``, the T = Y P ablation against numpy and Eq 7.2, Table 7.1's
tolerance columns, the per-part merge of the results JSON, and the MNIST
config and part (absent data, and a run on tfds' mock data)."""
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.analysis import platonic as pa
from neurojax.analysis import platonic_fits as pf
from neurojax.data import DatasetNotPreparedError
from neurojax.rules.platonic import fit_platonic
from tests._x64 import float64

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """As the driver runs (jaxlib's CPU LAPACK threads stall on busy cores)."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, so that the limit reaches it)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _load_config(arg=None):
    path = os.path.join(ROOT, "configs", "platonic_mnist.py")
    spec = importlib.util.spec_from_file_location("platonic_mnist_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# ----------------------------------------------------------------- deep scan

@pytest.mark.slow
def test_deep_lsd_scan_equals_fit_platonics_layer_loop(n_tries=2):
    """The scan over layers 2..L computes the LSD of every layer exactly as
    fit_platonic's unrolled loop (same keys, same kept candidates). N_tries = 1
    runs the same layer step (tested through the deep part in
    test_platonic_experiment)."""
    x, y = pa.sine_task(60, jnp.float32)
    key = jax.random.PRNGKey(3)
    got = pf.deep_lsd(key, x, y, 3, 3, "celu", n_tries=n_tries, dtype="float32")
    _, info = fit_platonic(key, x, y, (3,) * 3, "celu", n_tries=n_tries, dtype="float32")
    np.testing.assert_allclose(got["lsd"], np.asarray(info["lsd"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got["selected"], [int(s) for s in info["selected"]])
    # alpha is traced in both (no recompilation): the scaled nets agree too
    half = pf.deep_lsd(key, x, y, 3, 3, "celu", n_tries=n_tries, alpha=0.5, dtype="float32")
    _, info_half = fit_platonic(key, x, y, (3,) * 3, "celu", n_tries=n_tries, alpha=0.5,
                                dtype="float32")
    np.testing.assert_allclose(half["lsd"], np.asarray(info_half["lsd"]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(half["lsd"], got["lsd"])
    # a different key gives different layers: the test can fail
    other = pf.deep_lsd(jax.random.PRNGKey(4), x, y, 3, 3, "celu", n_tries=n_tries,
                        dtype="float32")
    assert not np.allclose(other["lsd"], got["lsd"])


def test_deep_lsd_names_bad_arguments():
    x, y = pa.sine_task(20, jnp.float32)
    with pytest.raises(ValueError, match="num_layers"):
        pf.deep_lsd(jax.random.PRNGKey(0), x, y, 3, 0, "celu", dtype="float32")
    with pytest.raises(ValueError, match="y must have m = 20"):
        pf.deep_lsd(jax.random.PRNGKey(0), x, y[:10], 3, 2, "celu", dtype="float32")


def test_stored_layers_are_log_spaced_and_keep_the_ends_and_extras():
    layers = pa.stored_layers(10_000, 1000, [4321])
    assert layers[0] == 1 and layers[-1] == 10_000 and 4321 in layers
    assert np.all(np.diff(layers) > 0) and 500 < len(layers) < 1001
    np.testing.assert_array_equal(layers[:50], np.arange(1, 51))   # dense at the start
    np.testing.assert_array_equal(pa.stored_layers(6, 1000), np.arange(1, 7))


# ----------------------------------------------------------------- ablation

def test_yp_ablation_is_the_rule_without_p_z_against_numpy_and_eq72():
    """One hidden layer, float64, full-rank [1 | X]: the T = Y P fit's weights
    equal pinv([1 | X]) alpha beta Y P_Y (numpy), with P_Y the last k rows of
    the rule's own draw; the rule's weights minus these are alpha P_Z (Eq 7.2
    with Z^+ Z = I); the pre-activations have rank <= k (claim 3)."""
    rng = np.random.default_rng(0)
    m, n, k, d, alpha, beta = 50, 3, 2, 6, 0.5, 4.0
    with float64():
        x = jnp.asarray(rng.standard_normal((m, n)))
        y = jnp.asarray(np.eye(k)[rng.integers(0, k, m)])
        key = jax.random.PRNGKey(1)
        params, info = pf.fit_target_ablation(key, x, y, (d,), "tanh", target="y",
                                              alpha=alpha, beta=beta, dtype="float64")
        full, _ = pf.fit_target_ablation(key, x, y, (d,), "tanh", target="zy", alpha=alpha,
                                         beta=beta, dtype="float64")
        p = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), 0),
                                         (n + 1 + k, d), jnp.float64))
    xt = np.concatenate([np.ones((m, 1)), np.asarray(x)], 1)
    w_ref = np.linalg.pinv(xt) @ (alpha * beta * np.asarray(y) @ p[n + 1:])
    w = np.concatenate([np.asarray(params["dense_0"]["bias"])[None],
                        np.asarray(params["dense_0"]["kernel"])])
    np.testing.assert_allclose(w, w_ref, atol=1e-10)
    w_full = np.concatenate([np.asarray(full["dense_0"]["bias"])[None],
                             np.asarray(full["dense_0"]["kernel"])])
    np.testing.assert_allclose(w_full - w, alpha * p[:n + 1], atol=1e-10)
    assert np.linalg.matrix_rank(xt @ w, tol=1e-8) <= k < np.linalg.matrix_rank(xt @ w_full)
    # the head is the least-squares fit on [1 | Z_1]
    z = np.concatenate([np.ones((m, 1)), np.tanh(xt @ w)], 1)
    np.testing.assert_allclose(np.asarray(info["outputs"]),
                               z @ np.linalg.lstsq(z, np.asarray(y), rcond=None)[0], atol=1e-8)


def test_ablation_target_is_checked():
    with pytest.raises(ValueError, match="target"):
        pf.fit_target_ablation(jax.random.PRNGKey(0), jnp.ones((4, 2)), jnp.ones((4, 1)),
                               (2,), "tanh", target="p")


# ----------------------------------------------------------------- Table 7.1 columns

def test_precision_columns_set_the_chapters_tolerances():
    cols = {c[0]: c for c in pa.PRECISIONS}
    eps = float(np.finfo(np.float32).eps)
    assert pa._precision_kwargs("pinv", cols["float32"], 5000, 33) == {"dtype": "float32"}
    assert pa._precision_kwargs("pinv", cols["float32_torch_tol"], 5000, 33) == {
        "dtype": "float32", "rtol": 5000 * eps, "atol": 0.0}
    assert pa._precision_kwargs("pinv", cols["float32_atol1e-5"], 5000, 33) == {
        "dtype": "float32", "rtol": 0.0, "atol": 1e-5}
    assert pa._precision_kwargs("lstsq", cols["float32_atol1e-5"], 5000, 33) == {
        "dtype": "float32", "rtol": 1e-5}
    assert pa._precision_kwargs("ridge", cols["float32_torch_tol"], 5000, 33) is None
    assert pa._precision_kwargs("ridge", cols["float64"], 5000, 33) == {"dtype": "float64"}


# ----------------------------------------------------------------- merge

def test_rerun_of_one_part_keeps_the_others(tmp_path):
    """An old-format file (one command and config) gains per-part entries;
    the rerun part is replaced, the others are kept, parts keep PARTS order."""
    path = str(tmp_path / "platonic_full.json")
    old = {"quick": False, "chapter": {}, "seconds": {"sine": 1.0, "deep": 2.0},
           "command": "old cmd", "config": {"a": 1}, "blas_threads": 1, "devices": "cpu",
           "sine": {"v": 1}, "deep": {"v": 2}}
    with open(path, "w") as fh:
        json.dump(old, fh)
    new = {"quick": False, "chapter": {"c": 1}, "blas_threads": 1, "devices": "cpu",
           "seconds": {"ablation": 3.0, "deep": 4.0},
           "commands": {"ablation": "cmd a", "deep": "cmd d"},
           "configs": {"ablation": {"b": 2}, "deep": {"b": 2}},
           "ablation": {"v": 3}, "deep": {"v": 4}}
    merged = pa.merge_into(path, new, ("deep", "ablation"))
    with open(path) as fh:
        assert json.load(fh) == merged
    assert [k for k in merged if k in pa.PARTS] == ["sine", "deep", "ablation"]
    assert merged["sine"] == {"v": 1} and merged["deep"] == {"v": 4}
    assert merged["seconds"] == {"sine": 1.0, "deep": 4.0, "ablation": 3.0}
    assert merged["commands"] == {"sine": "old cmd", "deep": "cmd d", "ablation": "cmd a"}
    assert merged["configs"]["sine"] == {"a": 1} and merged["configs"]["deep"] == {"b": 2}
    assert merged["chapter"] == {"c": 1}
    assert os.listdir(tmp_path) == ["platonic_full.json"]   # no lock file left behind


# ----------------------------------------------------------------- MNIST

def test_mnist_config_parses_and_the_part_names_missing_data(tmp_path):
    from neurojax.analysis import platonic_mnist as pm
    config = _load_config()
    p = pm.check_block(config)
    assert p.single.widths == (98, 196, 392, 784, 1568) and p.single.ridge == 50_000
    assert [m[0] for m in p.deep.models][-1] == (6500, 4500, 3000)
    assert tuple(config.model.widths) == (392, 50) and config.optim.lr == 0.02
    small = _load_config("runlocal")
    pm.check_block(small)
    with pytest.raises(ValueError, match="config argument"):
        _load_config("cifar")
    del small.platonic.deep.ema
    with pytest.raises(ValueError, match="config.platonic.deep.ema"):
        pm.check_block(small)
    with pytest.raises(DatasetNotPreparedError, match="tfds build mnist"):
        pm.mnist(_load_config("runlocal"), data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="mnist_config"):
        pa.run(str(tmp_path), quick=True, parts=("mnist",))


@pytest.mark.slow
def test_mnist_part_runs_on_mock_data():
    """The runlocal config end to end on tfds' mock MNIST (random images)."""
    import tensorflow_datasets as tfds
    from neurojax.analysis.platonic_mnist import mnist
    config = _load_config("runlocal")
    with tfds.testing.mock_data(num_examples=120, policy=tfds.testing.MockPolicy.USE_CODE):
        r = mnist(config, data_dir="/nonexistent")
    assert r["num_train"] == 120 and r["num_test"] == 120
    assert [(row["method"], row["width"]) for row in r["single"]] == [
        (m, w) for w in (32, 98) for m in ("elm", "random", "pca", "sorted_pca")]
    assert r["single"][0]["test_accuracy"]["n"] == 2
    assert r["deep"][0]["widths"] == [98, 50] and r["deep"][0]["ridge"] == 0.5
    assert r["deep"][0]["params"] == 784 * 98 + 98 + 98 * 50 + 50 + 50 * 10 + 10
    assert len(r["backprop"]["epoch_seconds"]) == 1
