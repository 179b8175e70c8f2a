"""synthetic.haar_orthogonal: orthogonal, Haar-distributed, and free of LAPACK calls."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from neurojax.data import synthetic


@pytest.mark.parametrize("dim", [1, 2, 7, 64])
def test_orthogonal_float32_and_float64(dim):
    q = synthetic.haar_orthogonal(jax.random.PRNGKey(dim), dim)
    assert q.shape == (dim, dim) and q.dtype == jnp.float32
    q = np.asarray(q, np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(dim), atol=2e-6)
    np.testing.assert_allclose(q @ q.T, np.eye(dim), atol=2e-6)
    with jax.enable_x64(True):
        q = synthetic.haar_orthogonal(jax.random.PRNGKey(dim), dim)
        assert q.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(q).T @ np.asarray(q), np.eye(dim), atol=1e-13)


def _samples(dim, n, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: synthetic.haar_orthogonal(k, dim)))(keys),
                      np.float64)


def test_second_moments_are_haar():
    d, n = 4, 20000
    q = _samples(d, n)
    # E[Q_ij^2] = 1/d; under Haar Var(Q_ij^2) = 3/(d(d+2)) - 1/d^2 = 1/16, so the
    # standard error of each mean is 0.25/sqrt(n) = 0.0018: allow 5 of them
    np.testing.assert_allclose((q ** 2).mean(axis=0), np.full((d, d), 1 / d), atol=0.009)
    # E[Q_ij] = 0 and E[(tr Q)^2] = 1 (d >= 2); Var((tr Q)^2) = 2 for d >= 4
    assert np.abs(q.mean(axis=0)).max() < 5 * 0.5 / np.sqrt(n)
    assert abs(np.mean(np.trace(q, axis1=1, axis2=2) ** 2) - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.linalg.det(q).mean()) < 5 / np.sqrt(n)  # det = +-1 equally often


def test_columns_uniform_on_the_sphere():
    # In d = 3 every column is uniform on S^2, so each coordinate is uniform on
    # [-1, 1] (Archimedes): a Kolmogorov-Smirnov test per entry.
    q = _samples(3, 4000, seed=1)
    pvalues = [stats.kstest(q[:, i, j], "uniform", args=(-1, 2)).pvalue
               for i in range(3) for j in range(3)]
    assert min(pvalues) > 1e-4, pvalues
    # the test has power: QR of a Gaussian without the sign fix is not Haar (Q_11 <= 0)
    g = np.random.default_rng(0).standard_normal((4000, 3, 3))
    plain = np.linalg.qr(g)[0]
    assert stats.kstest(plain[:, 0, 0], "uniform", args=(-1, 2)).pvalue < 1e-10


def test_vmapped_without_custom_calls():
    f = jax.jit(jax.vmap(lambda k: synthetic.haar_orthogonal(k, 6)))
    hlo = f.lower(jax.random.split(jax.random.PRNGKey(0), 3)).compile().as_text()
    assert "custom-call" not in hlo and "custom_call_target" not in hlo


def test_invalid_dim_names_the_argument():
    with pytest.raises(ValueError, match="dim"):
        synthetic.haar_orthogonal(jax.random.PRNGKey(0), 0)
