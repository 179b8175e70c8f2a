"""Fig. 7 of Ghosh et al. (ICLR 2023) at a quick size
(neurojax.analysis.bias_variance_descent): the probability of descent against
Theorem 3.1's thresholds 2 / (dt (1 + sigma^2 / ||g||^2)), written here, and
Theorem 3.2's rigorous bias bound."""

import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.analysis import bias_variance_descent as descent
from neurojax.metrics import imperfect_gradients as ig
from tests.analysis._json import check_written


@pytest.mark.slow
def test_figure7_descent_probability_obeys_theorems_31_32(tmp_path):
    # Theorem 3.1 on the (lambda_N, lambda_1) grid: P(descent) = 1 where lambda_1 <=
    # 2 / (dt (1 + sigma^2/||g||^2)), 0 where lambda_N is above it; with sigma =
    # ||g|| the threshold halves (20 -> 10 at dt = 0.1). For an exactly quadratic
    # student averaged over an isotropic noise set this is an eigenvalue inequality,
    # so it checks the grid, thresholds and set-up rather than the theorem itself.
    dt = 0.1
    out = descent.figure7(str(tmp_path), grid=6, teachers=2, students=8)
    lams = np.asarray(out["lambdas"])
    ln, l1 = np.meshgrid(lams, lams, indexing="ij")
    for panel, key, noise in (("A_true_gradient", "p_A", 0.0),
                              ("B_noise_sigma_eq_gnorm", "p_B", 1.0)):
        p = np.asarray(out[key], np.float64)
        thr = 2.0 / (dt * (1.0 + noise ** 2))
        assert out["summary"][panel]["threshold"] == pytest.approx(thr)
        valid = ln <= l1
        assert np.all(np.isnan(p[~valid])) and np.all(np.isfinite(p[valid]))
        below, above = valid & (l1 <= thr), valid & (ln >= thr)
        assert below.sum() >= 3 and above.sum() >= 6  # both regions on the grid
        assert np.all(p[below] == 1.0), (panel, p[below])
        assert np.all(p[above] == 0.0), (panel, p[above])
    p_a, p_b = np.asarray(out["p_A"], np.float64), np.asarray(out["p_B"], np.float64)
    # a flat spectrum between the two thresholds (lambda = 16.6): the true gradient
    # always descends, sigma = ||g|| always ascends
    i = int(np.flatnonzero((lams > 10) & (lams < 20))[0])
    assert p_a[i, i] == 1.0 and p_b[i, i] == 0.0
    between = (ln <= l1) & (l1 > 20) & (ln < 20)
    assert 0.0 < np.mean(p_a[between]) < 1.0  # the thresholds are not trivially met
    # Theorem 3.2 (C): below the rigorous bound on b / ||g|| every student descends;
    # a bias as large as the gradient does not always
    c = out["summary"]["C_bias"]
    psi, ratios = np.asarray(c["psi"]), np.asarray(c["ratios"])
    bound = np.asarray(ig.bias_descent_bound(jnp.asarray(psi), 10, dt, form="rigorous"))
    np.testing.assert_allclose(c["bound_rigorous"], bound, rtol=1e-5)
    p_c = np.asarray(out["p_C"], np.float64)
    under = ratios[None, :] <= bound[:, None]
    assert under.sum() >= 10 and np.all(p_c[under] == 1.0)
    assert np.all(p_c[:, -1] < 1.0)  # ratio 1
    assert c["min_p_under_rigorous_bound"] == 1.0
    check_written(tmp_path, "fig7")
