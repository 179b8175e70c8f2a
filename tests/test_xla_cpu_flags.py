"""The XLA:CPU flag neurojax sets on import (neurojax._xla_cpu_flags)."""
import os
import subprocess
import sys
import textwrap

import jaxlib.version
import pytest

from neurojax import _xla_cpu_flags as flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERIFIED = flags._VERIFIED_JAXLIB[-1]


def test_plan_appends_the_setting_to_the_users_flags():
    assert flags.planned_xla_flags({}, VERIFIED) == flags.YNN_SETTING
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert flags.planned_xla_flags(env, VERIFIED) == (
        "--xla_force_host_platform_device_count=8 " + flags.YNN_SETTING)


@pytest.mark.parametrize("env,version", [
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}, VERIFIED),  # theirs wins
    ({flags.OPT_OUT_ENV: "1"}, VERIFIED),                                    # opt-out
    ({}, "0.8.3"),                                                          # no such flag
    ({}, "99.0.0"),                                                         # not checked
])
def test_plan_leaves_xla_flags_alone(env, version):
    assert flags.planned_xla_flags(env, version) is None


def test_plan_opt_out_zero_means_not_opted_out():
    assert flags.planned_xla_flags({flags.OPT_OUT_ENV: "0"}, VERIFIED) == flags.YNN_SETTING


def _run(script, **env_overrides):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", flags.OPT_OUT_ENV)}
    env.update(env_overrides, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-W", "always", "-c", textwrap.dedent(script)],
                         cwd=_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


# The convolution, compiled (not run): under the flag its root is
# XLA's own `convolution`; with jaxlib 0.10's defaults a YNNPACK fusion.
_CONV_HLO = """
    import os
    import neurojax
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    shape = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
    lowered = f.lower(shape(64, 32, 32, 64), shape(3, 3, 64, 64))

    def kind(hlo):
        # The entry computation comes last; its ROOT is the last ROOT line.
        root = [line for line in hlo.splitlines() if line.strip().startswith("ROOT")][-1]
        return ("YNN_CONV" if "ynn_fusion" in root else
                "XLA_CONV" if " convolution(" in root else "UNKNOWN " + root)

    print("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", ""))
    print("ynn_convolutions_off:", neurojax._xla_cpu_flags.ynn_convolutions_off())
    print("flags:", kind(lowered.compile().as_text()))
    options = neurojax._xla_cpu_flags.JAXLIB_DEFAULT_YNN_OPTIONS
    print("defaults option:", kind(lowered.compile(compiler_options=options).as_text()))
"""


@pytest.mark.skipif(jaxlib.version.__version__ not in flags._VERIFIED_JAXLIB,
                    reason="the flag is only set on the jaxlib versions it was checked on")
def test_import_turns_off_ynn_convolutions_and_opt_out_keeps_them():
    out = _run(_CONV_HLO)
    assert flags.YNN_SETTING in out.stdout and "flags: XLA_CONV" in out.stdout, out.stdout
    assert "ynn_convolutions_off: True" in out.stdout
    # What benchmarks use to compile with jaxlib's defaults in the same process.
    assert "defaults option: YNN_CONV" in out.stdout, out.stdout
    kept = _run(_CONV_HLO, **{flags.OPT_OUT_ENV: "1"})
    assert flags.YNN_SETTING not in kept.stdout and "flags: YNN_CONV" in kept.stdout, kept.stdout
    assert "ynn_convolutions_off: False" in kept.stdout


@pytest.mark.skipif(jaxlib.version.__version__ not in flags._VERIFIED_JAXLIB,
                    reason="the flag is only set on the jaxlib versions it was checked on")
def test_import_after_the_backend_started_warns_and_changes_nothing():
    out = _run("""
        import os
        import jax.numpy as jnp
        jnp.ones(1).block_until_ready()
        import neurojax
        print("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", ""))
    """)
    assert "Import neurojax before running any JAX computation" in out.stderr, out.stderr
    assert flags.YNN_SETTING not in out.stdout
