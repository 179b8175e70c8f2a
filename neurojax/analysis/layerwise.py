"""Deep layer-wise learning at CPU scale (Oland 2024, Efficient Deep Learning,
ch. 6): the chapter's experiments on the offline datasets.

Run (PNG per part and ``layerwise_{full,quick}.json``):

    python -m neurojax.analysis.layerwise --outdir DIR [--quick] [--parts table,depth,window]

Every run goes through the training loop (``neurojax.train.loop``) with the
layer-wise task (``neurojax.train.layerwise``); seeds are the loop's seed
replicas (``config.train.num_replicas``: seeds 0..R-1 as one vmapped
program). Each layer-wise evaluation reads the network out after the current
stage's window; the *peak-layer read-out* (Sec. 6.1) picks, per seed, the
read-out with the best accuracy on a validation split held out of the
training set (``train[90%:]``; the thesis picks it on the test split), and
reports its test accuracy.

Parts:

* ``table`` (Table 6.1's analogue, and Fig. 6.3): the small CNN of
  ``configs/supervised_shapes.py:small`` (3 conv stages + a 256-unit hidden
  layer: 4 blocks, as the thesis's "vanilla 4-layer CNN") on
  ``shapes_small``: end-to-end backprop; DLL (Algorithm 3, one block per
  stage, the steps split evenly: the same total steps as backprop) with
  decision blocks (Sec. 6.7: a stride-2 conv of 128 channels, ReLU, global
  average pool, affine), with the library's pooled decision layer (global
  average pool, affine) and with Algorithm 3's fully connected decision
  layer on the flattened block output (E1's "1 affine layer"); the flat
  layer again with E1's budget (``dll_flat_layer_e1``: the thesis gives
  layers 1-4 30/40/50/60 epochs against the baseline's 100, so 1.8x the
  steps here, stage i's share growing as 1.26^i); Random Robin (Algorithm
  4, random order, each window's optimiser state kept) with decision
  blocks; backprop and flat DLL again at 2 and 4 times the steps (the gap
  at matched steps as the runs near convergence). The same CNN on the 8x8
  digits (backprop and the two flat-layer rows, and the first two at 2, 4,
  8 and 16 times the steps): Table 6.1 is on MNIST-like data, where every
  method nears its ceiling. Test accuracy mean and spread over the seeds,
  and each layer-wise method's difference from backprop paired by seed
  (every method runs the same seeds: ``outputs.paired_difference``, the
  spread of the per-seed differences and the Student-t 95% interval of
  their mean). Fig. 6.3: the stable rank ``||W||_F^2 / ||W||_2^2`` of every
  layer's weights (``neurojax.metrics.stable_rank``) after each method, and
  at initialisation.
* ``depth`` (E2): a deep narrow ReLU MLP on the digits trained by DLL and
  read out after every block (``neurojax.analysis.layerwise_depth``: the
  read-out after block d is the DLL network of depth d), next to end-to-end
  backprop through the loop at depths 10, 25, 50 and 100.
* ``window`` (Fig. 6.2): deep segment-wise learning of the small CNN with
  decision layers, window 1..4 blocks moving by 1 (overlap window - 1),
  each stage (subnet) given the same steps, as the thesis (50 epochs per
  subnet there); window 1 is DLL (the table's ``dll_pooled_layer`` run, the
  same program, added when both parts are in one JSON) and window 4 one
  stage of end-to-end training.
* ``window_total``: the same sweep at equal total steps (examples seen), the
  table's backprop budget split evenly over the subnets. Window 1 is then
  the table's ``dll_pooled_layer`` run and window 4 end-to-end backprop (a
  window over the whole network is tested equal to it), so only windows 2
  and 3 train here. A subnet of k blocks costs about k times one block's
  step, so equal steps is not equal compute.

``--workdir`` keeps the loop runs; a rerun reuses every finished one, and
parts run as separate commands into one ``--outdir`` merge into one JSON.

Thesis numbers (Table 6.1, vanilla CNN, baseline / DLL): MNIST 99.54 /
99.58, KMNIST 97.09 / 96.72, FashionMNIST 92.02 / 92.20 (100 epochs
baseline, 30-60 epochs per DLL layer, SGD lr 0.05). The runs here are far
shorter (``SIZES``: 10 epochs in all for the shapes CNN, 2.5 per DLL stage;
47.5 on the digits) and use Adam with a cosine schedule per stage; what is
compared is the difference between methods under one budget.
"""
from __future__ import annotations

