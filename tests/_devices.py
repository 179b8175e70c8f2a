"""Runs a test script in a subprocess that sees several forced CPU devices.

The device count of the XLA CPU backend is fixed when jax starts, so tests
of the data-parallel paths run their script in a fresh interpreter.
"""
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_with_forced_devices(script: str, done_marker: str, num_devices: int = 8,
                            timeout: int = 300) -> None:
    """Runs ``script`` with ``num_devices`` CPU devices; it must print ``done_marker``."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
               PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", script], cwd=_ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert done_marker in out.stdout, out.stdout + out.stderr
