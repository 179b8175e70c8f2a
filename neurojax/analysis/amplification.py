"""Chapter 4 of the seed thesis (Oland 2024, Efficient Deep Learning,
"Gradient Amplification") on offline data: Table 4.1, Fig. 4.1a and the
diagnostics of Figs. 4.2, 4.3 and 4.5.

A driver over the training loop. Every output/loss pair is one run of
:func:`neurojax.train.loop.train_and_evaluate` with ``config.train.num_replicas``
seeds as one vmapped program, one call per epoch (``steps_per_call`` = the
steps of an epoch), plain SGD at a constant learning rate, no weight decay,
dropout or augmentation. A loop hook (:class:`EpochProbe`) reads, after each
epoch, every replica's test errors (one vmapped forward pass over the whole
test split, counted in images) and, for replica 0, the output deltas ``y - t``
and the softmax normaliser ``s`` of a fixed training batch
(``neurojax.losses.output_delta``, ``softmax_normalizer``). The per-layer
gradient RMS come from the ``record_gradient_rms`` transform
(``neurojax.optim.diagnostics``) through the loop's train records.

Output/loss pairs (:data:`PAIRS`): sigmoid, tanh and linear outputs with the
squared error against label targets (Table 4.1's baselines; the thesis does
not state their loss, Sec. 4.11), softmax + cross-entropy, exp-GA (the sparse
cross-entropy, alpha = 0.1, t in {0, 16}) and pow3-GA (the negative
correlation loss, alpha = 0.001, beta = 0.4, t in {0, 10}): the values of
the chapter's first experiment (Sec. 4.5, 4.7, Fig. 4.1a).

* ``digits`` (Table 4.1): MLP 64-50-10 (ReLU hidden) on scikit-learn's 8x8
  digits (1,437 train / 360 test images: one image is 0.28 points of test
  error), every pair, ``seeds`` seeds, ``epochs`` epochs of batch 64. The
  thesis's MLP is 784-392-50-10 on MNIST, 100 epochs, 20 trials. Error: the
  minimum test error over epochs (the thesis's "error at convergence") and
  the final one; convergence: the first epoch at which the test error is at
  its minimum. Seeds are paired across pairs (replica r has the same
  initialisation and data order in every run), so differences are per seed.
* ``shapes`` (Fig. 4.1a, 4.2, 4.3, 4.5): a 5-layer CNN (four 3x3 conv +
  BatchNorm + ReLU + 2x2 max-pool stages, then the affine output) on the
  offline 16x16 shapes (10 classes), softmax, exp-GA, pow3-GA and linear,
  a few seeds; test error per epoch; gradient RMS per parameter array per
  epoch; delta histograms after epochs 1 and 4 (the thesis: first batch of
  epochs 1 and 4); ``s``. The thesis used CIFAR-10 (a 5-layer CNN for Fig.
  4.1a, a 10-layer all-conv net for Figs. 4.2-4.5).

The learning rates (:data:`DIGITS_LR`, :data:`SHAPES_LR`) are the thesis's
"fixed learning rate tuned per setting", chosen in a development sweep that
is not part of the committed command: digits, 4 seeds, 30 epochs, rates
spaced by 4x (softmax, tanh, sigmoid from 1/16 or 1/4 up; GA from 1/512),
the rate with the lowest median best test error (the next larger rate
diverged or was worse for every pair except sigmoid, whose grid ended at 4).
The shapes rates are not tuned (a CNN run takes minutes here): softmax at
0.1 and the others at their digits ratio to softmax. Each run's rate is in
its JSON.

CLI::

    python -m neurojax.analysis.amplification --outdir DIR [--quick]

writes ``DIR/amplification_{digits,shapes}.json`` and ``.png``
(``amplification_quick_*`` with ``--quick``: tiny sizes, three digits and two
shapes pairs, numbers not meaningful). The runs' workdirs are temporary.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

from neurojax.analysis.outputs import jsonable, write_json

# loss blocks of the output/loss pairs (config.loss)
PAIRS = {
    "sigmoid": {"name": "label_mean_squared_error", "output": "sigmoid", "targets": (0.0, 1.0)},
    "tanh": {"name": "label_mean_squared_error", "output": "tanh", "targets": (-1.0, 1.0)},
    "linear": {"name": "label_mean_squared_error", "output": "linear", "targets": (-1.0, 1.0)},
    "softmax": {"name": "softmax_cross_entropy"},
    "exp_ga": {"name": "sparse_cross_entropy", "alpha": 0.1, "targets": (0.0, 16.0)},
    "pow3_ga": {"name": "negative_correlation", "alpha": 0.001, "beta": 0.4,
                "targets": (0.0, 10.0)},
}
# the output map y = g(x) whose delta y - t each pair's histogram shows
DELTA_OUTPUT = {"sigmoid": "sigmoid", "tanh": "tanh", "linear": "linear", "softmax": "softmax",
                "exp_ga": "exp", "pow3_ga": "pow3"}
DIGITS_LR = {"sigmoid": 4.0, "tanh": 0.25, "linear": 0.125, "softmax": 1.0, "exp_ga": 0.03125,
             "pow3_ga": 0.0625}
# not tuned on the shapes: softmax at 0.1, the others at the digits' ratio to softmax
SHAPES_LR = {"softmax": 0.1, "exp_ga": 0.1 / 32, "pow3_ga": 0.1 / 16, "linear": 0.1 / 8}
SHAPES_PAIRS = ("softmax", "exp_ga", "pow3_ga", "linear")
# sizes: seeds (replicas) and epochs of each part; shapes_fraction of its training split
SIZES = {
    "full": {"digits_seeds": 20, "digits_epochs": 100, "shapes_seeds": 2, "shapes_epochs": 6,
             "shapes_fraction": 0.25},
    # a smoke test of every code path with fewer pairs (a run's fixed cost is ~10 s)
    "quick": {"digits_seeds": 3, "digits_epochs": 3, "shapes_seeds": 2, "shapes_epochs": 2,
              "shapes_fraction": 0.05, "digits_pairs": ("softmax", "exp_ga", "pow3_ga"),
              "shapes_pairs": ("softmax", "exp_ga")},
}
DELTA_EPOCHS = (1, 4)       # epochs after which the delta histograms are taken
DELTA_BATCH = 128           # the fixed training batch of the deltas and s
HIST_BINS = 40
THESIS = {
    "table_4_1": {"sigmoid": {"error": 1.8, "epochs": 98.5}, "tanh": {"error": 1.7, "epochs": 95.0},
                  "linear": {"error": 1.7, "epochs": 73.5},
                  "note": "MNIST 784-392-50-10 ReLU MLP, median of 20, 100 epochs; softmax "
                          "'performed poorly' and is not tabled"},
    "convergence": "GA and linear outputs converge in 25-33% fewer epochs (ratio ~0.75)",
    "deltas": "GA deltas in about [-6, 10], softmax in [-1, 1] (Fig. 4.2)",
    "gradient_rms": "hidden-layer gradient RMS ~10x softmax's for exp-GA, >100x for pow3-GA, "
                    "rising from epoch 2 (Fig. 4.3)",
    "normalizer": "softmax s starts at 2,342 and grows monotonically (Fig. 4.5)",
}


# ----------------------------------------------------------------- configs

def _base_config(dataset: str, *, seeds: int, epochs: int, batch_size: int,
                 fraction: float, data_dir: str):
    import ml_collections
    from neurojax import data as nj_data
    from neurojax.data import on_device
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = ml_collections.ConfigDict(dict(
        name=dataset, data_dir=data_dir, batch_size=batch_size, eval_batch_size=1000,
        on_device="on", device_budget_mb=1024, fraction=float(fraction)))
    info = nj_data.dataset_info(dataset, data_dir=data_dir or None)
    num_train = len(nj_data.fraction_indices(info.num_examples["train"], fraction))
    steps = on_device.steps_per_epoch(num_train, batch_size)
    config.optim = ml_collections.ConfigDict(dict(
        name="sgd", lr=0.1, schedule="constant", warmup_steps=0, weight_decay=0.0,
        grad_clip_norm=0.0, transforms=()))
    config.train = ml_collections.ConfigDict(dict(
        steps_per_call=steps, num_replicas=int(seeds), num_steps=0, num_epochs=int(epochs),
        log_every=steps, eval_every=0, checkpoint_every=0, keep_checkpoints=1,
        spectrum_every=0, spectrum_layers=(), spectrum_examples=360))
    return config


def pair_config(base, pair: str, lr: float, *, record_rms: bool = False):
    """A copy of ``base`` training output/loss ``pair`` at SGD rate ``lr``
    (with the ``record_gradient_rms`` transform first when ``record_rms``)."""
    import copy
    import ml_collections
    if pair not in PAIRS:
        raise ValueError(f"pair must be one of {list(PAIRS)}, got {pair!r}")
    config = copy.deepcopy(base)
    with config.unlocked():
        config.loss = ml_collections.ConfigDict(dict(PAIRS[pair]))
        config.optim.lr = float(lr)
        config.optim.transforms = (("record_gradient_rms", {}),) if record_rms else ()
    return config


def digits_config(*, seeds: int, epochs: int, data_dir: str = ""):
    """Table 4.1's analogue: MLP 64-50-10, ReLU hidden, batch 64 (loss unset)."""
    import ml_collections
    config = _base_config("digits", seeds=seeds, epochs=epochs, batch_size=64, fraction=1.0,
                          data_dir=data_dir)
    config.model = ml_collections.ConfigDict(dict(name="mlp", widths=(50,), activation="relu",
                                                  dtype="float32"))
    return config


