"""Gradient descent on least squares (alpha-ReQ App. A): iterates against an SVD
reference, the closed form of Lemma A.1, steps to a tolerance against brute force."""
import chex
import jax
import numpy as np
import pytest

from neurojax.data import synthetic
from neurojax.metrics import least_squares as lsq
from tests._x64 import float64





def svd_iterate(x, y, eta, k):
    """Lemma A.1 through the SVD X = U S V^T: w_k = V diag((1 - (1 - eta s^2)^k) / s) U^T y."""
    u, s, vt = np.linalg.svd(np.asarray(x, np.float64), full_matrices=False)
    factor = (1.0 - (1.0 - eta * s ** 2) ** k) / s
    return vt.T @ (factor[:, None] * (u.T @ np.asarray(y, np.float64)))


def test_gd_iterates_match_closed_form_in_eigenbasis():
    with float64():
        # Shapes shared with the other float64 tests (compilation dominates).
        task = synthetic.power_law_regression(jax.random.PRNGKey(0), alpha=1.0, num_train=16,
                                            num_test=1, dim=64)
        assert task["x_train"].dtype == np.float64
        x = np.asarray(task["x_train"])
        y = np.concatenate([task["y_train"], np.random.default_rng(0).standard_normal((16, 1))],
                           axis=1)
        eta = lsq.learning_rate(x, tau=0.5)
        np.testing.assert_allclose(eta, 0.5 / np.linalg.svd(x, compute_uv=False)[0] ** 2,
                                   rtol=1e-12)
        run = lsq.gradient_descent(x, y, learning_rate=eta, num_steps=40, record_every=4)
        chex.assert_shape(run["weights"], (11, 64, 2))
        np.testing.assert_array_equal(run["steps"], np.arange(0, 41, 4))
        expected = np.stack([svd_iterate(x, y, eta, k) for k in run["steps"]])
        np.testing.assert_allclose(np.asarray(run["weights"]), expected, rtol=1e-10, atol=1e-12)
        # The comparison resolves one step: iterate k is not iterate k + 1.
        assert np.abs(expected[-1] - svd_iterate(x, y, eta, 41)).max() > 1e-6
        np.testing.assert_allclose(np.asarray(run["train_mse"]),
                                   np.mean((x @ expected - y) ** 2, axis=1), rtol=1e-10)
        # The library's eigenbasis closed form, finite k and the k -> inf limit
        # (minimum-norm interpolator, pinv(X) y).
        closed = lsq.closed_form_iterate(x, y, learning_rate=eta, steps=[7, np.inf])
        np.testing.assert_allclose(closed[0], svd_iterate(x, y, eta, 7), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(closed[1], np.linalg.pinv(x) @ y, rtol=1e-8, atol=1e-10)
    assert not jax.config.jax_enable_x64          # restored


def test_steps_to_threshold_monotone_in_alpha_and_equal_to_gd():
    alphas = (0.5, 1.0, 1.5, 2.0)
    with float64():
        closed, gd = [], []
        for a in alphas:
            task = synthetic.power_law_regression(jax.random.PRNGKey(3), alpha=a, num_train=16,
                                                num_test=1, dim=64)
            closed.append(lsq.steps_to_threshold(task["x_train"], task["y_train"],
                                                tolerance=1e-4))
            gd.append(lsq.gd_steps_to_threshold(task["x_train"], task["y_train"],
                                               tolerance=1e-4, max_steps=200_000))
    assert closed == gd, (closed, gd)
    assert all(b > a for a, b in zip(closed, closed[1:])), closed


def test_steps_to_threshold_matches_bruteforce_loss_curve():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 25)) * np.arange(1, 26.) ** -0.75
    y = rng.standard_normal(10)
    eta = lsq.learning_rate(x, tau=0.9)
    # Independent: iterate the residual r <- (I - eta X X^T) r in numpy.
    r, k, k_star = y.copy(), 0, None
    while k_star is None:
        if r @ r <= 1e-3 * (y @ y):
            k_star = k
        r = r - eta * (x @ (x.T @ r))
        k += 1
    assert lsq.steps_to_threshold(x, y, tau=0.9, tolerance=1e-3) == k_star
    assert lsq.steps_to_threshold(x, y, tolerance=1.0) == 0


def test_steps_to_threshold_unreachable_raises():
    x = np.array([[1.0, 0.0], [2.0, 0.0]])      # rank 1: part of y is out of reach
    with pytest.raises(ValueError, match="max_steps"):
        lsq.steps_to_threshold(x, np.array([1.0, -0.5]), tolerance=1e-6, max_steps=1000)


@pytest.mark.parametrize("call, name", [
    (lambda: lsq.learning_rate(np.ones((3, 4)), tau=0.0), "tau"),
    (lambda: lsq.gradient_descent(np.ones((3, 4)), np.ones(3), learning_rate=0.1,
                                 num_steps=10, record_every=3), "num_steps"),
    (lambda: lsq.gradient_descent(np.ones((3, 4)), np.ones(2), learning_rate=0.1,
                                 num_steps=10), "y"),
    (lambda: lsq.steps_to_threshold(np.ones((2, 3)), np.ones(2), tolerance=0.0), "tolerance"),
])
def test_invalid_arguments_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
