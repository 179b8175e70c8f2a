"""Peak memory and step time of deep layer-wise learning against end-to-end backprop.

For each model, at equal batch, XLA's own accounting of each compiled
training step (``jax.jit(step).lower(state, batch).compile().memory_analysis()``:
arguments + outputs - aliased + temporaries) for

* the end-to-end backprop step (``neurojax.train.step.train_step_fn`` over
  ``model_objective``), and
* every stage of a DLL program (``neurojax.train.layerwise``): one block and
  its decision head trainable, the rest frozen, with each lever of the
  issue: the decision head ('layer': an affine map on pooled features;
  'block': a stride-2 conv of 128 channels first), the cached stage input's
  dtype (float32 or bfloat16, ``layerwise.cache_dtype``), the feednet
  recomputed in the step instead of cached (its batch is then raw images),
  and which parameters the stage's program holds: the loop's (the whole
  tree: the state is one tree, the frozen part passed through and aliased)
  or only the ones the stage reads (its block and head; a stage needs
  nothing else when its input is cached, which is the thesis's "including
  the feednet" accounting), and the trained block rematerialised
  (``layerwise.remat='dots'``: only convolution outputs kept for the
  backward pass, ``jax.checkpoint`` per block) on the bfloat16 cache,
  against the plain end-to-end step and against the end-to-end step with
  the same remat on every block.

The ratio of the largest stage to the end-to-end step is the number the
thesis reports (Oland 2024, Sec. 6.7: about 30% of backprop's memory). The
step's arguments include the parameters and the trainable part's
optimiser state (SGD with momentum), and the state is donated (its buffers
are reused for the new state, as the loop's calls do). Step times (with
``--steps=N``: warm medians over N calls, in this run) give the epoch-time
ratio: the mean stage step time over the end-to-end step time, for the
stages of the setting ``memory_ratio_setting`` names (every stage runs the same
number of steps, so a DLL program with the total steps of an end-to-end run
takes this fraction of its time, without the one forward pass per stage
that fills the cache). Timing needs a quiet machine.

    python -m benchmarks.layerwise_memory --json=benchmarks/results/layerwise_memory.json \
        --timing_from=benchmarks/results/layerwise_memory.json   # memory; timing carried over
    python -m benchmarks.layerwise_memory --steps=5 --json=...   # also epoch_time_ratio
    python -m benchmarks.layerwise_memory --models=small_cnn     # one model

The last line printed is JSON with ``memory_ratio`` (VGG-13, the loop's
stage program in the best setting of head and cached (float32 or bfloat16)
or recomputed feednet, named in ``memory_ratio_setting``),
``memory_ratio_stage_params`` (the same stages holding only the parameters
they read), ``memory_ratio_small_cnn`` (as ``memory_ratio``),
``memory_ratio_float32_block`` (decision blocks, float32 cache: the first
measurement's setting), ``memory_ratio_remat`` (the remat'ed stages over the
plain end-to-end step) and ``memory_ratio_remat_both`` (over the remat'ed
end-to-end step), and ``epoch_time_ratio`` (VGG-13; null without
``--steps``, or carried over from ``--timing_from``'s file, named in
``epoch_time_ratio_from``).

Measured (jax 0.10.2, XLA:CPU, batch 128; ``benchmarks/results/layerwise_memory.json``):
VGG-13 end-to-end 469 MiB; largest stage 0.388 (blocks [1, 2), linear
head, feednet recomputed), 0.342 holding only its own parameters; remat
0.470 against the plain end-to-end step and 0.468 against the remat'ed one
(471 MiB): XLA:CPU keeps no recomputation (the compiled stage has the same
convolutions with remat as without) and adds temporaries. Where the
largest stage's 182 MiB go (blocks [1, 2), feednet recomputed): arguments
37.7 MiB (the whole parameter tree 36.2, raw batch 1.5, the block's momentum
0.15; the new parameters alias the donated ones) and 144 MiB of
temporaries, 4.5 activations of 32 MiB (128x32x32x64 float32): the conv
output (kept for BatchNorm's backward pass), the centred BatchNorm input,
the ReLU output (kept for the pooling's backward pass), the pooling's
argmax ranks and output (8 MiB each), and two layout copies that XLA:CPU's
weight-gradient convolution reads: the stage input transposed (16 chunks
of 2 MiB, made in the forward pass and held to the backward pass: a second
copy of the input) and the output gradient transposed (16 x 2 MiB, all made
before the first chunk's weight gradient). The input gradient is not
computed (the input is data, not a parameter). The bfloat16 cache saves
only its argument bytes: the float32 convert is fused into those copies.
The floor of the block's backward pass is its input, its conv output and
the output gradient (96 MiB in float32, 0.20 of the end-to-end step, plus
the parameters); on XLA:CPU the two layout copies add 64 MiB, which is
why 0.25 is not reached here.
"""
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from neurojax.analysis.layerwise_memory import compiled_bytes
from neurojax.losses import softmax_cross_entropy
from neurojax.models import get_model
from neurojax.models.heads import decision_head
from neurojax.train import layerwise as lw
from neurojax.train.program import enter_stage, partition
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn

