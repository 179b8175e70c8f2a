"""Imports neurojax before any test module runs JAX code.

``import neurojax`` may add an XLA:CPU flag to ``XLA_FLAGS``
(``neurojax._xla_cpu_flags``), which XLA reads once, when its first backend
starts; importing it here makes every test run under the same flags.
"""
import neurojax  # noqa: F401  pylint: disable=unused-import
