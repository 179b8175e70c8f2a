"""Sets the tests' compiler flags, then imports neurojax before any test runs JAX code.

``import neurojax`` may add an XLA:CPU flag to ``XLA_FLAGS``
(``neurojax._xla_cpu_flags``), which XLA reads once, when its first backend
starts; importing it here makes every test run under the same flags.

The tests compile thousands of small programs and run each a few times, so
compile time dominates: they ask XLA's backend for optimisation level 0
(unless ``XLA_FLAGS`` already sets a level). Measured on 2 cores,
``python -m pytest -n 2 tests/metrics tests/losses``: 258 s at XLA's default
level, 190 s at level 0, same 411 tests passing. The level changes how the
generated code is optimised, not what it computes (up to float rounding);
benchmarks and experiments do not run under pytest and keep XLA's defaults.
"""
import os
import tempfile

_OPT_LEVEL = "--xla_backend_optimization_level"
if _OPT_LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_OPT_LEVEL}=0".strip()

import neurojax  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position

# Under pytest-xdist (the README runs `pytest -n 2`), a test that uses the
# default data dir would race the other worker preparing the same offline
# dataset there: each worker gets its own default (subprocesses inherit it).
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("NEUROJAX_DATA_DIR"):
    os.environ["NEUROJAX_DATA_DIR"] = tempfile.mkdtemp(
        prefix=f"neurojax_tfds_{os.environ['PYTEST_XDIST_WORKER']}_")
