"""Part "symmetry" of the learning-dynamics driver: run(quick=True) trains
the four runs, writes symmetry.png and returns JSON whose exact-law checks
(SGD, SGD + wd, heavy ball, Adam's identity, the modified equation) agree to
float32 accumulation; the Euclidean law under Adam is visibly broken."""
import json

import pytest

from neurojax.analysis import dynamics_symmetry

TOLERANCE = 1e-2  # float32 training, 300 steps; measured rel errors are <= 6e-4


@pytest.mark.slow  # ~15 s of CPU (three compiles of a 300-step scan)
def test_quick_run_writes_png_and_checks_hold(tmp_path):
    out = dynamics_symmetry.run(tmp_path, quick=True)
    assert (tmp_path / "symmetry.png").stat().st_size > 0
    json.dumps(out, allow_nan=False)
    assert {"part", "checks", "asymptotic", "kinetic_breaking", "runs", "figure"} <= set(out)
    names = [c["name"] for c in out["checks"]]
    assert len(names) == 13 and len(set(names)) == 13
    for c in out["checks"]:
        assert set(c) == {"name", "measured", "predicted", "rel_error"}
        assert c["rel_error"] < TOLERANCE, c
    # Adam breaks the Euclidean (SGD-symmetric) law: 0.08 (scale), 0.34 (rescale) at 300 steps
    for kind in ("scale", "rescale"):
        assert out["kinetic_breaking"][kind]["euclidean_law"]["rel_error"] > 5 * TOLERANCE
    for run in out["runs"].values():
        assert run["loss_last"] < run["loss_first"]
