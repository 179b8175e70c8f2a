"""The layer-wise experiments' driver (neurojax.analysis.layerwise): reading
runs per seed replica, the spreads, the stage memory, and a quick run."""
import json
import math

import numpy as np
import pytest

from neurojax.analysis import layerwise as la


def _records():
    """Eval records as the loop writes them with 3 replicas (means, _std,
    _replicas; stage and readout_block averaged into floats)."""
    def rec(step, stage, block, acc, val):
        return {"step": step, "split": "eval", "stage": float(stage),
                "readout_block": float(block), "accuracy": float(np.mean(acc)),
                "accuracy_replicas": acc, "validation_accuracy": float(np.mean(val)),
                "validation_accuracy_replicas": val}
    return [{"step": 5, "split": "train", "loss": 1.0},
            rec(10, 0, 1, [0.5, 0.6, 0.7], [0.9, 0.5, 0.5]),
            rec(20, 1, 2, [0.4, 0.8, 0.6], [0.8, 0.9, 0.4]),
            rec(30, 2, 3, [0.3, 0.7, 0.9], [0.1, 0.2, 0.6])]


def test_stage_records_and_peak_per_replica():
    rows = la.stage_records(_records())
    assert [(r["step"], r["stage"], r["readout_block"]) for r in rows] == [
        (10, 0, 1), (20, 1, 2), (30, 2, 3)]
    peaks = la.peak_per_replica(rows)
    # each seed picks its own best validation read-out and reports its test accuracy
    assert [p["peak_readout_block"] for p in peaks] == [1, 2, 3]
    assert [p["peak_accuracy"] for p in peaks] == [0.5, 0.8, 0.9]
    assert all(p["peak_selected_on"] == "validation" for p in peaks)
    # one replica: the plain keys
    single = [{"split": "eval", "step": 1, "stage": 0, "readout_block": 1, "accuracy": 0.3}]
    assert la.peak_per_replica(la.stage_records(single))[0]["peak_accuracy"] == 0.3
    with pytest.raises(ValueError, match="rows"):
        la.peak_per_replica([])
    with pytest.raises(ValueError, match="accuracy"):
        la.replica_values({"loss": 1.0}, "accuracy")


def test_spread_against_numpy():
    a = [0.5, 0.7, 0.9]
    s = la.spread(a)
    assert s["mean"] == pytest.approx(np.mean(a)) and len(s["per_seed"]) == 3
    assert s["std"] == pytest.approx(np.std(a, ddof=1))
    assert la.spread([0.3])["std"] == 0.0
    with pytest.raises(ValueError, match="values"):
        la.spread([])


def test_check_parts():
    assert la.check_parts(["depth"]) == ("depth",)
    for bad in ([], ["table", "table"], ["tables"]):
        with pytest.raises(ValueError, match="parts"):
            la.check_parts(bad)


def test_configs_are_valid_and_match_the_methods():
    from neurojax.train import validate_config
    from neurojax.train import layerwise as lw
    backprop = la.shapes_config(None, num_steps=8, replicas=3, eval_every=8)
    dll = la.shapes_config(dict(method="dll"), num_steps=8, replicas=3, eval_every=2)
    mlp = la.digits_config(5, 16, dict(method="dll"), num_steps=10, replicas=1, eval_every=2)
    for config in (backprop, dll, mlp):
        validate_config(config)
    assert backprop.task == "supervised" and dll.task == "layerwise"
    assert lw.spec_from_config(dll).validation_split == la.VALIDATION[1]
    assert dll.dataset.train_split == la.VALIDATION[0]
    assert tuple(mlp.model.widths) == (16,) * 5 and mlp.train.steps_per_call == 2


