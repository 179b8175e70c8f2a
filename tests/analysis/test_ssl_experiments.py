"""The SSL experiment driver: grids, per-run configs, rank correlation, caching."""
import json
import os

import subprocess
import sys

import numpy as np
import pytest

from configs import ssl_shapes
from neurojax.analysis import ssl_experiments as se
from neurojax.train import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def sweep(data_dir, seed=0, **kwargs):
    config = ssl_shapes.get_config("small")
    config.dataset.data_dir = data_dir
    config.seed = seed
    return se.SweepSettings(config=config, **kwargs)


def test_projector_grid_scales_beta_with_one_over_d():
    grid, fixed = se.projector_grid([16, 64, 256], c=5.12)
    lambd = {name: o["loss.lambd"] for name, o in grid}
    assert lambd["d16_scaled"] == pytest.approx(0.32) and lambd["d256_scaled"] == pytest.approx(0.02)
    assert fixed == pytest.approx(0.02) and lambd["d16_fixed"] == lambd["d64_fixed"] == fixed
    assert "d256_fixed" not in lambd  # the same run as d256_scaled


@pytest.mark.slow
def test_configure_applies_overrides_and_epoch_intervals_of_the_subset(data_dir):
    settings = sweep(data_dir, epochs=3, eval_every_epochs=1)
    config = se.configure(settings, {"views.num_views": 4, "dataset.fraction": 0.5,
                                 "projector.output_dim": 64})
    validate_config(config)
    assert config.views.num_views == 4 and config.dataset.fraction == 0.5
    # shapes_small has 10,000 training images: 5,000 kept, 19 batches of 256
    assert config.train.eval_every == 19 == config.train.checkpoint_every
    # beta follows the projector dimension unless overridden
    assert config.loss.lambd == pytest.approx(5.12 / 64)
    assert config.train.num_epochs == 3
    # the base config itself is left as it was
    assert settings.config.views.num_views == 2 and settings.config.train.num_epochs == 30


@pytest.mark.slow
def test_configure_takes_seed_and_data_dir_from_the_config(data_dir):
    config = se.configure(sweep(data_dir, seed=3), {})
    assert config.seed == 3 and config.dataset.data_dir == data_dir
    assert se.configure(sweep(data_dir, seed=3), {"seed": 5}).seed == 5


def test_a_finished_run_is_read_back_not_rerun(tmp_path):
    cached = {"final": {"ridge_accuracy": 0.5}, "history": [], "final_loss": 1.0, "config": {}}
    with open(tmp_path / "result.json", "w") as f:
        json.dump(cached, f)
    assert se.run(config=None, workdir=str(tmp_path)) == cached


def test_identical_configs_share_a_workdir(data_dir, tmp_path):
    settings = sweep(data_dir, epochs=2)
    a = se.configure(settings, {"projector.output_dim": 256, "loss.lambd": 5.12 / 256})
    b = se.configure(settings, {"views.num_views": 2, "dataset.fraction": 1.0})
    c = se.configure(settings, {"views.num_views": 4})
    first = se._workdir(str(tmp_path), a, "projector/d256")
    assert se._workdir(str(tmp_path), b, "views/m2") == first == "projector/d256"
    assert se._workdir(str(tmp_path), c, "views/m4") == "views/m4"


def plant(outdir, experiment, name, seed, final, *, history=(), final_loss=0.0):
    """A finished run's result.json at the sweep's default workdir."""
    workdir = os.path.join(outdir, experiment, name, f"seed{seed}")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump({"final": final, "history": list(history), "final_loss": final_loss,
                   "config": {"loss": {"lambd": 0.5}}}, f)


def test_sweep_settings_refuse_bad_lengths_and_seeds(data_dir):
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        sweep(data_dir, steps=-1)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        sweep(data_dir, seeds=(0, 0))
    with pytest.raises(ValueError, match="eval_every_steps must be a positive int"):
        sweep(data_dir, eval_every_steps=0)
    assert sweep(data_dir, seed=4).seed_list == (4,)
    assert sweep(data_dir, seeds=(1, 2)).seed_list == (1, 2)


def test_configure_by_steps_scales_a_fraction_run_to_equal_epochs(data_dir):
    settings = sweep(data_dir, steps=1000, eval_every_steps=250)
    full = se.configure(settings, {})
    quarter = se.configure(settings, {"views.num_views": 8, "dataset.fraction": 0.25})
    validate_config(full)
    assert (full.train.num_steps, full.train.num_epochs, full.train.eval_every) == (1000, 0, 250)
    assert quarter.train.num_steps == 250 and quarter.train.eval_every == 250
    assert se.configure(settings, {"dataset.fraction": 0.1}).train.eval_every == 100


def _history(steps, acc):
    return [{"step": s, "epoch": s / 39, "train_seconds": 0.1 * s,
             "ridge_accuracy": a, "knn_accuracy": a / 2} for s, a in zip(steps, acc)]


