"""neurojax: a JAX/Flax library for studying how learning systems learn."""
from neurojax import _xla_cpu_flags

# Before any JAX backend starts: XLA reads XLA_FLAGS once (see the module).
_xla_cpu_flags.configure()

__version__ = "0.1.0"
