"""colabs/ssl.ipynb runs top to bottom: by default it loads the committed
pretrained ``:cpu`` encoder (``benchmarks/results/ssl_cpu_run``); with
``SSL_RUN`` pointing at an empty directory it trains a tiny Barlow Twins run
there. Either way it compares the encoder with a random one (eigenspectrum,
alpha, ridge and kNN probes); executed with the harness of tests/test_colabs.py.

The printed table is checked against the JSON the notebook writes, its alpha and
effective rank against a float64 NumPy recomputation from the saved held-out
features, and the trained encoder's probes against the loop's own final
evaluation in metrics.jsonl (which computes the features through the data
loader rather than through host arrays)."""
import json
import re

import numpy as np
import pytest

pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from neurojax.train.metrics_log import read_metrics  # noqa: E402
from tests.test_colabs import COLABS, _errors, _execute  # noqa: E402

_ROW = re.compile(r"^(trained|random)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", re.M)
_FIELDS = ("dim", "alpha", "alpha_r2", "effective_rank", "ridge_accuracy", "knn_accuracy")


def _alpha_and_rank(x: np.ndarray, first: int = 4, last: int = 100, eps: float = 1e-7):
    """alpha-ReQ's weighted power-law fit (weights 1/j over ranks first..last
    of the normalised covariance spectrum) and RankMe, in float64 NumPy."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    lam = np.linalg.eigvalsh(x.T @ x / len(x))[::-1][:min(x.shape)]
    lam = np.clip(lam, 0, None)
    j = np.arange(first, min(last, len(lam)) + 1)
    logx, logy, w = np.log(j), np.log(lam[j - 1] / lam.sum()), 1.0 / j
    xbar, ybar = np.average(logx, weights=w), np.average(logy, weights=w)
    slope = np.sum(w * (logx - xbar) * (logy - ybar)) / np.sum(w * (logx - xbar) ** 2)
    s = np.sqrt(lam)
    p = s / s.sum() + eps
    return -slope, float(np.exp(-np.sum(p * np.log(p))))


def test_alpha_and_rank_reference_on_a_planted_spectrum():
    """The test's own recomputation recovers a planted power law (so the
    comparison below is against a checked reference)."""
    rng = np.random.default_rng(0)
    d = 200
    scales = np.arange(1, d + 1) ** -0.6  # std ~ j^-0.6: eigenvalues ~ j^-1.2
    x = rng.standard_normal((20_000, d)) * scales
    a, rank = _alpha_and_rank(x)
    assert a == pytest.approx(1.2, abs=0.03)
    assert 1 < rank < d


def _check_outputs(nb, out, run) -> tuple:
    """What both runs of the notebook must show: no errors, the printed table
    equal to the JSON it writes, alpha and the effective rank equal to a float64
    recomputation from the saved held-out features, two figures.
    Returns the JSON's rows by encoder, the printed text and the run's eval
    records."""
    assert _errors(nb) == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    assert "same variable tree: True" in text
    # the random encoder uses BatchNorm's initial running statistics
    assert re.search(r"random encoder BatchNorm running stats over 3 layers: "
                     r"\|mean\| <= 0, var in \[1, 1\]", text)

    # the printed table is the JSON's, and sane
    doc = json.loads((out / "ssl_colab.json").read_text())
    rows = {r["encoder"]: r for r in doc["rows"]}
    assert set(rows) == {"trained", "random"}
    printed = {m[0]: dict(zip(_FIELDS, map(float, m[1:]))) for m in _ROW.findall(text)}
    assert set(printed) == {"trained", "random"}
    for name, r in rows.items():
        for field in _FIELDS:
            assert printed[name][field] == pytest.approx(r[field], abs=0.006 if field ==
                                                         "effective_rank" else 6e-5), field
        assert 0 <= r["ridge_accuracy"] <= 1 and 0 <= r["knn_accuracy"] <= 1
        assert r["alpha"] > 0 and 0 <= r["alpha_r2"] <= 1 and np.isfinite(r["ridge_regularizer"])
    assert doc["num_classes"] == 10 and doc["chance"] == pytest.approx(0.1)
    assert re.search(r"^chance\s+0\.1000\s+0\.1000\s*$", text, re.M)

    # alpha and the effective rank, recomputed from the saved held-out features
    saved = np.load(out / "ssl_colab_test_features.npz")
    assert saved["trained"].shape[1] == rows["trained"]["dim"]
    assert not np.allclose(saved["trained"], saved["random"])
    for name, r in rows.items():
        a, rank = _alpha_and_rank(saved[name])
        assert r["alpha"] == pytest.approx(a, abs=2e-3), name
        assert r["effective_rank"] == pytest.approx(rank, rel=1e-3), name

    # two figures: the eigenspectra and the eval curves
    images = [o for cell in nb.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 2
    assert (out / "ssl_eigenspectrum.png").stat().st_size > 0
    assert (out / "ssl_curves.png").stat().st_size > 0
    return rows, text, _eval_records(run)


def _eval_records(run) -> list:
    return [r for r in read_metrics(str(run / "metrics.jsonl")) if r["split"] == "eval"]


def test_ssl_notebook_loads_the_committed_pretrained_encoder(tmp_path):
    """Unset ``SSL_RUN``: the notebook analyses the committed ``:cpu`` run
    (8,000 steps) without writing into it; its encoder is far above the
    random one, and its probes and alpha, computed here, are those the loop
    logged at step 8,000 on the machine that trained it."""
    run = COLABS.parent / "benchmarks" / "results" / "ssl_cpu_run"
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    out = tmp_path / "out"
    nb = _execute(COLABS / "ssl.ipynb", tmp_path,
                  {"SSL_RUN": "", "SSL_OUT": str(out), "JAX_PLATFORMS": "cpu"})
    rows, text, evals = _check_outputs(nb, out, run)
    assert "(the committed pretrained run)" in text
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before
    assert evals[-1]["step"] == 8000
    for field in ("ridge_accuracy", "knn_accuracy"):
        # another CPU may round the features differently: a few of the 2,000
        # test images may change sides
        assert rows["trained"][field] == pytest.approx(evals[-1][field], abs=0.005), field
    assert rows["trained"]["alpha"] == pytest.approx(evals[-1]["alpha"], rel=1e-3)
    assert rows["trained"]["ridge_accuracy"] > rows["random"]["ridge_accuracy"] + 0.2
    assert rows["trained"]["knn_accuracy"] > rows["random"]["knn_accuracy"] + 0.2


@pytest.mark.slow
def test_ssl_notebook_trains_a_tiny_run_where_told(tmp_path):
    run = tmp_path / "run"
    nb = _execute(COLABS / "ssl.ipynb", tmp_path, {"SSL_RUN": str(run), "JAX_PLATFORMS": "cpu"})
    rows, text, evals = _check_outputs(nb, run, run)  # outputs beside the run

    # it trained the tiny run where it was told and checkpointed its last step
    assert (run / "config.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["24"]
    assert "trained a tiny run: 24 steps" in text
    np.testing.assert_equal(np.load(run / "ssl_colab_test_features.npz")["trained"].shape[0], 250)

    # the trained encoder's probes and alpha are those of the loop's final evaluation
    assert [r["step"] for r in evals] == [8, 16, 24]
    for field in ("ridge_accuracy", "knn_accuracy"):
        assert rows["trained"][field] == pytest.approx(evals[-1][field], abs=1e-6), field
    assert rows["trained"]["alpha"] == pytest.approx(evals[-1]["alpha"], rel=1e-4)