import os
import pathlib
import tempfile
import time
from typing import Optional, Sequence

import jax
import numpy as np

from neurojax.analysis.layerwise_memory import compiled_bytes, stage_memory  # noqa: F401
from neurojax.analysis import outputs
from neurojax.analysis.outputs import jsonable, paired_difference, write_json
from neurojax.analysis.layerwise_runs import (  # noqa: F401 (re-exported)
    finished_run, init_stable_rank, layers_stable_rank, network_accuracy,
    peak_per_replica, replica_values, spread, stage_records, summarize, train_run)
from neurojax.train import layerwise as lw

PARTS = ("table", "depth", "window", "window_total")
VALIDATION = ("train[:90%]", "train[90%:]")  # (training split, validation split)
CNN = dict(name="small_cnn", widths=(32, 64, 128), hidden=256, dtype="float32")
CNN_LAYERS = tuple(f"conv_{i}" for i in range(len(CNN["widths"]))) + ("hidden", "head")
SIZES = {
    "full": {
        # shapes: 10.0 epochs of 9000; digits: 47.5 epochs of 1293
        "table": dict(num_steps=704, replicas=3, rounds=2, digits_steps=480,
                      digits_budgets=(2, 4, 8, 16), shapes_budgets=(2, 4)),
        "depth": dict(depths=(10, 25, 50, 100), dll_depth=1000, width=64, stage_steps=400,
                      backprop_steps=2000, lr=3e-3, replicas=3),
        # window 1 is the table's DLL run (the same config); 2.5 epochs per subnet
        "window": dict(stage_steps=176, replicas=3, windows=(2, 3, 4)),
        # the table's 704 steps in all, split evenly over the subnets
        "window_total": dict(num_steps=704, replicas=3, windows=(2, 3)),
    },
    "quick": {
        "table": dict(num_steps=16, replicas=2, rounds=2, digits_steps=8,
                      digits_budgets=(2,), shapes_budgets=(2,)),
        "depth": dict(depths=(2, 3), dll_depth=4, width=8, stage_steps=4, backprop_steps=8,
                      lr=3e-3, replicas=2),
        "window": dict(stage_steps=4, replicas=2, windows=(2, 4)),
        "window_total": dict(num_steps=16, replicas=2, windows=(2,)),
    },
}
THESIS = {
    "table_6_1": {"vanilla_cnn": {"MNIST": [99.54, 99.58], "KMNIST": [97.09, 96.72],
                                  "FashionMNIST": [92.02, 92.20]},
                  "vgg13": {"MNIST": [99.60, 99.65], "KMNIST": [98.26, 97.94],
                            "FashionMNIST": [93.41, 93.45]},
                  "columns": ["baseline", "DLL"]},
    "e2": "a 1000-layer MLP on MNIST trains by DLL; backprop manages 15-25 layers",
    "fig_6_3": "Random Robin's per-layer stable rank is much closer to backprop's than "
               "bottom-up DLL's (VGG-13)",
    "fig_6_2": "accuracy rises with the subnet size k (MobileNetV2, CIFAR-10, overlap k-1)",
}


# ----------------------------------------------------------------- configs