def test_views_experiment_compares_seed_by_seed_at_equal_epochs_and_compute(data_dir, tmp_path):
    """Planted histories: each comparison is the per-seed difference read at
    the stated steps (m = 4 at 500 and m = 8 at 250 against m = 2 at 1000)."""
    import scipy.stats
    settings = sweep(data_dir, steps=1000, seeds=(0, 1, 2))
    steps = [250, 500, 750, 1000]
    rng = np.random.default_rng(0)
    planted = {}
    for m, f in se.VIEW_SETTINGS:
        name = f"m{m}_f{int(100 * f)}"
        own = [s for s in steps if s <= 1000 * f]
        for seed in (0, 1, 2):
            acc = rng.random(len(own)).tolist()
            planted[name, seed] = dict(zip(own, acc))
            plant(str(tmp_path), "views", name, seed,
                  {"ridge_accuracy": acc[-1], "knn_accuracy": acc[-1] / 2},
                  history=_history(own, acc))
    summary = se.views_experiment(str(tmp_path), settings, progress=False)
    rows = {(c["kind"], c["setting"]): c for c in summary["comparisons"]}
    assert len(rows) == 6

    def check(kind, setting, step, ref_step, claim):
        row = rows[kind, setting]
        expected = [planted[setting, s][step] - planted["m2_f100", s][ref_step]
                    if setting != "m8_f100" or kind != "equal epochs" else
                    planted[setting, s][step] - planted["m4_f100", s][ref_step]
                    for s in (0, 1, 2)]
        assert row["ridge_accuracy"]["per_seed"] == pytest.approx(expected)
        t = scipy.stats.t.ppf(0.975, 2) * np.std(expected, ddof=1) / np.sqrt(3)
        assert row["ridge_accuracy"]["ci95"] == pytest.approx(
            [np.mean(expected) - t, np.mean(expected) + t])
        assert row["claim"] == claim

    check("equal epochs", "m4_f100", 1000, 1000, "greater")
    check("equal epochs", "m8_f100", 1000, 1000, "greater")
    check("equal compute", "m4_f100", 500, 1000, "greater")
    check("equal compute", "m8_f100", 250, 1000, "greater")
    check("equal epochs, fraction of the data", "m4_f50", 500, 1000, "match_or_beat")
    check("equal epochs, fraction of the data", "m8_f25", 250, 1000, "match_or_beat")
    assert rows["equal compute", "m8_f100"]["train_seconds"]["m8_f100"] == pytest.approx(25.0)
    assert os.path.getsize(tmp_path / "views.png") > 0


def test_views_experiment_says_when_no_probe_sits_at_the_equal_compute_step(data_dir,
                                                                             tmp_path):
    settings = sweep(data_dir, steps=600, eval_every_steps=200, seeds=(0,))
    for m in (2, 8):
        plant(str(tmp_path), "views", f"m{m}_f100", 0,
              {"ridge_accuracy": 0.5, "knn_accuracy": 0.4},
              history=_history([200, 400, 600], [0.3, 0.4, 0.5]))
    summary = se.views_experiment(str(tmp_path), settings, settings=((2, 1.0), (8, 1.0)),
                                  progress=False)
    skipped = [c for c in summary["comparisons"] if c["kind"] == "equal compute"]
    assert len(skipped) == 1 and "no eval record at step 150" in skipped[0]["skipped"]


def test_projector_experiment_pairs_scaled_against_fixed_beta(data_dir, tmp_path):
    settings = sweep(data_dir, steps=100, seeds=(0, 1))
    acc = {}
    for name, _ in se.projector_grid([16, 64])[0]:
        for seed in (0, 1):
            acc[name, seed] = 0.3 + 0.1 * seed + (0.05 if "scaled" in name else 0.0)
            plant(str(tmp_path), "projector", name, seed,
                  {"ridge_accuracy": acc[name, seed], "knn_accuracy": 0.2, "alpha": 1.0,
                   "effective_rank": 10.0})
    summary = se.projector_experiment(str(tmp_path), settings, [16, 64], progress=False)
    first = summary["comparisons"][0]
    assert (first["setting"], first["reference"]) == ("d16_scaled", "d16_fixed")
    assert first["ridge_accuracy"]["per_seed"] == pytest.approx([0.05, 0.05])
    assert first["ridge_accuracy"]["verdict"] == "reproduced"  # zero spread, positive
    row = summary["rows"][0]
    assert row["ridge_accuracy"]["mean"] == pytest.approx(0.4)


