"""Chapter 3 of the seed thesis ("Speeding Up Distributed Learning") scaled
to offline data: compressed weight sync in data-parallel training of a tanh
MLP, reproducing Figs. 3.1, 3.3, 3.4 and 3.5 and the headline numbers
(Section 3.8: 3.55 bits/parameter = 9.01x at (M, c) = (4, 5), "just
marginally below baseline"; Section 3.9: 3.78 bits = 8.47x at (4, 6),
above the baseline, convergence in 20% fewer iterations).

Setup (``configs/compressed_sync_digits.py``): ``P`` workers each train
their own copy on a disjoint shard with SGD + momentum and every ``K`` local
steps (one epoch) the copies are replaced by the average of their
dequantised weights (:mod:`neurojax.train.compressed_sync`). The loss is the
thesis's MSE on tanh outputs, ``L = 1/(2B) sum_b ||tanh(z_b) - onehot(y_b)||^2``
("the activation functions of all neurons were tanh", Fig. 3.2 "MSE
derivative"). Settings, each over several seeds:

* ``baseline``: uncompressed synchronous averaging (``mode="none"``);
* ``fixed_N`` for ``N`` in 2..16 (Fig. 3.1, Section 3.2);
* ``dynamic_c`` for ``M = 4`` and floors ``c`` (Fig. 3.4b, Section 3.8):
  ``N = ceil(H + c)`` per layer and sync, codes Huffman coded on the host.

Measured per epoch (= per sync): test accuracy of the synchronised model;
per layer the entropy ``H`` of an ``M``-bit quantisation of the weights
(Fig. 3.3: of the uncompressed runs' weights, for the ``(M, F)`` pairs of
``config.sync.monitor``), the chosen ``N``; bits per parameter raw
(``sum_l N_l |W_l| / sum_l |W_l|``), after Huffman coding (payload of the
real codec), on the wire (whole packages incl. tables and headers), and the
exact entropy of the codes. "Epochs to best" is the thesis's convergence
(Section 3.9): the first epoch at which test accuracy peaks. Compression
ratio ``= 32 / (coded bits per parameter averaged over epochs and seeds)``.

CLI::

    python -m neurojax.analysis.compressed_sync --outdir DIR [--quick] [--config-arg mnist]

writes ``DIR/compressed_sync_{name}.json`` and ``.png`` (name ``digits``,
``quick`` or ``mnist``). Runs the ``P`` workers on ``P`` forced CPU devices
when started as a program on CPU (``--xla_force_host_platform_device_count``),
otherwise on as many devices as divide ``P``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any, Optional, Sequence

import numpy as np

THESIS = {"raw_bits_c5": 6.8, "raw_ratio_c5": 4.70, "coded_bits_c5": 3.55, "ratio_c5": 9.01,
          "coded_bits_c6": 3.78, "ratio_c6": 8.47,
          "accuracy_c5": "just marginally below baseline", "accuracy_c6": "above baseline",
          "convergence_c6": "20% fewer iterations than baseline"}


# ----------------------------------------------------------------- pieces

def load_arrays(name: str, data_dir: Optional[str] = None) -> dict:
    """Whole train and test splits as flat float32 arrays in [0, 1]:
    ``{"train": (x [n, d], y [n]), "test": (...)}`` (read through
    :func:`neurojax.data.load`)."""
    from neurojax.data import load
    out = {}
    for split in ("train", "test"):
        batch = next(iter(load(name, split, batch_size=1_000_000, shuffle=False,
                               drop_remainder=False, data_dir=data_dir or None)))
        out[split] = (np.asarray(batch["image"], np.float32).reshape(len(batch["label"]), -1),
                      np.asarray(batch["label"], np.int32))
    return out


def tanh_mse_objective(model, num_classes: int = 10):
    """``objective(params, model_state, batch, rng)`` of the thesis:
    ``L = 1/(2B) sum_b ||tanh(z_b) - t_b||^2``, ``t_b = onehot(y_b)`` in
    {0, 1}, ``z`` the MLP's (linear) head, so every neuron is tanh. Returns
    ``(L, ({"accuracy": ...}, model_state))``."""
    import jax
    import jax.numpy as jnp

    def objective(params, model_state, batch, rng):
        del rng
        y = jnp.tanh(model.apply({"params": params}, batch["x"]))
        t = jax.nn.one_hot(batch["y"], num_classes)
        loss = 0.5 * jnp.mean(jnp.sum((y - t) ** 2, axis=-1))
        return loss, ({"accuracy": jnp.mean(jnp.argmax(y, -1) == batch["y"])}, model_state)
    return objective


def settings(config) -> list[dict]:
    """The compared settings: baseline, fixed widths, dynamic floors."""
    out = [{"name": "baseline", "mode": "none"}]
    out += [{"name": f"fixed_{n}", "mode": "fixed", "num_bits": int(n)}
            for n in config.sync.fixed_bits]
    out += [{"name": f"dynamic_c{c}", "mode": "dynamic", "floor": float(c),
             "prelim_bits": int(config.sync.prelim_bits)} for c in config.sync.floors]
    return out


def epochs_to_best(accuracy: Sequence[float]) -> int:
    """Thesis's convergence (Section 3.9): the first epoch (1-based) at
    which test accuracy reaches its maximum."""
    acc = np.asarray(accuracy, np.float64)
    if acc.size == 0:
        raise ValueError("accuracy must not be empty")
    return int(np.argmax(acc)) + 1


def _check_config(config) -> None:
    from neurojax.train import validate_config
    validate_config(config)
    s = config.get("sync")
    if s is None:
        raise ValueError("config.sync is missing")
    for field in ("num_workers",):
        v = s.get(field)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"config.sync.{field} must be a positive integer, got {v!r}")
    k = s.get("local_steps", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"config.sync.local_steps must be an integer >= 0, got {k!r}")
    if not s.get("seeds"):
        raise ValueError("config.sync.seeds must list at least one seed")
    for n in s.fixed_bits:
        if not (isinstance(n, int) and 1 <= n <= 16):
            raise ValueError(f"config.sync.fixed_bits must be integers in [1, 16], got {n!r}")
    for c in s.floors:
        if not (isinstance(c, (int, float)) and 0 <= c <= 16):
            raise ValueError(f"config.sync.floors must be numbers in [0, 16], got {c!r}")
    for pair in s.monitor:
        if len(pair) != 2 or not (1 <= pair[0] <= 16) or not (0 < pair[1] <= 1):
            raise ValueError(f"config.sync.monitor must hold (M in [1, 16], F in (0, 1]) pairs, "
                             f"got {pair!r}")
    if config.model.get("activation") != "tanh":
        raise ValueError(f"config.model.activation must be 'tanh' (the thesis's network), "
                         f"got {config.model.get('activation')!r}")


def _mesh_for(num_workers: int):
    import jax
    from neurojax.train.step import make_mesh
    d = jax.device_count()
    while num_workers % d:
        d -= 1
    return make_mesh(jax.devices()[:d])


# ----------------------------------------------------------------- the run

def run_experiment(config, *, data: Optional[dict] = None, progress: bool = True) -> dict:
    """Runs every setting for every seed; returns the JSON-able results."""
    import jax
    import jax.numpy as jnp
    import tqdm

    from neurojax.compress import quantize as qz
    from neurojax.models import get_model
    from neurojax.optim import make_optimizer
    from neurojax.train import compressed_sync as cs

    _check_config(config)
    t_start = time.time()
    data = load_arrays(config.dataset.name, config.dataset.data_dir) if data is None else data
    x_tr, y_tr = data["train"]
    x_te, y_te = jnp.asarray(data["test"][0]), jnp.asarray(data["test"][1])
    s = config.sync
    num_workers, batch = int(s.num_workers), int(config.dataset.batch_size)
    per_epoch = cs.steps_per_epoch(len(y_tr), num_workers, batch)
    k = int(s.local_steps) or per_epoch
    num_rounds = max(1, (int(config.train.num_epochs) * per_epoch) // k)
    model = get_model(config.model.name, widths=tuple(config.model.widths),
                      activation=config.model.activation, num_outputs=10)
    objective = tanh_mse_objective(model)
    tx = make_optimizer(config.optim, num_rounds * k)
    mesh = _mesh_for(num_workers)
    params0 = model.init(jax.random.PRNGKey(0), x_tr[:1])["params"]
    groups = cs.layer_groups(params0, s.grouping)
    layer_names = [name.strip("[]'") for name, _ in groups]
    sizes = cs.group_sizes(params0, groups)

    @jax.jit
    def test_accuracy(params):
        return jnp.mean(jnp.argmax(model.apply({"params": params}, x_te), -1) == y_te)

    monitor = [(int(m), float(f)) for m, f in s.monitor]

    @jax.jit
    def monitor_entropy(params, key):
        leaves = jax.tree.leaves(params)
        out = []
        for gi, (_, idx) in enumerate(groups):
            vec = jnp.concatenate([leaves[i].reshape(-1) for i in idx])
            out.append(jnp.stack([qz.estimate_entropy(vec, jax.random.fold_in(key, gi),
                                                      fraction=f, prelim_bits=m)
                                  for m, f in monitor]))
        return jnp.stack(out)                        # [layers, monitors]

    round_fns = {}
    runs = [(st, seed) for st in settings(config) for seed in s.seeds]
    results: dict[str, Any] = {}
    bar = tqdm.tqdm(runs, desc="compressed sync runs", disable=not progress)
    for st, seed in bar:
        bar.set_postfix_str(f"{st['name']} seed {seed}")
        sync = cs.SyncConfig(mode=st["mode"], num_bits=st.get("num_bits", 8),
                             fraction=float(s.fraction), prelim_bits=int(s.prelim_bits),
                             floor=st.get("floor", 5.0), grouping=s.grouping, method=s.method)
        host_codec = st["mode"] == "dynamic"
        key = (st["mode"], host_codec)
        if key not in round_fns:     # one compilation per mode; N and c are run-time values
            round_fns[key] = cs.make_sync_round(objective, tx, sync, params0, mesh=mesh,
                                                return_codes=host_codec)
        params = model.init(jax.random.PRNGKey(int(seed)), x_tr[:1])["params"]
        stream = cs.worker_batches({"x": x_tr, "y": y_tr}, num_workers, batch, k,
                                   seed=int(seed))
        mon_key = jax.random.PRNGKey(10_000 + int(seed))

        def eval_fn(p, r, mode=st["mode"]):
            rec = {"test_accuracy": float(test_accuracy(p))}
            if mode == "none":
                rec["monitor_entropy"] = np.asarray(
                    monitor_entropy(p, jax.random.fold_in(mon_key, r))).tolist()
            return rec

        _, records = cs.train(
            objective, tx, params, stream, num_rounds=num_rounds, sync=sync,
            num_workers=num_workers, mesh=mesh, rng=jax.random.PRNGKey(int(seed)),
            host_codec=host_codec, eval_fn=eval_fn, round_fn=round_fns[key],
            num_bits=st.get("num_bits"), floor=st.get("floor"), progress=False)
        entry = results.setdefault(st["name"], {**st, "runs": []})
        entry["runs"].append(_summarise_run(records, groups, layer_names, seed, per_epoch, k))
    out = {
        "config": json.loads(config.to_json_best_effort()),
        "thesis": THESIS,
        "num_workers": num_workers, "devices": int(mesh.devices.size),
        "local_steps": k, "steps_per_epoch": per_epoch, "num_syncs": num_rounds,
        "epochs": [(r + 1) * k / per_epoch for r in range(num_rounds)],
        "layers": layer_names, "layer_sizes": [sizes[g] for g, _ in groups],
        "monitor": monitor,
        "settings": results,
        "seconds": round(time.time() - t_start, 1),
    }
    out["summary"] = summarise(out)
    return out


def _summarise_run(records, groups, layer_names, seed, per_epoch, k) -> dict:
    acc = [r["test_accuracy"] for r in records]
    run: dict[str, Any] = {
        "seed": int(seed),
        "test_accuracy": acc,
        "final_accuracy": acc[-1], "best_accuracy": max(acc),
        "epochs_to_best": epochs_to_best(acc) * k / per_epoch,
        "train_loss": [r["loss"] for r in records],
        "raw_bits": [r["raw_bits_per_parameter"] for r in records],
        "entropy_bits": [r["entropy_bits_per_parameter"] for r in records],
        "num_bits": {n: [r[f"num_bits/{g}"] for r in records]
                     for n, (g, _) in zip(layer_names, groups)},
        "entropy": {n: [r[f"entropy/{g}"] for r in records]
                    for n, (g, _) in zip(layer_names, groups)},
    }
    if "coded_bits_per_parameter" in records[0]:
        run["coded_bits"] = [r["coded_bits_per_parameter"] for r in records]
        run["wire_bits"] = [r["wire_bits_per_parameter"] for r in records]
        run["bytes_per_worker"] = [float(np.mean(r["bytes_per_worker"])) for r in records]
        run["coded_bits_layer"] = {n: [r[f"coded_bits/{g}"] for r in records]
                                   for n, (g, _) in zip(layer_names, groups)}
    if "monitor_entropy" in records[0]:
        run["monitor_entropy"] = [r["monitor_entropy"] for r in records]
    return run


def summarise(results: dict) -> dict:
    """Means (and std) over seeds per setting, and the headline comparison
    with the thesis: compression ratio ``32 / coded bits`` and accuracy change
    against the baseline at each dynamic floor."""
    out: dict[str, Any] = {"settings": {}}
    for name, entry in results["settings"].items():
        runs = entry["runs"]
        row = {}
        for key in ("final_accuracy", "best_accuracy", "epochs_to_best"):
            v = np.array([r[key] for r in runs], np.float64)
            row[key] = float(v.mean())
            row[key + "_std"] = float(v.std())
        for key in ("raw_bits", "coded_bits", "wire_bits", "entropy_bits"):
            if key in runs[0]:
                row["mean_" + key] = float(np.mean([np.mean(r[key]) for r in runs]))
        if "mean_coded_bits" in row:
            row["compression_ratio"] = 32.0 / row["mean_coded_bits"]
            row["wire_compression_ratio"] = 32.0 / row["mean_wire_bits"]
            row["raw_compression_ratio"] = 32.0 / row["mean_raw_bits"]
        out["settings"][name] = row
    base = out["settings"].get("baseline")
    if base:
        for name, row in out["settings"].items():
            row["accuracy_change_final"] = row["final_accuracy"] - base["final_accuracy"]
            row["accuracy_change_best"] = row["best_accuracy"] - base["best_accuracy"]
            row["epochs_to_best_ratio"] = row["epochs_to_best"] / base["epochs_to_best"]
        base_runs = results["settings"]["baseline"]["runs"]
        if "monitor_entropy" in base_runs[0]:
            h = np.mean([np.asarray(r["monitor_entropy"]) for r in base_runs], axis=0)
            out["baseline_entropy_first_last"] = {
                f"{layer}/M{m}_F{f}": [float(h[0, li, mi]), float(h[-1, li, mi])]
                for li, layer in enumerate(results["layers"])
                for mi, (m, f) in enumerate(results["monitor"])}
    return out


# ----------------------------------------------------------------- figure

def plot(results: dict, path: str) -> None:
    """Six panels: Fig. 3.1 (accuracy vs fixed N), Fig. 3.3 (entropy per
    layer vs epoch), Fig. 3.5 (bits/parameter vs epoch at c = 5 and 6, raw
    and coded), Fig. 3.4b/d (accuracy and epochs-to-best per setting)."""
    from matplotlib.figure import Figure

    sets, summ = results["settings"], results["summary"]["settings"]
    fig = Figure(figsize=(16, 9))
    axes = fig.subplots(2, 3)
    base = summ.get("baseline")

    ax = axes[0, 0]   # Fig. 3.1
    fixed = sorted((v["num_bits"], k) for k, v in sets.items() if v["mode"] == "fixed")
    if fixed:
        ns = [n for n, _ in fixed]
        finals = [[r["final_accuracy"] for r in sets[k]["runs"]] for _, k in fixed]
        ax.boxplot(finals, positions=ns, widths=0.6, showmeans=True)
        ax.plot(ns, [np.mean(f) for f in finals], "-", color="C0", lw=1)
    if base:
        ax.axhline(base["final_accuracy"], color="k", ls="--", lw=1, label="uncompressed")
        ax.legend(loc="lower right")
    ax.set(xlabel="bits per weight N (fixed)", ylabel="final test accuracy",
           title="Fig. 3.1: accuracy vs fixed quantisation")

    ax = axes[0, 1]   # Fig. 3.3
    if "baseline" in sets and "monitor_entropy" in sets["baseline"]["runs"][0]:
        runs = sets["baseline"]["runs"]
        h = np.mean([np.asarray(r["monitor_entropy"]) for r in runs], axis=0)  # [E, L, Mon]
        epochs = results["epochs"]
        styles = ["-", "--", ":", "-."]
        for li, layer in enumerate(results["layers"]):
            for mi, (m, f) in enumerate(results["monitor"]):
                ax.plot(epochs, h[:, li, mi], styles[mi % 4], color=f"C{li}",
                        label=f"{layer} M={m} F={f:g}")
        ax.legend(fontsize=6, ncol=3, loc="upper right")
    ax.set(xlabel="epoch", ylabel="entropy H (bits)",
           title="Fig. 3.3: weight entropy per layer (uncompressed runs)")

    ax = axes[0, 2]   # Fig. 3.5
    for ci, c in enumerate((5, 6)):
        name = f"dynamic_c{c}"
        if name not in sets or "coded_bits" not in sets[name]["runs"][0]:
            continue
        runs = sets[name]["runs"]
        ep = results["epochs"]
        for key, ls in (("raw_bits", "-"), ("coded_bits", "--"), ("entropy_bits", ":")):
            ax.plot(ep, np.mean([r[key] for r in runs], axis=0), ls, color=f"C{ci}",
                    label=f"c={c} {key.replace('_bits', '')}")
    ax.set(xlabel="epoch", ylabel="bits per parameter",
           title="Fig. 3.5: raw N vs Huffman-coded (M=4)")
    ax.legend(fontsize=8)

    dyn = [k for k in sets if sets[k]["mode"] == "dynamic"]
    order = (["baseline"] if base else []) + dyn + [f"fixed_{n}" for n in (8, 10)
                                                   if f"fixed_{n}" in sets]
    labels = [("base" if k == "baseline" else
               f"{int(sets[k]['prelim_bits'] + sets[k]['floor'])}:{int(sets[k]['floor'])}"
               if sets[k]["mode"] == "dynamic" else f"{sets[k]['num_bits']}:{sets[k]['num_bits']}")
              for k in order]
    for ax, key, ylabel, title in (
            (axes[1, 0], "best_accuracy", "best test accuracy",
             "Fig. 3.4b: accuracy (ceiling:floor)"),
            (axes[1, 1], "epochs_to_best", "epochs to best accuracy",
             "Fig. 3.4d: convergence (ceiling:floor)")):
        vals = [[r[key] for r in sets[k]["runs"]] for k in order]
        ax.boxplot(vals, widths=0.5, showmeans=True)
        ax.set_xticks(range(1, len(order) + 1), labels)
        ax.set(ylabel=ylabel, title=title)

    ax = axes[1, 2]   # per-layer coded bits at c = 5
    name = "dynamic_c5" if "dynamic_c5" in sets else (dyn[0] if dyn else None)
    if name and "coded_bits_layer" in sets[name]["runs"][0]:
        runs = sets[name]["runs"]
        ep = results["epochs"]
        for li, layer in enumerate(results["layers"]):
            ax.plot(ep, np.mean([r["num_bits"][layer] for r in runs], axis=0), "-",
                    color=f"C{li}", label=f"{layer} N")
            ax.plot(ep, np.mean([r["coded_bits_layer"][layer] for r in runs], axis=0), "--",
                    color=f"C{li}", label=f"{layer} coded")
        ax.legend(fontsize=7)
        ax.set(title=f"per layer at {name}")
    ax.set(xlabel="epoch", ylabel="bits per parameter")
    fig.suptitle(f"Compressed weight sync, {results['config']['dataset']['name']}: "
                 f"{results['num_workers']} workers, sync every {results['local_steps']} steps, "
                 f"{len(results['config']['sync']['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=70)


# per-epoch curves of the fixed-N runs left out (N constant; the accuracy
# curve is summarised by the final/best accuracy and epochs to best)
_FIXED_RUN_DROP = ("raw_bits", "num_bits", "entropy", "entropy_bits", "test_accuracy")
# curves left out of every run's JSON: the training loss, and the bytes per
# worker (= wire_bits x parameters / 8)
_RUN_DROP = ("train_loss", "bytes_per_worker")


def compact(results: dict) -> dict:
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
    """Floats rounded; non-finite ones (e.g. the baseline's entropy, which
    is undefined without quantisation) become ``None``, i.e. JSON null."""
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_floats(v, digits) for v in obj]
    return obj


def write(results: dict, outdir: str, name: str) -> tuple[str, str]:
    """``compressed_sync_{name}.json`` (:func:`compact`, floats rounded to 4
    digits, NaN and infinities as null: strict JSON) and ``.png`` (from the
    full results) in ``outdir``."""
    os.makedirs(outdir, exist_ok=True)
    js = os.path.join(outdir, f"compressed_sync_{name}.json")
    png = os.path.join(outdir, f"compressed_sync_{name}.png")
    with open(js, "w") as f:
        json.dump(_round_floats(compact(results)), f, separators=(",", ":"),
                  allow_nan=False)
    plot(results, png)
    return js, png


def headline(results: dict) -> dict:
    """Compression ratio and accuracy change at c = 5 and 6 next to the
    thesis's 9.01x and 8.47x."""
    summ = results["summary"]["settings"]
    out = {}
    for c, ref in ((5, THESIS["ratio_c5"]), (6, THESIS["ratio_c6"])):
        row = summ.get(f"dynamic_c{c}")
        if row and "compression_ratio" in row:
            out[f"c{c}"] = {
                "coded_bits": round(row["mean_coded_bits"], 3),
                "compression_ratio": round(row["compression_ratio"], 2),
                "wire_compression_ratio": round(row["wire_compression_ratio"], 2),
                "raw_bits": round(row["mean_raw_bits"], 3),
                "thesis_ratio": ref,
                "final_accuracy_change": round(row.get("accuracy_change_final", float("nan")), 4),
                "best_accuracy_change": round(row.get("accuracy_change_best", float("nan")), 4),
                "epochs_to_best_ratio": round(row.get("epochs_to_best_ratio", float("nan")), 3)}
    return out


def main(argv: Optional[Sequence[str]] = None, *, force_devices: bool = False) -> dict:
    """The CLI. ``force_devices`` (set when run as a program) gives the CPU
    backend one device per worker before JAX starts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outdir", required=True, help="where the JSON and PNG go")
    parser.add_argument("--quick", action="store_true", help="CI size (config 'runlocal')")
    parser.add_argument("--config-arg", default="", choices=("", "mnist"),
                        help="'' = digits, 'mnist' = 784-392-50-10 on the prepared MNIST")
    args = parser.parse_args(argv)
    from configs.compressed_sync_digits import get_config
    config = get_config("runlocal" if args.quick else args.config_arg)
    if force_devices:
        _force_cpu_devices(int(config.sync.num_workers))
    results = run_experiment(config)
    name = "quick" if args.quick else (args.config_arg or "digits")
    js, png = write(results, args.outdir, name)
    summary = {"json": js, "png": png, "seconds": results["seconds"], **headline(results)}
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def _force_cpu_devices(num: int) -> None:
    """Before JAX starts: give the CPU backend ``num`` devices (one per
    worker) unless XLA_FLAGS already sets a device count."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={num}").strip()


if __name__ == "__main__":
    main(force_devices=True)
