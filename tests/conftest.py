"""Imports neurojax before any test module runs JAX code.

``import neurojax`` may add an XLA:CPU flag to ``XLA_FLAGS``
(``neurojax._xla_cpu_flags``), which XLA reads once, when its first backend
starts; importing it here makes every test run under the same flags.
"""
import neurojax  # noqa: F401  pylint: disable=unused-import

import os
import tempfile

# Under pytest-xdist (the README runs `pytest -n 2`), a test that uses the
# default data dir would race the other worker preparing the same offline
# dataset there: each worker gets its own default (subprocesses inherit it).
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("NEUROJAX_DATA_DIR"):
    os.environ["NEUROJAX_DATA_DIR"] = tempfile.mkdtemp(
        prefix=f"neurojax_tfds_{os.environ['PYTEST_XDIST_WORKER']}_")
