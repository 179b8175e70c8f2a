"""Smoke test of the shapes calibration script on a tiny shapes config (seconds)."""

import json

import chex
import numpy as np
import pytest

from configs import supervised_shapes
from neurojax import plots
from neurojax.analysis import shapes_calibration as cal
from neurojax.data import shapes, sources
from neurojax.train import validate_config

TINY = shapes.ShapesConfig(name="calibration_tiny", description="tests", image_size=8,
                           num_train=200, num_test=100)


@pytest.fixture
def tiny_dataset(monkeypatch):
    """Registers a tiny shapes config as 'shapes_tiny' / config_name 'tiny'."""
    monkeypatch.setitem(sources.DATASETS, "shapes_tiny", "neurojax_shapes/calibration_tiny")
    monkeypatch.setitem(sources._OFFLINE, "shapes_tiny",
                        lambda data_dir: shapes.NeurojaxShapes(config=TINY, data_dir=data_dir))
    monkeypatch.setitem(cal.CONFIG_DATASETS, "tiny", "shapes_tiny")


@pytest.mark.slow
def test_pieces_on_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 8, 8, 3)).astype(np.float32)
    y = np.arange(60) % 10
    logistic = cal.logistic_probe(x[:40], y[:40], x[40:], y[40:])
    assert 0 <= logistic["test_accuracy"] <= 1 and logistic["train_accuracy"] == 1.0
    assert logistic["num_features"] == 8 * 8 * 3
    # kNN with k=1 on the training set itself is exact.
    assert cal.knn_probe(x, y, x, y, k=1)["test_accuracy"] == 1.0
    features = cal.random_encoder_features(x, widths=(4, 8), hidden=16, batch_size=25)
    chex.assert_shape(features["representation"], (60, 16))
    chex.assert_shape(features["conv"], (60, 2 * 2 * 8))
    assert np.all(features["representation"] >= 0)  # post-ReLU
    cal.example_grid(x, y, str(tmp_path / "grid.png"), per_class=3)
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_probes_agree_with_scikit_learn():
    """The library's probes against scikit-learn as the reference: the kNN
    vote exactly, the logistic regression (same C, trained by Adam instead of
    L-BFGS) to within a test point or two."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    means = rng.normal(size=(10, 48)) * 0.6
    y = rng.integers(0, 10, size=700)
    x = (means[y] + rng.normal(size=(700, 48))).astype(np.float32).reshape(700, 4, 4, 3)
    tx, ty, ex, ey = x[:500], y[:500], x[500:], y[500:]
    knn = cal.knn_probe(tx, ty, ex, ey, k=10)["test_accuracy"]
    ref = KNeighborsClassifier(n_neighbors=10, algorithm="brute").fit(
        tx.reshape(500, -1), ty).score(ex.reshape(200, -1), ey)
    assert 0.3 < ref < 0.95 and knn == pytest.approx(ref, abs=1e-6)

    ours = cal.logistic_probe(tx, ty, ex, ey, c=0.05)
    assert ours["steps"] == 4000 and ours["epochs"] == 4000     # one batch per epoch
    scaler = StandardScaler().fit(tx.reshape(500, -1))
    clf = LogisticRegression(C=0.05, max_iter=5000).fit(scaler.transform(tx.reshape(500, -1)),
                                                        ty)
    ref = clf.score(scaler.transform(ex.reshape(200, -1)), ey)
    assert 0.3 < ref < 0.95
    assert ours["test_accuracy"] == pytest.approx(ref, abs=0.011)


@pytest.mark.slow  # suite time: a CLI / quick-run path; -m slow runs it
def test_calibrate_writes_json_and_png(tiny_dataset, tmp_path, monkeypatch):
    # The training loop's curves figure costs seconds and is tested with the loop.
    monkeypatch.setattr(plots, "plot_training_curves", lambda *args, **kwargs: None)
    overrides = {
        "model.widths": (4,), "model.hidden": 8, "dataset.batch_size": 50,
        "dataset.eval_batch_size": 100, "train.num_epochs": 0, "train.num_steps": 3,
        "train.log_every": 1, "train.eval_every": 0, "train.checkpoint_every": 0,
    }
    results = cal.calibrate("tiny", str(tmp_path / "out"), data_dir=str(tmp_path / "tfds"),
                            probe_train_examples=150, knn_k=3, supervised_overrides=overrides,
                            config=supervised_shapes.get_config("small"))
    with open(tmp_path / "out" / "calibration.json") as f:
        stored = json.load(f)
    assert stored == json.loads(json.dumps(results))
    assert (tmp_path / "out" / "examples.png").stat().st_size > 0
    assert stored["dataset"] == "shapes_tiny" and stored["image_shape"] == [8, 8, 3]
    assert stored["num_train"] == 200 and stored["prepare_seconds"] is not None
    assert stored["pixels_logistic"]["num_train"] == 150
    assert stored["pixels_logistic"]["steps"] == 4000
    for key in ("pixels_logistic", "pixels_knn", "random_encoder_probe", "random_conv_probe",
                "supervised"):
        assert 0 <= stored[key]["test_accuracy"] <= 1, key
    assert stored["random_encoder_probe"]["num_features"] == 8
    assert stored["supervised"]["num_steps"] == 3


def test_config_arguments():
    for arg in ("", "small", "runlocal"):
        validate_config(supervised_shapes.get_config(arg))
    assert supervised_shapes.get_config("runlocal").dataset.name == "shapes_small"
    with pytest.raises(ValueError, match="config argument"):
        supervised_shapes.get_config("big")


def test_supervised_config_follows_the_dataset_config():
    base = supervised_shapes.get_config("small")
    config = cal.supervised_config(base, "small", "/data", seed=3,
                                   overrides={"train.num_epochs": 2})
    assert config.dataset.name == "shapes_small" and config.dataset.data_dir == "/data"
    assert config.seed == 3 and config.train.num_epochs == 2
    assert base.seed == 0 and base.dataset.data_dir == ""  # the base is not changed
    assert cal.supervised_config(base, "default").dataset.name == "shapes"
    with pytest.raises(ValueError, match="config must be"):
        cal.supervised_config(None, "small")
    with pytest.raises(ValueError, match="config_name"):
        cal.calibrate("huge", "/tmp/unused")
