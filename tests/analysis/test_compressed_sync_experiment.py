"""The chapter-3 driver (neurojax.analysis.compressed_sync): runs of the
training loop per setting and seed, read back into a consistent JSON and PNG."""
import io
import json
import os

import numpy as np
import pytest

from configs import compressed_sync_digits
from neurojax.analysis import compressed_sync as exp
from neurojax.train.metrics_log import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir):
    config = compressed_sync_digits.get_config("runlocal")
    config.dataset.data_dir = data_dir
    config.model.widths = (16,)
    config.train.num_epochs = 2
    config.sync.num_workers = 2
    config.sync.fraction = 1.0          # the baseline logs H at (M, F) = (4, 1.0)
    config.experiment.fixed_bits = (4,)
    config.experiment.floors = ()       # dynamic: tests/train/test_sync_mode.py (compiles cost)
    config.experiment.monitor = ((4, 1.0), (8, 1.0))
    return config


def _reject_constant(name):
    raise ValueError(f"not JSON: bare {name}")


def _strict_json_load(f):
    """``json.load`` that refuses the NaN / Infinity Python writes by default."""
    return json.load(f, parse_constant=_reject_constant)


@pytest.mark.slow  # suite time: a CLI / quick-run path; -m slow runs it
def test_quick_run_writes_consistent_json_and_png(data_dir, tmp_path):
    rundir = str(tmp_path / "runs")
    results = exp.run_experiment(_config(data_dir), rundir, progress=False)
    js, png = exp.write(results, str(tmp_path), "smoke")
    assert os.path.getsize(png) > 10_000
    with open(js) as f:
        saved = _strict_json_load(f)
    assert set(saved["settings"]) == {"baseline", "fixed_4"}
    assert saved["local_steps"] == saved["steps_per_epoch"] == (1437 // 2) // 32
    assert saved["epochs"] == [1.0, 2.0] and saved["layers"] == ["dense_0", "head"]
    summ = saved["summary"]["settings"]

    # each setting's curves are its own run's records
    for name in ("baseline", "fixed_4"):
        evals = [r for r in read_metrics(os.path.join(rundir, f"{name}_seed0", "metrics.jsonl"))
                 if r["split"] == "eval"]
        run = results["settings"][name]["runs"][0]
        assert run["test_accuracy"] == [r["accuracy"] for r in evals]

    # the baseline sends float32: 32 raw bits, ratio 1, no code entropy (null)
    base = results["settings"]["baseline"]["runs"][0]
    assert base["raw_bits"] == [32.0, 32.0] and base["wire_bits"] == [32.0, 32.0]
    assert summ["baseline"]["wire_compression_ratio"] == 1.0
    assert summ["baseline"]["mean_entropy_bits"] is None
    # fixed N = 4: every layer at 4 bits, Huffman payload below 4 bits
    fixed = results["settings"]["fixed_4"]["runs"][0]
    assert fixed["raw_bits"] == [4.0, 4.0]
    assert all(n == [4.0, 4.0] for n in fixed["num_bits"].values())
    assert all(c <= 4.0 for c in fixed["coded_bits"])
    assert summ["fixed_4"]["compression_ratio"] == pytest.approx(
        32 / np.mean(fixed["coded_bits"]), rel=1e-3)
    assert "raw_bits" not in saved["settings"]["fixed_4"]["runs"][0]       # compacted
    assert summ["fixed_4"]["accuracy_change_final"] == pytest.approx(
        summ["fixed_4"]["final_accuracy"] - summ["baseline"]["final_accuracy"], abs=2e-4)

    # Fig. 3.3: (4, 1.0) from the baseline, (8, 1.0) from a second baseline run
    # that trains identically; 8-bit bins refine the 4-bit ones of the same weights
    mon = np.asarray(saved["settings"]["baseline"]["runs"][0]["monitor_entropy"])
    assert mon.shape == (2, 2, 2)                           # [sync, layer, (M, F)]
    np.testing.assert_allclose(mon[:, :, 0], np.array(list(base["entropy"].values())).T,
                               atol=1e-4)
    assert (mon[:, :, 1] > mon[:, :, 0] + 1).all()
    monitor_evals = [r for r in read_metrics(os.path.join(
        rundir, "monitor_M8_F1_seed0", "metrics.jsonl")) if r["split"] == "eval"]
    assert len(monitor_evals) == 1                          # evaluated only at the end
    assert monitor_evals[0]["accuracy"] == base["final_accuracy"]


def test_config_fields_are_validated_before_any_run(data_dir, tmp_path):
    for field, value, name in [("seeds", (), "config.experiment.seeds"),
                               ("fixed_bits", (0,), "config.experiment.fixed_bits"),
                               ("floors", (-1.0,), "config.experiment.floors"),
                               ("monitor", ((4, 2.0),), "config.experiment.monitor")]:
        config = _config(data_dir)
        config.experiment[field] = value
        with pytest.raises(ValueError, match=name):
            exp.run_experiment(config, str(tmp_path), progress=False)
    config = _config(data_dir)
    with config.unlocked():
        config.experiment.epochs = 3
    with pytest.raises(ValueError, match="config.experiment.epochs"):
        exp.run_experiment(config, str(tmp_path), progress=False)
    config = _config(data_dir)
    del config.experiment
    with pytest.raises(ValueError, match="config.experiment"):
        exp.run_experiment(config, str(tmp_path), progress=False)
    config = _config(data_dir)
    config.sync.num_workers = 0          # the loop's own validation, of every variant
    with pytest.raises(ValueError, match="config.sync.num_workers"):
        exp.run_experiment(config, str(tmp_path), progress=False)
    assert os.listdir(tmp_path) == []


def test_a_workdir_of_another_config_is_refused(data_dir, tmp_path):
    config = _config(data_dir)
    workdir = str(tmp_path / "baseline_seed0")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write("{}")
    with pytest.raises(ValueError, match="another config"):
        exp.run(exp.run_config(config, {"mode": "none"}, 0, 22), workdir)


def test_settings_set_the_sync_fields():
    config = compressed_sync_digits.get_config()
    names = [s["name"] for s in exp.settings(config)]
    assert names == ["baseline"] + [f"fixed_{n}" for n in range(2, 17)] + [
        "dynamic_c3", "dynamic_c4", "dynamic_c5", "dynamic_c6"]
    variant = exp.run_config(config, exp.settings(config)[-1], 2, 11)
    assert (variant.sync.mode, variant.sync.floor, variant.seed, variant.train.eval_every) == (
        "dynamic", 6.0, 2, 11)
    assert config.sync.floor == 5.0 and config.seed == 0            # a copy
    assert [m["name"] for m in exp.monitor_settings(config)] == [
        "baseline", "monitor_M4_F1", "monitor_M8_F0.03", "monitor_M8_F1"]


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
    path = os.path.join(ROOT, "benchmarks", "results", "compressed_sync_digits.json")
    with open(path) as f:
        saved = _strict_json_load(f)
    # the baseline sends float32: no quantiser, so no entropy (null, not NaN)
    assert saved["summary"]["settings"]["baseline"]["mean_entropy_bits"] is None


def test_epochs_to_best_is_first_peak():
    assert exp.epochs_to_best([0.1, 0.5, 0.4, 0.5]) == 2
    assert exp.epochs_to_best([0.1, 0.5, 0.4, 0.5], [0.5, 1.0, 1.5, 2.0]) == 1.0
    with pytest.raises(ValueError, match="accuracy"):
        exp.epochs_to_best([])


def test_compact_drops_only_constant_curves_of_fixed_runs():
    run = {"test_accuracy": [0.5], "raw_bits": [8.0], "num_bits": {"a": [8]},
           "bytes_per_worker": [100.0], "final_accuracy": 0.5}
    results = {"settings": {"fixed_8": {"mode": "fixed", "runs": [run]},
                            "dynamic_c5": {"mode": "dynamic", "runs": [run]}}}
    out = exp.without_fixed_run_curves(results)
    assert out["settings"]["fixed_8"]["runs"][0] == {"final_accuracy": 0.5}
    assert out["settings"]["dynamic_c5"]["runs"][0] == {
        k: v for k, v in run.items() if k != "bytes_per_worker"}
    assert results["settings"]["fixed_8"]["runs"][0] is run   # input untouched