def _config(dataset: str, model: dict, *, num_steps: int, replicas: int, batch_size: int,
            lr: float, eval_every: int, steps_per_call: int, data_dir: str = "",
            layerwise: Optional[dict] = None, seed: int = 0):
    """A loop config: ``dataset`` split 90/10 into training and validation,
    Adam with a cosine schedule (per stage), data on the device, ``replicas``
    seeds; ``layerwise=None`` is end-to-end backprop (the supervised task).
    Evaluations every ``eval_every`` steps (0: none) and, layer-wise, where
    each stage ends."""
    import ml_collections
    train_split, validation_split = VALIDATION
    config = ml_collections.ConfigDict()
    config.seed = seed
    config.task = "supervised" if layerwise is None else "layerwise"
    config.dataset = ml_collections.ConfigDict(dict(
        name=dataset, data_dir=data_dir, batch_size=batch_size, eval_batch_size=1000,
        on_device="on", device_budget_mb=1024, train_split=train_split, eval_split="test"))
    config.model = ml_collections.ConfigDict(dict(model))
    config.loss = ml_collections.ConfigDict(dict(name="softmax_cross_entropy",
                                                 label_smoothing=0.0))
    config.optim = ml_collections.ConfigDict(dict(
        name="adam", lr=lr, schedule="cosine", warmup_steps=0, weight_decay=0.0,
        grad_clip_norm=0.0, transforms=()))
    config.train = ml_collections.ConfigDict(dict(
        steps_per_call=steps_per_call, num_replicas=replicas, num_steps=num_steps,
        num_epochs=0, log_every=eval_every, eval_every=eval_every,
        eval_at_stage_end=layerwise is not None,
        checkpoint_every=0, keep_checkpoints=1, spectrum_every=0, spectrum_layers=(),
        spectrum_examples=360))
    if layerwise is not None:
        config.layerwise = ml_collections.ConfigDict(
            {"validation_split": validation_split, **layerwise})
    return config


def shapes_config(layerwise: Optional[dict], *, num_steps: int, replicas: int,
                  eval_every: int, data_dir: str = "", dataset: str = "shapes_small"):
    """The small CNN on ``dataset`` (default ``shapes_small``; the table's
    digits rows use the same recipe) with ``configs/supervised_shapes.py:small``'s
    optimiser (Adam 2e-3, cosine, batch 128), one step per call (XLA:CPU
    runs convolutions in a scan slowly, ``neurojax.train.program``)."""
    return _config(dataset, CNN, num_steps=num_steps, replicas=replicas,
                   batch_size=128, lr=2e-3, eval_every=eval_every, steps_per_call=1,
                   data_dir=data_dir, layerwise=layerwise)


def digits_config(depth: int, width: int, layerwise: Optional[dict], *, num_steps: int,
                  replicas: int, eval_every: int, data_dir: str = "", lr: float = 1e-3):
    """A ReLU MLP of ``depth`` hidden layers of ``width`` on the digits,
    ``configs/supervised_digits.py``'s optimiser (Adam, cosine, batch 64)."""
    model = dict(name="mlp", widths=(width,) * depth, activation="relu", dtype="float32")
    return _config("digits", model, num_steps=num_steps, replicas=replicas, batch_size=64,
                   lr=lr, eval_every=eval_every,
                   steps_per_call=min(eval_every or num_steps, 500), data_dir=data_dir,
                   layerwise=layerwise)


# ------------------------------------------------------------------ parts

TABLE_METHODS = ("backprop", "dll_pooled_layer", "random_robin", "dll", "dll_flat_layer",
                 "dll_flat_layer_e1")
#: E1's DLL budget: layers 1-4 get 30/40/50/60 epochs (180 in all) against the
#: baseline's 100, i.e. 1.8x its steps, growing about 1.26x a layer (30 * 1.26^3 = 60)
E1_STEPS_FACTOR = 1.26
E1_BUDGET = 1.8
#: the digits rows (Table 6.1 is on MNIST-like data, where every method nears
#: its ceiling): the CNN-free variants that need no decision block
DIGITS_TABLE_METHODS = ("backprop", "dll_flat_layer", "dll_flat_layer_e1")


