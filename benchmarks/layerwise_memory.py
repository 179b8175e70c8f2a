"""Peak memory and step time of deep layer-wise learning against end-to-end backprop.

For each model, at equal batch, XLA's own accounting of each compiled
training step (``jax.jit(step).lower(state, batch).compile().memory_analysis()``:
arguments + outputs - aliased + temporaries) for

* the end-to-end backprop step (``neurojax.train.step.train_step_fn`` over
  ``model_objective``), and
* every stage of a DLL program (``neurojax.train.layerwise``): one block and
  its decision head trainable, the rest frozen; once with the feednet's
  output cached (the step's batch is the block's input) and once with the
  feednet recomputed in the step (the batch is raw images).

The ratio of the largest stage to the end-to-end step is the number the
thesis reports (Oland 2024, Sec. 6.7: about 30% of backprop's memory). The
step's arguments include the whole parameter tree and the trainable part's
optimiser state, as in the training loop, and the state is donated (its
buffers are reused for the new state, as the loop's calls do). Step times are warm medians over
``--steps`` calls, measured in this run; the epoch-time ratio is the mean
stage step time over the end-to-end step time (every stage runs the same
number of steps, so a DLL program with the total steps of an end-to-end run
takes this fraction of its time, without the one forward pass per stage
that fills the cache).

    python benchmarks/layerwise_memory.py                          # VGG-13 and small CNN
    python benchmarks/layerwise_memory.py --models=small_cnn --steps=0  # memory only

The last line printed is JSON with ``memory_ratio`` (VGG-13),
``memory_ratio_small_cnn`` and ``epoch_time_ratio`` (VGG-13).
"""
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from neurojax.losses import softmax_cross_entropy
from neurojax.models import get_model
from neurojax.models.heads import decision_head
from neurojax.train import layerwise as lw
from neurojax.train.program import enter_stage
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn

_MODELS = flags.DEFINE_list("models", ["vgg13", "small_cnn"], "Models to measure.")
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size (equal for every program).")
_HEAD = flags.DEFINE_enum("head", "block", ["layer", "block"], "DLL decision head.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed calls per step (0: memory only).")
_JSON = flags.DEFINE_string("json", "", "Optional path for the results as JSON.")

MODEL_KWARGS = {"vgg13": dict(num_classes=10), "small_cnn": dict(
    widths=(32, 64, 128), hidden=256, num_classes=10, batch_norm=True)}


def footprint(compiled) -> int:
    """arguments + outputs - aliased + temporaries, in bytes (XLA's accounting)."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)


def warm_seconds(compiled, state, batch, calls: int) -> float:
    """Median wall seconds of ``calls`` warm calls (each consumes the state
    the previous one returned: the state is donated, as in the loop)."""
    state = jax.tree.map(jnp.copy, state)
    state = jax.block_until_ready(compiled(state, batch)[0])
    times = []
    for _ in range(calls):
        tic = time.perf_counter()
        state = jax.block_until_ready(compiled(state, batch)[0])
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def measure(name: str, batch_size: int, head_kind: str, calls: int) -> dict:
    model = get_model(name, **MODEL_KWARGS[name])
    key = jax.random.PRNGKey(0)
    images = jax.random.normal(key, (batch_size, 32, 32, 3))
    batch = {"image": images, "label": jnp.arange(batch_size) % 10}
    tx = optax.sgd(0.01, momentum=0.9)
    windows = lw.stage_windows(model.num_blocks)
    head = decision_head(head_kind, 10)
    variables = model.init(key, images[:1])
    heads = lw.init_heads(model, head, key, variables, images[:1], windows)
    params = {**variables["params"], lw.HEADS: heads}
    model_state = {"batch_stats": variables["batch_stats"]}

    def compiled_step(objective, trainable, state, stage_batch):
        step = train_step_fn(objective, tx, trainable=trainable)
        return jax.jit(step, donate_argnums=(0,)).lower(state, stage_batch).compile()

    base_state = create_train_state(variables["params"], tx, model_state=model_state, rng=key)
    e2e = compiled_step(model_objective(model, softmax_cross_entropy), None, base_state, batch)
    e2e_bytes = footprint(e2e)
    e2e_seconds = warm_seconds(e2e, base_state, batch, calls) if calls else None

    stages = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(
        head=head_kind), len(windows), lambda i, n: tx, params, data_on_device=True)
    recomputed = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(
        head=head_kind, cache_features=False), len(windows), lambda i, n: tx, params,
        data_on_device=True)
    rows = []
    for (start, stop), cached, raw in zip(windows, stages, recomputed):
        state = enter_stage(create_train_state(params, optax.identity(),
                                               model_state=model_state, rng=key), cached)
        inputs = lw.feednet(model, params, model_state, images, start)
        c = compiled_step(cached.objective, cached.trainable, state, {**batch, "image": inputs})
        r = compiled_step(raw.objective, raw.trainable, state, batch)
        row = {"blocks": [start, stop], "cached_bytes": footprint(c),
               "recomputed_bytes": footprint(r)}
        if calls:
            row["cached_seconds"] = warm_seconds(c, state, {**batch, "image": inputs}, calls)
        rows.append(row)
        print(f"{name} stage {start}: cached {row['cached_bytes'] / e2e_bytes:.3f}, "
              f"recomputed {row['recomputed_bytes'] / e2e_bytes:.3f} of end-to-end", flush=True)
    out = {"model": name, "batch": batch_size, "head": head_kind,
           "end_to_end_bytes": e2e_bytes, "stages": rows,
           "memory_ratio": max(r["cached_bytes"] for r in rows) / e2e_bytes,
           "memory_ratio_recomputed": max(r["recomputed_bytes"] for r in rows) / e2e_bytes}
    if calls:
        out["end_to_end_seconds"] = e2e_seconds
        out["epoch_time_ratio"] = float(np.mean([r["cached_seconds"] for r in rows])) / e2e_seconds
    return out


def main(argv):
    del argv
    results = {m: measure(m, _BATCH.value, _HEAD.value, _STEPS.value) for m in _MODELS.value}
    for name, r in results.items():
        line = (f"{name}: end-to-end {r['end_to_end_bytes'] / 2**20:.0f} MiB; largest DLL "
                f"stage {r['memory_ratio']:.3f}x (cached features), "
                f"{r['memory_ratio_recomputed']:.3f}x (feednet recomputed)")
        if "epoch_time_ratio" in r:
            line += f"; step time {r['epoch_time_ratio']:.3f}x"
        print(line)
    summary = {"memory_ratio": results.get("vgg13", {}).get("memory_ratio"),
               "memory_ratio_small_cnn": results.get("small_cnn", {}).get("memory_ratio"),
               "epoch_time_ratio": results.get("vgg13", {}).get("epoch_time_ratio"),
               "jax": jax.__version__, "backend": jax.default_backend()}
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"summary": summary, "models": results}, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
