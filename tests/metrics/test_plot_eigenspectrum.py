"""plot_eigenspectrum writes a PNG, with and without a fit."""
import numpy as np
import pytest

from neurojax.metrics import alpha
from neurojax.plots import plot_eigenspectrum


def test_plot_eigenspectrum_writes_png(tmp_path):
    lam = np.arange(1, 201.0) ** -1.2
    lam[-5:] = 0.0                                   # numerical zeros are skipped
    fit = alpha(lam, (4, 100))
    for name, f in [("fit.png", fit),
                    ("dict.png", {"alpha": 1.2, "alpha_intercept": -1.0, "alpha_r2": 0.99}),
                    ("nofit.png", None)]:
        path = tmp_path / name
        plot_eigenspectrum(lam, str(path), fit=f, title="test")
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_eigenspectrum_rejects_incomplete_fit(tmp_path):
    with pytest.raises(ValueError, match="alpha"):
        plot_eigenspectrum(np.ones(5), str(tmp_path / "x.png"), fit={"r2": 1.0})
