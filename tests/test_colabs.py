"""Executes the notebooks in colabs/ top to bottom and fails on any cell error.

Each notebook runs in a fresh kernel (nbclient) whose working directory is a
temporary directory, with ``ALPHA_REQ_WORKDIR`` (``AMPLIFICATION_WORKDIR``)
pointing the alpha-ReQ (gradient amplification) notebook's runs and figures
there, on CPU with the offline data only.
"""
import json
import os
import pathlib
import re

import numpy as np

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"
TIMEOUT_S = 300  # per cell; the whole alpha_req notebook takes ~1 min on 2 CPU cores


def _execute(path: pathlib.Path, cwd: pathlib.Path, env: dict):
    """Runs the notebook; returns it with outputs. Raises CellExecutionError."""
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                         resources={"metadata": {"path": str(cwd)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _errors(nb) -> list[str]:
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.slow
def test_alpha_req_notebook_runs_top_to_bottom(tmp_path):
    workdir = tmp_path / "run"
    env = {"ALPHA_REQ_WORKDIR": str(workdir), "JAX_PLATFORMS": "cpu"}
    nb = _execute(COLABS / "alpha_req.ipynb", tmp_path, env)
    assert _errors(nb) == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")

    # It trained, loaded and analysed a real checkpoint ...
    assert (workdir / "config.json").is_file()
    assert any((workdir / "checkpoints").iterdir())
    rows = json.loads((workdir / "alpha_vs_probe.json").read_text())
    layers = {r["layer"] for r in rows}
    assert {"pixels", "act_0", "act_1", "act_2", "head"} <= layers
    assert {r["network"] for r in rows} == {"trained", "init"}
    for r in rows:
        assert r["alpha"] > 0 and 0 <= r["alpha_r2"] <= 1
    # ... whose last hidden layer a probe reads far better than chance (10 classes).
    trained = {r["layer"]: r for r in rows if r["network"] == "trained"}
    assert trained["act_2"]["ridge_accuracy"] > 0.8
    # ... and drew one eigenspectrum per layer and the summary figure.
    for layer in layers:
        assert (workdir / f"eigenspectrum_{layer}.png").stat().st_size > 0
    assert (workdir / "alpha_vs_accuracy.png").stat().st_size > 0
    images = [o for cell in nb.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 2


@pytest.mark.slow
def test_platonic_notebook_runs_top_to_bottom(tmp_path):
    nb = _execute(COLABS / "platonic.ipynb", tmp_path, {"JAX_PLATFORMS": "cpu"})
    assert _errors(nb) == []
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    # the closed-form fit and backprop both separate the spirals on held-out points
    pp_test = float(re.search(r"Platonic: .* test (\d\.\d+)", text).group(1))
    bp_test = float(re.search(r"backprop: .* test (\d\.\d+)", text).group(1))
    assert pp_test > 0.9 and bp_test > 0.6
    images = [o for cell in nb.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 1   # the two decision-region panels


@pytest.mark.slow
def test_dynamics_notebook_runs_top_to_bottom(tmp_path):
    nb = _execute(COLABS / "dynamics.ipynb", tmp_path, {"JAX_PLATFORMS": "cpu"})
    assert _errors(nb) == []
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    # gradient descent follows the exact lambda-balanced solution ...
    errors = [float(e) for e in re.findall(r"\(exact\)\| over t in \[0, \d+\]: (\S+)", text)]
    assert len(errors) == 3 and max(errors) < 0.05
    # ... and the trained LAE decoder has the closed-form singular values
    got = re.search(r"decoder singular values: \[([^\]]+)\]", text).group(1).split()
    want = re.search(r"sqrt\(1 - lambda/sigma\^2\): \[([^\]]+)\]", text).group(1).split()
    np.testing.assert_allclose([float(v) for v in got], [float(v) for v in want], atol=1e-4)
    images = [o for cell in nb.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 2


def test_a_failing_cell_is_reported(tmp_path):
    """The harness itself can fail: an error in a cell surfaces as an exception."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="ZeroDivisionError"):
        _execute(path, tmp_path, {})


@pytest.mark.slow
def test_amplification_notebook_runs_top_to_bottom(tmp_path):
    workdir = tmp_path / "runs"
    env = {"AMPLIFICATION_WORKDIR": str(workdir), "JAX_PLATFORMS": "cpu"}
    nb = _execute(COLABS / "amplification.ipynb", tmp_path, env)
    assert _errors(nb) == []
    # three finished runs, read back from their checkpoints and metrics
    for pair in ("softmax", "exp_ga", "pow3_ga"):
        assert any((workdir / pair / "checkpoints").iterdir())
    summary = json.loads((workdir / "summary.json").read_text())
    assert all(s["num_outputs"] == 256 * 10 for s in summary.values())
    # softmax deltas are bounded by construction; exp-GA's y > 0 bounds its below by -16
    assert -1 <= summary["softmax"]["delta_min"] <= summary["softmax"]["delta_max"] <= 1
    assert summary["exp_ga"]["delta_min"] > -16
    for pair in ("exp_ga", "pow3_ga"):
        ratios = summary[pair]["hidden_rms_ratio_vs_softmax"]
        assert len(ratios) == 5 and all(r > 0 for r in ratios)
    assert (workdir / "deltas.png").stat().st_size > 0
    assert (workdir / "gradient_rms.png").stat().st_size > 0
