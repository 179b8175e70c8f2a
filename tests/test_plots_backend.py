"""Importing neurojax and drawing its figures leaves the user's matplotlib backend alone.

A notebook picks its backend (``inline``, ``widget``, ...) before importing the
library; a module that calls ``matplotlib.use`` at import or inside a figure
silently replaces it. The check runs in a fresh interpreter, since this test
process has long since imported everything.
"""
import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import neurojax.analysis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANALYSIS_MODULES = sorted(f"neurojax.analysis.{m.name}"
                          for m in pkgutil.iter_modules(neurojax.analysis.__path__))

SCRIPT = textwrap.dedent("""
    import importlib, os, sys
    import matplotlib
    matplotlib.use("svg")  # the user's choice: anything but Agg
    before = matplotlib.get_backend()
    modules = ["neurojax", "neurojax.plots", "neurojax.train.loop"] + sys.argv[2:]
    for name in modules:
        importlib.import_module(name)
        assert matplotlib.get_backend() == before, (name, matplotlib.get_backend())
    from neurojax import plots
    out = sys.argv[1]
    plots.plot_training_curves([{"step": 1, "split": "train", "loss": 2.0},
                                {"step": 2, "split": "train", "loss": 1.0}],
                               os.path.join(out, "curves.png"))
    plots.plot_eigenspectrum([4.0, 2.0, 1.0, 0.5], os.path.join(out, "spectrum.png"))
    import numpy as np
    from neurojax.analysis import bias_variance_digits
    fig = bias_variance_digits._accuracy_heatmaps(
        np.array([[0.9, 0.8], [0.7, 0.6]]), np.array([[0.85, 0.75], [0.65, 0.55]]),
        [0.0, 1e-3], [0.0, 1.0], "test")
    fig.savefig(os.path.join(out, "heatmaps.png"))
    assert matplotlib.get_backend() == before, ("after drawing", matplotlib.get_backend())
    # no figure was left registered with pyplot (imported only now, for this check)
    import matplotlib.pyplot as plt
    assert plt.get_fignums() == [], plt.get_fignums()
    print("backend", matplotlib.get_backend())
""")


def test_analysis_modules_are_listed():
    # the subprocess imports every module found here; make sure the list is not empty
    assert "neurojax.analysis.bias_variance_digits" in ANALYSIS_MODULES
    assert len(ANALYSIS_MODULES) >= 5


@pytest.mark.slow
def test_import_and_plot_keep_the_users_backend(tmp_path):
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *ANALYSIS_MODULES],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "backend svg" in proc.stdout
    for name in ("curves.png", "spectrum.png", "heatmaps.png"):
        with open(tmp_path / name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", name  # PNG, whatever the backend


def test_no_backend_switch_or_pyplot_in_the_package():
    # figures drawn inside functions the subprocess does not call are covered here
    package = os.path.join(ROOT, "neurojax")
    offenders = []
    for dirpath, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path) as fh:
                    text = fh.read()
                for needle in ("matplotlib.use(", "pyplot"):
                    if needle in text:
                        offenders.append((os.path.relpath(path, ROOT), needle))
    assert offenders == []
