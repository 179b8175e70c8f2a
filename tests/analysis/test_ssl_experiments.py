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


def test_configure_takes_seed_and_data_dir_from_the_config(data_dir):
    config = se.configure(sweep(data_dir, seed=3), {})
    assert config.seed == 3 and config.dataset.data_dir == data_dir
    assert se.configure(sweep(data_dir, seed=3), {"seed": 5}).seed == 5


def test_spearman_matches_a_rank_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    expected = np.corrcoef(rx, ry)[0, 1]
    assert se.spearman(x, y) == pytest.approx(expected)
    assert np.isnan(se.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


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


def test_alpha_experiment_correlates_cached_runs(data_dir, tmp_path):
    """With every run's result already on disk, the experiment only reads
    them: the rank correlations are those of the planted numbers."""
    import scipy.stats
    settings = sweep(data_dir, epochs=1)
    names = ([("alpha", n) for n, _ in se.alpha_grid()]
             + [("projector", n) for n, _ in se.projector_grid([16, 64])[0]])
    rng = np.random.default_rng(0)
    planted = {}
    for i, (exp, name) in enumerate(names):
        os.makedirs(tmp_path / exp / name)
        final = {"alpha": float(1 + rng.random()), "ridge_accuracy": float(rng.random()),
                 "knn_accuracy": float(rng.random())}
        planted[name] = final
        with open(tmp_path / exp / name / "result.json", "w") as f:
            json.dump({"final": final, "history": [], "final_loss": float(i), "config": {}}, f)
    summary = se.alpha_experiment(str(tmp_path), settings, [16, 64], progress=False)
    pts = summary["points"]
    assert len(pts) == len(names)
    expected = scipy.stats.spearmanr([p["alpha"] for p in pts],
                                     [p["ridge_accuracy"] for p in pts]).statistic
    assert summary["spearman"]["ridge_accuracy"]["alpha"] == pytest.approx(expected)
    assert os.path.getsize(tmp_path / "alpha.png") > 0


def test_importing_the_module_defines_no_flags_and_no_configs_import():
    code = ("import sys; from absl import flags; "
            "import neurojax.analysis.ssl_experiments; "
            "assert 'configs' not in sys.modules, 'imported configs'; "
            "assert 'outdir' not in flags.FLAGS and 'config' not in flags.FLAGS, 'flags'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_command_line_reads_cached_runs_with_config_overrides(data_dir, tmp_path):
    """The CLI's --config and its overrides reach the runs: with the seeds
    sweep's results planted at the workdirs of seeds 0, 1, 2 (as the
    --config.dataset.data_dir override resolves them), the command only reads
    them back and reports their mean."""
    settings = sweep(data_dir, epochs=1)
    for seed, acc in ((0, 0.25), (1, 0.5), (2, 0.75)):
        config = se.configure(settings, {"seed": seed})
        workdir = se._workdir(str(tmp_path), config, str(tmp_path / "seeds" / f"seed{seed}"))
        os.makedirs(workdir)
        with open(os.path.join(workdir, "result.json"), "w") as f:
            json.dump({"final": {"ridge_accuracy": acc, "knn_accuracy": acc}, "history": [],
                       "final_loss": 0.0, "config": {}}, f)
    subprocess.run([sys.executable, "-m", "neurojax.analysis.ssl_experiments",
                    "--experiment=seeds", "--epochs=1", f"--outdir={tmp_path}",
                    f"--config.dataset.data_dir={data_dir}"],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    with open(tmp_path / "seeds.json") as f:
        out = json.load(f)
    assert out["ridge_accuracy"]["mean"] == pytest.approx(0.5)
    assert out["epochs"] == 1 and out["seed"] == 0
