"""colabs/layerwise.ipynb runs top to bottom: it trains a tiny layer-wise run
when none is given, reads it back and draws per-stage accuracy and memory
(executed with the harness of tests/test_colabs.py)."""
import json
import re

import pytest

pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from tests.test_colabs import COLABS, _errors, _execute  # noqa: E402


@pytest.mark.slow
def test_layerwise_notebook_runs_top_to_bottom(tmp_path):
    run = tmp_path / "run"
    nb = _execute(COLABS / "layerwise.ipynb", tmp_path,
                  {"LAYERWISE_RUN": str(run), "JAX_PLATFORMS": "cpu"})
    assert _errors(nb) == []
    # it made the tiny run where it was told, and read it back: 4 DLL stages
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["readout_block"] for r in evals] == [1, 2, 3, 4]
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    printed = [float(a) for a in re.findall(r"^\s+\d+\s+\d+\s+\d+\s+(\d\.\d+)", text, re.M)]
    assert printed == pytest.approx([r["accuracy"] for r in evals], abs=1e-4)
    # one memory line per stage, each below the end-to-end step
    fractions = [float(f) for f in re.findall(r"\((\d\.\d\d) of end-to-end\)", text)]
    assert len(fractions) == 4 and all(0 < f < 1 for f in fractions)
    ratio = float(re.search(r"largest stage / end-to-end: (\d\.\d+)", text).group(1))
    assert ratio == pytest.approx(max(fractions), abs=0.006)
    images = [o for cell in nb.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 1
