"""Cost of gradient bias/noise injection and of Hutchinson's trace estimate.

Prints, in one run:

1. seconds per compiled SGD training step of a model (32x32x3 inputs,
   10 classes, softmax cross-entropy, SGD with momentum 0.9) plain and with
   ``inject_gradient_bias`` / ``inject_gradient_noise`` / both (relative
   mode, and the noise with a zero-sum set of R = 20) chained in front of the
   optimiser, and each one's ratio to the plain step (> 1: the transform
   costs that factor);
2. seconds for ``hessian_trace`` (Hutchinson, S probes) and for
   ``dense_hessian`` + trace on an MLP small enough for both (digits-sized:
   64 -> hidden -> 10), their ratio, and the two traces.

    python benchmarks/noise_transforms.py                    # small_cnn, batch 32
    python benchmarks/noise_transforms.py --model=resnet18   # slow on CPU (~1.6 s a step)

Medians of ``--repeats`` timed calls after one warm-up call (compilation
excluded); the step variants are timed in interleaved rounds. Ratios are comparable within one run only; the machine is shared.
"""
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from neurojax.metrics.curvature import dense_hessian, hessian_trace
from neurojax.models import get_model
from neurojax.optim import inject_gradient_bias, inject_gradient_noise

_MODEL = flags.DEFINE_enum("model", "small_cnn", ["small_cnn", "resnet18"], "Model to time.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size of the training step.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per variant (median).")
_HIDDEN = flags.DEFINE_integer("mlp_hidden", 24, "Hidden width of the MLP for the trace.")
_PROBES = flags.DEFINE_integer("probes", 100, "Hutchinson probes.")

MODEL_KWARGS = {"resnet18": {"stem": "cifar"}, "small_cnn": {}}


def _median_time(fn, repeats):
    jax.block_until_ready(fn())  # compile + warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_transforms(model_name, batch_size, repeats):
    model = get_model(model_name, num_classes=10, **MODEL_KWARGS[model_name])
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (batch_size, 32, 32, 3))
    y = jax.random.randint(key, (batch_size,), 0, 10)
    variables = model.init(key, x, train=True)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    mutable = list(extra)

    def loss(p, ex):
        out = model.apply({"params": p, **ex}, x, train=True, mutable=mutable or False)
        logits, new = out if mutable else (out, {})
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y)), new

    variants = {
        "plain": optax.sgd(0.01, momentum=0.9),
        "bias": optax.chain(inject_gradient_bias(1e-3, relative=True),
                            optax.sgd(0.01, momentum=0.9)),
        "noise": optax.chain(inject_gradient_noise(0.1, seed=0, relative=True),
                             optax.sgd(0.01, momentum=0.9)),
        "noise_zero_sum_R20": optax.chain(
            inject_gradient_noise(0.1, seed=0, relative=True, zero_sum_set=20),
            optax.sgd(0.01, momentum=0.9)),
        "bias+noise": optax.chain(inject_gradient_bias(1e-3, relative=True),
                                  inject_gradient_noise(0.1, seed=0, relative=True),
                                  optax.sgd(0.01, momentum=0.9)),
    }
    calls = {}
    for name, opt in variants.items():
        @jax.jit
        def step(p, ex, st, opt=opt):
            (_, new), g = jax.value_and_grad(loss, has_aux=True)(p, ex)
            u, st = opt.update(g, st, p)
            return optax.apply_updates(p, u), {**ex, **new}, st

        state = opt.init(params)
        calls[name] = functools.partial(step, params, extra, state)
        jax.block_until_ready(calls[name]())  # compile + warm-up
    # interleaved rounds: a shared machine's drifting load hits every variant alike
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - t0)
    return ({k: statistics.median(v) for k, v in times.items()},
            sum(v.size for v in jax.tree.leaves(params)))


def time_trace(hidden, probes, repeats):
    model = get_model("mlp", widths=(hidden,), num_outputs=10)
    key = jax.random.PRNGKey(1)
    x = jax.random.normal(key, (256, 64))
    y = jax.random.randint(key, (256,), 0, 10)
    params = model.init(key, x)

    def loss(p):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y))

    hutch = jax.jit(lambda p: hessian_trace(loss, p, jax.random.PRNGKey(2), probes))
    dense = jax.jit(lambda p: jnp.trace(dense_hessian(loss, p)))
    t_h = _median_time(lambda: hutch(params), repeats)
    t_d = _median_time(lambda: dense(params), max(1, repeats // 3))
    n = sum(v.size for v in jax.tree.leaves(params))
    return {"num_params": n, "hutchinson_s": t_h, "dense_s": t_d,
            "trace_hutchinson": float(hutch(params)), "trace_dense": float(dense(params))}


def main(argv):
    del argv
    print(f"devices: {jax.devices()}")
    times, n = time_transforms(_MODEL.value, _BATCH.value, _REPEATS.value)
    print(f"\n{_MODEL.value}, batch {_BATCH.value}, {n} parameters: seconds per training step")
    for name, t in times.items():
        print(f"  {name:20s} {t * 1e3:9.2f} ms   ratio to plain {t / times['plain']:.3f}")
    tr = time_trace(_HIDDEN.value, _PROBES.value, _REPEATS.value)
    print(f"\nMLP 64-{_HIDDEN.value}-10 on 256 examples ({tr['num_params']} parameters):")
    print(f"  Hutchinson, {_PROBES.value} probes  {tr['hutchinson_s'] * 1e3:9.2f} ms  "
          f"trace {tr['trace_hutchinson']:.4f}")
    print(f"  dense Hessian + trace   {tr['dense_s'] * 1e3:9.2f} ms  trace {tr['trace_dense']:.4f}")
    print(f"  dense / Hutchinson time ratio {tr['dense_s'] / tr['hutchinson_s']:.1f}; "
          f"relative trace error {abs(tr['trace_hutchinson'] / tr['trace_dense'] - 1):.3f}")


if __name__ == "__main__":
    app.run(main)
