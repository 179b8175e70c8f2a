"""Quadratic test problems with a known Hessian and exactly isotropic noise sets,
shared by the imperfect-gradient tests (metrics and the bias/variance analysis)."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


def flat(tree):
    return ravel_pytree(tree)[0]


def quadratic_problem(seed, eigenvalues, n=20):
    """Linear regression with a controlled Hessian; params as a two-leaf PyTree."""
    rng = np.random.default_rng(seed)
    lam = np.asarray(eigenvalues, np.float64)
    d = lam.size
    v = np.linalg.qr(rng.standard_normal((n, n)))[0][:, :d]
    z = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = (v * np.sqrt(n * lam / 2)) @ z.T
    y = x @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n)
    h = 2.0 / n * x.T @ x  # independent Hessian of (1/n)||Xw - y||^2
    k = d // 2

    def loss(p):
        return jnp.mean((x[:, :k] @ p["a"] + x[:, k:] @ p["b"] - y) ** 2)

    w = rng.standard_normal(d)
    params = {"a": jnp.asarray(w[:k]), "b": jnp.asarray(w[k:])}
    return loss, params, h, x, y


def isotropic_set(seed, n):
    """{+q_i, -q_i} for an orthogonal Q: sums to zero, (1/2N) sum n n^T = I / N exactly."""
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))[0]
    return np.concatenate([q.T, -q.T], axis=0)


def as_tree(flat_set, params):
    """(R, N) flat vectors -> a PyTree like params with a leading R axis."""
    _, unravel = jax.flatten_util.ravel_pytree(params)
    return jax.vmap(unravel)(jnp.asarray(flat_set))


def grad_flat(loss, params):
    return np.asarray(jax.flatten_util.ravel_pytree(jax.grad(loss)(params))[0])
