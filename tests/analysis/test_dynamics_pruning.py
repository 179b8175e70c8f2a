"""Part "pruning" of the learning-dynamics driver: run(quick=True) prunes the
shapes VGG with SynFlow and magnitude at 1000x, trains both briefly, writes
pruning.png and returns JSON whose closed-form checks (layer-wise
conservation of synaptic flow in float64; exact kept counts) hold, with the
layer collapse of magnitude pruning and none under SynFlow."""
import json

import pytest

from neurojax.analysis import dynamics_pruning

TOLERANCE = 1e-9  # float64 conservation (measured <= 3e-15); counts are exact


@pytest.mark.slow  # ~20-30 s of CPU: VGG compiles (init, float64 SynFlow, step, eval)
def test_quick_run_writes_png_and_checks_hold(tmp_path):
    out = dynamics_pruning.run(tmp_path, quick=True)
    assert (tmp_path / "pruning.png").stat().st_size > 0
    json.dumps(out, allow_nan=False)
    assert {"part", "checks", "accuracy", "dense_accuracy", "layer_density",
            "collapsed_layers", "anchor", "setting"} <= set(out)
    names = [c["name"] for c in out["checks"]]
    assert len(set(names)) == len(names)
    # 8 convs + 8 BN scales + head, and one count per (method, compression)
    assert sum(n.startswith("synflow_conservation/") for n in names) == 17
    assert {"exact_count/synflow/1000", "exact_count/magnitude/1000"} <= set(names)
    for c in out["checks"]:
        assert set(c) == {"name", "measured", "predicted", "rel_error"}
        assert c["rel_error"] < TOLERANCE, c
    assert out["collapsed_layers"]["synflow/1000"] == []
    assert out["collapsed_layers"]["magnitude/1000"]
    assert out["anchor"]["accuracy"]["synflow"] == [90.1, 80.4]