_MODELS = flags.DEFINE_list("models", ["vgg13", "small_cnn"], "Models to measure.")
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size (equal for every program).")
_HEADS = flags.DEFINE_list("heads", ["layer", "block"], "DLL decision heads to measure.")
_STEPS = flags.DEFINE_integer("steps", 0, "Timed calls per step for epoch_time_ratio "
                              "(0: memory only).")
_JSON = flags.DEFINE_string("json", "", "Optional path for the results as JSON.")
_TIMING_FROM = flags.DEFINE_string(
    "timing_from", "", "Without --steps: a JSON of an earlier run whose epoch_time_ratio "
    "(and end_to_end_seconds) to carry over, marked as such (timing needs a quiet machine).")
_VARIANTS = flags.DEFINE_list(
    "variants", ["cached_float32", "cached_bfloat16", "recomputed", "stage_params_bfloat16",
                 "remat_bfloat16"],
    "Stage programs to compile per stage (each costs a compile; memory_ratio needs "
    "cached_bfloat16, memory_ratio_stage_params stage_params_bfloat16).")

REMAT = "dots"  # layerwise.remat of the remat_bfloat16 stages and the remat'ed end-to-end step
MODEL_KWARGS = {"vgg13": dict(num_classes=10), "small_cnn": dict(
    widths=(32, 64, 128), hidden=256, num_classes=10, batch_norm=True)}
VARIANTS = ("cached_float32", "cached_bfloat16", "recomputed", "stage_params_bfloat16",
            "remat_bfloat16")
# the stage programs the training loop runs as they are (layerwise.cache_dtype,
# cache_features, remat)
LOOP_VARIANTS = ("cached_float32", "cached_bfloat16", "recomputed", "remat_bfloat16")
SETTINGS = {"cached_float32": "cache_dtype=float32", "cached_bfloat16": "cache_dtype=bfloat16",
            "recomputed": "cache_features=False",
            "remat_bfloat16": f"cache_dtype=bfloat16, remat={REMAT}"}


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


