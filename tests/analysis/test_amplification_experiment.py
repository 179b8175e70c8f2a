"""The chapter-4 driver (neurojax.analysis.amplification) at tiny size: its
records against the loop's own evaluation, its summaries against direct
NumPy computations, its histograms and its strict JSON."""
import numpy as np
import pytest

from neurojax.analysis import amplification as amp
from tests.analysis._json import strict_json


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def digits_runs(data_dir, tmp_path_factory):
    """softmax and exp-GA on the digits MLP: 2 seeds, 4 epochs (the deltas of
    epochs 1 and 4), gradient RMS recorded."""
    base = amp.digits_config(seeds=2, epochs=4, data_dir=data_dir)
    rundir = str(tmp_path_factory.mktemp("runs"))
    runs = amp.run_part(base, ("softmax", "exp_ga"), amp.DIGITS_LR, rundir, record_rms=True,
                        progress=False)
    return base, runs


@pytest.mark.slow
def test_probe_errors_match_the_loops_own_evaluation(digits_runs):
    """The hook's vmapped forward pass and the loop's grain evaluation of the
    final state agree image for image, per replica."""
    _, runs = digits_runs
    for run in runs.values():
        errors = np.asarray(run["test_errors"])
        assert errors.shape == (4, 2) and run["num_test"] == 360
        loop_errors = np.round((1 - np.asarray(run["loop_final_accuracy"])) * 360)
        np.testing.assert_array_equal(errors[-1], loop_errors)
        assert errors[-1].max() < 0.5 * 360        # it learned (chance: 90% error)


def test_seed_replicas_differ_and_pairs_share_seeds(digits_runs):
    _, runs = digits_runs
    soft = np.asarray(runs["softmax"]["test_errors"])
    assert not np.array_equal(soft[:, 0], soft[:, 1])   # two seeds, two runs
    assert len(runs["softmax"]["train_loss"]) == 4      # one train record per epoch


def test_summary_matches_numpy_over_the_records(digits_runs):
    _, runs = digits_runs
    summ = amp.summarize(runs)
    for name, run in runs.items():
        e = np.asarray(run["test_errors"], np.float64)
        best = e.min(axis=0) / 360 * 100
        assert summ[name]["best_error"]["median"] == pytest.approx(np.median(best))
        assert summ[name]["final_error"]["median"] == pytest.approx(np.median(e[-1]) / 3.6)
        first_min = [int(np.flatnonzero(col == col.min())[0]) + 1 for col in e.T]
        assert summ[name]["epochs_to_best"]["per_seed"] == first_min
        assert summ[name]["epochs_to_best"]["median"] == pytest.approx(np.median(first_min))
    ratio = summ["exp_ga"]["epochs_to_best_ratio_vs_softmax"]
    assert ratio == pytest.approx(np.median(summ["exp_ga"]["epochs_to_best"]["per_seed"]) /
                                  np.median(summ["softmax"]["epochs_to_best"]["per_seed"]))
    diff = summ["exp_ga"]["vs_softmax"]
    d = np.asarray(summ["exp_ga"]["best_error"]["per_seed"]) - np.asarray(
        summ["softmax"]["best_error"]["per_seed"])
    assert diff["mean_points"] == pytest.approx(d.mean())
    assert diff["mean_images"] == pytest.approx(d.mean() * 3.6)


def test_summary_on_hand_made_errors():
    """Ties go to the first epoch; percentages use the test-set size."""
    errors = [[10, 5], [4, 5], [4, 7]]        # [epoch][seed]
    s = amp.summarize_errors(errors, 200)
    assert s["epochs_to_best"]["per_seed"] == [2.0, 1.0]
    assert s["best_error"]["per_seed"] == [2.0, 2.5]
    assert s["final_error"]["per_seed"] == [2.0, 3.5]
    assert s["median_curve"] == [3.75, 2.25, 2.75]


def test_paired_difference_resolves_a_consistent_shift_only():
    rng = np.random.default_rng(0)
    base = rng.normal(3.0, 0.5, 20)
    image = 100 / 360
    same = amp.paired_difference(base, base, num_test=360)
    assert same["mean_points"] == 0 and not same["resolvable"]
    shifted = amp.paired_difference(base + image, base, num_test=360)
    assert shifted["mean_images"] == pytest.approx(1.0) and shifted["resolvable"]
    # +-1 image per seed, balanced: the spread swamps a zero mean
    noise = amp.paired_difference(base + np.tile([1, -1], 10) * image, base, num_test=360)
    assert noise["mean_points"] == pytest.approx(0, abs=1e-12) and not noise["resolvable"]
    assert noise["seed_std_points"] == pytest.approx(image)


