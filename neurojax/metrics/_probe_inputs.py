"""Input checks shared by the probes of ``neurojax.metrics.probes``.

Features of shape (n, D) (or (n, ...), flattened per example) and integer
labels of shape (n,) in [0, num_classes), validated on the host: each
failure raises ``ValueError`` naming the argument, before anything is
compiled. Label ranges are checked only on concrete arrays (under
``jax.jit`` / ``jax.vmap`` the caller passes ``num_classes``). ``prng_key``
turns a probe's ``seed`` (an int or a PRNG key) into a key.
"""
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_int, is_concrete

ArrayLike = Union[jax.Array, np.ndarray]
Seed = Union[int, jax.Array]


def check_features(name: str, x: ArrayLike) -> jax.Array:
    """(n, ...) real array -> (n, D) floating array."""
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if len(x.shape) < 2:
        raise ValueError(f"{name} must have shape (num_examples, num_features), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one example, got shape {tuple(x.shape)}")
    dtype = jnp.dtype(x.dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real (float or integer) array, got dtype {dtype}")
    x = jnp.asarray(x)
    x = x.reshape(x.shape[0], -1)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def check_labels(name: str, y: ArrayLike, n: int, x_name: str) -> jax.Array:
    """(n,) integer labels (one per row of ``x_name``) -> int32 array."""
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    if len(y.shape) != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class labels, "
                         f"got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but {x_name} has {n} examples")
    dtype = jnp.dtype(y.dtype)
    if not jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
        raise ValueError(f"{name} must hold integer class labels, got dtype {dtype}")
    return jnp.asarray(y).astype(jnp.int32)


def check_probe_data(train_x, train_y, test_x, test_y, num_classes):
    """Shapes, dtypes, label ranges; infers num_classes from concrete labels."""
    tx = check_features("train_x", train_x)
    ex = check_features("test_x", test_x)
    if tx.shape[1] != ex.shape[1]:
        raise ValueError(f"train_x and test_x must have the same number of features per "
                         f"example, got {tx.shape[1]} and {ex.shape[1]}")
    ty = check_labels("train_y", train_y, tx.shape[0], "train_x")
    ey = check_labels("test_y", test_y, ex.shape[0], "test_x")
    num_classes = check_num_classes(num_classes, {"train_y": ty, "test_y": ey})
    return tx, ty, ex, ey, num_classes


def check_num_classes(num_classes, labels: dict) -> int:
    """``num_classes`` (>= 2; inferred from concrete labels if None), with every
    concrete label array of ``labels`` ({name: labels}) checked to lie in range."""
    concrete = {k: v for k, v in labels.items() if is_concrete(v)}
    if num_classes is None:
        if len(concrete) < len(labels):
            raise ValueError("num_classes must be given when the labels are traced "
                             "(under jax.jit or jax.vmap)")
        num_classes = 1 + max(int(np.max(np.asarray(v))) for v in labels.values())
    check_int("num_classes", num_classes, 2)
    for name, v in concrete.items():
        v = np.asarray(v)
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, num_classes) = [0, {num_classes}), "
                             f"got labels in [{lo}, {hi}]")
    return int(num_classes)


def prng_key(seed: Seed) -> jax.Array:
    """An int seed or an existing PRNG key (typed or raw uint32[2])."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    if isinstance(seed, (jax.Array, np.ndarray)) or not is_concrete(seed):
        if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
            return seed
        if seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
            return jax.random.key(seed)
        if seed.shape == (2,) and seed.dtype == jnp.uint32:
            return jax.random.wrap_key_data(seed)
    raise ValueError(f"seed must be an int or a PRNG key, got {seed!r}")
