"""float64 for the tests whose paper checks need it, switched on and restored."""
import contextlib

import jax


@contextlib.contextmanager
def float64():
    """``jax_enable_x64`` on inside the block, the previous value restored after."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