def shapes_config(*, seeds: int, epochs: int, fraction: float, data_dir: str = ""):
    """Fig. 4.1a's analogue: 4 conv (3x3) + BatchNorm + ReLU + pool stages and
    the affine output, on shapes_small, batch 64 (loss unset)."""
    import ml_collections
    config = _base_config("shapes_small", seeds=seeds, epochs=epochs, batch_size=64,
                          fraction=fraction, data_dir=data_dir)
    config.model = ml_collections.ConfigDict(dict(
        name="small_cnn", widths=(16, 16, 32, 32), hidden=None, batch_norm=True,
        activation="relu", dtype="float32"))
    return config


# ----------------------------------------------------------------- one run

@dataclasses.dataclass
class EpochProbe:
    """A loop hook for runs with one call per epoch: after each call, every
    replica's test error count (``errors``, ``[epoch][replica]``) and, after
    the epochs of ``delta_epochs``, replica 0's output deltas ``y - t`` on
    the fixed batch ``probe`` (``deltas[epoch]``, ``[B, C]``); ``log_s``:
    replica 0's median ``ln s`` on ``probe`` per epoch."""
    config: object
    pair: str
    test: dict
    probe: dict
    delta_epochs: Sequence[int] = DELTA_EPOCHS
    errors: list = dataclasses.field(default_factory=list)
    deltas: dict = dataclasses.field(default_factory=dict)
    log_s: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        import jax
        import jax.numpy as jnp
        from neurojax import losses
        from neurojax import data as nj_data
        from neurojax.train.task import build_model
        ds = self.config.dataset
        model = build_model(self.config, nj_data.dataset_info(
            ds.name, data_dir=ds.get("data_dir") or None).num_classes)
        loss = {k: v for k, v in self.config.loss.items() if k not in ("name", "output")}
        output = DELTA_OUTPUT[self.pair]

        def logits(params, model_state, images):
            return model.apply({"params": params, **model_state}, images, train=False)

        def errors(params, model_state, images, labels):
            per = lambda p, m: jnp.sum(jnp.argmax(logits(p, m, images), -1) != labels)
            return jax.vmap(per)(params, model_state)

        def probe(params, model_state, images, labels):
            x = logits(params, model_state, images)
            delta = losses.output_delta(x, labels, output=output, **loss)
            return delta, jnp.median(losses.softmax_normalizer(x, log=True))

        self._errors, self._probe = jax.jit(errors), jax.jit(probe)
        self._epoch = 0

    def __call__(self, step, state, metrics) -> None:
        import jax
        del step, metrics
        params, model_state = state.params, state.model_state
        if self.config.train.num_replicas == 1:
            params, model_state = jax.tree.map(lambda a: a[None], (params, model_state))
        self._epoch += 1
        self.errors.append(self._errors(params, model_state, self.test["image"],
                                        self.test["label"]))
        first = jax.tree.map(lambda a: a[0], (params, model_state))
        delta, log_s = self._probe(*first, self.probe["image"], self.probe["label"])
        self.log_s.append(log_s)
        if self._epoch in self.delta_epochs:
            self.deltas[self._epoch] = delta


