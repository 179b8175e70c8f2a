"""Training-loop throughput: ``launch.run`` against a PyTorch loop and a plain-JAX scan.

Three tables, every number measured in this run (shared machines are noisy:
compare within a run only):

1. The quickstart (MLP 64-256-256-10, Adam 1e-3 with cosine decay, batch 64,
   880 steps on the digits) in steps per second of training time:
   ``python -m launch.run --config configs/supervised_digits.py`` (the
   default fast path: the split on the device, 220 steps per compiled call;
   steps / ``train_seconds`` from its metrics.jsonl, which excludes
   compilation, evaluation and checkpoints), the same command with the old
   path (``--config.dataset.on_device=off --config.train.steps_per_call=1``:
   grain on the host, one dispatch per step), PyTorch eager (tensors in
   memory, a Python loop over shuffled batches, 2 threads) and plain JAX
   (the split on the device, one jit-compiled ``lax.scan`` over all 880
   steps, timed after compilation). Goals of issue 15: >= 1.5x PyTorch and
   >= 0.5x plain JAX, with the quickstart's accuracy >= 98%.
2. SSL on ``shapes_small`` (``configs/ssl_shapes.py:small``): steps per
   second with the old and the new path.
3. ResNet-18 (CIFAR stem) on ``shapes`` (32x32) at batch 64, where the step
   dominates: the new path must cost nothing (>= 0.97x the old one). Both
   run one step per call: XLA:CPU runs convolutions inside a scan far
   slower (``neurojax.train.program``).

    python benchmarks/loop_throughput.py                   # ~15 min on 2 cores
    python benchmarks/loop_throughput.py --rows=quickstart --repeats=1

Each launch.run variant runs in its own process (fresh workdir), ``--repeats``
times for the quickstart (``--row_repeats`` for the other rows), interleaved
with the references; the median is reported. With
``--json PATH`` the numbers are written there too.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_ROWS = flags.DEFINE_list("rows", ["quickstart", "ssl", "resnet18"], "Tables to run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs per quickstart variant (median reported).")
_ROW_REPEATS = flags.DEFINE_integer("row_repeats", 1, "Runs per variant of the SSL and "
                                    "ResNet rows (median reported; each run compiles anew).")
_SSL_STEPS = flags.DEFINE_integer("ssl_steps", 40, "Training steps of the SSL rows.")
_RESNET_STEPS = flags.DEFINE_integer("resnet_steps", 6, "Training steps of the ResNet rows.")
_JSON = flags.DEFINE_string("json", "", "Optional path for the results as JSON.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_PATH = ("--config.dataset.on_device=off", "--config.train.steps_per_call=1")
QUICKSTART_STEPS, BATCH, EPOCHS = 880, 64, 40


def launch(config: str, overrides=()) -> dict:
    """Runs ``python -m launch.run`` in a fresh workdir; returns steps/s of
    training time, compile seconds, wall seconds and the final eval scalars."""
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "-m", "launch.run", "--config", config, "--workdir", workdir,
               *overrides]
        tic = time.time()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - tic
        if out.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    steps = train[-1]["step"]
    return {"steps": steps, "steps_per_sec": steps / train[-1]["train_seconds"],
            "train_seconds": train[-1]["train_seconds"],
            "compile_seconds": train[-1].get("compile_seconds", float("nan")),
            "wall_seconds": wall, "eval": {k: v for k, v in evals[-1].items()
                                           if k not in ("step", "split")}}


def digits_arrays():
    from neurojax.data import on_device
    arrays = on_device.load_split_arrays("digits", "train")
    return arrays["image"].reshape(len(arrays["image"]), -1), arrays["label"]


def torch_loop(x, y) -> float:
    """Steps/s of the quickstart's training in PyTorch eager, with the faster
    of 1 thread and all cores (this small a model often runs faster on one)."""
    import torch

    rates = []
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        torch.set_num_threads(threads)
        rates.append(_torch_loop_once(torch, x, y))
    return max(rates)


def _torch_loop_once(torch, x, y) -> float:
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=QUICKSTART_STEPS)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype("int64"))
    per_epoch = len(x) // BATCH
    tic = time.perf_counter()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(x))
        for i in range(per_epoch):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return EPOCHS * per_epoch / (time.perf_counter() - tic)


def plain_jax_scan(x, y) -> float:
    """Steps/s of the same training as one jit-compiled lax.scan (compiled first)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    def init(key):
        sizes = (64, 256, 256, 10)
        keys = jax.random.split(key, len(sizes) - 1)
        return [(jax.random.normal(k, (a, b)) / jnp.sqrt(a), jnp.zeros(b))
                for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def loss_fn(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(h @ w + b, yb).mean()

    tx = optax.adam(optax.cosine_decay_schedule(1e-3, QUICKSTART_STEPS))
    rng = np.random.default_rng(0)
    per_epoch = len(x) // BATCH
    idx = np.concatenate([rng.permutation(len(x))[:per_epoch * BATCH].reshape(per_epoch, BATCH)
                          for _ in range(EPOCHS)])

    @jax.jit
    def train(params, xs, ys, idx):
        def body(carry, i):
            params, opt_state = carry
            grads = jax.grad(loss_fn)(params, xs[i], ys[i])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None
        return jax.lax.scan(body, (params, tx.init(params)), idx)[0]

    params = init(jax.random.PRNGKey(0))
    xs, ys, idx = jnp.asarray(x), jnp.asarray(y), jnp.asarray(idx)
    jax.block_until_ready(train(params, xs, ys, idx))  # compile
    tic = time.perf_counter()
    jax.block_until_ready(train(params, xs, ys, idx))
    return len(idx) / (time.perf_counter() - tic)


def median(values):
    return float(statistics.median(values))


def quickstart(repeats: int) -> dict:
    x, y = digits_arrays()
    runs = {"neurojax": [], "neurojax_old_path": [], "pytorch_eager": [], "plain_jax_scan": []}
    accuracy = []
    for _ in range(repeats):
        new = launch("configs/supervised_digits.py")
        runs["neurojax"].append(new["steps_per_sec"])
        accuracy.append(new["eval"]["accuracy"])
        runs["neurojax_old_path"].append(
            launch("configs/supervised_digits.py", OLD_PATH)["steps_per_sec"])
        runs["pytorch_eager"].append(torch_loop(x, y))
        runs["plain_jax_scan"].append(plain_jax_scan(x, y))
    out = {k: median(v) for k, v in runs.items()}
    out.update(accuracy=min(accuracy), runs=runs,
               vs_pytorch=out["neurojax"] / out["pytorch_eager"],
               vs_plain_jax=out["neurojax"] / out["plain_jax_scan"],
               vs_old_path=out["neurojax"] / out["neurojax_old_path"])
    print(f"\n1. quickstart, {QUICKSTART_STEPS} steps (steps/s of training time, median of "
          f"{repeats})")
    for k in runs:
        print(f"   {k:<20} {out[k]:>9.0f}")
    print(f"   neurojax / PyTorch eager  {out['vs_pytorch']:.2f}x (goal >= 1.5)")
    print(f"   neurojax / plain JAX scan {out['vs_plain_jax']:.2f}x (goal >= 0.5)")
    print(f"   neurojax / old path       {out['vs_old_path']:.1f}x")
    print(f"   test accuracy (worst run) {out['accuracy']:.4f} (goal >= 0.98)")
    return out


def before_after(title: str, config: str, overrides, variants: dict, repeats: int) -> dict:
    """Old path against each new-path variant (name -> overrides), interleaved per repeat."""
    runs = {"old": [], **{name: [] for name in variants}}
    for _ in range(repeats):
        runs["old"].append(launch(config, [*overrides, *OLD_PATH]))
        for name, extra in variants.items():
            runs[name].append(launch(config, [*overrides, *extra]))
    out = {}
    for name, rs in runs.items():
        out[f"{name}_steps_per_sec"] = median([r["steps_per_sec"] for r in rs])
        out[f"{name}_compile_seconds"] = median([r["compile_seconds"] for r in rs])
    print(f"\n{title} (steps/s of training time, median of {repeats})")
    print(f"   old path (grain, 1 step per call) {out['old_steps_per_sec']:.3f}")
    for name, extra in variants.items():
        out[f"{name}_ratio"] = out[f"{name}_steps_per_sec"] / out["old_steps_per_sec"]
        print(f"   {name} ({' '.join(extra) or 'config defaults'}) "
              f"{out[f'{name}_steps_per_sec']:.3f}  = {out[f'{name}_ratio']:.2f}x old")
    return out


def main(argv):
    del argv
    import jax
    results = {"jax": jax.__version__, "devices": f"{jax.device_count()} {jax.default_backend()}",
               "cpu_count": os.cpu_count()}
    if "quickstart" in _ROWS.value:
        results["quickstart"] = quickstart(_REPEATS.value)
    if "ssl" in _ROWS.value:
        n = _SSL_STEPS.value
        common = ["--config.train.num_epochs=0", f"--config.train.num_steps={n}",
                  "--config.train.eval_every=0", "--config.train.checkpoint_every=0",
                  "--config.probe.max_train_examples=500", "--config.probe.max_test_examples=500",
                  "--config.probe.probes=('ridge',)"]
        results["ssl_shapes_small"] = before_after(
            f"2. SSL Barlow Twins on shapes_small, batch 256, {n} steps",
            "configs/ssl_shapes.py:small", common,
            {"new": ["--config.train.steps_per_call=1"],  # the config's default
             f"new_k{n // 4}": [f"--config.train.steps_per_call={n // 4}"]},
            _ROW_REPEATS.value)
    if "resnet18" in _ROWS.value:
        n = _RESNET_STEPS.value
        common = ["--config.dataset.batch_size=64", "--config.train.num_epochs=0",
                  f"--config.train.num_steps={n}", "--config.train.eval_every=0",
                  "--config.train.checkpoint_every=0", "--config.dataset.eval_batch_size=500"]
        results["resnet18_shapes"] = before_after(
            f"3. ResNet-18 on shapes (32x32), batch 64, {n} steps",
            "configs/supervised_shapes.py:resnet18", common,
            {"new": ["--config.train.steps_per_call=1"]},  # on CPU: see neurojax.train.program
            _ROW_REPEATS.value)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
