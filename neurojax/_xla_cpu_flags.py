"""Turn off XLA:CPU's single-threaded YNNPACK convolutions (issue 8).

jaxlib 0.10.1 and 0.10.2 compile large float32 convolutions on the CPU
backend into YNNPACK "individual convolution" fusions (0.10.0 does not). On a
2-core machine those fusions run the large convolutions of a ResNet on one
thread (wall time = CPU time), while XLA's own (Eigen) convolution uses every
core. Measured with jax/jaxlib 0.10.2, 2-core AMD EPYC, 64x32x32x64 -> 64,
3x3, forward (``python benchmarks/conv_grad.py``): 52 ms wall / 52 ms CPU
with the fusion, 29 ms wall / 58 ms CPU without it; the compiled ResNet-18
step at batch 64 (both programs in one process, interleaved) 1.74 s -> 1.50
s. This is the regression the issue dates to "after jaxlib 0.8.3".

XLA reads ``XLA_FLAGS`` once, when the first backend starts, and aborts the
process on a flag it does not know. So ``configure()`` (called when neurojax
is imported) adds ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``
only when all of these hold:

* ``NEUROJAX_KEEP_XLA_FLAGS`` is unset or ``0`` (the opt-out);
* the user's ``XLA_FLAGS`` does not mention ``xla_cpu_experimental_ynn_fusion_type``
  (theirs wins);
* the installed jaxlib is one whose flag set was checked (``_VERIFIED_JAXLIB``);
* no JAX backend has started yet (else the flag would be ignored: a warning
  says to import neurojax first or to set the flag by hand).

The flag only affects the CPU backend; GPU and TPU compile as before. Other
jaxlib versions are left alone, and ``neurojax.models.conv`` still applies its
CPU weight-gradient formulations there.
"""
from __future__ import annotations

import os
import warnings

YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
YNN_SETTING = f"--{YNN_FLAG}=-individual_convolution"
OPT_OUT_ENV = "NEUROJAX_KEEP_XLA_FLAGS"
# jaxlib releases on which the flag with its +/- list syntax was checked to
# parse. 0.10.1 and 0.10.2 fuse convolutions into YNNPACK by default (measured
# slower, see above); on 0.10.0, which does not, the flag changes nothing.
_VERIFIED_JAXLIB = ("0.10.0", "0.10.1", "0.10.2")
# jaxlib 0.10.2's default YNN fusion list (the flag's enum names), for
# benchmarks that compile one function with XLA's defaults as a per-compile
# option (``.compile(compiler_options=JAXLIB_DEFAULT_YNN_OPTIONS)``) beside
# the same function under neurojax's flag, in one process.
JAXLIB_DEFAULT_YNN_OPTIONS = {YNN_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
                              "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,"
                              "LIBRARY_FUSION_TYPE_REDUCE"}


def _jaxlib_version() -> str:
    import jaxlib.version  # pylint: disable=import-outside-toplevel
    return jaxlib.version.__version__


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a jax without the private helper
        return False


def planned_xla_flags(environ, jaxlib_version: str) -> str | None:
    """The ``XLA_FLAGS`` value ``configure`` would set, or None to leave it.

    Pure (no side effects) so that the rule is testable on its own.
    """
    if environ.get(OPT_OUT_ENV, "0") not in ("", "0"):
        return None
    current = environ.get("XLA_FLAGS", "")
    if YNN_FLAG in current or jaxlib_version not in _VERIFIED_JAXLIB:
        return None
    return f"{current} {YNN_SETTING}".strip()


def ynn_convolutions_off() -> bool:
    """Whether this process's ``XLA_FLAGS`` carry neurojax's setting (set by
    ``configure`` or by hand): benchmarks then add a jaxlib-defaults column."""
    return YNN_SETTING in os.environ.get("XLA_FLAGS", "")


def configure() -> bool:
    """Set ``XLA_FLAGS`` per ``planned_xla_flags``; True when it changed them."""
    planned = planned_xla_flags(os.environ, _jaxlib_version())
    if planned is None:
        return False
    if _backends_started():
        warnings.warn(
            "neurojax was imported after JAX started its backend, so XLA:CPU keeps "
            "its single-threaded YNNPACK convolutions (about 2x slower on 2 cores). "
            "Import neurojax before running any JAX computation, or set "
            f"XLA_FLAGS='{YNN_SETTING}' yourself; {OPT_OUT_ENV}=1 silences this.",
            RuntimeWarning, stacklevel=3)
        return False
    os.environ["XLA_FLAGS"] = planned
    return True
