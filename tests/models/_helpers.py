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


def float64_variables(model, shape, seed: int = 0):
    """Random float64 variables for ``model`` on inputs of ``shape`` (call
    with x64 enabled); see :func:`random_variables`."""
    return random_variables(model, shape, seed, jnp.float64)


def random_variables(model, shape, seed: int = 0, dtype=jnp.float32):
    """Random variables for ``model`` on inputs of ``shape``, drawn in NumPy
    (cast to ``dtype``), so no initialiser is compiled: kernels
    normal with variance 1 / fan-in, BatchNorm scales of either sign, biases
    and running means normal, running variances in [0.5, 2] (at
    initialisation they are 1, 0, 0 and 1, which would hide a BatchNorm that
    ignores them)."""
    rng = np.random.default_rng(seed)

    def draw(path, a):
        name = path[-1].key
        if name == "kernel":
            value = rng.normal(0.0, 1.0, a.shape) / np.sqrt(np.prod(a.shape[:-1]))
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, a.shape) * rng.choice([-1.0, 1.0], a.shape)
        elif name in ("bias", "mean"):
            value = rng.normal(0.0, 0.5, a.shape)
        elif name == "var":
            value = rng.uniform(0.5, 2.0, a.shape)
        else:
            raise ValueError(f"no rule for variable {jax.tree_util.keystr(path)}")
        return jnp.asarray(value, dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract_init(model, shape))
