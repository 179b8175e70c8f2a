"""Reading the loop runs of ``neurojax.analysis.layerwise``: a run's
per-seed accuracies and layer-wise read-outs, the peak-layer read-out per
seed, spreads over seeds, stable ranks and the trained
network's test accuracy. A finished run in its work directory is read back
instead of trained again."""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import jax
import numpy as np

from neurojax.analysis.outputs import spread
from neurojax.metrics.stable_rank import kernel_stable_ranks
from neurojax.train import layerwise as lw


def replica_values(record: dict, key: str) -> list[float]:
    """``record[key]`` per seed replica (``key_replicas`` when the run had
    several, else ``[record[key]]``)."""
    if f"{key}_replicas" in record:
        return [float(v) for v in record[f"{key}_replicas"]]
    if key not in record:
        raise ValueError(f"record has no {key!r}: {sorted(record)}")
    return [float(record[key])]


def stage_records(records: Sequence[dict]) -> list[dict]:
    """The layer-wise eval records of a run's ``metrics.jsonl``, per replica:
    ``{step, stage, readout_block, accuracy: [R], validation_accuracy: [R]}``
    (the validation entry only when the run had a validation split)."""
    out = []
    for r in records:
        if r.get("split") != "eval" or "readout_block" not in r:
            continue
        row = {"step": int(r["step"]), "stage": int(round(r["stage"])),
               "readout_block": int(round(r["readout_block"])),
               "accuracy": replica_values(r, "accuracy")}
        if "validation_accuracy" in r:
            row["validation_accuracy"] = replica_values(r, "validation_accuracy")
        out.append(row)
    return out


def peak_per_replica(rows: Sequence[dict]) -> list[dict]:
    """``neurojax.train.layerwise.peak_readout`` for each seed replica of
    :func:`stage_records`' rows (chosen on that seed's validation accuracy)."""
    if not rows:
        raise ValueError("rows must hold at least one layer-wise eval record")
    peaks = []
    for i in range(len(rows[0]["accuracy"])):
        per = [{"stage": r["stage"], "readout_block": r["readout_block"],
                "accuracy": r["accuracy"][i],
                **({"validation_accuracy": r["validation_accuracy"][i]}
                   if "validation_accuracy" in r else {})} for r in rows]
        peaks.append(lw.peak_readout(per))
    return peaks


def train_run(config, workdir: str) -> dict:
    """One loop run: per-seed final test accuracy (the trained network as a
    whole), the layer-wise read-outs, the final parameters (leading replica
    axis when R > 1) and timings (loaded machine: wall clock, not a benchmark)."""
    from neurojax.train.loop import train_and_evaluate
    from neurojax.train.metrics_log import read_metrics
    finished = finished_run(workdir, int(config.train.num_steps))
    if finished is not None:
        return finished
    tic = time.time()
    result = train_and_evaluate(config, workdir, progress=False)
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    last = [r for r in records if r["split"] == "eval"][-1]
    return {"final_accuracy": [float(m["accuracy"]) for m in result.replica_eval_metrics],
            "stages": stage_records(records),
            "params": jax.device_get(result.state.params),
            "num_steps": int(result.num_steps),
            "wall_seconds": time.time() - tic,
            "train_seconds": float(last.get("train_seconds", float("nan"))),
            "compile_seconds": float(last.get("compile_seconds", float("nan")))}


def finished_run(workdir: str, num_steps: int) -> Optional[dict]:
    """:func:`train_run`'s result read back from a run in ``workdir`` that
    ended at ``num_steps`` (its metrics and final checkpoint), or ``None``:
    rerunning the driver with the same ``--workdir`` reuses finished runs."""
    from neurojax.train.metrics_log import read_metrics
    path = os.path.join(workdir, "metrics.jsonl")
    state = os.path.join(os.path.abspath(workdir), "checkpoints", str(num_steps), "state")
    if not (os.path.exists(path) and os.path.isdir(state)):
        return None
    records = read_metrics(path)
    evals = [r for r in records if r["split"] == "eval"]
    if not evals or evals[-1]["step"] != num_steps:
        return None
    import orbax.checkpoint as ocp
    params = ocp.StandardCheckpointer().restore(state)["params"]
    last = evals[-1]
    return {"final_accuracy": replica_values(last, "accuracy"),
            "stages": stage_records(records), "params": params, "num_steps": num_steps,
            "wall_seconds": float("nan"), "reused": True,
            "train_seconds": float(last.get("train_seconds", float("nan"))),
            "compile_seconds": float(last.get("compile_seconds", float("nan")))}


def _per_replica(tree, replicas: int) -> list:
    if replicas == 1:
        return [tree]
    return [jax.tree.map(lambda x: x[r], tree) for r in range(replicas)]


def layers_stable_rank(params, replicas: int, layers: Sequence[str]) -> dict:
    """``{layer: spread over seeds}`` of the model's own ``layers`` (bottom-up)."""
    per = [kernel_stable_ranks(lw.without_heads(p)) for p in _per_replica(params, replicas)]
    return {layer: spread([p[layer] for p in per]) for layer in layers}


def init_stable_rank(config, layers: Sequence[str]) -> dict[str, dict]:
    """Stable ranks at initialisation, with the loop's per-seed init keys."""
    from neurojax import data as nj_data
    from neurojax.train.loop import seed_keys
    from neurojax.train.task import build_model
    info = nj_data.dataset_info(config.dataset.name, data_dir=config.dataset.data_dir or None)
    model = build_model(config, info.num_classes)
    sample = np.zeros((1,) + tuple(info.image_shape), np.float32)
    replicas = config.train.num_replicas
    keys = seed_keys(config.seed, replicas)[0]
    init = lambda k: model.init(k, sample, train=False)["params"]  # noqa: E731
    params = jax.vmap(init)(keys) if replicas > 1 else init(keys)
    return layers_stable_rank(params, replicas, layers)


def network_accuracy(config, params) -> list[float]:
    """Per seed, the test accuracy of the trained network as a whole (the
    model's own top on the final parameters, decision heads dropped): the
    last read-out of a Random Robin run is whichever window it visited last."""
    from neurojax import data as nj_data
    from neurojax.data.on_device import load_split_arrays
    from neurojax.train.task import build_model
    data_dir = config.dataset.data_dir or None
    info = nj_data.dataset_info(config.dataset.name, data_dir=data_dir)
    model = build_model(config, info.num_classes)
    test = load_split_arrays(config.dataset.name, config.dataset.eval_split, data_dir=data_dir)
    logits = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
    out = []
    for p in _per_replica(params, config.train.num_replicas):
        p = lw.without_heads(p)
        pred = np.concatenate([np.argmax(logits(p, test["image"][i:i + 1000]), -1)
                               for i in range(0, len(test["label"]), 1000)])
        out.append(float(np.mean(pred == test["label"])))
    return out


def summarize(run: dict) -> dict:
    """A run without its parameters, with the final and peak accuracies'
    spreads."""
    out = {k: v for k, v in run.items() if k != "params"}
    out["final"] = spread(run["final_accuracy"])
    if run["stages"]:
        peaks = peak_per_replica(run["stages"])
        out["peak"] = spread([p["peak_accuracy"] for p in peaks])
        out["peak_readout_block"] = [p["peak_readout_block"] for p in peaks]
        out["peak_selected_on"] = peaks[0]["peak_selected_on"]
    return out