def measure_head(model, variables, batch, tx, head_kind: str, e2e_bytes: int,
                 calls: int, variants: list, e2e_remat_bytes: int = 0) -> dict:
    """Every DLL stage of ``model`` with ``head_kind`` heads, in each of
    ``variants`` (of :data:`VARIANTS`); ratios to ``e2e_bytes``, and the
    remat'ed stages' also to ``e2e_remat_bytes`` (the end-to-end step with
    the same remat on every block)."""
    key = jax.random.PRNGKey(0)
    images = batch["image"]
    windows = lw.stage_windows(model.num_blocks)
    head = decision_head(head_kind, 10)
    heads = lw.init_heads(model, head, key, variables, images[:1], windows)
    params = {**variables["params"], lw.HEADS: heads}
    model_state = {"batch_stats": variables["batch_stats"]}
    stages = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(
        head=head_kind), len(windows), lambda i, n: tx, params, data_on_device=True)
    recomputed = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(
        head=head_kind, cache_features=False), len(windows), lambda i, n: tx, params,
        data_on_device=True)
    remat = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(
        head=head_kind, remat=REMAT), len(windows), lambda i, n: tx, params,
        data_on_device=True)

    def compiled_step(stage, state, stage_batch):
        step = train_step_fn(stage.objective, tx, trainable=stage.trainable)
        return jax.jit(step, donate_argnums=(0,)).lower(state, stage_batch).compile()

    rows = []
    for (start, stop), cached, raw, re in zip(windows, stages, recomputed, remat):
        state = enter_stage(create_train_state(params, optax.identity(),
                                               model_state=model_state, rng=key), cached)
        own = partition(params, cached.trainable)[0]
        own_state = enter_stage(create_train_state(own, optax.identity(),
                                                   model_state=model_state, rng=key), cached)
        inputs = lw.feednet(model, params, model_state, images, start)
        half = {**batch, "image": inputs.astype(jnp.bfloat16)}
        programs = {"cached_float32": (cached, state, {**batch, "image": inputs}),
                    "cached_bfloat16": (cached, state, half),
                    "recomputed": (raw, state, batch),
                    "stage_params_bfloat16": (cached, own_state, half),
                    "remat_bfloat16": (re, state, half)}
        row = {"blocks": [start, stop]}
        for variant in variants:
            stage, s, b = programs[variant]
            compiled = compiled_step(stage, s, b)
            row[f"{variant}_bytes"] = compiled_bytes(compiled)
            if calls and variant in LOOP_VARIANTS:
                row[f"{variant}_seconds"] = warm_seconds(compiled, s, b, calls)
        rows.append(row)
        print(f"  {head_kind} stage {start}: " + ", ".join(
            f"{v} {row[f'{v}_bytes'] / e2e_bytes:.3f}" for v in variants), flush=True)
    out = {"stages": rows}
    for variant in variants:
        out[f"memory_ratio_{variant}"] = max(r[f"{variant}_bytes"] for r in rows) / e2e_bytes
    if e2e_remat_bytes and "remat_bfloat16" in variants:
        out["memory_ratio_remat_bfloat16_vs_remat_end_to_end"] = max(
            r["remat_bfloat16_bytes"] for r in rows) / e2e_remat_bytes
    return out


def measure(name: str, batch_size: int, heads: list, calls: int, variants: list) -> dict:
    model = get_model(name, **MODEL_KWARGS[name])
    key = jax.random.PRNGKey(0)
    images = jax.random.normal(key, (batch_size, 32, 32, 3))
    batch = {"image": images, "label": jnp.arange(batch_size) % 10}
    tx = optax.sgd(0.01, momentum=0.9)
    variables = model.init(key, images[:1])
    model_state = {"batch_stats": variables["batch_stats"]}
    base_state = create_train_state(variables["params"], tx, model_state=model_state, rng=key)
    step = train_step_fn(model_objective(model, softmax_cross_entropy), tx)
    e2e = jax.jit(step, donate_argnums=(0,)).lower(base_state, batch).compile()
    e2e_bytes = compiled_bytes(e2e)
    print(f"{name}: end-to-end {e2e_bytes / 2**20:.0f} MiB", flush=True)
    out = {"model": name, "batch": batch_size, "end_to_end_bytes": e2e_bytes}
    if "remat_bfloat16" in variants:  # the same remat on every block of the end-to-end step
        whole = lw.stage_objective(model, None, softmax_cross_entropy, 0, model.num_blocks,
                                   recompute_feednet=False, remat=REMAT)
        out["end_to_end_remat_bytes"] = compiled_bytes(jax.jit(
            train_step_fn(whole, tx), donate_argnums=(0,)).lower(base_state, batch).compile())
        print(f"{name}: end-to-end with remat={REMAT} "
              f"{out['end_to_end_remat_bytes'] / 2**20:.0f} MiB", flush=True)
    out["heads"] = {h: measure_head(model, variables, batch, tx, h, e2e_bytes, calls, variants,
                                    out.get("end_to_end_remat_bytes", 0)) for h in heads}
    if calls:
        out["end_to_end_seconds"] = warm_seconds(e2e, base_state, batch, calls)
    return summarize(out)


