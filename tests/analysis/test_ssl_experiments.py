"""The SSL experiment driver: grids, per-run configs, rank correlation, caching."""
import json
import os

import numpy as np
import pytest

from neurojax.analysis import ssl_experiments as se
from neurojax.train import validate_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_projector_grid_scales_beta_with_one_over_d():
    grid, fixed = se.projector_grid([16, 64, 256], c=5.12)
    lambd = {name: o["loss.lambd"] for name, o in grid}
    assert lambd["d16_scaled"] == pytest.approx(0.32) and lambd["d256_scaled"] == pytest.approx(0.02)
    assert fixed == pytest.approx(0.02) and lambd["d16_fixed"] == lambd["d64_fixed"] == fixed
    assert "d256_fixed" not in lambd  # the same run as d256_scaled


def test_configure_applies_overrides_and_epoch_intervals_of_the_subset(data_dir):
    base = se.Base(epochs=3, eval_every_epochs=1, data_dir=data_dir)
    config = se.configure(base, {"views.num_views": 4, "dataset.fraction": 0.5,
                                 "projector.output_dim": 64})
    validate_config(config)
    assert config.views.num_views == 4 and config.dataset.fraction == 0.5
    # shapes_small has 10,000 training images: 5,000 kept, 19 batches of 256
    assert config.train.eval_every == 19 == config.train.checkpoint_every
    # beta follows the projector dimension unless overridden
    assert config.loss.lambd == pytest.approx(5.12 / 64)
    assert config.train.num_epochs == 3


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
    base = se.Base(epochs=2, data_dir=data_dir)
    a = se.configure(base, {"projector.output_dim": 256, "loss.lambd": 5.12 / 256})
    b = se.configure(base, {"views.num_views": 2, "dataset.fraction": 1.0})
    c = se.configure(base, {"views.num_views": 4})
    first = se._workdir(str(tmp_path), a, "projector/d256")
    assert se._workdir(str(tmp_path), b, "views/m2") == first == "projector/d256"
    assert se._workdir(str(tmp_path), c, "views/m4") == "views/m4"


def test_alpha_experiment_correlates_cached_runs(data_dir, tmp_path):
    """With every run's result already on disk, the experiment only reads
    them: the rank correlations are those of the planted numbers."""
    import scipy.stats
    base = se.Base(epochs=1, data_dir=data_dir)
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
    summary = se.alpha_experiment(str(tmp_path), base, [16, 64], progress=False)
    pts = summary["points"]
    assert len(pts) == len(names)
    expected = scipy.stats.spearmanr([p["alpha"] for p in pts],
                                     [p["ridge_accuracy"] for p in pts]).statistic
    assert summary["spearman"]["ridge_accuracy"]["alpha"] == pytest.approx(expected)
    assert os.path.getsize(tmp_path / "alpha.png") > 0
