"""The learning-dynamics parts collapse, limiting and lae: run(quick=True) writes its
PNG and returns JSON-serialisable numbers whose closed-form checks hold."""
import json

import pytest

from neurojax.analysis import dynamics_collapse, dynamics_lae, dynamics_limiting

# rel_error bounds of the quick runs: sampling error of 512 replicas x 500 steps
# (limiting), float32 round-off (collapse), float64 GD to convergence (lae)
TOLERANCES = {"collapse": 1e-5, "limiting": 0.15, "lae": 1e-3}


@pytest.mark.slow
@pytest.mark.parametrize("module", [dynamics_collapse, dynamics_limiting, dynamics_lae],
                         ids=lambda m: m.PART)
def test_quick_run(module, tmp_path):
    result = module.run(tmp_path, quick=True)
    json.dumps(result, allow_nan=False)
    assert (tmp_path / f"{module.PART}.png").stat().st_size > 0
    assert result["part"] == module.PART and result["quick"] is True
    assert result["checks"]
    for check in result["checks"]:
        assert set(check) == {"name", "measured", "predicted", "rel_error"}
        assert check["rel_error"] < TOLERANCES[module.PART], check
