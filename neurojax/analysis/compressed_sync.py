"""Chapter 3 of the seed thesis ("Speeding Up Distributed Learning") on
offline data: compressed weight sync in data-parallel training of a tanh MLP,
Figs. 3.1, 3.3, 3.4 and 3.5 and the headline numbers (Section 3.8: 3.55
bits/parameter = 9.01x at (M, c) = (4, 5), "just marginally below baseline";
Section 3.9: 3.78 bits = 8.47x at (4, 6), above the baseline, convergence in
20% fewer iterations).

A driver over the training loop: each run is
:func:`neurojax.train.loop.train_and_evaluate` of a copy of the config
(``configs/compressed_sync_digits.py``: ``P`` workers on disjoint shards,
``K`` local steps, then a compressed sync; ``config.sync``) in its own
workdir, with ``config.experiment`` choosing the copies, every seed of
``seeds`` each:

* ``baseline``: float32 averaging (``sync.mode='none'``);
* ``fixed_N`` for ``N`` in ``fixed_bits`` (Fig. 3.1): ``mode='fixed'``, ``num_bits=N``;
* ``dynamic_c`` for ``c`` in ``floors`` (Fig. 3.4b): ``mode='dynamic'``,
  ``floor=c``, i.e. ``N = ceil(H + c)`` per layer and sync, ``H`` the entropy
  of an ``M``-bit quantisation of a fraction ``F`` of the layer;
* Fig. 3.3, for each ``(M, F)`` of ``monitor``: the baseline with
  ``prelim_bits=M, fraction=F`` (the same training; without quantisation
  ``H`` is only logged), evaluated at the end; the baseline serves its own pair.

From each run's ``metrics.jsonl``, per sync (one epoch of local steps):
test accuracy of the synchronised model (``eval``; the driver evaluates after
every sync); per layer ``H`` (of each worker's weights before the sync, mean
over workers) and ``N``; bits per parameter raw (``sum_l N_l |W_l| / sum_l
|W_l|``), Huffman-coded (the real codec's payload), on the wire (with tables
and headers) and the codes' exact entropy (``sync``). Epochs to best (the
thesis's convergence, Section 3.9): the first epoch at which test accuracy
peaks. Compression ratio: ``32 / coded bits``, averaged over syncs and seeds.

CLI (absl; any config field can be overridden, ``--config.experiment.seeds='(0,)'``)::

    python -m neurojax.analysis.compressed_sync --outdir DIR [--quick] [--config FILE[:ARG]]

writes ``DIR/compressed_sync_{name}.json`` and ``.png`` (``name``: ``quick``
or the dataset) and keeps the runs in ``DIR/runs_{name}/``; a finished run is
read back, so a stopped sweep continues where it stopped.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from typing import Optional, Sequence

import numpy as np

THESIS = {"raw_bits_c5": 6.8, "raw_ratio_c5": 4.70, "coded_bits_c5": 3.55, "ratio_c5": 9.01,
          "coded_bits_c6": 3.78, "ratio_c6": 8.47,
          "accuracy_c5": "just marginally below baseline", "accuracy_c6": "above baseline",
          "convergence_c6": "20% fewer iterations than baseline"}
# the fields of config.sync a setting may set; the fields of config.experiment
SYNC_FIELDS = ("mode", "num_bits", "floor", "prelim_bits", "fraction")
EXPERIMENT_FIELDS = ("seeds", "fixed_bits", "floors", "monitor")


# ----------------------------------------------------------------- the runs

def validate_experiment(config) -> None:
    """``ValueError`` naming the first bad field of ``config.experiment``
    (the loop validates every other block of each run's config)."""
    e = config.get("experiment")
    if e is None:
        raise ValueError(f"config.experiment is missing (fields {EXPERIMENT_FIELDS})")
    unknown = sorted(set(e.keys()) - set(EXPERIMENT_FIELDS))
    if unknown:
        raise ValueError(f"config.experiment.{unknown[0]} is not a field; "
                         f"allowed: {EXPERIMENT_FIELDS}")
    if not e.get("seeds"):
        raise ValueError("config.experiment.seeds must list at least one seed")
    is_int = lambda x, lo, hi: type(x) is int and lo <= x <= hi   # (not bool)
    is_real = lambda x, lo, hi: type(x) in (int, float) and lo <= x <= hi
    checks = {"seeds": (lambda s: is_int(s, 0, 2**31 - 1), "integers >= 0"),
              "fixed_bits": (lambda n: is_int(n, 1, 16), "integers in [1, 16]"),
              "floors": (lambda c: is_real(c, 0, 16), "numbers in [0, 16]"),
              "monitor": (lambda p: isinstance(p, (tuple, list)) and len(p) == 2
                          and is_int(p[0], 1, 16) and is_real(p[1], 1e-9, 1),
                          "(M in [1, 16], F in (0, 1]) pairs")}
    for field, (ok, allowed) in checks.items():
        for value in e.get(field, ()):
            if not ok(value):
                raise ValueError(f"config.experiment.{field} must hold {allowed}, "
                                 f"got {value!r}")


def settings(config) -> list[dict]:
    """The compared settings: a name and the ``config.sync`` fields it sets."""
    e = config.experiment
    out = [{"name": "baseline", "mode": "none"}]
    out += [{"name": f"fixed_{n}", "mode": "fixed", "num_bits": int(n)} for n in e.fixed_bits]
    out += [{"name": f"dynamic_c{c:g}", "mode": "dynamic", "floor": float(c),
             "prelim_bits": int(config.sync.prelim_bits)} for c in e.floors]
    return out


def monitor_settings(config) -> list[dict]:
    """Fig. 3.3: the baseline at each ``(M, F)`` of ``config.experiment.monitor``
    (named ``baseline`` for the pair the baseline itself logs)."""
    own = (int(config.sync.prelim_bits), float(config.sync.fraction))
    return [{"name": "baseline" if (m, f) == own else f"monitor_M{m}_F{f:g}", "mode": "none",
             "prelim_bits": int(m), "fraction": float(f)} for m, f in config.experiment.monitor]


def run_config(config, setting: dict, seed: int, eval_every: int):
    """A copy of ``config`` with ``seed``, ``train.eval_every`` and the
    ``sync`` fields of ``setting``."""
    variant = copy.deepcopy(config)
    with variant.unlocked():
        variant.seed = int(seed)
        variant.train.eval_every = int(eval_every)
        for field in SYNC_FIELDS:
            if field in setting:
                variant.sync[field] = setting[field]
    return variant


def steps_per_round(config) -> int:
    """``K``: ``config.sync.local_steps``, or (0) one pass of a worker over
    its shard of the training split, as the loop counts it."""
    if config.sync.get("local_steps", 0):
        return int(config.sync.local_steps)
    from neurojax import data as nj_data
    ds = config.dataset
    info = nj_data.dataset_info(ds.name, data_dir=ds.get("data_dir") or None)
    n = len(nj_data.fraction_indices(info.num_examples[ds.get("train_split", "train")],
                                     ds.get("fraction", 1.0)))
    return n // config.sync.num_workers // ds.batch_size


def run(config, workdir: str, *, progress: bool = False) -> list[dict]:
    """The records of ``train_and_evaluate(config, workdir)``: a finished run
    is read back (the loop finds nothing left to do); a workdir of another
    config (``experiment`` aside) is refused."""
    from neurojax.train.metrics_log import read_metrics
    from neurojax.train.loop import train_and_evaluate
    fields = {k: v for k, v in json.loads(config.to_json_best_effort()).items()
              if k != "experiment"}
    text, path = json.dumps(fields, indent=1, sort_keys=True), os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            if f.read() != text:
                raise ValueError(f"{workdir} holds a run of another config: remove it or "
                                 f"choose another outdir")
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    train_and_evaluate(config, workdir, progress=progress)
    return read_metrics(os.path.join(workdir, "metrics.jsonl"))


def run_experiment(config, rundir: str, *, progress: bool = True) -> dict:
    """Runs every setting for every seed (and the monitor runs) in
    ``rundir/{setting}_seed{seed}``; returns the JSON-able results."""
    import jax
    import tqdm
    from neurojax.train import validate_config

    validate_experiment(config)
    seeds = [int(s) for s in config.experiment.seeds]
    monitors = monitor_settings(config)
    jobs = [(s, seed) for s in settings(config) for seed in seeds]
    jobs += [(m, seed) for m in monitors if m["name"] != "baseline" for seed in seeds]
    for setting, seed in jobs:   # a bad variant fails here, before any run
        validate_config(run_config(config, setting, seed, 0))
    k = steps_per_round(config)
    start, records = time.time(), {}
    for setting, seed in tqdm.tqdm(jobs, desc="compressed sync runs", disable=not progress):
        name = setting["name"]
        every = 0 if name.startswith("monitor") else k   # monitors: evaluated at the end
        records[name, seed] = run(run_config(config, setting, seed, every),
                                  os.path.join(rundir, f"{name}_seed{seed}"))
    out = {"settings": {s["name"]: {**s, "runs": [summarise_run(records[s["name"], seed], seed)
                                                  for seed in seeds]}
                        for s in settings(config)}}
    evals = _split(records["baseline", seeds[0]], "eval")
    layers = _layer_keys(_split(records["baseline", seeds[0]], "sync")[0])
    for run_summary, seed in zip(out["settings"]["baseline"]["runs"], seeds):
        if monitors:   # [sync, layer, (M, F)]
            h = [[_curve(_split(records[m["name"], seed], "sync"), f"entropy/{key}")
                  for key in layers.values()] for m in monitors]
            run_summary["monitor_entropy"] = np.transpose(h, (2, 1, 0)).tolist()
    out.update({
        "config": json.loads(config.to_json_best_effort()), "thesis": THESIS,
        "num_workers": int(config.sync.num_workers), "devices": jax.device_count(),
        "local_steps": k, "steps_per_epoch": round(evals[0]["step"] / evals[0]["epoch"]),
        "num_syncs": len(evals), "epochs": [r["epoch"] for r in evals],
        "layers": list(layers), "monitor": [[m["prelim_bits"], m["fraction"]] for m in monitors],
        "seconds": round(time.time() - start, 1)})
    out["summary"] = summarise(out)
    return out


# ----------------------------------------------------------------- the records

def _split(records: list[dict], split: str) -> list[dict]:
    return [r for r in records if r["split"] == split]


def _curve(records: list[dict], key: str) -> list[float]:
    """``key`` of each record as a float (the loop writes NaN as ``'nan'``)."""
    return [float(r[key]) for r in records]


def _layer_keys(sync_record: dict) -> dict:
    """``{layer: its group key in the sync records}`` (``dense_0`` for
    ``"['dense_0']"``), in the records' order."""
    keys = [k.split("/", 1)[1] for k in sync_record if k.startswith("entropy/")]
    return {"/".join(re.findall(r"\['([^']*)'\]", g)) or g: g for g in keys}


def epochs_to_best(accuracy: Sequence[float], epochs: Optional[Sequence[float]] = None):
    """Thesis's convergence (Section 3.9): the epoch at which test accuracy
    first reaches its maximum (``epochs[i]``; by default ``i + 1``)."""
    acc = np.asarray(accuracy, np.float64)
    if acc.size == 0:
        raise ValueError("accuracy must not be empty")
    i = int(np.argmax(acc))
    return i + 1 if epochs is None else float(epochs[i])


def summarise_run(records: list[dict], seed: int) -> dict:
    """One run's curves (one entry per sync) and scalars from its records."""
    evals, syncs = _split(records, "eval"), _split(records, "sync")
    if [r["step"] for r in evals] != [r["step"] for r in syncs]:
        raise RuntimeError("expected one evaluation after every sync (train.eval_every = K)")
    acc = _curve(evals, "accuracy")
    layers = _layer_keys(syncs[0])
    run = {"seed": seed, "test_accuracy": acc, "final_accuracy": acc[-1],
           "best_accuracy": max(acc), "epochs_to_best": epochs_to_best(acc, _curve(evals, "epoch")),
           "raw_bits": _curve(syncs, "raw_bits_per_parameter"),
           "entropy_bits": _curve(syncs, "entropy_bits_per_parameter"),
           "wire_bits": _curve(syncs, "wire_bits_per_parameter"),
           "num_bits": {n: _curve(syncs, f"num_bits/{g}") for n, g in layers.items()},
           "entropy": {n: _curve(syncs, f"entropy/{g}") for n, g in layers.items()}}
    if "coded_bits_per_parameter" in syncs[0]:   # quantised: the host codec's account
        run["coded_bits"] = _curve(syncs, "coded_bits_per_parameter")
        run["bytes_per_worker"] = [float(np.mean(r["bytes_per_worker"])) for r in syncs]
        run["coded_bits_layer"] = {n: _curve(syncs, f"coded_bits/{g}") for n, g in layers.items()}
    return run


def summarise(results: dict) -> dict:
    """Means (and std) over seeds per setting, and the headline comparison
    with the thesis: compression ratio ``32 / coded bits`` and accuracy change
    against the baseline at each dynamic floor."""
    out: dict = {"settings": {}}
    for name, entry in results["settings"].items():
        runs = entry["runs"]
        row = {}
        for key in ("final_accuracy", "best_accuracy", "epochs_to_best"):
            v = np.array([r[key] for r in runs], np.float64)
            row[key], row[key + "_std"] = float(v.mean()), float(v.std())
        for key in ("raw_bits", "coded_bits", "wire_bits", "entropy_bits"):
            if key in runs[0]:
                row["mean_" + key] = float(np.mean([np.mean(r[key]) for r in runs]))
        row["raw_compression_ratio"] = 32.0 / row["mean_raw_bits"]
        row["wire_compression_ratio"] = 32.0 / row["mean_wire_bits"]
        if "mean_coded_bits" in row:
            row["compression_ratio"] = 32.0 / row["mean_coded_bits"]
        out["settings"][name] = row
    base = out["settings"]["baseline"]
    for row in out["settings"].values():
        row["accuracy_change_final"] = row["final_accuracy"] - base["final_accuracy"]
        row["accuracy_change_best"] = row["best_accuracy"] - base["best_accuracy"]
        row["epochs_to_best_ratio"] = row["epochs_to_best"] / base["epochs_to_best"]
    base_runs = results["settings"]["baseline"]["runs"]
    if "monitor_entropy" in base_runs[0]:
        h = np.mean([np.asarray(r["monitor_entropy"]) for r in base_runs], axis=0)
        out["baseline_entropy_first_last"] = {
            f"{layer}/M{m}_F{f:g}": [float(h[0, li, mi]), float(h[-1, li, mi])]
            for li, layer in enumerate(results["layers"])
            for mi, (m, f) in enumerate(results["monitor"])}
    return out


# ----------------------------------------------------------------- figure

def plot(results: dict, path: str) -> None:
    """Fig. 3.1 (final accuracy vs fixed N), Fig. 3.3 (entropy per layer vs
    epoch), Fig. 3.5 (bits per parameter vs epoch at c = 5 and 6), Fig.
    3.4b/d (best accuracy and epochs to it per setting) and N vs coded bits
    per layer at c = 5."""
    from matplotlib.figure import Figure
    sets, base = results["settings"], results["summary"]["settings"]["baseline"]
    ep, layers = results["epochs"], results["layers"]
    mean = lambda name, get: np.mean([get(r) for r in sets[name]["runs"]], axis=0)
    fig = Figure(figsize=(16, 9))
    axes = fig.subplots(2, 3)

    ax = axes[0, 0]   # Fig. 3.1
    fixed = sorted((v["num_bits"], k) for k, v in sets.items() if v["mode"] == "fixed")
    if fixed:
        finals = [[r["final_accuracy"] for r in sets[k]["runs"]] for _, k in fixed]
        ax.boxplot(finals, positions=[n for n, _ in fixed], widths=0.6, showmeans=True)
    ax.axhline(base["final_accuracy"], color="k", ls="--", lw=1, label="uncompressed")
    ax.legend(loc="lower right")
    ax.set(xlabel="bits per weight N (fixed)", ylabel="final test accuracy",
           title="Fig. 3.1: accuracy vs fixed quantisation")

    ax = axes[0, 1]   # Fig. 3.3
    if "monitor_entropy" in sets["baseline"]["runs"][0]:
        h = mean("baseline", lambda r: np.asarray(r["monitor_entropy"]))   # [E, L, (M, F)]
        for li, layer in enumerate(layers):
            for mi, (m, f) in enumerate(results["monitor"]):
                ax.plot(ep, h[:, li, mi], ["-", "--", ":", "-."][mi % 4], color=f"C{li}",
                        label=f"{layer} M={m} F={f:g}")
        ax.legend(fontsize=6, ncol=3, loc="upper right")
    ax.set(xlabel="epoch", ylabel="entropy H (bits)",
           title="Fig. 3.3: weight entropy per layer (uncompressed runs)")

    ax = axes[0, 2]   # Fig. 3.5
    for ci, name in enumerate(n for n in ("dynamic_c5", "dynamic_c6") if n in sets):
        for key, ls in (("raw_bits", "-"), ("coded_bits", "--"), ("entropy_bits", ":")):
            ax.plot(ep, mean(name, lambda r: r[key]), ls, color=f"C{ci}",
                    label=f"c={name[9:]} {key[:-5]}")
    if ax.lines:
        ax.legend(fontsize=8)
    ax.set(xlabel="epoch", ylabel="bits per parameter",
           title="Fig. 3.5: raw N vs Huffman-coded (M=4)")

    dyn = [k for k in sets if sets[k]["mode"] == "dynamic"]
    order = ["baseline"] + dyn + [f"fixed_{n}" for n in (8, 10) if f"fixed_{n}" in sets]
    labels = ["base"] + [f"{sets[k]['prelim_bits'] + sets[k]['floor']:g}:{sets[k]['floor']:g}"
                         for k in dyn] + [f"{k[6:]}:{k[6:]}" for k in order[1 + len(dyn):]]
    for ax, key, label in ((axes[1, 0], "best_accuracy", "Fig. 3.4b: best test accuracy"),
                           (axes[1, 1], "epochs_to_best", "Fig. 3.4d: epochs to best accuracy")):
        ax.boxplot([[r[key] for r in sets[k]["runs"]] for k in order], widths=0.5,
                   showmeans=True)
        ax.set_xticks(range(1, len(order) + 1), labels)
        ax.set(xlabel="ceiling:floor", title=label)

    ax = axes[1, 2]   # per layer at c = 5
    name = "dynamic_c5" if "dynamic_c5" in sets else (dyn[0] if dyn else None)
    if name:
        for li, layer in enumerate(layers):
            ax.plot(ep, mean(name, lambda r: r["num_bits"][layer]), "-", color=f"C{li}",
                    label=f"{layer} N")
            ax.plot(ep, mean(name, lambda r: r["coded_bits_layer"][layer]), "--",
                    color=f"C{li}", label=f"{layer} coded")
        ax.legend(fontsize=7)
    ax.set(xlabel="epoch", ylabel="bits per parameter", title=f"per layer at {name}")
    fig.suptitle(f"Compressed weight sync, {results['config']['dataset']['name']}: "
                 f"{results['num_workers']} workers, sync every {results['local_steps']} steps, "
                 f"{len(results['config']['experiment']['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=70)


# per-sync curves of the fixed-N runs left out (N constant; the summary keeps
# their means, and final/best accuracy and epochs to best stay per run)
_FIXED_RUN_DROP = ("raw_bits", "num_bits", "entropy", "entropy_bits", "test_accuracy",
                   "coded_bits", "wire_bits", "coded_bits_layer")
# curves left out of every run's JSON: the bytes per worker (= wire_bits x
# parameters / 8)
_RUN_DROP = ("bytes_per_worker",)


def without_fixed_run_curves(results: dict) -> dict:
    """The results without the fixed-N runs' per-epoch curves (their
    scalars stay) and without the curves of ``_RUN_DROP``, to keep the JSON
    small."""
    out = dict(results, settings={})
    for name, entry in results["settings"].items():
        drop = _RUN_DROP + (_FIXED_RUN_DROP if entry["mode"] == "fixed" else ())
        runs = [{k: v for k, v in r.items() if k not in drop} for r in entry["runs"]]
        out["settings"][name] = dict(entry, runs=runs)
    return out


def _round_floats(obj, digits=4):
    """Floats rounded, non-finite ones (the baseline's code entropy) ``None``."""
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_floats(v, digits) for v in obj]
    return obj


def write(results: dict, outdir: str, name: str) -> tuple[str, str]:
    """``compressed_sync_{name}.json`` (:func:`without_fixed_run_curves`, floats rounded to 4
    digits, NaN and infinities as null: strict JSON) and ``.png`` (from the
    full results) in ``outdir``."""
    os.makedirs(outdir, exist_ok=True)
    js = os.path.join(outdir, f"compressed_sync_{name}.json")
    png = os.path.join(outdir, f"compressed_sync_{name}.png")
    with open(js, "w") as f:
        json.dump(_round_floats(without_fixed_run_curves(results)), f, separators=(",", ":"),
                  allow_nan=False)
    plot(results, png)
    return js, png


# ----------------------------------------------------------------- CLI

def _config_from_flags():
    """``(config, name)``: ``--config`` with its overrides; with ``--quick``
    the same file's ``runlocal`` variant."""
    import importlib.util
    from absl import app, flags
    from ml_collections import config_flags
    if not flags.FLAGS.quick:
        return flags.FLAGS.config, flags.FLAGS.config.dataset.name
    path = config_flags.get_config_filename(flags.FLAGS["config"])
    if ":" in path:
        raise app.UsageError("--quick selects the 'runlocal' variant: drop it or the ':ARG'")
    spec = importlib.util.spec_from_file_location("experiment_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal")
    config.update_from_flattened_dict(config_flags.get_override_values(flags.FLAGS["config"]))
    return config, "quick"


def main(argv: Sequence[str]) -> None:
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    import jax
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint at INFO
    config, name = _config_from_flags()
    outdir = flags.FLAGS.outdir
    rundir = os.path.join(outdir, f"runs_{name}")
    # runs of one mode compile the same programs (N, c, seed and data are
    # inputs): JAX's persistent cache compiles each once for the sweep
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(rundir, "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    results = run_experiment(config, rundir)
    js, png = write(results, outdir, name)
    rows = results["summary"]["settings"]
    print(json.dumps({"json": js, "png": png, "seconds": results["seconds"], "thesis": THESIS,
                      **{k: rows[k] for k in rows if k.startswith("dynamic")}}, indent=1))


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags
    config_flags.DEFINE_config_file(
        "config", "configs/compressed_sync_digits.py",
        "The experiment's config file[:arg], relative to the working directory.")
    flags.DEFINE_string("outdir", None, "Where the JSON, the PNG and the runs go.")
    flags.DEFINE_bool("quick", False, "CI size: the config's 'runlocal' variant "
                      "(numbers not meaningful).")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
