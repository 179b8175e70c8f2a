"""Winograd 3x3 convolutions written in jnp against XLA's direct convolution.

Issue 8 asks for a CPU ResNet-18 step 1.2x faster than PyTorch eager, whose
oneDNN convolutions already run near the machine's matmul FLOP/s; only an
algorithm with fewer multiplies could get there. This script measures the one
such algorithm expressible without a custom kernel: Winograd's minimal
filtering F(m x m, 3 x 3) (Lavin & Gray 2016), m = 2 (4x4 input tiles, 2.25x
fewer multiplies) and m = 4 (6x6 tiles, 4x fewer):

    Y = A^T [ (G g G^T) . (B^T d B) ] A      per tile, summed over input channels

written with strided slices, linear combinations and one batched matmul over
the (m+2)^2 transformed positions. It prints, for each ResNet-18 (CIFAR) 3x3
stride-1 layer shape, wall-clock milliseconds (median, variants interleaved)
of the forward pass and of the input gradient (by JAX's autodiff), the ratio
to XLA's time (> 1: slower than XLA) and the relative error of the output.

    python benchmarks/winograd_conv.py [--batch 64] [--repeats 7]

The conclusion recorded in ``neurojax.models.conv``: no variant beats XLA's
direct convolution by a useful margin, so neurojax does not use Winograd.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Lavin & Gray (2016) transforms: B^T (input), G (kernel), A^T (output).
_TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]])),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]])),
}


def xla_conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _combine(coefficients, terms):
    """sum_i c_i t_i, skipping zeros and multiplying only by non-unit weights."""
    out = None
    for c, t in zip(coefficients, terms):
        if c == 0:
            continue
        t = t if c == 1 else (-t if c == -1 else float(c) * t)
        out = t if out is None else out + t
    return out


def winograd_conv(m: int):
    """F(m x m, 3 x 3) convolution, NHWC x HWIO, stride 1, SAME padding."""
    bt, g, at = _TRANSFORMS[m]
    a = m + 2

    def conv(x, k):
        n, h, w, c = x.shape
        th, tw = -(-h // m), -(-w // m)  # output tiles per dimension
        x = jnp.pad(x, ((0, 0), (1, m * th + 1 - h), (1, m * tw + 1 - w), (0, 0)))
        rows = [x[:, i:i + m * th:m] for i in range(a)]  # row i of every tile
        v = []
        for row in (_combine(bt[r], rows) for r in range(a)):
            cols = [row[:, :, j:j + m * tw:m] for j in range(a)]
            v.extend(_combine(bt[q], cols) for q in range(a))
        v = jnp.stack(v).reshape(a * a, n * th * tw, c)
        gk = jnp.einsum("ai,ijcd,bj->abcd", g.astype(x.dtype), k, g.astype(x.dtype))
        prod = lax.dot_general(v, gk.reshape(a * a, c, -1), (((2,), (1,)), ((0,), (0,))))
        prod = prod.reshape(a, a, n, th, tw, -1)
        out_rows = [_combine(at[r], [prod[i] for i in range(a)]) for r in range(m)]
        tiles = [jnp.stack([_combine(at[q], [row[j] for j in range(a)]) for q in range(m)],
                           axis=3) for row in out_rows]  # each (n, th, tw, m, c_out)
        y = jnp.stack(tiles, axis=2).reshape(n, m * th, m * tw, -1)
        return y[:, :h, :w]
    return conv


def _median_ms(fn, args, repeats):
    return statistics.median(_times(fn, args, repeats)) * 1e3


def _times(fn, args, repeats):
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - start)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    print(f"jax {jax.__version__} ({jax.default_backend()}), batch {args.batch}, float32, "
          f"wall ms (median of {args.repeats}); ratio = time / XLA's time")
    impls = {"xla": xla_conv, "F(2,3)": winograd_conv(2), "F(4,3)": winograd_conv(4)}
    print(f"{'shape':>12s} " + " ".join(f"{name + ' fwd/dx':>24s}" for name in impls)
          + "   rel err F(2,3) / F(4,3)")
    for size, channels in ((32, 64), (16, 128), (8, 256), (4, 512)):
        kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
        x = jax.random.normal(kx, (args.batch, size, size, channels))
        k = jax.random.normal(kk, (3, 3, channels, channels)) / np.sqrt(9 * channels)
        dy = jax.random.normal(kg, (args.batch, size, size, channels))
        fns = {}
        for name, f in impls.items():
            fns[name] = (jax.jit(f),
                         jax.jit(lambda x, k, dy, f=f: jax.vjp(lambda t: f(t, k), x)[1](dy)[0]))
        ref = fns["xla"][0](x, k)
        errs = [float(jnp.max(jnp.abs(fns[n][0](x, k) - ref)) / jnp.max(jnp.abs(ref)))
                for n in ("F(2,3)", "F(4,3)")]
        for fwd, dx in fns.values():  # compile and warm up
            jax.block_until_ready((fwd(x, k), dx(x, k, dy)))
        times = {n: ([], []) for n in fns}
        for _ in range(args.repeats):  # interleaved rounds: fair on a noisy machine
            for n, (fwd, dx) in fns.items():
                times[n][0].extend(_times(fwd, (x, k), 1))
                times[n][1].extend(_times(dx, (x, k, dy), 1))
        med = {n: (statistics.median(f) * 1e3, statistics.median(d) * 1e3)
               for n, (f, d) in times.items()}
        base = med["xla"]
        cells = []
        for n, (f, d) in med.items():
            cells.append(f"{f:6.1f}/{d:6.1f} ({f / base[0]:.2f}/{d / base[1]:.2f})"
                         if n != "xla" else f"{f:10.1f}/{d:6.1f}     ")
        print(f"{size:>4d}x{size:<3d}x{channels:<4d} " + " ".join(f"{c:>24s}" for c in cells)
              + f"   {errs[0]:.1e} / {errs[1]:.1e}", flush=True)


if __name__ == "__main__":
    main()
