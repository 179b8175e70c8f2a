"""The analyses' shared seed statistics, against NumPy and SciPy."""
import math

import numpy as np
import pytest
import scipy.stats

from neurojax.analysis.outputs import paired_difference, spread


def test_spread_against_numpy():
    v = [0.9, 0.7, 0.8]
    s = spread(v)
    assert s["mean"] == pytest.approx(np.mean(v))
    assert s["std"] == pytest.approx(math.sqrt(sum((x - 0.8) ** 2 for x in v) / 2))
    assert s["per_seed"] == v
    assert spread([0.5])["std"] == 0.0
    with pytest.raises(ValueError, match="values must be a non-empty 1-D"):
        spread([])


def test_paired_difference_and_its_t_interval_against_scipy():
    v, r = [0.9, 0.7, 0.8, 0.75], [0.95, 0.9, 0.85, 0.8]
    d = paired_difference(v, r)
    assert d["per_seed"] == pytest.approx([-0.05, -0.2, -0.05, -0.05])
    assert d["std"] == pytest.approx(np.std(np.subtract(v, r), ddof=1))
    # the interval inverts SciPy's paired t-test: its bounds are where p = 0.05
    low, high = d["ci95"]
    for bound in (low, high):
        p = scipy.stats.ttest_rel(np.asarray(v) - bound, r).pvalue
        assert p == pytest.approx(0.05, rel=1e-6)
    assert math.isnan(paired_difference([1.0], [0.5])["ci95"][0])
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([1.0, 2.0], [1.0])
