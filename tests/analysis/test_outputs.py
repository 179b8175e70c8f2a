"""The analyses' shared seed statistics, against NumPy and SciPy."""
import math

import numpy as np
import pytest
import scipy.stats

from neurojax.analysis.outputs import paired_difference, spearman, spread, verdict


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


def test_spearman_matches_a_rank_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    expected = np.corrcoef(rx, ry)[0, 1]
    assert spearman(x, y) == pytest.approx(expected)
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_verdicts_follow_the_interval():
    def diff(low, high):
        return {"ci95": [low, high]}
    assert verdict(diff(0.001, 0.02), "greater") == "reproduced"
    assert verdict(diff(-0.02, -0.001), "greater") == "not reproduced"
    assert verdict(diff(-0.01, 0.02), "greater") == "unresolved"
    # match or beat: within MATCH_TOLERANCE below counts as a match
    assert verdict(diff(-0.009, 0.001), "match_or_beat") == "reproduced"
    assert verdict(diff(-0.03, -0.02), "match_or_beat") == "not reproduced"
    assert verdict(diff(-0.03, 0.01), "match_or_beat") == "unresolved"
    assert verdict(diff(float("nan"), float("nan")), "greater") == "unresolved"
    with pytest.raises(ValueError, match="claim must be one of"):
        verdict(diff(0, 1), "less")