def _grad_rms(records: list[dict]) -> dict:
    """``{parameter path: [replica 0's gradient RMS per train record]}`` and the
    same averaged over replicas, from the loop's train records."""
    train = [r for r in records if r["split"] == "train"]
    keys = sorted(k for k in train[0] if k.startswith("grad_rms/") and
                  not k.endswith(("_std", "_replicas")))
    first = {k[len("grad_rms/"):]: [float(r.get(k + "_replicas", [r[k]])[0]) for r in train]
             for k in keys}
    mean = {k[len("grad_rms/"):]: [float(r[k]) for r in train] for k in keys}
    return {"replica0": first, "replica_mean": mean}


def histogram(values, bins: int = HIST_BINS) -> dict:
    """Counts of ``values`` in ``bins`` equal bins over ``[min, max]`` (every
    value counted), with the edges and a few summary numbers."""
    v = np.asarray(values, np.float64).ravel()
    counts, edges = np.histogram(v, bins=bins, range=(float(v.min()), float(v.max())))
    return {"counts": counts.tolist(), "edges": edges.tolist(), "min": float(v.min()),
            "max": float(v.max()), "q01": float(np.quantile(v, 0.01)),
            "q99": float(np.quantile(v, 0.99)), "fraction_abs_gt_1": float(np.mean(np.abs(v) > 1))}


