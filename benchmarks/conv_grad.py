"""Forward, input-gradient and weight-gradient time of one 2-D convolution.

A stand-alone reproduction for the CPU convolution issue (neurojax issue 8),
suitable to attach to an upstream XLA report. It times, for one NHWC/HWIO
convolution (default 64x32x32x64 -> 64, 3x3, stride 1, SAME, float32):

* ``xla``: ``jax.lax.conv_general_dilated`` and JAX's autodiff of it, under
  the process's XLA flags (importing neurojax turns off XLA:CPU's YNNPACK
  convolution fusions on jaxlib 0.10.x: ``neurojax._xla_cpu_flags``);
* ``xla-ynn``: the same, compiled with jaxlib 0.10.2's default YNNPACK
  fusions (dot, convolution, reduce) as a per-compile option, i.e. what plain
  JAX does; only when neurojax's flag is in effect;
* ``neurojax``: ``neurojax.models.conv.conv2d`` (default ``impl='auto'``);
* ``taps``: ``conv2d(..., impl='taps')``, the per-tap-matmul weight gradient
  forced for every shape;
* ``torch``: PyTorch eager (oneDNN on x86) on the same shapes in
  channels_last, forward and ``aten.convolution_backward`` for each gradient
  alone, when torch is installed (``pip install torch==2.13.0``).

Each time is the median over ``--repeats`` calls of a jitted function (after
two warm-up calls), as wall time and as process CPU time. Ratios and totals
use wall time: the YNNPACK convolution runs the large layers on one thread
(wall = CPU time) where XLA's own uses both cores (CPU = 2x wall), so CPU time
hides exactly the difference that matters. Ratios are xla-ynn (or xla) /
candidate (> 1 means the candidate is faster). The XLA half needs only jax,
so the script also runs in an environment without neurojax (e.g. an old jax
for comparison)::

    python benchmarks/conv_grad.py                      # the issue's shape
    python benchmarks/conv_grad.py --stride 2 --kernel 1 --cout 128
    python benchmarks/conv_grad.py --stack              # ResNet-18 CIFAR layers
    /tmp/venv083/bin/python benchmarks/conv_grad.py     # xla only (jax 0.8.3)
    NEUROJAX_KEEP_XLA_FLAGS=1 python benchmarks/conv_grad.py --impls xla,neurojax

(the last keeps jaxlib's default flags for the whole process).
"""
import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import jaxlib

try:  # The neurojax half is optional (see the module docstring).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from neurojax import _xla_cpu_flags
    from neurojax.models.conv import conv2d as _nj_conv2d
    # Set by neurojax's import (before any backend started) or not at all.
    _YNN_FLAG_SET = _xla_cpu_flags.ynn_convolutions_off()
except Exception:  # pylint: disable=broad-except
    _nj_conv2d, _YNN_FLAG_SET = None, False

# (batch, size, c_in, c_out, kernel, stride): every distinct conv of a
# ResNet-18 with the CIFAR stem, with how many times it occurs.
RESNET18_CIFAR = [
    ((32, 3, 64, 3, 1), 1),
    ((32, 64, 64, 3, 1), 4),
    ((32, 64, 128, 3, 2), 1), ((32, 64, 128, 1, 2), 1), ((16, 128, 128, 3, 1), 3),
    ((16, 128, 256, 3, 2), 1), ((16, 128, 256, 1, 2), 1), ((8, 256, 256, 3, 1), 3),
    ((8, 256, 512, 3, 2), 1), ((8, 256, 512, 1, 2), 1), ((4, 512, 512, 3, 1), 3),
]


def _conv_fn(impl, strides, padding):
    if impl in ("xla", "xla-ynn"):
        return lambda x, k: jax.lax.conv_general_dilated(
            x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    nj_impl = "auto" if impl == "neurojax" else impl
    return lambda x, k: _nj_conv2d(x, k, strides, padding, impl=nj_impl)


def _time(f, args, repeats):
    """Median (wall ms, CPU ms) of ``f(*args)``; torch's eager calls return
    computed tensors, so ``block_until_ready`` only waits for JAX arrays."""
    jax.block_until_ready(f(*args))
    jax.block_until_ready(f(*args))
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(f(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def _time_torch(batch, size, cin, cout, kernel, stride, padding, dtype, repeats):
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(os.cpu_count())
    tdtype = {jnp.dtype("float32"): torch.float32, jnp.dtype("bfloat16"): torch.bfloat16}[dtype]
    gen = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(batch, cin, size, size, generator=gen, dtype=tdtype)
    w = torch.randn(cout, cin, kernel, kernel, generator=gen, dtype=tdtype)
    x, w = x.contiguous(memory_format=cl), w.contiguous(memory_format=cl)
    pads = jax.lax.padtype_to_pads((size, size), (kernel, kernel), (stride, stride), padding)
    if any(lo != hi for lo, hi in pads):  # torch pads symmetrically: pad the input
        x = torch.nn.functional.pad(x, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
        x = x.contiguous(memory_format=cl)
        pads = ((0, 0), (0, 0))
    pad = [pads[0][0], pads[1][0]]
    fwd = lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)  # noqa: E731
    dy = torch.randn_like(fwd()).contiguous(memory_format=cl)

    def grad(mask):
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, w, None, [stride] * 2, pad, [1, 1], False, [0, 0], 1, mask)

    with torch.no_grad():
        return {"fwd": _time(fwd, (), repeats),
                "dx": _time(grad([True, False, False]), (), repeats),
                "dW": _time(grad([False, True, False]), (), repeats)}


def time_conv(impl, batch, size, cin, cout, kernel, stride, padding, dtype, repeats):
    """{'fwd'|'dx'|'dW': (wall_ms, cpu_ms)} for one implementation."""
    if impl == "torch":
        return _time_torch(batch, size, cin, cout, kernel, stride, padding, dtype, repeats)
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, cin), dtype)
    k = (jax.random.normal(keys[1], (kernel, kernel, cin, cout)) /
         (kernel * kernel * cin) ** 0.5).astype(dtype)
    conv = _conv_fn(impl, (stride, stride), padding)
    dy = jax.random.normal(keys[2], jax.eval_shape(conv, x, k).shape, dtype)
    options = _xla_cpu_flags.JAXLIB_DEFAULT_YNN_OPTIONS if impl == "xla-ynn" else None
    jit = lambda f: jax.jit(f, compiler_options=options)  # noqa: E731
    fwd = jit(conv)
    dx = jit(lambda x, k, dy: jax.vjp(lambda x: conv(x, k), x)[1](dy)[0])
    dw = jit(lambda x, k, dy: jax.vjp(lambda k: conv(x, k), k)[1](dy)[0])
    return {"fwd": _time(fwd, (x, k), repeats),
            "dx": _time(dx, (x, k, dy), repeats),
            "dW": _time(dw, (x, k, dy), repeats)}