def test_delta_histograms_count_every_output(digits_runs):
    _, runs = digits_runs
    for name, run in runs.items():
        assert set(run["deltas"]) == {"1", "4"}
        for h in run["deltas"].values():
            assert sum(h["counts"]) == amp.DELTA_BATCH * 10
            assert h["edges"][0] == h["min"] and h["edges"][-1] == h["max"]
    # softmax deltas lie in [-1, 1]; exp-GA's y > 0, so y - t > -16
    assert all(-1 <= v <= 1 for h in runs["softmax"]["deltas"].values()
               for v in (h["min"], h["max"]))
    assert all(h["min"] > -16 for h in runs["exp_ga"]["deltas"].values())


def test_histogram_of_known_values():
    h = amp.histogram([0.0, 0.5, 1.0, 1.0, -2.0], bins=3)
    assert h["counts"] == [1, 0, 4] and sum(h["counts"]) == 5
    assert h["fraction_abs_gt_1"] == pytest.approx(0.2)


def test_gradient_rms_per_layer_and_epoch(digits_runs):
    _, runs = digits_runs
    rms = runs["softmax"]["grad_rms"]
    assert set(rms["replica0"]) == {"dense_0/kernel", "dense_0/bias", "head/kernel", "head/bias"}
    for values in rms["replica0"].values():
        assert len(values) == 4 and all(v > 0 for v in values)
    diag = amp.diagnostics(runs)
    ratio = diag["grad_rms_ratio_vs_softmax"]["exp_ga"]["dense_0/kernel"]
    np.testing.assert_allclose(ratio, np.asarray(runs["exp_ga"]["grad_rms"]["replica0"][
        "dense_0/kernel"]) / np.asarray(rms["replica0"]["dense_0/kernel"]), rtol=1e-6)
    assert len(diag["softmax_median_s"]) == 4 and min(diag["softmax_median_s"]) > 1


def test_written_json_is_strict_and_png_drawn(digits_runs, tmp_path):
    base, runs = digits_runs
    runs = {**runs, "pow3_ga": {"pair": "pow3_ga", "lr": 9.0, "diverged": "non-finite loss"}}
    results = {"digits": amp._part_result(base, runs, 1.0),
               "shapes": {**amp._part_result(base, runs, 1.0), "diagnostics": amp.diagnostics(runs)}}
    paths = amp.write(results, str(tmp_path), "amplification_test")
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "amplification_test_digits.json", "amplification_test_digits.png",
        "amplification_test_shapes.json", "amplification_test_shapes.png"]
    saved = strict_json(tmp_path / "amplification_test_digits.json")
    assert saved["runs"]["softmax"]["test_errors"] == runs["softmax"]["test_errors"]
    assert saved["summary"]["exp_ga"]["vs_softmax"]["resolvable"] in (True, False)
    # a diverged pair is kept as such and left out of the summaries
    assert saved["runs"]["pow3_ga"]["diverged"] and "pow3_ga" not in saved["summary"]
    assert amp.headline(results)["digits"]["diverged"] == ["pow3_ga"]
    assert (tmp_path / "amplification_test_shapes.png").stat().st_size > 10_000


def test_bad_pair_and_reused_workdir_are_refused(digits_runs, tmp_path):
    base, _ = digits_runs
    with pytest.raises(ValueError, match="pair"):
        amp.pair_config(base, "softplus", 0.1)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="fresh"):
        amp.run_pair(amp.pair_config(base, "softmax", 0.1), "softmax", str(tmp_path),
                     test={}, probe={})


def test_epochs_ratio_and_comparisons():
    fast, slow = [3, 4, 5, 4, 3, 4], [6, 8, 10, 8, 6, 8]
    r = amp.epochs_ratio(fast, slow)
    assert r["ratio"] == pytest.approx(0.5) and r["resolvable"]
    assert not amp.epochs_ratio(fast, fast)["resolvable"]
    summary = {name: amp.summarize_errors(e, 100) for name, e in (
        ("linear", [[5, 6], [3, 4]]), ("sigmoid", [[6, 6], [6, 6]]), ("softmax", [[4, 4], [5, 3]]))}
    comp = amp.comparisons(summary, 100)
    assert set(comp) == {"linear/sigmoid", "linear/softmax"}
    assert comp["linear/sigmoid"]["best_error"]["mean_points"] == pytest.approx(-2.5)
    assert comp["linear/sigmoid"]["epochs_to_best"]["ratio"] == pytest.approx(2.0)