def run_pair(config, pair: str, workdir: str, *, test: dict, probe: dict,
             delta_epochs: Sequence[int] = DELTA_EPOCHS) -> dict:
    """Trains ``config`` (a :func:`pair_config`) in the fresh ``workdir``; returns
    the run's per-epoch test errors (counts, ``[epoch][replica]``), the loop's
    final per-replica test accuracy (its own evaluation: a cross-check), the
    train loss per epoch, the gradient RMS (when recorded), the delta
    histograms and ``ln s``."""
    import jax
    from neurojax.train.loop import train_and_evaluate
    from neurojax.train.metrics_log import read_metrics
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        raise ValueError(f"{workdir} already holds a run: the probe needs a fresh one")
    hook = EpochProbe(config, pair, test, probe, tuple(delta_epochs))
    start = time.time()
    result = train_and_evaluate(config, workdir, hooks=[hook], progress=False)
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    errors = np.asarray(jax.device_get(hook.errors)).astype(int)
    final = result.eval_metrics
    loop_acc = final.get("accuracy_replicas", [final["accuracy"]])
    train = [r for r in records if r["split"] == "train"]
    out = {"pair": pair, "lr": float(config.optim.lr), "test_errors": errors.tolist(),
           "num_test": int(len(test["label"])),
           "loop_final_accuracy": [float(a) for a in loop_acc],
           "train_loss": [float(r["loss"]) for r in train],
           "train_accuracy": [float(r["accuracy"]) for r in train],
           "median_log_normalizer": [float(s) for s in jax.device_get(hook.log_s)],
           "deltas": {str(e): histogram(jax.device_get(d)) for e, d in hook.deltas.items()},
           "seconds": round(time.time() - start, 1)}
    if any(k.startswith("grad_rms/") for k in train[0]):
        out["grad_rms"] = _grad_rms(records)
    return out


# ----------------------------------------------------------------- summaries

