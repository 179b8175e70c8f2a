"""Tests of the alpha-ReQ analyses (Fig. 2, Theorem 2.1, Algorithm 1).

Each formula is checked against an independent computation written here:
GD iterates against the SVD closed form of Lemma A.1 in float64, the planted
alpha against ``neurojax.metrics.alpha``, steps-to-threshold against a GD
loop, and Algorithm 1 against a hand-worked pool and a brute-force
reimplementation."""
import json
import math
import subprocess
import sys
import chex
import jax
import numpy as np
import pytest

from neurojax.analysis import alpha_req as ar
from neurojax.analysis.outputs import save_figure, write_json
from neurojax.metrics import model_selection as msel





TINY = {
    "fig2": dict(alphas=(0.5, 2.0), num_train=8, dim=16, num_test=32, noise_stds=(0.1, 1.0),
                 num_steps=20, record_every=10, num_seeds=1),
    "thm21": dict(alphas=(0.5, 1.5), num_trains=(16, 32), num_seeds=1),
    "selection": dict(pool_size=8, num_parallel=4, num_examples=200, dim=16,
                      num_orderings=3, alpha_range=(0.5, 2.0)),
}


@pytest.mark.slow
def test_convergence_time_exponent_close_to_alpha():
    # float32 data (shapes shared with the CLI test); the count itself is float64.
    res = ar.convergence_time_sweep(jax.random.PRNGKey(4), alphas=(1.0, 2.0),
                                    num_trains=(16, 32, 64), num_seeds=2, progress=False)
    chex.assert_shape([res["steps"], res["condition"]], [(2, 3, 2)] * 2)
    assert np.all(np.diff(res["steps"], axis=0) > 0)          # more steps at larger alpha
    assert np.all(np.diff(np.log(res["steps"]).mean(-1), axis=1) > 0)   # and larger N
    np.testing.assert_allclose(res["steps_exponent"], res["theory_exponent"], atol=0.3)
    # The condition number mu_1 / mu_N (the proof's bound) is noisier at these sizes.
    assert res["condition_exponent"][1] > res["condition_exponent"][0] > 0.5


@pytest.mark.parametrize("call, name", [
    (lambda: ar.fig2_sweep(jax.random.PRNGKey(0), (1.0,), num_train=16, dim=16), "num_train"),
    (lambda: ar.fig2_sweep(jax.random.PRNGKey(0), (), num_train=4, dim=16), "alphas"),
    (lambda: ar.convergence_time_sweep(jax.random.PRNGKey(0), (1.0,), (8,)), "num_trains"),
    (lambda: ar.convergence_time_sweep(jax.random.PRNGKey(0), (1.0,), (8, 16), dim_ratio=1),
     "dim_ratio"),
])
def test_invalid_arguments_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_fig2_sweep_shapes_and_consistency(tmp_path):
    res = ar.fig2_sweep(jax.random.PRNGKey(8), progress=False, **TINY["fig2"])
    chex.assert_shape([res["train_mse"], res["test_mse"]], [(2, 1, 3, 2)] * 2)
    chex.assert_shape([res["test_mse_final"], res["test_mse_converged"]], [(2, 2)] * 2)
    # Converged = interpolation (N < d): training error ~ 0; GD's train MSE decreases.
    assert np.all(res["train_mse_converged"] < 1e-6)
    assert np.all(np.diff(res["train_mse"], axis=2) <= 1e-7)
    assert set(res["best_alpha_final"]) <= {0.5, 2.0}
    save_figure(ar.plot_fig2(res), str(tmp_path / "fig2.png"))
    np.testing.assert_allclose(res["test_mse_mean"], res["test_mse"].mean(1))
    write_json(res, str(tmp_path / "fig2.json"))
    back = json.loads((tmp_path / "fig2.json").read_text())
    np.testing.assert_allclose(back["test_mse_final"], res["test_mse_final"])
    write_json(res, str(tmp_path / "slim.json"), exclude=("test_mse",), digits=3)
    slim = json.loads((tmp_path / "slim.json").read_text())
    assert "test_mse" not in slim and "train_mse" in slim
    np.testing.assert_allclose(slim["test_mse_final"], res["test_mse_final"], rtol=5e-3)
    save_figure(ar.plot_fig2(slim), str(tmp_path / "from_json.png"))
    assert (tmp_path / "fig2.png").stat().st_size > 1000


@pytest.mark.slow
def test_run_writes_pngs_and_json(tmp_path, monkeypatch):
    monkeypatch.setattr(ar, "QUICK", TINY)
    summary = ar.run(str(tmp_path), quick=True)
    for name in ("fig2", "thm21", "model_selection"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        json.loads((tmp_path / f"{name}.json").read_text())
    assert set(summary) == {"fig2", "thm21", "model_selection"}
    sel = json.loads((tmp_path / "model_selection.json").read_text())
    assert all(0 <= sel[r]["p_within_1pt"] <= 1 for r in msel.WINDOW_RULES)
    assert not any(isinstance(v, float) and math.isnan(v) for v in sel["accuracy"])


@pytest.mark.slow  # suite time: a CLI / quick-run path; -m slow runs it
def test_cli(tmp_path):
    # the documented command line (absl flags), on its quickest part
    proc = subprocess.run([sys.executable, "-m", "neurojax.analysis.alpha_req", "--outdir",
                           str(tmp_path), "--quick", "--parts=thm21"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "steps_exponent" in json.loads(proc.stdout)["thm21"]["alpha=1"]
    assert (tmp_path / "thm21.png").stat().st_size > 1000
    assert not (tmp_path / "fig2.json").exists()

