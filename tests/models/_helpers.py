"""Shared test helpers.

Tests use 'rbg' keys: on CPU, XLA compiles threefry's random-bit generation
several times more slowly, and initialisation compile time dominates these
tiny tests. Inputs come from numpy so they need no compile at all.
"""
import jax
import jax.numpy as jnp
import numpy as np


def key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def init(model, x, seed: int = 0):
    """Concrete variables, initialised in one compiled program."""
    return jax.jit(model.init)(key(seed), x)


def abstract_init(model, shape):
    """Variable shapes only (``jax.eval_shape``: no compute)."""
    return jax.eval_shape(model.init, key(0), jnp.zeros(shape))


def n_params(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def to_np(tree):
    return jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), tree)
