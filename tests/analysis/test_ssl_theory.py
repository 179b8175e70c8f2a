"""The SSL theory figure (neurojax.analysis.ssl_theory): its command line writes the
PNG and a strict JSON with the requested betas and view counts. The identities it
draws on are tested with the library (tests/metrics/test_augmentation_graph.py,
tests/metrics/test_bt_flow.py, tests/data/test_augmentation_graphs.py)."""
import json
import subprocess
import sys

import pytest

from neurojax.analysis import ssl_theory as st


@pytest.mark.slow
def test_run_writes_png_and_json(tmp_path):
    results = st.run(str(tmp_path), betas=(0.0, 1.0), t_end=2.0, num_trials=250,
                     views=(2, 16))
    data = json.loads((tmp_path / "ssl_theory.json").read_text())
    assert (tmp_path / "ssl_theory.png").stat().st_size > 1000
    assert [r["beta"] for r in data["dynamics"]["runs"]] == [0.0, 1.0]
    assert len(data["dynamics"]["times"]) == len(data["dynamics"]["runs"][0]["top1_alignment"])
    assert [r["m"] for r in data["toy"]["rows"]] == [2, 16]
    assert results["toy"]["params"] == pytest.approx(data["toy"]["params"])
    # beta = 0 from a small init aligns with the top eigenvector even at t = 2
    assert data["dynamics"]["runs"][0]["top1_alignment"][-1] > 0.5


@pytest.mark.slow  # suite time: a CLI / quick-run path; -m slow runs it
def test_cli_flags(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neurojax.analysis.ssl_theory", "--outdir",
                           str(tmp_path), "--betas=0.5", "--t_end=0.5", "--num_trials=10",
                           "--views=2,4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "ssl_theory.json").read_text())
    assert [r["beta"] for r in data["dynamics"]["runs"]] == [0.5]
    assert [r["m"] for r in data["toy"]["rows"]] == [2, 4]
