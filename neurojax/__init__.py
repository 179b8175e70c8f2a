"""neurojax: a JAX/Flax library for studying how learning systems learn."""

__version__ = "0.1.0"
