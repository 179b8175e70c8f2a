"""The CPU-scale SSL sweep (issue 22): per-run configs, records, the quiet-step budget."""
import dataclasses
import json

import numpy as np
import pytest
import scipy.stats

from configs import ssl_shapes, supervised_shapes
from neurojax.analysis import ssl_sweep as sw
from neurojax.train import validate_config


def test_every_setting_gives_a_config_and_some_validate():
    base = ssl_shapes.get_config()
    for name, overrides in sw.SETTINGS.items():
        config = sw.sweep_config(base, overrides, steps=7, seed=2)
        if name in ("color_strong_gray50", "lars"):  # validation costs ~1 s each
            validate_config(config)
        assert config.dataset.fraction == sw.REFERENCE["dataset.fraction"] or \
            "dataset.fraction" in overrides, name
        assert (config.train.num_steps, config.train.num_epochs, config.seed) == (7, 0, 2)
        assert config.train.eval_every == 7 and config.train.checkpoint_every == 0


def test_overrides_are_applied_and_beta_follows_the_projector():
    base = ssl_shapes.get_config()
    config = sw.sweep_config(base, {"projector.output_dim": 64,
                                    "views.augment.grayscale_p": 0.5,
                                    "model.global_pool": True}, steps=3)
    assert config.loss.lambd == pytest.approx(5.12 / 64)
    assert config.views.augment.grayscale_p == 0.5 and config.model.global_pool
    assert base.projector.output_dim == 256 and "global_pool" not in base.model  # untouched
    base.lock()  # as a --config flag gives it
    locked = sw.sweep_config(base, {"views.augment.hue": 0.3, "model.global_pool": True}, steps=3)
    assert locked.views.augment.hue == 0.3 and locked.model.global_pool
    explicit = sw.sweep_config(base, {"projector.output_dim": 64, "loss.lambd": 0.1}, steps=3)
    assert explicit.loss.lambd == 0.1


def test_bad_overrides_and_steps_are_named():
    base = ssl_shapes.get_config()
    with pytest.raises(ValueError, match="optim.learning_rate"):
        sw.sweep_config(base, {"optim.learning_rate": 1.0}, steps=3)
    with pytest.raises(ValueError, match="steps"):
        sw.sweep_config(base, {}, steps=0)


def test_supervised_config_uses_the_ssl_encoder_with_a_linear_head():
    ssl = sw.sweep_config(ssl_shapes.get_config(), {"model.widths": (8, 16)}, steps=3)
    base = supervised_shapes.get_config()
    base.lock()
    config = sw.supervised_config(base, steps=11, ssl_config=ssl)
    validate_config(config)
    assert config.model.widths == (8, 16) and config.model.hidden is None
    assert config.model.batch_norm and config.dataset.fraction == ssl.dataset.fraction
    assert (config.train.num_steps, config.train.eval_every) == (11, 11)


@pytest.mark.parametrize("augment", ["ssl_views", "crop_flip"])
def test_augmented_supervised_ceiling_draws_the_ssl_recipes_views(augment):
    from neurojax.train.augmentation import config_recipe
    from neurojax.train.ssl import augment_recipe
    ssl = sw.sweep_config(ssl_shapes.get_config(), sw.SETTINGS["res16_strong"], steps=3)
    config = sw.supervised_config(supervised_shapes.get_config(), steps=5, ssl_config=ssl,
                                  augment=augment)
    validate_config(config)
    expected = augment_recipe(ssl.views, 16)
    if augment == "crop_flip":
        expected = dataclasses.replace(expected, jitter_p=0.0, grayscale_p=0.0)
    assert config_recipe(config, 16) == expected
    assert expected.crop_scale == (0.2, 1.0) and expected.mean is not None
    assert sw.supervised_config(supervised_shapes.get_config(), steps=5,
                                ssl_config=ssl).get("augment") is None
    with pytest.raises(ValueError, match="augment must be one of"):
        sw.supervised_config(supervised_shapes.get_config(), steps=5, ssl_config=ssl,
                             augment="flip")


def test_the_15_minute_config_is_the_four_view_recipe_under_a_budget():
    budget, views4 = ssl_shapes.get_config("cpu_15min"), ssl_shapes.get_config("cpu_views4")
    validate_config(budget)
    assert budget.train.max_train_seconds == ssl_shapes.CPU_BUDGET_SECONDS <= 15 * 60
    assert views4.train.max_train_seconds == 0
    budget.train.max_train_seconds = 0.0
    assert budget.to_dict() == views4.to_dict()


def test_the_cpu_config_is_the_sweeps_chosen_setting():
    cpu = ssl_shapes.get_config("cpu")
    validate_config(cpu)
    chosen = sw.sweep_config(ssl_shapes.get_config(), sw.SETTINGS["res16_strong"], steps=5)
    for key in ("dataset.name", "dataset.fraction", "dataset.batch_size", "optim.lr",
                "views.num_views", "projector.output_dim", "loss.lambd", "model.widths"):
        a, b = cpu, chosen
        for part in key.split("."):
            a, b = a[part], b[part]
        assert a == b, key
    assert dict(cpu.views.augment) == dict(chosen.views.augment)
    assert cpu.train.num_steps == ssl_shapes.CPU_STEPS


