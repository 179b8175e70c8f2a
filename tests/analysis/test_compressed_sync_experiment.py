"""Smoke test of the chapter-3 experiment (neurojax.analysis.compressed_sync):
a tiny run on synthetic digit-shaped data writes a consistent JSON and PNG."""
import io
import json
import os

import numpy as np
import pytest

from neurojax.analysis import compressed_sync as exp


def _config():
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "compressed_sync_digits", os.path.join(root, "configs", "compressed_sync_digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal")
    config.model.widths = (16, 8)
    config.train.num_epochs = 2
    config.sync.num_workers = 2
    config.sync.fixed_bits = ()   # fixed N is covered by tests/train (compilation is the cost)
    config.sync.floors = (5,)
    config.sync.monitor = ((4, 1.0),)
    return config


def _data():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1, size=(10, 64)).astype(np.float32)
    def split(n):
        y = rng.integers(0, 10, n).astype(np.int32)
        return centres[y] + 0.05 * rng.normal(size=(n, 64)).astype(np.float32), y
    return {"train": split(256), "test": split(64)}


def _reject_constant(name):
    raise ValueError(f"not JSON: bare {name}")


def _strict_json_load(f):
    """``json.load`` that refuses the NaN / Infinity Python writes by default."""
    return json.load(f, parse_constant=_reject_constant)


def test_write_produces_strict_json_with_null_for_non_finite(tmp_path, monkeypatch):
    monkeypatch.setattr(exp, "plot", lambda results, path: None)   # JSON only
    run = {"final_accuracy": 0.98765, "entropy_bits": [float("nan"), 1.234567],
           "coded_bits": [float("inf"), -float("inf"), 2.0]}
    results = {"settings": {"baseline": {"mode": "none", "runs": [run]}},
               "summary": {"mean_entropy_bits": float("nan"), "ratio": 3.14159265}}
    js, _ = exp.write(results, str(tmp_path), "strict")
    with open(js) as f:
        text = f.read()
    assert "NaN" not in text and "Infinity" not in text
    saved = _strict_json_load(io.StringIO(text))
    saved_run = saved["settings"]["baseline"]["runs"][0]
    assert saved_run["entropy_bits"] == [None, 1.2346]          # rounded to 4 digits
    assert saved_run["coded_bits"] == [None, None, 2.0]
    assert saved_run["final_accuracy"] == 0.9877
    assert saved["summary"] == {"mean_entropy_bits": None, "ratio": 3.1416}


def test_committed_results_are_strict_json():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "benchmarks", "results", "compressed_sync_digits.json")
    with open(path) as f:
        saved = _strict_json_load(f)
    # the baseline sends float32: no quantiser, so no entropy (null, not NaN)
    assert saved["summary"]["settings"]["baseline"]["mean_entropy_bits"] is None


def test_epochs_to_best_is_first_peak():
    assert exp.epochs_to_best([0.1, 0.5, 0.4, 0.5]) == 2
    with pytest.raises(ValueError, match="accuracy"):
        exp.epochs_to_best([])


def test_compact_drops_only_constant_curves_of_fixed_runs():
    run = {"test_accuracy": [0.5], "raw_bits": [8.0], "num_bits": {"a": [8]}, "train_loss": [1.0],
           "final_accuracy": 0.5}
    results = {"settings": {"fixed_8": {"mode": "fixed", "runs": [run]},
                            "dynamic_c5": {"mode": "dynamic", "runs": [run]}}}
    out = exp.compact(results)
    assert out["settings"]["fixed_8"]["runs"][0] == {"final_accuracy": 0.5}
    assert out["settings"]["dynamic_c5"]["runs"][0] == {
        k: v for k, v in run.items() if k != "train_loss"}
    assert results["settings"]["fixed_8"]["runs"][0] is run   # input untouched


def test_config_fields_are_validated():
    config = _config()
    config.sync.num_workers = 0
    with pytest.raises(ValueError, match="config.sync.num_workers"):
        exp.run_experiment(config, data=_data(), progress=False)
    config = _config()
    config.sync.fixed_bits = (0,)
    with pytest.raises(ValueError, match="config.sync.fixed_bits"):
        exp.run_experiment(config, data=_data(), progress=False)


def test_quick_run_writes_consistent_json_and_png(tmp_path):
    results = exp.run_experiment(_config(), data=_data(), progress=False)
    js, png = exp.write(results, str(tmp_path), "smoke")
    assert os.path.getsize(png) > 10_000
    with open(js) as f:
        saved = _strict_json_load(f)
    assert set(saved["settings"]) == {"baseline", "dynamic_c5"}
    per_epoch = saved["steps_per_epoch"]
    assert saved["local_steps"] == per_epoch == (256 // 2) // 32
    dyn = saved["settings"]["dynamic_c5"]["runs"][0]
    assert len(dyn["test_accuracy"]) == 2 and saved["epochs"] == [1.0, 2.0]
    # N = ceil(H + 5) with H <= M = 4, and Huffman below the fixed width
    for layer in saved["layers"]:
        assert all(5 <= n <= 9 for n in dyn["num_bits"][layer])
    assert all(c <= r for c, r in zip(dyn["coded_bits"], dyn["raw_bits"]))
    assert all(w > c for w, c in zip(dyn["wire_bits"], dyn["coded_bits"]))
    # bytes per worker = wire bits x parameters / 8
    n_params = sum(saved["layer_sizes"])
    full = results["settings"]["dynamic_c5"]["runs"][0]
    np.testing.assert_allclose(np.array(full["bytes_per_worker"]) * 8 / n_params,
                               full["wire_bits"], rtol=1e-6)
    assert "bytes_per_worker" not in dyn and "train_loss" not in dyn    # compacted
    row = saved["summary"]["settings"]["dynamic_c5"]
    assert row["compression_ratio"] == pytest.approx(32 / np.mean(dyn["coded_bits"]), rel=1e-3)
    base = saved["summary"]["settings"]["baseline"]
    assert row["accuracy_change_final"] == pytest.approx(
        row["final_accuracy"] - base["final_accuracy"], abs=2e-4)
    mon = np.asarray(saved["settings"]["baseline"]["runs"][0]["monitor_entropy"])
    assert mon.shape == (2, 3, 1) and (mon >= 0).all() and (mon <= 4).all()
    head = exp.headline(results)
    assert head["c5"]["thesis_ratio"] == 9.01