def summarize_errors(errors, num_test: int) -> dict:
    """Over seeds, from ``errors`` ``[epoch][replica]`` (counts): the best
    (minimum over epochs) and final test error in percent, and epochs to
    best (first epoch at the minimum): medians, quartiles, min and max."""
    e = np.asarray(errors, np.float64)
    per_seed = {"best_error": e.min(0) * 100.0 / num_test, "final_error": e[-1] * 100.0 / num_test,
                "epochs_to_best": e.argmin(0) + 1.0}
    out = {}
    for key, v in per_seed.items():
        q25, med, q75 = np.percentile(v, [25, 50, 75])
        out[key] = {"median": float(med), "q25": float(q25), "q75": float(q75),
                    "min": float(v.min()), "max": float(v.max()), "per_seed": v.tolist()}
    out["median_curve"] = (np.median(e, axis=1) * 100.0 / num_test).tolist()
    return out


def paired_difference(a, b, *, num_test: int, draws: int = 2000, seed: int = 0) -> dict:
    """Seed-paired difference ``a - b`` of best test errors (per-seed lists, in
    percent): the median and mean difference, in points and images, a
    bootstrap 95% interval of the mean over seeds, and ``resolvable``: the
    interval excludes 0 (one image is ``100 / num_test`` points)."""
    image = 100.0 / num_test
    # in images, rounded: a - b of error counts is an integer (no 1e-17 "resolved" bounds)
    d = np.round((np.asarray(a, np.float64) - np.asarray(b, np.float64)) / image, 9)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (draws, d.size))].mean(axis=1)
    low, high = np.round(np.percentile(means, [2.5, 97.5]), 9)
    return {"median_points": float(np.median(d) * image), "mean_points": float(d.mean() * image),
            "mean_images": float(d.mean()),
            "ci95_points": [float(low * image), float(high * image)],
            "seed_std_points": float(d.std() * image), "resolvable": bool(low > 0 or high < 0)}