def test_quiet_step_budget_is_seconds_over_the_scaled_reference_step():
    # reference: 15 s per 39 steps; a step 2.5x as long fits 900 / (2.5 * 15 / 39) steps
    assert sw.quiet_step_budget(900.0, 2.5) == int(900 * 39 / (2.5 * 15))
    assert sw.quiet_step_budget(15.0, 1.0) == 39
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="step_time_ratio"):
            sw.quiet_step_budget(900.0, bad)


def test_seed_summary_is_mean_and_sample_std_per_quantity():
    records = [{"setting": "s", "seed": seed, "ridge_accuracy": r, "knn_accuracy": k,
                "steps": n, "train_seconds_loaded": t}
               for seed, r, k, n, t in ((0, 0.5, 0.4, 100, 10.0), (1, 0.6, 0.45, 110, 11.0),
                                        (2, 0.58, 0.47, 90, 9.5))]
    out = sw.seed_summary(records, wall_seconds=[12, 13, 14])
    assert out["seeds"] == [0, 1, 2]
    for key, values in (("ridge_accuracy", [0.5, 0.6, 0.58]), ("steps", [100, 110, 90]),
                        ("wall_seconds", [12, 13, 14])):
        assert out[key]["per_seed"] == values
        np.testing.assert_allclose(out[key]["mean"], np.mean(values))
        np.testing.assert_allclose(out[key]["std"], np.std(values, ddof=1))
    half = scipy.stats.t.ppf(0.975, 2) * np.std([0.5, 0.6, 0.58], ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(out["ridge_accuracy"]["ci95"],
                               [np.mean([0.5, 0.6, 0.58]) - half, np.mean([0.5, 0.6, 0.58]) + half])
    assert "ci95" not in out["steps"]
    with pytest.raises(ValueError, match="distinct seeds"):
        sw.seed_summary(records[:1] * 2)
    with pytest.raises(ValueError, match="wall_seconds"):
        sw.seed_summary(records, wall_seconds=[1.0])


def test_merge_record_replaces_the_same_run_and_keeps_the_rest(tmp_path):
    path = str(tmp_path / "sweep.json")
    row = {"setting": "a", "steps": 10, "seed": 0, "probe_train_examples": 100}
    sw.merge_record(path, {**row, "ridge_accuracy": 0.3})
    sw.merge_record(path, {**row, "seed": 1, "ridge_accuracy": 0.4})
    sw.merge_record(path, {**row, "ridge_accuracy": 0.5})
    sw.merge_record(path, {"setting": "t", "step_time_ratio": 2.0}, section="timing")
    with open(path) as f:
        doc = json.load(f)
    assert sorted((r["seed"], r["ridge_accuracy"]) for r in doc["runs"]) == [(0, 0.5), (1, 0.4)]
    assert doc["timing"] == [{"setting": "t", "step_time_ratio": 2.0}]


@pytest.mark.slow
def test_a_short_run_and_the_supervised_probe_give_records(tmp_path):
    data_dir = str(tmp_path / "tfds")
    base = ssl_shapes.get_config("small")
    base.dataset.data_dir = data_dir
    base.dataset.batch_size = 32
    base.model.widths = (4, 8)
    base.probe.knn_k = 5
    record = sw.run_setting(base, "reference", {}, steps=3, workdir=str(tmp_path / "r"),
                            probe_train_examples=200, probe_test_examples=100)
    assert record["steps"] == 3 and record["images_seen"] == 96
    assert 0 <= record["ridge_accuracy"] <= 1 and np.isfinite(record["final_loss"])
    assert [c["step"] for c in record["curve"]] == [3]
    # the same record from the workdir, as for a launch.run run (config.json beside it)
    config = sw.sweep_config(base, {}, steps=3, probe_train_examples=200, probe_test_examples=100)
    (tmp_path / "r" / "config.json").write_text(config.to_json_best_effort())
    collected = sw.collect_run(str(tmp_path / "r"), "reference")
    assert collected == {k: v for k, v in record.items() if k != "wall_seconds_loaded"}
    with pytest.raises(ValueError, match="config.json"):
        sw.collect_run(str(tmp_path), "x")
    sup_base = supervised_shapes.get_config("small")
    sup_base.dataset.batch_size = 32
    sup = sw.run_supervised(sup_base, base, steps=3, workdir=str(tmp_path / "s"),
                            probe_train_examples=200, setting="res16", augment="ssl_views")
    # the setting's data (all 10,000 images), not the reference's 20%
    assert sup["overrides"] == {"ssl_setting": "res16", "dataset.name": "shapes_small",
                                "dataset.fraction": 1.0, "augment": "ssl_views"}
    assert sup["setting"] == "supervised_ceiling_res16_ssl_views"
    assert 0 <= sup["ridge_accuracy"] <= 1
    assert 0 <= sup["classifier_accuracy"] <= 1
