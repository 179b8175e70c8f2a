"""Training-step speed: neurojax vs the same model in PyTorch, and vs the machine.

For each model (ResNet-18 with the CIFAR stem, VGG-11, the small CNN; 32x32x3
inputs, 10 classes, SGD with momentum 0.9, softmax cross-entropy) and batch
size, prints in one run:

- seconds per step of the compiled neurojax step (its convolution picks the
  fast path for the backend), of the same Flax step with XLA's plain
  convolution, of that plain step compiled with jaxlib's default XLA:CPU
  flags ("plain jax": importing neurojax turns off XLA:CPU's single-threaded
  YNNPACK convolutions on jaxlib 0.10.x, see ``neurojax._xla_cpu_flags``; this
  column puts them back for one compile), of PyTorch eager (the faster of
  NCHW and channels_last) and of ``torch.compile`` where it runs;
- the ratios (>1 means neurojax is faster);
- the achieved FLOP/s (model FLOPs from XLA's cost analysis of the plain step)
  as a fraction of a 4096x4096 float32 matmul's FLOP/s, measured again just
  before each row (the practical peak of the machine; re-measured because a
  shared machine's speed drifts), for neurojax and for PyTorch eager (same
  FLOPs). Issue 8's goal, 1.2x PyTorch eager, needs a neurojax fraction of
  1.2 times PyTorch's: above 1 it needs more FLOP/s than XLA's own large
  matmul reaches.

    python benchmarks/train_step.py                      # everything (~15 min on 2 cores)
    python benchmarks/train_step.py --models=resnet18 --batch_sizes=64 --notorch_compile

Medians of ``--repeats`` timed steps after ``--warmup`` untimed ones. Numbers
are for comparison within one run only (shared machines are noisy).
"""
import json
import os
import statistics
import sys
import time

from absl import app, flags

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax import _xla_cpu_flags
from neurojax.losses import softmax_cross_entropy
from neurojax.models import conv as nj_conv
from neurojax.models import get_model
from neurojax.train import create_train_state, make_mesh, make_train_step, model_objective, shard_batch

_MODELS = flags.DEFINE_list("models", ["resnet18", "vgg11", "small_cnn"], "Models to time.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["64", "128"], "Batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per variant (median reported).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch eager reference.")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", True, "Also time torch.compile.")
_XLA_CONV = flags.DEFINE_bool("xla_conv", True, "Also time the step with XLA's plain conv "
                               "(and with jaxlib's default flags, when neurojax changed them).")
_JSON = flags.DEFINE_string("json", "", "Optional path for the results as JSON.")

MODEL_KWARGS = {"resnet18": {"stem": "cifar"}, "vgg11": {}, "small_cnn": {}}


def _median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_second(n: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of a jit-compiled n x n float32 matmul: the practical peak."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    seconds = _median_seconds(lambda: mm(a, b).block_until_ready(), repeats, 1)
    return 2 * n ** 3 / seconds


def _batch(batch_size: int, layout: str = "NHWC"):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, batch_size).astype(np.int32)
    if layout == "NCHW":
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return images, labels


def time_neurojax(name: str, batch_size: int, impl: str,
                  compiler_options=None) -> tuple[float, float]:
    """(seconds per step, model FLOPs per step from XLA's cost analysis)."""
    with nj_conv.use_implementation(impl):
        model = get_model(name, num_classes=10, **MODEL_KWARGS[name])
        images, labels = _batch(batch_size)
        variables = model.init(jax.random.PRNGKey(0), images[:1], train=False)
        params = variables.pop("params")
        tx = optax.sgd(0.01, momentum=0.9)
        state = create_train_state(params, tx, model_state=variables)
        mesh = make_mesh()
        step = make_train_step(model_objective(model, softmax_cross_entropy), tx, mesh=mesh)
        batch = shard_batch({"image": images, "label": labels}, mesh)
        compiled = step.lower(state, batch).compile(compiler_options=compiler_options)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan")))
    holder = [state]

    def run():
        new_state, metrics = compiled(holder[0], batch)
        metrics["loss"].block_until_ready()
        holder[0] = new_state

    return _median_seconds(run, _REPEATS.value, _WARMUP.value), flops


