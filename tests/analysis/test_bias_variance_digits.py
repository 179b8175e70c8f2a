"""Fig. 1 (neurojax.analysis.bias_variance_digits): the digits grid at a quick size
(figure1), and from separate runs (read_cell / figure1_collect)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import bias_variance_cifar10 as cfg
from neurojax.analysis import bias_variance_digits as figs
from tests.analysis._json import strict_json


def fake_run(root, arg, train_accs, test_acc, finished=True):
    """A workdir as launch.run leaves it: config.json and metrics.jsonl."""
    config = cfg.get_config(arg)
    workdir = os.path.join(root, arg.replace(",", "_").replace("=", ""))
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as fh:
        fh.write(config.to_json_best_effort(indent=2))
    steps = len(train_accs)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as fh:
        for step, acc in enumerate(train_accs, 1):
            fh.write(json.dumps({"step": step, "split": "train", "accuracy": acc,
                                 "loss": 1.0}) + "\n")
            if step == 1:  # an intermediate evaluation
                fh.write(json.dumps({"step": 1, "split": "eval", "accuracy": 0.01}) + "\n")
        if finished:
            fh.write(json.dumps({"step": steps, "split": "eval", "accuracy": test_acc,
                                 "loss": 1.0}) + "\n")
    return workdir


def test_read_cell_takes_the_cell_from_the_transforms_and_the_last_records(tmp_path):
    w = fake_run(tmp_path, "bias=1e-5,noise=0.1,seed=2", [0.2, 0.5, 0.7], 0.6)
    cell = figs.read_cell(w)
    assert (cell["bias"], cell["noise"], cell["seed"]) == (1e-5, 0.1, 2)
    assert (cell["train_acc"], cell["test_acc"], cell["step"]) == (0.7, 0.6, 3)
    unfinished = fake_run(tmp_path, "bias=1e-5,noise=0.1,seed=1", [0.2, 0.5, 0.7], 0.6,
                          finished=False)
    with pytest.raises(ValueError, match="not finished"):
        figs.read_cell(unfinished)
    with pytest.raises(ValueError, match="no config.json"):
        figs.read_cell(str(tmp_path / "missing"))


def test_collect_averages_seeds_per_cell_and_draws_the_heatmaps(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "bias=0,noise=0,seed=0", [0.5, 0.9], 0.80)
    fake_run(runs, "bias=0,noise=0,seed=1", [0.5, 0.7], 0.70)
    fake_run(runs, "bias=1e-3,noise=1,seed=0", [0.5, 0.6], 0.65)
    fake_run(runs, "bias=1e-3,noise=0,seed=0", [0.5, 0.4], 0.30)
    fake_run(runs, "bias=1e-3,noise=1,seed=1", [0.5, 0.6], 0.2, finished=False)
    with pytest.raises(ValueError, match="not finished"):
        figs.figure1_collect([str(runs / "*")], str(tmp_path / "out"))
    out = figs.figure1_collect([str(runs / "*")], str(tmp_path / "out"), skip_unfinished=True)
    s = out["summary"]
    assert s["runs"] == 4 and s["cells"] == 3 and s["seeds_per_cell"] == [1, 2]
    assert s["biases_rel_per_param"] == [0.0, 1e-3] and s["noises_rel"] == [0.0, 1.0]
    assert len(s["skipped"]) == 1 and "seed1" in s["skipped"][0].replace("=", "")
    np.testing.assert_allclose(out["train_acc"], [[0.8, np.nan], [0.4, 0.6]])
    np.testing.assert_allclose(out["test_acc"], [[0.75, np.nan], [0.30, 0.65]])
    assert s["baseline_test_acc"] == pytest.approx(0.75)
    assert s["baseline_test_sem"] == pytest.approx(0.05)  # std(ddof=1) / sqrt(2)
    assert s["best_cell"] == {"bias": 0.0, "noise": 0.0}
    assert (tmp_path / "out" / "bias_variance_fig1_collect.png").stat().st_size > 0
    saved = strict_json(tmp_path / "out" / "bias_variance_fig1_collect.json")
    assert saved["test_acc"][0][1] is None and saved["summary"]["runs"] == 4


@pytest.mark.slow  # suite time: a CLI / quick-run path; -m slow runs it
def test_cli_collects_from_patterns(tmp_path):
    fake_run(tmp_path / "runs", "bias=0,noise=0,seed=0", [0.5, 0.9], 0.8)
    fake_run(tmp_path / "runs", "bias=0,noise=10,seed=0", [0.5, 0.2], 0.1)
    cmd = [sys.executable, "-m", "neurojax.analysis.bias_variance", "--figure", "fig1_collect",
           "--outdir", str(tmp_path / "out")]
    proc = subprocess.run(cmd + ["--workdirs", str(tmp_path / "runs" / "bias0*")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"runs": 2' in proc.stdout
    saved = strict_json(tmp_path / "out" / "bias_variance_fig1_collect.json")
    assert saved["summary"]["noises_rel"] == [0.0, 10.0]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "workdirs" in proc.stderr


def test_non_relative_injection_is_refused(tmp_path):
    w = fake_run(tmp_path, "bias=1e-3,noise=0,seed=0", [0.5, 0.9], 0.8)
    path = os.path.join(w, "config.json")
    with open(path) as fh:
        config = json.load(fh)
    config["optim"]["transforms"][0][1]["relative"] = False
    with open(path, "w") as fh:
        json.dump(config, fh)
    with pytest.raises(ValueError, match="not relative"):
        figs.read_cell(w)


@pytest.mark.slow
def test_runlocal_cells_train_and_collect(tmp_path):
    # two real runs of the :runlocal config (VGG-16 at 1/16 width on the digits, 3
    # full-batch updates each, accumulated over 3 batches) through the training
    # loop, then the heatmaps
    from neurojax.train.loop import train_and_evaluate
    data_dir = str(tmp_path / "tfds")
    for arg in ("runlocal", "runlocal,bias=1e-3,noise=1"):
        config = cfg.get_config(arg)
        config.dataset.data_dir = data_dir
        workdir = str(tmp_path / "runs" / arg.replace(",", "_").replace("=", ""))
        os.makedirs(workdir)
        with open(os.path.join(workdir, "config.json"), "w") as fh:
            fh.write(config.to_json_best_effort(indent=2))
        result = train_and_evaluate(config, workdir, progress=False)
        assert result.num_steps == 9 and config.optim.accumulate_steps == 3
    out = figs.figure1_collect([str(tmp_path / "runs" / "*")], str(tmp_path / "out"))
    s = out["summary"]
    assert s["runs"] == 2 and s["biases_rel_per_param"] == [0.0, 1e-3]
    assert np.all((out["test_acc"][~np.isnan(out["test_acc"])] >= 0))


@pytest.mark.slow
def test_figure1_small_perturbations_are_harmless_large_ones_harm(tmp_path):
    # Fig. 1's verdict: a small relative bias or noise leaves full-batch training
    # where it was, an excessive one destroys it. Digits MLP, 60 steps, 2 seeds.
    biases, noises = [0.0, 1e-3, 0.1], [0.0, 5.0, 40.0]
    out = figs.figure1(str(tmp_path / "out"), biases=biases, noises=noises, num_seeds=2,
                       steps=60, data_dir=str(tmp_path / "tfds"))
    te, tr = np.asarray(out["test_acc"]), np.asarray(out["train_acc"])
    assert te.shape == tr.shape == (3, 3)
    s = out["summary"]
    assert s["baseline_test_acc"] == pytest.approx(te[0, 0]) and te[0, 0] > 0.9  # seen: 0.925
    assert tr[0, 0] > 0.9
    # small: bias 1e-3 per parameter, noise 5 ||g||: within 2 points of the baseline
    assert abs(te[1, 0] - te[0, 0]) < 0.02 and abs(te[0, 1] - te[0, 0]) < 0.02
    assert abs(te[1, 1] - te[0, 0]) < 0.02
    # excessive: bias 0.1 per parameter (||b|| ~ 7 ||g||) or noise 40 ||g||: near chance
    assert np.all(te[2, :] < 0.2) and np.all(tr[2, :] < 0.2)  # seen: 0.075
    assert te[0, 2] < 0.5 and te[1, 2] < 0.5  # seen: 0.20
    assert s["test_acc_max_noise_no_bias"] == pytest.approx(te[0, 2])
    assert s["test_acc_max_bias_no_noise"] == pytest.approx(te[2, 0])
    saved = strict_json(tmp_path / "out" / "bias_variance_fig1.json")
    np.testing.assert_allclose(saved["test_acc"], te, rtol=1e-5)
