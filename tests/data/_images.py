"""Random test images and PRNG keys shared by the augmentation tests."""

import jax
import numpy as np


def random_image(seed=0, shape=(8, 8, 3)):
    """A float32 image with pixels uniform in [0, 1)."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def split_keys(n, seed=0):
    """``n`` PRNG keys split from ``jax.random.key(seed)``."""
    return jax.random.split(jax.random.key(seed), n)


def over_keys(fn, keys):
    """``fn(key)`` for every key, compiled once (eager vmaps compile op by op)."""
    return np.asarray(jax.jit(jax.vmap(fn))(keys))