def time_torch(name: str, batch_size: int, mode: str) -> float:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_models import MODELS

    torch.manual_seed(0)
    model = MODELS[name]()
    images, labels = _batch(batch_size, "NCHW")
    x, y = torch.from_numpy(images), torch.from_numpy(labels).long()
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if mode == "compile":
        step = torch.compile(step)
    model.train()
    return _median_seconds(step, _REPEATS.value, _WARMUP.value + (1 if mode == "compile" else 0))


def main(argv):
    del argv
    results = {"jax": jax.__version__, "backend": jax.default_backend(), "rows": []}
    peak = matmul_flops_per_second()
    results["matmul_gflops"] = peak / 1e9
    print(f"jax {jax.__version__} ({jax.default_backend()}); 4096^2 float32 matmul: "
          f"{peak / 1e9:.1f} GFLOP/s")
    header = (f"{'model':10s} {'batch':>5s} {'neurojax s':>10s} {'xla-conv s':>10s} "
              f"{'plain jax s':>11s} {'torch s':>8s} {'compile s':>9s} {'vs torch':>8s} "
              f"{'vs compile':>10s} {'vs xla':>6s} {'vs plain jax':>12s} {'FLOP/s frac':>11s} "
              f"{'torch frac':>10s}")
    print(header)
    for name in _MODELS.value:
        for batch_size in map(int, _BATCHES.value):
            row = {"model": name, "batch": batch_size}
            row_peak = matmul_flops_per_second()
            row["matmul_gflops"] = row_peak / 1e9
            row["neurojax_s"], flops_fast = time_neurojax(name, batch_size, "auto")
            if _XLA_CONV.value:
                row["xla_conv_s"], flops = time_neurojax(name, batch_size, "xla")
                if _xla_cpu_flags.ynn_convolutions_off():
                    row["plain_jax_s"], _ = time_neurojax(
                        name, batch_size, "xla", _xla_cpu_flags.JAXLIB_DEFAULT_YNN_OPTIONS)
            else:
                flops = flops_fast
            row["gflops_per_step"] = flops / 1e9
            row["flops_fraction"] = flops / row["neurojax_s"] / row_peak
            if _TORCH.value:
                row["torch_eager_s"] = min(time_torch(name, batch_size, "nchw"),
                                           time_torch(name, batch_size, "channels_last"))
                row["speedup_vs_torch_eager"] = row["torch_eager_s"] / row["neurojax_s"]
                row["torch_flops_fraction"] = flops / row["torch_eager_s"] / row_peak
                if _TORCH_COMPILE.value:
                    try:
                        row["torch_compile_s"] = time_torch(name, batch_size, "compile")
                        row["speedup_vs_torch_compile"] = row["torch_compile_s"] / row["neurojax_s"]
                    except Exception as e:  # no compiler toolchain, unsupported op, ...
                        row["torch_compile_error"] = f"{type(e).__name__}: {e}"[:200]
            if "xla_conv_s" in row:
                row["speedup_vs_xla_conv"] = row["xla_conv_s"] / row["neurojax_s"]
            if "plain_jax_s" in row:
                row["speedup_vs_plain_jax"] = row["plain_jax_s"] / row["neurojax_s"]
            results["rows"].append(row)
            fmt = lambda k, w, p=3: f"{row[k]:{w}.{p}f}" if k in row else " " * (w - 1) + "-"
            print(f"{name:10s} {batch_size:5d} {fmt('neurojax_s', 10)} {fmt('xla_conv_s', 10)} "
                  f"{fmt('plain_jax_s', 11)} {fmt('torch_eager_s', 8)} "
                  f"{fmt('torch_compile_s', 9)} {fmt('speedup_vs_torch_eager', 8, 2)} "
                  f"{fmt('speedup_vs_torch_compile', 10, 2)} {fmt('speedup_vs_xla_conv', 6, 2)} "
                  f"{fmt('speedup_vs_plain_jax', 12, 2)} {fmt('flops_fraction', 11, 2)} "
                  f"{fmt('torch_flops_fraction', 10, 2)}", flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