@pytest.mark.slow
def test_stage_memory_counts_the_stage_arguments():
    """XLA's argument bytes of each stage equal the bytes of its state and
    batch counted by hand; the window's decision head and cache shrink the
    later stages."""
    import jax
    from neurojax.train import layerwise as lw
    config = la.digits_config(3, 16, dict(method="dll"), num_steps=3, replicas=1,
                              eval_every=1)
    config.dataset.batch_size = 32
    out = la.stage_memory(config)
    assert [r["name"] for r in out["stages"]] == ["blocks_0_1", "blocks_1_2", "blocks_2_3"]
    # by hand: all parameters (MLP 64-16-16-16-10 + heads 16x10 twice), Adam's
    # two moments over the window's part and its count, the cosine schedule's
    # count, the step, rng and batch
    f32 = 4
    model = (64 * 16 + 16) + 2 * (16 * 16 + 16) + (16 * 10 + 10)
    heads = 2 * (16 * 10 + 10)
    window = {0: (64 * 16 + 16) + (16 * 10 + 10), 1: (16 * 16 + 16) + (16 * 10 + 10),
              2: (16 * 16 + 16) + (16 * 10 + 10)}
    in_width = {0: 64, 1: 16, 2: 16}
    rng_bytes = jax.random.PRNGKey(0).nbytes
    for i, row in enumerate(out["stages"]):
        adam = 2 * window[i] * f32 + 4 + 4  # mu, nu, two int32 counts
        expected = (model + heads) * f32 + adam + 4 + rng_bytes \
            + 32 * in_width[i] * f32 + 32 * 4
        assert row["argument_bytes"] == expected, (i, row, expected)
        assert row["bytes"] >= row["argument_bytes"]
    assert out["end_to_end_bytes"] > out["stages"][2]["bytes"]
    assert out["ratio"] == max(r["bytes"] for r in out["stages"]) / out["end_to_end_bytes"]
    with pytest.raises(ValueError, match="config.task"):
        la.stage_memory(la.digits_config(2, 8, None, num_steps=2, replicas=1, eval_every=2))
    del lw


@pytest.mark.slow
def test_quick_run_writes_json_and_figures(tmp_path):
    results = la.run(str(tmp_path), quick=True)
    data = json.loads((tmp_path / "layerwise_quick.json").read_text())
    assert set(data["parts"]) == set(la.PARTS)
    for part in la.PARTS:
        assert (tmp_path / f"layerwise_{part}.png").stat().st_size > 0
    table = results["parts"]["table"]
    for method in ("backprop", "dll", "random_robin", "dll_pooled_layer"):
        final = table["runs"][method]["final"]
        assert len(final["per_seed"]) == 2 and all(0 <= v <= 1 for v in final["per_seed"])
    # the difference pairs the runs seed by seed (the same seeds in every method)
    diff = table["difference_vs_backprop"]["dll_network"]
    assert diff["per_seed"] == pytest.approx(
        np.subtract(table["runs"]["dll"]["network"]["per_seed"],
                    table["runs"]["backprop"]["network"]["per_seed"]))
    assert diff["mean"] == pytest.approx(table["runs"]["dll"]["network"]["mean"]
                                         - table["runs"]["backprop"]["network"]["mean"])
    assert diff["ci95"][0] < diff["mean"] < diff["ci95"][1]
    # the network as a whole, evaluated here, is the loop's last evaluation
    # for backprop and DLL (whose last stage trains the model's own top)
    for method in ("backprop", "dll"):
        assert table["runs"][method]["network"]["per_seed"] == pytest.approx(
            table["runs"][method]["final"]["per_seed"], abs=1e-6)
    # the DLL final network is its last read-out
    dll = table["runs"]["dll"]
    assert dll["stages"][-1]["accuracy"] == pytest.approx(dll["final"]["per_seed"])
    # stable ranks: every layer of the small CNN, each in [1, min(m, n)]
    ranks = table["stable_rank"]
    assert set(ranks) == {"init", "backprop", "dll", "random_robin", "dll_pooled_layer",
                          "dll_flat_layer", "dll_flat_layer_e1"}
    # E1's budget: 1.8x the steps (16 -> 29), one read-out where each of the
    # 4 growing stages ends (one step each, then 25 as 1:1.26:1.59:2.00 = 4.27,
    # 5.39, 6.79, 8.55 and the leftover two to .79 and .55: 5, 6, 8, 10)
    e1 = table["runs"]["dll_flat_layer_e1"]
    assert table["num_steps"]["dll_flat_layer_e1"] == 29 and e1["num_steps"] == 29
    assert [r["step"] for r in e1["stages"]] == [5, 11, 19, 29]
    digits = table["digits"]
    assert set(digits["runs"]) == set(la.DIGITS_TABLE_METHODS)
    assert len(digits["runs"]["dll_flat_layer"]["final"]["per_seed"]) == 2
    sweep = digits["budget_sweep"]["2"]
    assert sweep["num_steps"] == 16
    assert sweep["difference"]["mean"] == pytest.approx(
        sweep["dll_flat_layer"]["mean"] - sweep["backprop"]["mean"])
    shapes_sweep = table["budget_sweep"]["2"]  # the same sweep on the shapes
    assert set(table["budget_sweep"]) == {"2"} and shapes_sweep["num_steps"] == 32
    assert shapes_sweep["difference"]["mean"] == pytest.approx(
        shapes_sweep["dll_flat_layer"]["mean"] - shapes_sweep["backprop"]["mean"])
    assert list(ranks["dll"]) == ["conv_0", "conv_1", "conv_2", "hidden", "head"]
    assert all(1 <= s["mean"] <= 128 for r in ranks.values() for s in r.values())
    depth = results["parts"]["depth"]
    assert set(depth["dll_readout"]) == {"1", "2", "3", "4"}
    assert set(depth["backprop"]) == {"2", "3"}
    assert not math.isnan(depth["dll_peak"]["accuracy"]["mean"])
    assert set(results["parts"]["window"]["windows"]) == {"1", "2", "4"}  # 1: the table DLL
    assert results["parts"]["window"]["windows"]["4"]["num_stages"] == 1
    total = results["parts"]["window_total"]
    assert set(total["windows"]) == {"2"} and total["windows"]["2"]["num_stages"] == 3
    # one read-out where each of the 3 subnets ends: 16 steps split 6, 5, 5
    assert [r["step"] for r in total["windows"]["2"]["stages"]] == [6, 11, 16]
    ends = la._window_total_with_ends(results["parts"])  # pylint: disable=protected-access
    assert set(ends["windows"]) == {"1", "2", "4"} and ends["num_steps"] == 16


