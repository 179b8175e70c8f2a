"""Part "linear" of the learning-dynamics driver at quick size: keys, PNG, and
every closed-form check within 5% (GD at a finite step size against the exact
flow: the gaps are first order in lr, ~1e-4 to 1e-2 here)."""
import pytest

from neurojax.analysis import dynamics_linear

TOLERANCE = 0.05


@pytest.mark.slow
def test_run_quick(tmp_path):
    result = dynamics_linear.run(tmp_path, quick=True)
    assert (tmp_path / "linear.png").stat().st_size > 0
    assert {"part", "quick", "deep_linear", "single_neuron", "relu_grid",
            "checks"} <= set(result)
    assert len(result["checks"]) >= 15
    for check in result["checks"]:
        assert set(check) == {"name", "measured", "predicted", "rel_error"}
        assert check["rel_error"] < TOLERANCE, check
    # the kernel distance of the single neuron falls to ~0 on the upstream (lazy) side
    sweep = result["single_neuron"]["sweep"]
    assert sweep["kernel_distance"][-1] < 1e-2 < 0.5 < sweep["kernel_distance"][0]
