"""Max pooling's forward + gradient: flax's nn.max_pool (XLA's reduce_window
and select-and-scatter) against ``neurojax.models.layers.max_pool``.

For the pooling layers of the small CNN and VGG-11 on 32x32 inputs (2x2
windows, stride 2, float32), times ``jit(value_and_grad(sum(pool(x)^2)))``
for both, in interleaved rounds (median), and prints the ratio
(> 1: neurojax faster). Why there is a difference: XLA:CPU (jaxlib 0.10.2)
turns select-and-scatter into an argmax reduce-window over int32 iotas plus
a scatter (see ``neurojax.models.layers._max_pool_blocks``).

    python benchmarks/max_pool.py [--batch 64] [--repeats 9]
"""
import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from neurojax.models.layers import max_pool

# (height = width, channels): small CNN (32, 64 channels), then VGG-11's pools.
SHAPES = [(32, 32), (16, 64), (32, 64), (16, 128), (8, 256), (4, 512), (2, 512)]


def _step(pool):
    return jax.jit(jax.value_and_grad(lambda x: jnp.sum(pool(x) ** 2)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, batch {args.batch}, "
          f"wall ms (median of {args.repeats} interleaved rounds)")
    variants = {
        "nn.max_pool": _step(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")),
        "neurojax": _step(max_pool),
    }
    print(f"{'input':>14s}" + "".join(f"{k:>14s}" for k in variants) + f"{'ratio':>8s}")
    totals = dict.fromkeys(variants, 0.0)
    for size, channels in SHAPES:
        x = jax.random.normal(jax.random.key(0), (args.batch, size, size, channels))
        times = {k: [] for k in variants}
        for f in variants.values():
            jax.block_until_ready(f(x))
        for _ in range(args.repeats):
            for k, f in variants.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(x))
                times[k].append(time.perf_counter() - t0)
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        for k in variants:
            totals[k] += med[k]
        print(f"{f'{size}x{size}x{channels}':>14s}" + "".join(f"{med[k]:14.2f}" for k in variants)
              + f"{med['nn.max_pool'] / med['neurojax']:8.2f}", flush=True)
    print(f"{'total':>14s}" + "".join(f"{totals[k]:14.2f}" for k in variants)
          + f"{totals['nn.max_pool'] / totals['neurojax']:8.2f}")


if __name__ == "__main__":
    main()