def _spread(*values):
    return {"mean": sum(values) / len(values), "std": 0.0, "per_seed": list(values)}


def test_window_total_takes_its_ends_from_a_table_at_the_same_budget(tmp_path):
    from neurojax.analysis import layerwise_figures as figures
    table = {"setting": {"num_steps": 704, "replicas": 3},
             "runs": {"backprop": {"network": _spread(0.4, 0.5), "final": _spread(0.1, 0.1)},
                      "dll_pooled_layer": {"final": _spread(0.17, 0.15)}}}
    total = {"setting": {"num_steps": 704, "replicas": 3},
             "windows": {"2": {"final": _spread(0.2, 0.3)}, "3": {"final": _spread(0.3, 0.3)}}}
    ends = la._window_total_with_ends(  # pylint: disable=protected-access
        {"table": table, "window_total": total})
    assert [ends["windows"][k]["final"]["mean"] for k in "1234"] == pytest.approx(
        [0.16, 0.25, 0.3, 0.45])  # the last window: backprop's network, not its read-out
    assert ends["num_steps"] == 704
    # each window against the one before it, seed by seed
    steps = ends["step_differences"]
    assert list(steps) == ["2-1", "3-2", "4-3"]
    assert steps["2-1"]["per_seed"] == pytest.approx([0.03, 0.15])
    assert steps["3-2"]["per_seed"] == pytest.approx([0.1, 0.0])
    assert steps["4-3"]["per_seed"] == pytest.approx([0.1, 0.2])
    assert steps["4-3"]["std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    # another budget or other seeds: no ends
    other = dict(total, setting={"num_steps": 352, "replicas": 3})
    assert la._window_total_with_ends(  # pylint: disable=protected-access
        {"table": table, "window_total": other}) is None
    assert la._window_total_with_ends({"window_total": total}) is None  # pylint: disable=protected-access
    window = {"setting": {"steps_per_subnet": 176},
              "windows": {"2": {"final": _spread(0.25)}, "4": {"final": _spread(0.2)}}}
    figures.plot_window(window, str(tmp_path / "w.png"), ends)
    figures.plot_window_total(total, str(tmp_path / "t.png"))
    assert (tmp_path / "w.png").stat().st_size > 0 and (tmp_path / "t.png").stat().st_size > 0


def test_parts_run_separately_merge_into_one_json(tmp_path):
    path = str(tmp_path / "layerwise_full.json")
    first = {"quick": False, "parts": {"depth": {"a": 1}}, "seconds": {"depth": 3.0},
             "commands": {"depth": "c1"}}
    la.write_json(la.outputs.merge_parts(path, first, la.PARTS), path)
    second = {"quick": False, "parts": {"table": {"b": 2}}, "seconds": {"table": 4.0},
              "commands": {"table": "c2"}}
    merged = la.outputs.merge_parts(path, second, la.PARTS)
    assert list(merged["parts"]) == ["table", "depth"]  # in PARTS order
    assert merged["seconds"] == {"depth": 3.0, "table": 4.0}
    assert merged["commands"] == {"depth": "c1", "table": "c2"}
    # a part that is run again replaces the old one; a quick JSON is not mixed in
    again = la.outputs.merge_parts(path, {"quick": False, "parts": {"depth": {"a": 9}},
                              "seconds": {"depth": 1.0}, "commands": {"depth": "c3"}},
                                   la.PARTS)
    assert again["parts"] == {"depth": {"a": 9}} and again["seconds"] == {"depth": 1.0}
    quick = {"quick": True, "parts": {"table": {}}, "seconds": {}, "commands": {}}
    assert la.outputs.merge_parts(path, quick, la.PARTS) is quick