def test_alpha_experiment_correlates_every_run_and_selects_with_alpha(data_dir, tmp_path):
    """With every run's result already on disk, the experiment only reads
    them: the rank correlations are those of the planted numbers, and
    Algorithm 1 picks from the same pool."""
    import scipy.stats
    settings = sweep(data_dir, steps=100, seeds=(0, 1))
    names = ([("alpha", n) for n, _ in se.alpha_grid(settings.config)]
             + [("projector", n) for n, _ in se.projector_grid([16, 64])[0]]
             + [("views", n) for n, _ in se.views_grid()])
    rng = np.random.default_rng(0)
    for i, (exp, name) in enumerate(names):
        for seed in (0, 1):
            final = {"alpha": float(1 + rng.random()), "ridge_accuracy": float(rng.random()),
                     "knn_accuracy": float(rng.random())}
            plant(str(tmp_path), exp, name, seed, final, final_loss=float(i + seed))
    # a run reached from two grids is one point: point views/m2_f100 at
    # projector/d16_scaled's workdirs
    index = {}
    for seed in (0, 1):
        config = se.configure(settings, {**dict(se.views_grid())["m2_f100"], "seed": seed})
        index[se.config_key(config)] = str(tmp_path / "projector" / "d16_scaled" / f"seed{seed}")
    with open(tmp_path / "runs.json", "w") as f:
        json.dump(index, f)
    summary = se.alpha_experiment(str(tmp_path), settings, [16, 64], progress=False,
                                  num_orderings=5)
    pts = summary["points"]
    assert len(pts) == 2 * (len(names) - 1)
    assert not any(p["run"] == "views/m2_f100" for p in pts)
    expected = scipy.stats.spearmanr([p["alpha"] for p in pts],
                                     [p["ridge_accuracy"] for p in pts]).statistic
    corr = summary["spearman"]["ridge_accuracy"]["alpha"]
    assert corr["rho"] == pytest.approx(expected) and corr["n"] == len(pts)
    assert corr["ci95"][0] <= corr["rho"] <= corr["ci95"][1]
    assert summary["excluded_nonfinite_alpha"] == []
    selection = summary["model_selection"]
    assert selection["pool_best_ridge_accuracy"] == max(p["ridge_accuracy"] for p in pts)
    assert 0 <= selection["fastssl"]["mean_shortfall"] <= 1
    assert os.path.getsize(tmp_path / "alpha.png") > 0


@pytest.mark.slow
def test_importing_the_module_defines_no_flags_and_no_configs_import():
    code = ("import sys; from absl import flags; "
            "import neurojax.analysis.ssl_experiments; "
            "assert 'configs' not in sys.modules, 'imported configs'; "
            "assert 'outdir' not in flags.FLAGS and 'config' not in flags.FLAGS, 'flags'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow
def test_command_line_reads_cached_runs_with_config_overrides(data_dir, tmp_path):
    """The CLI's --config, its overrides, --steps and --seeds reach the runs:
    with the projector runs planted at the workdirs their configs resolve to
    (with the --config.dataset.data_dir override), the command only reads
    them back and reports their comparison."""
    settings = sweep(data_dir, steps=40, seeds=(0, 1))
    for name, overrides in se.projector_grid([16, 64])[0]:
        for seed, acc in ((0, 0.25), (1, 0.5)):
            config = se.configure(settings, {**overrides, "seed": seed})
            default = str(tmp_path / "projector" / name / f"seed{seed}")
            workdir = se._workdir(str(tmp_path), config, default)
            assert workdir == default
            bonus = 0.1 if "scaled" in name else 0.0
            plant(str(tmp_path), "projector", name, seed,
                  {"ridge_accuracy": acc + bonus, "knn_accuracy": acc, "alpha": 1.0,
                   "effective_rank": 5.0})
    subprocess.run([sys.executable, "-m", "neurojax.analysis.ssl_experiments",
                    "--experiment=projector", "--steps=40", "--seeds=0,1", "--dims=16,64",
                    f"--outdir={tmp_path}", f"--config.dataset.data_dir={data_dir}"],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    with open(tmp_path / "projector.json") as f:
        out = json.load(f)
    assert out["comparisons"][0]["ridge_accuracy"]["mean"] == pytest.approx(0.1)
    assert out["steps"] == 40 and out["seeds"] == [0, 1] and "--seeds=0,1" in out["command"]


def test_alpha_experiment_leaves_out_runs_without_an_alpha(data_dir, tmp_path):
    """A collapsed run (alpha NaN) is listed, not ranked or selected."""
    settings = sweep(data_dir, steps=100, seeds=(0,))
    names = ([("alpha", n) for n, _ in se.alpha_grid(settings.config)]
             + [("projector", n) for n, _ in se.projector_grid([16, 64])[0]]
             + [("views", n) for n, _ in se.views_grid()])
    for i, (exp, name) in enumerate(names):
        alpha = float("nan") if name == "lambd0.2" else 1.0 + 0.1 * i
        plant(str(tmp_path), exp, name, 0, {"alpha": alpha, "ridge_accuracy": 0.1 * (i % 7),
                                            "knn_accuracy": 0.1}, final_loss=float(i))
    summary = se.alpha_experiment(str(tmp_path), settings, [16, 64], progress=False,
                                  num_orderings=3)
    assert summary["excluded_nonfinite_alpha"] == [("alpha/lambd0.2", 0)]
    assert len(summary["points"]) == len(names) - 1
    assert np.isfinite(summary["spearman"]["ridge_accuracy"]["alpha"]["rho"])