def _table_methods(n: int, num_blocks: int, rounds: int) -> dict:
    """``{method: (config.layerwise or None, eval_every, num_steps)}`` for a
    table with ``n`` backprop steps (module docstring)."""
    block = dict(head="block", head_channels=(128,))  # Sec. 6.7's decision block
    stage = n // num_blocks
    return {
        "backprop": (None, n, n),
        # the library's decision layer (global average pool + affine map)
        "dll_pooled_layer": (dict(method="dll", head="layer"), stage, n),
        "random_robin": (dict(method="dll", rounds=rounds, random_order=True, **block),
                         n // (num_blocks * rounds), n),
        "dll": (dict(method="dll", **block), stage, n),
        # Algorithm 3's fully connected decision layer on the flattened block
        # output (E1's "1 affine layer"), the steps split evenly ...
        "dll_flat_layer": (dict(method="dll", head="flat"), stage, n),
        # ... and with E1's budget: 1.8x the steps, growing with the layer
        # (read out where each stage ends)
        "dll_flat_layer_e1": (dict(method="dll", head="flat", steps_factor=E1_STEPS_FACTOR),
                              0, int(round(E1_BUDGET * n))),
    }


def _table_runs(dataset: str, methods: Sequence[str], n: int, replicas: int, rounds: int,
                workdir: str, data_dir: str, *, stable_ranks: bool, tag: str = "") -> dict:
    """The runs of ``methods`` on ``dataset`` (``n`` backprop steps; ``tag``
    names their work directories), their differences from backprop and
    (``stable_ranks``) Fig. 6.3's ranks."""
    num_blocks = len(CNN["widths"]) + 1
    specs = _table_methods(n, num_blocks, rounds)
    runs, ranks = {}, {}
    for name in methods:
        layerwise, eval_every, steps = specs[name]
        config = shapes_config(layerwise, num_steps=steps, replicas=replicas,
                               eval_every=eval_every, data_dir=data_dir, dataset=dataset)
        prefix = "table" if dataset == "shapes_small" else f"table_{dataset}"
        run = train_run(config, os.path.join(workdir, f"{prefix}{tag}_{name}"))
        network = spread(network_accuracy(config, run["params"]))
        if stable_ranks:
            ranks[name] = layers_stable_rank(run["params"], replicas, CNN_LAYERS)
            if name == "backprop":
                ranks["init"] = init_stable_rank(config, CNN_LAYERS)
        runs[name] = dict(summarize(run), network=network)
        print(f"table/{dataset}{tag}/{name}: network {network['mean']:.4f} +- "
              f"{network['std']:.4f}, last read-out {runs[name]['final']['mean']:.4f} "
              f"+- {runs[name]['final']['std']:.4f} ({run['wall_seconds']:.0f} s)", flush=True)
    base = runs["backprop"]["network"]["per_seed"]
    diffs = {}
    for name in [m for m in methods if m != "backprop"]:
        diffs[f"{name}_network"] = paired_difference(runs[name]["network"]["per_seed"], base)
        diffs[f"{name}_peak"] = paired_difference(runs[name]["peak"]["per_seed"], base)
    out = {"runs": runs, "difference_vs_backprop": diffs,
           "num_steps": {name: specs[name][2] for name in methods}}
    if stable_ranks:
        out["stable_rank"] = ranks
    return out


def run_table(workdir: str, *, quick: bool = False, data_dir: str = "",
              methods: Sequence[str] = TABLE_METHODS) -> dict:
    """Table 6.1's analogue and Fig. 6.3's stable ranks (module docstring),
    for ``methods`` (a subset of ``TABLE_METHODS`` with 'backprop') on the
    shapes, and those of ``DIGITS_TABLE_METHODS`` among them on the digits."""
    if "backprop" not in methods or any(m not in TABLE_METHODS for m in methods):
        raise ValueError(f"methods must include 'backprop' and come from {TABLE_METHODS}, "
                         f"got {list(methods)}")
    size = SIZES["quick" if quick else "full"]["table"]
    n, reps, rounds = size["num_steps"], size["replicas"], size["rounds"]
    shapes = _table_runs("shapes_small", methods, n, reps, rounds, workdir, data_dir,
                         stable_ranks=True)
    head = ("dll, random_robin: decision block (stride-2 conv 128, ReLU, global average "
            "pool, affine); dll_pooled_layer: decision layer (global average pool, "
            "affine); dll_flat_layer(_e1): decision layer (affine on the flattened "
            "block output)")
    out = {"setting": {"dataset": "shapes_small (train[:90%] / validation train[90%:] / "
                                  "test 2000)", "model": CNN, "num_steps": n,
                       "epochs": n * 128 / 9000, "replicas": reps,
                       "optimizer": "adam 2e-3, cosine per stage, batch 128",
                       "random_robin_rounds": rounds, "head": head,
                       "e1_budget": f"dll_flat_layer_e1: {E1_BUDGET} x the steps, stage i's "
                                    f"share ~ {E1_STEPS_FACTOR}^i (E1: 30/40/50/60 epochs "
                                    f"against 100)"},
           **shapes}
    digits_methods = [m for m in DIGITS_TABLE_METHODS if m in methods]
    if len(digits_methods) > 1:
        nd = size["digits_steps"]
        out["digits"] = {"setting": {"dataset": "digits 8x8 (train[:90%] / validation "
                                                "train[90%:] / test 360)",
                                     "model": CNN, "num_steps": nd,
                                     "epochs": nd * 128 / 1293, "replicas": reps,
                                     "optimizer": "adam 2e-3, cosine per stage, batch 128"},
                         **_table_runs("digits", digits_methods, nd, reps, rounds, workdir,
                                       data_dir, stable_ranks=False)}
        out["digits"]["budget_sweep"] = _budget_sweep(
            "digits", nd, size["digits_budgets"], reps, rounds, workdir, data_dir)
    if "dll_flat_layer" in methods:
        out["budget_sweep"] = _budget_sweep("shapes_small", n, size["shapes_budgets"], reps,
                                            rounds, workdir, data_dir)
    return out


def _budget_sweep(dataset: str, n: int, budgets: Sequence[int], reps: int, rounds: int,
                  workdir: str, data_dir: str) -> dict:
    """The gap at matched steps as both methods near convergence: backprop
    and flat DLL at ``m * n`` steps for each ``m`` in ``budgets``."""
    sweep = {}
    for m in budgets:
        runs = _table_runs(dataset, ("backprop", "dll_flat_layer"), m * n, reps, rounds,
                           workdir, data_dir, stable_ranks=False, tag=f"_x{m}")
        sweep[str(m)] = {"num_steps": m * n,
                         **{k: v["network"] for k, v in runs["runs"].items()},
                         "difference": runs["difference_vs_backprop"]["dll_flat_layer_network"]}
    return sweep


def run_depth(workdir: str, *, quick: bool = False, data_dir: str = "") -> dict:
    """E2: DLL of a deep narrow MLP read out after every block
    (``neurojax.analysis.layerwise_depth``), and end-to-end backprop through
    the loop at each depth of the sweep."""
    from neurojax.analysis import layerwise_depth
    size = SIZES["quick" if quick else "full"]["depth"]
    depths, width, reps = size["depths"], size["width"], size["replicas"]
    deepest = max(size["dll_depth"], max(depths))
    dll = layerwise_depth.dll_mlp(layerwise_depth.load_digits(data_dir), depth=deepest,
                                  width=width, steps=size["stage_steps"], replicas=reps,
                                  lr=size["lr"])
    curve = {b + 1: spread(v) for b, v in enumerate(dll["test"])}
    best = np.argmax(np.asarray(dll["validation"]), axis=0)  # per seed
    peak = [dll["test"][int(b)][r] for r, b in enumerate(best)]
    print(f"depth/dll {deepest}: {dll['seconds']:.0f} s", flush=True)
    backprop = {}
    n = size["backprop_steps"]
    for d in depths:
        config = digits_config(d, width, None, num_steps=n, replicas=reps, eval_every=n,
                               data_dir=data_dir, lr=size["lr"])
        run = train_run(config, os.path.join(workdir, f"depth_backprop_{d}"))
        backprop[str(d)] = {"final": spread(run["final_accuracy"]), "num_steps": n,
                            "wall_seconds": run["wall_seconds"]}
        print(f"depth/backprop {d}: {backprop[str(d)]['final']['mean']:.4f} "
              f"({run['wall_seconds']:.0f} s)", flush=True)
    return {"setting": {"dataset": "digits (train[:90%] / validation train[90%:] / test 360)",
                        "width": width, "activation": "relu", "depths": list(depths),
                        "dll_depth": deepest, "dll_steps_per_block": size["stage_steps"],
                        "backprop_steps": n, "replicas": reps,
                        "optimizer": f"adam {size['lr']}, cosine per stage, batch 64"},
            "dll_readout": {str(b): v for b, v in curve.items()},
            "dll_at_depth": {str(d): curve[d] for d in depths},
            "dll_validation": {str(b + 1): spread(v) for b, v in enumerate(dll["validation"])},
            "dll_train_loss": {str(b + 1): spread(v) for b, v in enumerate(dll["train_loss"])},
            "dll_peak": {"accuracy": spread(peak), "readout_block": (best + 1).tolist()},
            "dll_wall_seconds": dll["seconds"], "backprop": backprop}


def _segment_run(part: str, k: int, workdir: str, replicas: int, data_dir: str, *,
                 steps_per_subnet: int = 0, total_steps: int = 0) -> dict:
    """One segment-wise run of the small CNN (window ``k``, step 1): each
    subnet ``steps_per_subnet`` steps (read out every subnet), or
    ``total_steps`` split evenly over the subnets (read out where each ends)."""
    num_blocks = len(CNN["widths"]) + 1
    stages = len(lw.stage_windows(num_blocks, "segment", window=k, step=1))
    num_steps = stages * steps_per_subnet if steps_per_subnet else total_steps
    config = shapes_config(dict(method="segment", window=k, step=1), num_steps=num_steps,
                           replicas=replicas, eval_every=steps_per_subnet, data_dir=data_dir)
    run = summarize(train_run(config, os.path.join(workdir, f"{part}_{k}")))
    run["num_stages"] = stages
    print(f"{part}/{k}: final {run['final']['mean']:.4f} ({run['wall_seconds']:.0f} s)",
          flush=True)
    return run


def run_window(workdir: str, *, quick: bool = False, data_dir: str = "") -> dict:
    """Fig. 6.2: segment-wise learning of the small CNN, window 1..4, step 1,
    the same steps per subnet."""
    size = SIZES["quick" if quick else "full"]["window"]
    s, reps = size["stage_steps"], size["replicas"]
    out = {str(k): _segment_run("window", k, workdir, reps, data_dir, steps_per_subnet=s)
           for k in size["windows"]}
    return {"setting": {"dataset": "shapes_small", "model": CNN, "steps_per_subnet": s,
                        "epochs_per_subnet": s * 128 / 9000, "replicas": reps,
                        "step": 1, "overlap": "window - 1"},
            "windows": out}


def run_window_total(workdir: str, *, quick: bool = False, data_dir: str = "") -> dict:
    """Segment-wise windows at the table's total steps, split over the subnets
    (module docstring, ``window_total``)."""
    size = SIZES["quick" if quick else "full"]["window_total"]
    n, reps = size["num_steps"], size["replicas"]
    out = {str(k): _segment_run("window_total", k, workdir, reps, data_dir, total_steps=n)
           for k in size["windows"]}
    return {"setting": {"dataset": "shapes_small", "model": CNN, "num_steps": n,
                        "replicas": reps, "step": 1, "overlap": "window - 1"},
            "windows": out}


RUNNERS = {"table": run_table, "depth": run_depth, "window": run_window,
           "window_total": run_window_total}


def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    """``parts`` as a tuple; ``ValueError`` naming the known ones otherwise."""
    return outputs.check_parts(parts, PARTS)


def run(outdir: str, *, quick: bool = False, parts: Sequence[str] = PARTS,
        data_dir: str = "", workdir: Optional[str] = None,
        table_methods: Sequence[str] = TABLE_METHODS) -> dict:
    """Runs ``parts`` (loop runs under ``workdir``, a temporary directory by
    default) and writes ``layerwise_<part>.png`` and
    ``layerwise_{full,quick}.json`` into ``outdir`` (keeping the other parts
    of an earlier JSON there); returns the results."""
    from neurojax.analysis import layerwise_figures as figures
    parts = check_parts(parts)
    pathlib.Path(outdir).mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "full"
    results: dict = {"quick": quick, "sizes": SIZES[mode], "thesis": THESIS, "parts": {},
                     "seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts:
            tic = time.time()
            extra = {"methods": tuple(table_methods)} if part == "table" else {}
            result = RUNNERS[part](os.path.join(workdir or tmp, mode), quick=quick,
                                   data_dir=data_dir, **extra)
            results["parts"][part] = jsonable(result)
            results["seconds"][part] = round(time.time() - tic, 1)
            figures.PLOTS[part](result, os.path.join(outdir, f"layerwise_{part}.png"))
    command = ("python -m neurojax.analysis.layerwise --outdir DIR"
               + (" --quick" if quick else "") + f" --parts {','.join(parts)}"
               + ("" if tuple(table_methods) == TABLE_METHODS or "table" not in parts
                  else f" --table_methods {','.join(table_methods)}"))
    results["commands"] = {part: command for part in parts}
    results["machine"] = (f"{jax.devices()[0].platform}, {os.cpu_count()} cores shared with "
                          f"other jobs (seconds are loaded wall clock)")
    results["jax"] = jax.__version__
    path = os.path.join(outdir, f"layerwise_{mode}.json")
    results = outputs.merge_parts(path, results, PARTS)
    added = _with_window_one(results)
    equal_total = _window_total_with_ends(results["parts"])
    if "window" in results["parts"] and (added or equal_total):
        figures.plot_window(results["parts"]["window"],
                            os.path.join(outdir, "layerwise_window.png"), equal_total)
    if equal_total:
        results["window_total_with_ends"] = jsonable(
            {"num_steps": equal_total["num_steps"],
             "final": {k: w["final"] for k, w in equal_total["windows"].items()},
             "step_differences": equal_total["step_differences"],
             "source": "window_total's windows, window 1 the table's dll_pooled_layer "
                       "run and the last window its backprop run"})
    write_json(results, path, digits=6)
    return results


def _with_window_one(results: dict) -> bool:
    """Window 1 of the segment-wise sweep (decision layers) is DLL: with the
    table's DLL run with decision layers at the same steps per stage and
    seeds, add it as window 1 (True if added)."""
    parts = results["parts"]
    if "window" not in parts or "table" not in parts or "1" in parts["window"]["windows"]:
        return False
    table, window = parts["table"]["setting"], parts["window"]["setting"]
    num_blocks = len(CNN["widths"]) + 1
    if table["num_steps"] != window["steps_per_subnet"] * num_blocks \
            or table["replicas"] != window["replicas"]:
        return False
    dll = dict(parts["table"]["runs"]["dll_pooled_layer"], num_stages=num_blocks,
               source="the table part's dll_pooled_layer run (the same program)")
    parts["window"]["windows"] = {"1": dll, **parts["window"]["windows"]}
    return True


def _window_total_with_ends(parts: dict) -> Optional[dict]:
    """``window_total``'s windows with window 1 (the table's
    ``dll_pooled_layer`` run) and window num_blocks (the table's backprop run)
    when the table ran at the same total steps and seeds, and each window's
    seed-paired difference from the next smaller one (``step_differences``,
    key 'b-a'); else ``None``."""
    if "window_total" not in parts or "table" not in parts:
        return None
    table, total = parts["table"], parts["window_total"]
    n, reps = total["setting"]["num_steps"], total["setting"]["replicas"]
    if table["setting"]["num_steps"] != n or table["setting"]["replicas"] != reps:
        return None
    runs = table["runs"]
    if "dll_pooled_layer" not in runs or "backprop" not in runs:
        return None
    backprop = dict(runs["backprop"], final=runs["backprop"]["network"])
    windows = {"1": runs["dll_pooled_layer"], **total["windows"],
               str(len(CNN["widths"]) + 1): backprop}
    ks = sorted(int(k) for k in windows)
    steps = {f"{b}-{a}": paired_difference(windows[str(b)]["final"]["per_seed"],
                                           windows[str(a)]["final"]["per_seed"])
             for a, b in zip(ks, ks[1:])}
    return {"windows": windows, "num_steps": n, "step_differences": steps}


def main(argv: Sequence[str]) -> None:
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
    f = flags.FLAGS
    try:
        parts = check_parts(f.parts)
    except ValueError as e:
        raise app.UsageError(str(e))
    run(f.outdir, quick=f.quick, parts=parts, data_dir=f.data_dir, workdir=f.workdir,
        table_methods=f.table_methods)


def _define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("outdir", None, "Where the PNGs and layerwise_{full,quick}.json go.")
    flags.DEFINE_bool("quick", False, "CI size (seconds per part; numbers not meaningful).")
    flags.DEFINE_list("parts", list(PARTS), f"Which parts, comma-separated: {list(PARTS)}.")
    flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = the library's default).")
    flags.DEFINE_string("workdir", None, "Keep the loop runs here (default: a temporary "
                        "directory, removed at the end); finished runs there are reused.")
    flags.DEFINE_list("table_methods", list(TABLE_METHODS), "The table part's methods.")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