def epochs_ratio(a, b, *, draws: int = 2000, seed: int = 0) -> dict:
    """``median(a) / median(b)`` of per-seed epochs to best, with a seed-paired
    bootstrap 95% interval; ``resolvable``: the interval excludes 1."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, (draws, a.size))
    ratios = np.median(a[idx], axis=1) / np.median(b[idx], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"ratio": float(np.median(a) / np.median(b)), "ci95": [float(low), float(high)],
            "resolvable": bool(low > 1 or high < 1)}


# (a, b) compared seed by seed: Table 4.1's claim (linear vs sigmoid / tanh) and GA's
COMPARISONS = (("linear", "sigmoid"), ("linear", "tanh"), ("tanh", "sigmoid"),
               ("exp_ga", "softmax"), ("pow3_ga", "softmax"), ("linear", "softmax"),
               ("exp_ga", "linear"), ("pow3_ga", "linear"))


def comparisons(summary: dict, num_test: int) -> dict:
    """For each pair of :data:`COMPARISONS` present: the paired difference of
    best errors and the ratio of epochs to best (``'a/b'``)."""
    out = {}
    for a, b in COMPARISONS:
        if a in summary and b in summary:
            out[f"{a}/{b}"] = {
                "best_error": paired_difference(summary[a]["best_error"]["per_seed"],
                                                summary[b]["best_error"]["per_seed"],
                                                num_test=num_test),
                "epochs_to_best": epochs_ratio(summary[a]["epochs_to_best"]["per_seed"],
                                               summary[b]["epochs_to_best"]["per_seed"])}
    return out


def summarize(runs: dict, reference: str = "softmax") -> dict:
    """Per pair :func:`summarize_errors`; against ``reference`` the paired
    difference of best errors and the ratio of median epochs to best."""
    out = {name: summarize_errors(r["test_errors"], r["num_test"]) for name, r in runs.items()}
    if reference in out:
        ref = out[reference]
        for name, row in out.items():
            if name == reference:
                continue
            row[f"vs_{reference}"] = paired_difference(
                row["best_error"]["per_seed"], ref["best_error"]["per_seed"],
                num_test=runs[name]["num_test"])
            row[f"epochs_to_best_ratio_vs_{reference}"] = (
                row["epochs_to_best"]["median"] / ref["epochs_to_best"]["median"])
    return out


# ----------------------------------------------------------------- experiments

def _arrays(dataset: str, split: str, data_dir: str, fraction: float = 1.0) -> dict:
    from neurojax.data.on_device import load_split_arrays
    arrays = load_split_arrays(dataset, split, data_dir=data_dir or None, fraction=fraction)
    return {"image": arrays["image"], "label": arrays["label"]}


def run_part(base, pairs: Sequence[str], lrs: dict, rundir: str, *, record_rms: bool,
             progress: bool = True) -> dict:
    """Every pair of ``pairs`` on ``base`` (its own workdir under ``rundir``)."""
    ds = base.dataset
    test = _arrays(ds.name, "test", ds.data_dir)
    train = _arrays(ds.name, "train", ds.data_dir, ds.fraction)
    probe = {k: v[:DELTA_BATCH] for k, v in train.items()}
    runs = {}
    for pair in pairs:
        config = pair_config(base, pair, lrs[pair], record_rms=record_rms)
        if progress:
            print(f"{ds.name}: {pair} (lr {lrs[pair]:g}, {base.train.num_replicas} seeds, "
                  f"{base.train.num_epochs} epochs)", flush=True)
        try:
            runs[pair] = run_pair(config, pair, os.path.join(rundir, f"{ds.name}_{pair}"),
                                  test=test, probe=probe)
        except FloatingPointError as e:   # a diverged pair is a result, not a crash
            runs[pair] = {"pair": pair, "lr": float(lrs[pair]), "diverged": str(e)}
    return runs


def finished_runs(runs: dict) -> dict:
    """The runs that did not diverge (a diverged run holds only its pair,
    rate and the loop's error message)."""
    return {p: r for p, r in runs.items() if "diverged" not in r}


def _part_result(base, runs: dict, seconds: float) -> dict:
    import jax
    finished = finished_runs(runs)
    summary = summarize(finished)
    num_test = next(iter(finished.values()))["num_test"]
    return {"config": jsonable(base.to_dict()), "thesis": THESIS, "pairs": PAIRS,
            "delta_outputs": DELTA_OUTPUT, "runs": runs, "summary": summary,
            "comparisons": comparisons(summary, num_test), "one_image_points": 100.0 / num_test,
            "devices": jax.device_count(), "seconds": round(seconds, 1)}


def run_experiment(size: str, rundir: str, *, data_dir: str = "", parts=("digits", "shapes"),
                   progress: bool = True) -> dict:
    """``{part: results}`` for the parts of :data:`SIZES` ``[size]``."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    s = SIZES[size]
    out = {}
    if "digits" in parts:
        start = time.time()
        base = digits_config(seeds=s["digits_seeds"], epochs=s["digits_epochs"], data_dir=data_dir)
        runs = run_part(base, s.get("digits_pairs", tuple(PAIRS)), DIGITS_LR, rundir,
                        record_rms=False, progress=progress)
        out["digits"] = _part_result(base, runs, time.time() - start)
    if "shapes" in parts:
        start = time.time()
        base = shapes_config(seeds=s["shapes_seeds"], epochs=s["shapes_epochs"],
                             fraction=s["shapes_fraction"], data_dir=data_dir)
        runs = run_part(base, s.get("shapes_pairs", SHAPES_PAIRS), SHAPES_LR, rundir,
                        record_rms=True, progress=progress)
        out["shapes"] = _part_result(base, runs, time.time() - start)
        out["shapes"]["diagnostics"] = diagnostics(runs)
    return out


def diagnostics(runs: dict, reference: str = "softmax") -> dict:
    """Figs. 4.2, 4.3, 4.5 in numbers: delta ranges per pair and epoch; per
    parameter array, the ratio of each pair's gradient RMS (replica 0) to the
    reference's, per epoch; the reference's median ``s`` per epoch."""
    runs = finished_runs(runs)
    out = {"delta_range": {p: {e: [h["min"], h["max"]] for e, h in r["deltas"].items()}
                           for p, r in runs.items()}}
    if reference in runs and "grad_rms" in runs[reference]:
        ref = runs[reference]["grad_rms"]["replica0"]
        out["grad_rms_ratio_vs_softmax"] = {
            p: {k: (np.asarray(v) / np.asarray(ref[k])).tolist() for k, v in
                r["grad_rms"]["replica0"].items()}
            for p, r in runs.items() if p != reference}
        out["softmax_median_s"] = np.exp(runs[reference]["median_log_normalizer"]).tolist()
    return out


def plot(part: str, results: dict, path: str) -> None:
    """The figure of ``part`` ('digits' or 'shapes'); see
    ``neurojax.analysis.amplification_figures``."""
    from neurojax.analysis import amplification_figures as figures
    (figures.plot_digits if part == "digits" else figures.plot_shapes)(results, path)


def write(results: dict, outdir: str, prefix: str = "amplification") -> list[str]:
    """``{prefix}_{part}.json`` (strict JSON, floats to 5 significant digits)
    and ``.png`` for each part of ``results``."""
    paths = []
    for part, res in results.items():
        js, png = (os.path.join(outdir, f"{prefix}_{part}.{ext}") for ext in ("json", "png"))
        write_json(res, js, digits=5, indent=None)
        plot(part, res, png)
        paths += [js, png]
    return paths


# ----------------------------------------------------------------- CLI

def headline(results: dict) -> dict:
    """The numbers the README quotes."""
    out = {}
    for part, res in results.items():
        summ = res["summary"]
        out[part] = {p: {"best_error_median": s["best_error"]["median"],
                         "final_error_median": s["final_error"]["median"],
                         "epochs_to_best_median": s["epochs_to_best"]["median"],
                         **({"epochs_ratio_vs_softmax": s["epochs_to_best_ratio_vs_softmax"],
                             "resolvable_vs_softmax": s["vs_softmax"]["resolvable"]}
                            if "vs_softmax" in s else {})} for p, s in summ.items()}
        out[part]["comparisons"] = {
            k: {"best_error_diff_points": c["best_error"]["mean_points"],
                "best_error_ci95": c["best_error"]["ci95_points"],
                "epochs_ratio": c["epochs_to_best"]["ratio"],
                "epochs_ratio_ci95": c["epochs_to_best"]["ci95"]}
            for k, c in res["comparisons"].items()}
        out[part]["diverged"] = sorted(p for p, r in res["runs"].items() if "diverged" in r)
    return out


def main(argv: Sequence[str]) -> None:
    import json
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint at INFO
    f = flags.FLAGS
    prefix = "amplification_quick" if f.quick else "amplification"
    if f.replot:   # the figures again, from the JSON of an earlier run
        for part in f.parts:
            js = os.path.join(f.outdir, f"{prefix}_{part}.json")
            with open(js) as fh:
                res = json.load(fh)
            plot(part, res, js[:-4] + "png")
        return
    size = "quick" if f.quick else "full"
    parts = tuple(f.parts)
    start = time.time()
    with tempfile.TemporaryDirectory() as rundir:
        results = run_experiment(size, rundir, data_dir=f.data_dir, parts=parts)
    paths = write(results, f.outdir, prefix)
    print(json.dumps({"files": paths, "seconds": round(time.time() - start, 1),
                      **jsonable(headline(results), 4)}, indent=1))


def _define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("outdir", None, "Where the JSON and PNG files go.")
    flags.DEFINE_bool("quick", False, "CI size (seconds; numbers not meaningful).")
    flags.DEFINE_list("parts", ["digits", "shapes"], "Which parts to run: digits, shapes.")
    flags.DEFINE_bool("replot", False, "Only redraw the PNGs from the parts' JSON in --outdir.")
    flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = $NEUROJAX_DATA_DIR or "
                        "~/tensorflow_datasets).")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
