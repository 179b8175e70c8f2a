"""The chapter-5 driver (neurojax.analysis.layer_learning)."""
import json
import os

import numpy as np
import pytest

from neurojax.analysis import layer_learning as ll


def test_board_is_the_thesis_board():
    x, y = ll.board(3, 400)
    assert x.shape == (400, 2) and x.min() >= -0.5 and x.max() <= 0.5
    tiles = np.clip(np.floor((x + 0.5) * 8), 0, 7).astype(int)     # 8x8 tiles on [-.5, .5]^2
    np.testing.assert_array_equal(y, tiles.sum(1) % 2)
    assert 0.4 < y.mean() < 0.6


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="size"):
        ll.run("huge", str(tmp_path))
    with pytest.raises(ValueError, match="parts"):
        ll.run("quick", str(tmp_path), parts=("lsd", "voronoi"))


def test_spread():
    s = ll.spread([1.0, 3.0])
    assert (s["mean"], s["std"], s["min"], s["max"]) == (2.0, 1.0, 1.0, 3.0)


@pytest.mark.slow
def test_quick_run_writes_json_and_png_with_independent_checks(tmp_path):
    from neurojax.data.on_device import load_split_arrays
    results = ll.run("quick", str(tmp_path / "work"), data_dir=str(tmp_path / "data"))
    path = str(tmp_path / "out.png")
    ll.plot(results, path)
    assert os.path.getsize(path) > 0
    from neurojax.analysis.outputs import write_json
    write_json(results, str(tmp_path / "out.json"), digits=5)
    with open(tmp_path / "out.json") as fh:
        loaded = json.load(fh)
    assert set(loaded) >= {"lsd", "kept", "checkerboard", "thesis"}

    train = load_split_arrays("digits", "train", data_dir=str(tmp_path / "data"))
    x = np.asarray(train["image"], np.float64).reshape(len(train["label"]), -1)
    labels = np.asarray(train["label"])
    onehot = np.eye(10)[labels]
    # LSD of the input: a NumPy least-squares fit, the same for every epoch and seed
    coef = np.linalg.lstsq(x, onehot, rcond=None)[0]
    lsd_input = np.sum((onehot - x @ coef) ** 2) / len(labels)
    for loss in ll.LSD_LOSSES:
        lsd = np.asarray(results["lsd"][loss]["curves"]["lsd/input"])
        assert lsd.shape == (3, 2)                             # epochs 0..2, 2 seeds
        np.testing.assert_allclose(lsd, lsd_input, rtol=1e-3)
    # kept fractions of the digits: brute-force kNN in NumPy
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :20]
    same = labels[nearest] == labels[:, None]
    for k in ll.KS:
        kept = 1.0 - np.mean(np.all(same[:, :k], axis=1))
        assert abs(results["kept"]["sets"]["digits"]["kept"][str(k)] - kept) < 2e-3
    runs = results["checkerboard"]["runs"]
    assert set(runs) == {"unfiltered", "k10"} and runs["k10"]["num_train"] < 5000
    assert abs(runs["k10"]["steps"] - runs["unfiltered"]["steps"]) <= runs["k10"]["steps_per_epoch"]