def _header():
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, backend "
          f"{jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    if _nj_conv2d is None:
        print("neurojax not importable: timing XLA only")


def _impls(requested):
    impls = [i for i in requested.split(",") if i]
    if _nj_conv2d is None:
        impls = [i for i in impls if i == "xla"]
    if not _YNN_FLAG_SET:  # xla already is jaxlib's default
        impls = [i for i in impls if i != "xla-ynn"]
    if "torch" in impls and importlib.util.find_spec("torch") is None:
        print("torch not installed: skipping the torch column")
        impls = [i for i in impls if i != "torch"]
    return impls


def _reference(impls):
    return "xla-ynn" if "xla-ynn" in impls else "xla"


def run_one(args):
    impls = _impls(args.impls)
    desc = (f"x {args.batch}x{args.size}x{args.size}x{args.cin} -> {args.cout}, "
            f"{args.kernel}x{args.kernel}, stride {args.stride}, {args.padding}, "
            f"{args.dtype}, median of {args.repeats}")
    print(desc)
    res = {i: time_conv(i, args.batch, args.size, args.cin, args.cout, args.kernel,
                        args.stride, args.padding, args.dtype, args.repeats)
           for i in impls}
    ref = _reference(impls)
    print(f"{'':4s}" + "".join(f"{i + ' wall/cpu ms':>24s}" for i in impls) +
          "".join(f"{'  ' + ref + '/' + i + ' (wall)':>22s}" for i in impls if i != ref))
    for q in ("fwd", "dx", "dW"):
        line = f"{q:4s}" + "".join(
            f"{res[i][q][0]:13.1f} /{res[i][q][1]:8.1f}" for i in impls)
        if ref in res:
            line += "".join(f"{res[ref][q][0] / res[i][q][0]:22.2f}"
                            for i in impls if i != ref)
        print(line)


def run_stack(args):
    """Per-layer and total fwd+dx+dW over the ResNet-18 CIFAR conv layers."""
    impls = _impls(args.impls)
    print(f"ResNet-18 (CIFAR stem) conv layers, batch {args.batch}, {args.dtype}, "
          f"SAME, wall ms (median of {args.repeats}); total counts repeated layers")
    print(f"{'size cin cout k s (n)':24s}" + "".join(
        f"{i + ' fwd/dx/dW':>26s}" for i in impls))
    totals = {i: {"fwd": 0.0, "dx": 0.0, "dW": 0.0} for i in impls}
    for (size, cin, cout, kernel, stride), count in RESNET18_CIFAR:
        row = f"{size:3d} {cin:4d} {cout:4d} {kernel} {stride} ({count})".ljust(24)
        for i in impls:
            r = time_conv(i, args.batch, size, cin, cout, kernel, stride, "SAME",
                          args.dtype, args.repeats)
            row += f"{r['fwd'][0]:10.1f}{r['dx'][0]:8.1f}{r['dW'][0]:8.1f}"
            for q in totals[i]:
                totals[i][q] += count * r[q][0]
        print(row, flush=True)
    for i in impls:
        t = totals[i]
        print(f"total {i:10s} fwd {t['fwd']:8.1f}  dx {t['dx']:8.1f}  dW {t['dW']:8.1f}"
              f"  all {sum(t.values()):8.1f} ms")
    ref = _reference(impls)
    for i in impls:
        if i != ref and ref in totals:
            print(f"ratio {ref}/{i}: " + "  ".join(
                f"{q} {totals[ref][q] / totals[i][q]:.2f}" for q in totals[i]) +
                  f"  all {sum(totals[ref].values()) / sum(totals[i].values()):.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="input height = width")
    p.add_argument("--cin", type=int, default=64)
    p.add_argument("--cout", type=int, default=64)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", default="SAME", choices=["SAME", "VALID"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--impls", default="xla-ynn,xla,neurojax,taps,torch",
                   help="comma list from xla-ynn, xla, neurojax, taps, torch")
    p.add_argument("--stack", action="store_true",
                   help="time every ResNet-18 (CIFAR) conv layer instead")
    args = p.parse_args(argv)
    args.dtype = jnp.dtype(args.dtype)
    _header()
    if args.stack:
        run_stack(args)
    else:
        run_one(args)


if __name__ == "__main__":
    main()
