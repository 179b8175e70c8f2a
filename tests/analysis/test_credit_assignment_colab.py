"""colabs/credit_assignment.ipynb runs top to bottom: two finished runs of the
digits MLP (feedback alignment, Kolen-Pollack) read back from metrics.jsonl,
their per-layer alignment drawn (slow: two trainings through the loop)."""
import ast
import re

import pytest

from tests.test_colabs import COLABS, _errors, _execute


@pytest.mark.slow
def test_credit_assignment_notebook_runs_top_to_bottom(tmp_path):
    workdir = tmp_path / "runs"
    env = {"CREDIT_WORKDIR": str(workdir), "JAX_PLATFORMS": "cpu"}
    nb = _execute(COLABS / "credit_assignment.ipynb", tmp_path, env)
    assert _errors(nb) == []
    for rule in ("feedback_alignment", "kolen_pollack"):
        assert any((workdir / rule / "checkpoints").iterdir())
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    # each rule's hidden layers are measured; the head keeps its exact gradient (angle 0)
    for rule in ("feedback_alignment", "kolen_pollack"):
        line = re.search(rf"{rule}\s+final gradient angle per layer: (\{{[^}}]*\}})", text)
        angles = ast.literal_eval(line.group(1))  # the dict the notebook printed
        assert set(angles) >= {"dense_0", "dense_1", "head", "all"}
        assert angles["head"] < 0.5 and 0 < angles["dense_0"] < 180
        weights = ast.literal_eval(re.search(rf"{rule}\s+final weight angle per layer:\s+(\{{[^}}]*\}})",
                                 text).group(1))
        assert set(weights) >= {"dense_0", "dense_1", "head"}
    assert (workdir / "alignment.png").stat().st_size > 0
    images = [o for cell in nb.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 1
