"""Stable rank ||W||_F^2 / ||W||_2^2 against NumPy, and its edge cases."""
import jax
import numpy as np
import pytest

from neurojax.metrics.stable_rank import kernel_stable_ranks, stable_rank


def _numpy_stable_rank(w):
    m = np.asarray(w, np.float64).reshape(-1, w.shape[-1])
    return np.linalg.norm(m, "fro") ** 2 / np.linalg.norm(m, 2) ** 2


def test_matches_numpy_on_matrices_and_conv_kernels():
    rng = np.random.default_rng(0)
    for shape in [(7, 5), (3, 3, 4, 6)]:
        w = rng.normal(size=shape).astype(np.float32)
        np.testing.assert_allclose(float(stable_rank(w)), _numpy_stable_rank(w), rtol=1e-5)


def test_known_values_and_bounds():
    # (one shape throughout: one compilation)
    # rank one: 1; orthogonal columns of equal norm: the number of columns
    u, v = np.arange(1.0, 8.0), np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    np.testing.assert_allclose(float(stable_rank(np.outer(u, v))), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(stable_rank(3 * np.eye(7)[:, :5])), 5.0, rtol=1e-6)
    # diagonal: sum s^2 / max s^2
    d = np.zeros((7, 5))
    d[np.arange(3), np.arange(3)] = [3.0, 1.0, 1.0]
    np.testing.assert_allclose(float(stable_rank(d)), 11 / 9, rtol=1e-6)
    w = np.random.default_rng(1).normal(size=(7, 5))
    assert 1.0 <= float(stable_rank(w)) <= 5.0


def test_runs_under_jit():
    w = np.random.default_rng(3).normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(float(jax.jit(stable_rank)(w)), _numpy_stable_rank(w),
                               rtol=1e-5)


def test_kernel_stable_ranks_walks_the_tree():
    rng = np.random.default_rng(2)
    params = {"conv_0": {"kernel": rng.normal(size=(1, 1, 7, 5)), "bias": np.zeros(5)},
              "block": {"dense": {"kernel": rng.normal(size=(7, 5))}},
              "bn": {"scale": np.ones(4)}}
    ranks = kernel_stable_ranks(params)
    assert set(ranks) == {"conv_0", "block/dense"}
    np.testing.assert_allclose(ranks["block/dense"],
                               _numpy_stable_rank(params["block"]["dense"]["kernel"]),
                               rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="w must be"):
        stable_rank(np.ones(3))
    with pytest.raises(ValueError, match="params must be"):
        kernel_stable_ranks([1, 2])