def summarize(out: dict) -> dict:
    """``out`` with the ratios of the summary: ``memory_ratio``, the largest
    stage of the loop's best setting (head and stage program of
    :data:`LOOP_VARIANTS`, over the measured ones) and its epoch-time ratio
    when timed; ``memory_ratio_stage_params``; ``memory_ratio_float32_block``."""
    options = [(ratios[f"memory_ratio_{v}"], head, v) for head, ratios in out["heads"].items()
               for v in LOOP_VARIANTS if f"memory_ratio_{v}" in ratios]
    if options:
        ratio, head, variant = min(options)
        out["memory_ratio"] = ratio
        out["memory_ratio_setting"] = f"head={head}, {SETTINGS[variant]}, whole parameter tree"
        stages = out["heads"][head]["stages"]
        if "end_to_end_seconds" in out and f"{variant}_seconds" in stages[0]:
            out["epoch_time_ratio"] = float(np.mean(
                [r[f"{variant}_seconds"] for r in stages])) / out["end_to_end_seconds"]
    own = [r["memory_ratio_stage_params_bfloat16"] for r in out["heads"].values()
           if "memory_ratio_stage_params_bfloat16" in r]
    if own:
        out["memory_ratio_stage_params"] = min(own)
    remat = [(r["memory_ratio_remat_bfloat16"], r.get(
        "memory_ratio_remat_bfloat16_vs_remat_end_to_end")) for r in out["heads"].values()
        if "memory_ratio_remat_bfloat16" in r]
    if remat:
        out["memory_ratio_remat"], out["memory_ratio_remat_both"] = min(remat)
    if "memory_ratio_cached_float32" in out["heads"].get("block", {}):
        out["memory_ratio_float32_block"] = out["heads"]["block"]["memory_ratio_cached_float32"]
    return out


def main(argv):
    del argv
    unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    results = {m: measure(m, _BATCH.value, _HEADS.value, _STEPS.value, _VARIANTS.value)
               for m in _MODELS.value}
    for name, r in results.items():
        line = f"{name}: end-to-end {r['end_to_end_bytes'] / 2**20:.0f} MiB"
        if "memory_ratio" in r:
            line += f"; largest DLL stage {r['memory_ratio']:.3f}x ({r['memory_ratio_setting']})"
        if "memory_ratio_stage_params" in r:
            line += f", {r['memory_ratio_stage_params']:.3f}x holding only its own parameters"
        if "memory_ratio_remat" in r:
            line += (f"; remat={REMAT} stages {r['memory_ratio_remat']:.3f}x of the plain "
                     f"end-to-end step, {r['memory_ratio_remat_both']:.3f}x of the remat'ed one")
        if "epoch_time_ratio" in r:
            line += f"; step time {r['epoch_time_ratio']:.3f}x"
        print(line)
    summary = summary_of(results)
    if _TIMING_FROM.value and not _STEPS.value:
        carry_timing(_TIMING_FROM.value, summary, results)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"summary": summary, "models": results}, f, indent=1)
    print(json.dumps(summary))


def carry_timing(path: str, summary: dict, results: dict) -> None:
    """``epoch_time_ratio`` (summary and per model) and ``end_to_end_seconds``
    of the run in the JSON at ``path``, copied into this memory-only run's
    ``summary`` and ``results`` with ``epoch_time_ratio_from`` naming the
    file (this run timed nothing)."""
    with open(path) as f:
        old = json.load(f)
    if old["summary"].get("epoch_time_ratio") is None:
        raise ValueError(f"--timing_from: {path} has no epoch_time_ratio")
    summary["epoch_time_ratio"] = old["summary"]["epoch_time_ratio"]
    summary["epoch_time_ratio_from"] = path
    for name, r in results.items():
        before = old.get("models", {}).get(name, {})
        for key in ("epoch_time_ratio", "end_to_end_seconds"):
            if key in before:
                r[key] = before[key]
        r["epoch_time_ratio_from"] = path


def summary_of(results: dict) -> dict:
    """The JSON summary line of :func:`measure`'s results per model."""
    vgg, small = results.get("vgg13", {}), results.get("small_cnn", {})
    return {"memory_ratio": vgg.get("memory_ratio"),
            "memory_ratio_setting": vgg.get("memory_ratio_setting"),
            "memory_ratio_stage_params": vgg.get("memory_ratio_stage_params"),
            "memory_ratio_small_cnn": small.get("memory_ratio"),
            "memory_ratio_float32_block": vgg.get("memory_ratio_float32_block"),
            "memory_ratio_remat": vgg.get("memory_ratio_remat"),
            "memory_ratio_remat_both": vgg.get("memory_ratio_remat_both"),
            "epoch_time_ratio": vgg.get("epoch_time_ratio"),
            "jax": jax.__version__, "backend": jax.default_backend()}


if __name__ == "__main__":
    app.run(main)
