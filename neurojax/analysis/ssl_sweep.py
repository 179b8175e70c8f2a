"""The sweep that chose the CPU-scale Barlow Twins task (issue 22).

A thin recipe over the library: every run is ``train_and_evaluate`` of the
base SSL config (``configs/ssl_shapes.py``) with a named setting's dotted
overrides, trained for a number of *steps* and probed once at the end (ridge
on standardised encoder features, its regulariser chosen on a held-out 20%
of the probe's training features, never on the test set; and kNN). Steps,
not wall time, are the sweep's unit because the machine it ran on was
shared: the training seconds of each run are recorded as *loaded* seconds,
and a quiet-machine budget is converted to steps with a step-time ratio
measured in the same run (``--timing``): the chosen setting's step against
the reference setting's step, timed back to back, times the reference's
known 15 s per epoch of 39 steps on 2 quiet cores.

Baselines under the same probe: ``random`` trains with a learning rate of
1e-12 (the weights stay at their initialisation; BatchNorm's running
statistics adapt to the data, as in any trained run), and
``supervised_ceiling`` trains the same encoder with a linear classifier
(``configs/supervised_shapes.py`` with ``hidden=None`` and BatchNorm) and
probes its flattened conv features with the same ridge probe.

Run:
    python -m neurojax.analysis.ssl_sweep --settings=reference,color_strong --steps=120 \
        --out benchmarks/results/ssl_sweep.json --workdir /tmp/ssl_sweep

    python -m neurojax.analysis.ssl_sweep --timing=res16_strong --steps=15
    python -m neurojax.analysis.ssl_sweep --supervised_steps=300
    # finished launch.run runs of one setting over seeds, with their summary
    python -m neurojax.analysis.ssl_sweep --collect=DIR0,DIR1,DIR2 --collect_name=NAME \
        --collect_wall_seconds=W0,W1,W2 --collect_command="python -m launch.run ..."

Results so far (seed 0, short runs; 60% not reached): the docstring of
``configs/ssl_shapes.py`` and ``benchmarks/results/ssl_sweep.json``.

Each run appends a record (setting, overrides, seed, steps, images seen, ridge/kNN
accuracy, alpha, final loss, loaded training seconds) to the JSON; a record
with the same (setting, steps, seed, probe size) is replaced.
"""
import copy
import json
import os
import sys
import time
from typing import Any, Mapping

import numpy as np

from neurojax.train.config import apply_overrides

#: The issue's reference: ``configs/ssl_shapes.py`` (32x32 shapes, small CNN
#: with BatchNorm, BT d = 256, batch 256, Adam 1e-3, crop scale (0.2, 1)) on
#: 20% of the training set (10,000 images).
REFERENCE: dict[str, Any] = {"dataset.fraction": 0.2}
#: Quiet-machine time of the reference: 15 s per epoch of 10,000 // 256 = 39 steps.
REFERENCE_QUIET_SECONDS_PER_STEP = 15.0 / 39

_COLOR_STRONG = {"views.augment.brightness": 0.8, "views.augment.contrast": 0.8,
                 "views.augment.saturation": 0.8, "views.augment.hue": 0.4}

#: name -> dotted overrides on top of ``REFERENCE``.
SETTINGS: dict[str, dict[str, Any]] = {
    "reference": {},
    "random": {"optim.lr": 1e-12},
    "color_strong": dict(_COLOR_STRONG),
    "gray50": {"views.augment.grayscale_p": 0.5},
    "color_strong_gray50": {**_COLOR_STRONG, "views.augment.grayscale_p": 0.5},
    "crop08": {"views.augment.crop_scale": (0.08, 1.0)},
    "crop40": {"views.augment.crop_scale": (0.4, 1.0)},
    "lr3e-3": {"optim.lr": 3e-3},
    "lr1e-2": {"optim.lr": 1e-2},
    "b128": {"dataset.batch_size": 128},
    "b64": {"dataset.batch_size": 64},
    "gpool": {"model.global_pool": True},
    # 16x16 renders of the same generator (``shapes_small``: 10,000 training
    # images, 2,000 test images); ``views.size`` alone needs a pooled encoder
    "res16": {"dataset.name": "shapes_small", "dataset.fraction": 1.0},
    "res16_gpool": {"views.size": 16, "model.global_pool": True},
    "res16_random": {"dataset.name": "shapes_small", "dataset.fraction": 1.0, "optim.lr": 1e-12},
    # the recipe of configs/ssl_shapes.py:cpu
    "res16_strong": {"dataset.name": "shapes_small", "dataset.fraction": 1.0, **_COLOR_STRONG,
                     "views.augment.grayscale_p": 0.5, "optim.lr": 3e-3},
    # the :cpu recipe at 32x32 on all 50,000 training images (issue 22: the
    # 16x16 set's supervised ceiling is ~58% under the ridge probe)
    "res32_strong_full": {"dataset.fraction": 1.0, **_COLOR_STRONG,
                          "views.augment.grayscale_p": 0.5, "optim.lr": 3e-3},
    "wide": {"model.widths": (64, 128, 256)},
    "pdim1024": {"projector.output_dim": 1024},
    "pdim64": {"projector.output_dim": 64},
    "lars": {"optim.name": "lars", "optim.lr": 0.2, "optim.weight_decay": 1.5e-6},
    "full_data": {"dataset.fraction": 1.0},
}


def sweep_config(base, overrides: Mapping[str, Any], *, steps: int, seed: int = 0,
                 probe_train_examples: int = 10_000, probe_test_examples: int = 0,
                 eval_every: int = 0):
    """A copy of ``base`` with ``REFERENCE`` and ``overrides`` (dotted keys)
    applied, trained for ``steps`` steps with one evaluation at the end (or
    every ``eval_every`` steps) and no checkpoints."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    config = copy.deepcopy(base)  # keeps loss.lambd following projector.output_dim
    apply_overrides(config, {**REFERENCE, **overrides})
    config.seed = seed
    config.train.num_epochs = 0
    config.train.num_steps = steps
    config.train.log_every = min(20, steps)
    config.train.eval_every = eval_every or steps
    config.train.checkpoint_every = 0
    config.probe.accuracy_thresholds = ()
    config.probe.max_train_examples = probe_train_examples
    config.probe.max_test_examples = probe_test_examples
    return config


def run_setting(base, name: str, overrides: Mapping[str, Any], *, steps: int, workdir: str,
                seed: int = 0, probe_train_examples: int = 10_000,
                probe_test_examples: int = 0, eval_every: int = 0) -> dict:
    """Trains one setting; its record (see the module docstring)."""
    from neurojax.train.loop import train_and_evaluate
    from neurojax.train.metrics_log import read_metrics
    config = sweep_config(base, overrides, steps=steps, seed=seed,
                          probe_train_examples=probe_train_examples,
                          probe_test_examples=probe_test_examples, eval_every=eval_every)
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    train_and_evaluate(config, workdir, progress=False)
    record = run_record(workdir, name, overrides, seed=seed, config=config)
    record["wall_seconds_loaded"] = round(time.time() - start, 1)
    return record


def run_record(workdir: str, name: str, overrides: Mapping[str, Any], *, seed: int,
               config) -> dict:
    """The record of a finished SSL run in ``workdir`` (its metrics.jsonl):
    the final evaluation, the eval curve (ridge, kNN, alpha) and the loop's
    training clock."""
    from neurojax.train.metrics_log import read_metrics
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    if not evals:
        raise ValueError(f"workdir {workdir!r} holds no evaluation record")
    final = evals[-1]
    steps = int(final["step"])
    return {
        "setting": name, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in overrides.items()},
        "seed": seed, "steps": steps,
        "batch_size": int(config.dataset.batch_size),
        "images_seen": steps * int(config.dataset.batch_size),
        "probe_train_examples": int(config.probe.max_train_examples),
        "ridge_accuracy": final.get("ridge_accuracy"), "knn_accuracy": final.get("knn_accuracy"),
        "alpha": final.get("alpha"), "effective_rank": final.get("effective_rank"),
        "final_loss": float(np.mean([r["loss"] for r in train[-3:]])) if train else None,
        "curve": [{"step": int(r["step"]), "ridge_accuracy": r.get("ridge_accuracy"),
                   "knn_accuracy": r.get("knn_accuracy"), "alpha": r.get("alpha"),
                   "train_seconds_loaded": round(float(r["train_seconds"]), 1)}
                  for r in evals],
        # the loop's clock: training only (compile and evaluation excluded)
        "train_seconds_loaded": round(float(max(r["train_seconds"] for r in train)), 1)
        if train else None,
        "compile_seconds_loaded": round(float(train[-1]["compile_seconds"]), 1) if train else None,
    }


def collect_run(workdir: str, name: str) -> dict:
    """The record of a run that ``python -m launch.run`` made in ``workdir``
    (its config.json and metrics.jsonl), as :func:`run_setting` records one."""
    import ml_collections
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"collect: {workdir!r} has no config.json (not a launch.run workdir)")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    return run_record(workdir, name, {}, seed=int(config.seed), config=config)


SUPERVISED_AUGMENT = ("none", "ssl_views", "crop_flip")


def seed_summary(records: list[dict], *, wall_seconds=None) -> dict:
    """Ridge and kNN accuracy (with the 95% interval of their means,
    :func:`neurojax.analysis.outputs.mean_interval`), steps reached and
    training seconds of one setting's runs over seeds
    (:func:`~neurojax.analysis.outputs.spread` of each), with the wall-clock
    seconds of the commands when given."""
    from neurojax.analysis.outputs import mean_interval, spread
    names = {r["setting"] for r in records}
    if len(names) != 1 or len({r["seed"] for r in records}) != len(records):
        raise ValueError(f"records must be one setting's runs with distinct seeds, got "
                         f"{[(r['setting'], r['seed']) for r in records]}")
    out = {"setting": names.pop(), "seeds": [r["seed"] for r in records]}
    for key in ("ridge_accuracy", "knn_accuracy"):
        out[key] = mean_interval([r[key] for r in records])
    for key in ("steps", "train_seconds_loaded"):
        out[key] = spread([r[key] for r in records])
    if wall_seconds is not None:
        if len(wall_seconds) != len(records):
            raise ValueError(f"wall_seconds must give one value per run ({len(records)}), "
                             f"got {list(wall_seconds)}")
        out["wall_seconds"] = spread([float(w) for w in wall_seconds])
    return out


def supervised_config(base, *, steps: int, ssl_config, seed: int = 0, augment: str = "none"):
    """``base`` (``configs/supervised_shapes.py``) with the SSL encoder
    (``ssl_config.model``'s widths and BatchNorm, no hidden layer: a linear
    classifier on the flattened conv features), the SSL run's dataset and
    fraction, trained ``steps`` steps with one evaluation at the end.

    ``augment``: 'none'; 'ssl_views', one view per image drawn with the SSL
    config's own recipe (``ssl_config.views``: crop, flip, colour jitter,
    grayscale, normalisation); 'crop_flip', that recipe without its colour
    steps (random resized crop and flip, normalised)."""
    if augment not in SUPERVISED_AUGMENT:
        raise ValueError(f"augment must be one of {SUPERVISED_AUGMENT}, got {augment!r}")
    config = copy.deepcopy(base)
    config.unlock()
    if augment != "none":
        overrides = dict(ssl_config.views.augment)
        if augment == "crop_flip":
            overrides.update(jitter_p=0.0, grayscale_p=0.0)
        config.augment = {"recipe": ssl_config.views.get("recipe", "cifar"),
                          "size": ssl_config.views.get("size", 0), "overrides": overrides}
    config.seed = seed
    config.dataset.name = ssl_config.dataset.name
    config.dataset.data_dir = ssl_config.dataset.data_dir
    config.dataset.fraction = ssl_config.dataset.fraction
    config.model.widths = tuple(ssl_config.model.widths)
    config.model.batch_norm = bool(ssl_config.model.get("batch_norm", False))
    config.model.hidden = None
    config.train.num_epochs = 0
    config.train.num_steps = steps
    config.train.eval_every = steps
    config.train.checkpoint_every = 0
    return config


def probe_state(model, variables, config, *, stop: int, probe_train_examples: int) -> dict:
    """Ridge and kNN accuracy of ``model``'s features after block ``stop``
    (flattened; ``model.apply(..., stop=stop)``) on the raw [0, 1] images of
    ``config.dataset`` (presented as the model was trained when the config
    has an ``augment`` recipe: resized and normalised,
    ``neurojax.train.augmentation.eval_inputs_fn``), with the SSL probe's
    settings (``config.probe`` if the config has one, else the SSL defaults:
    ridge with its held-out choice of the regulariser, kNN k = 200,
    temperature 0.1)."""
    from neurojax.data.on_device import load_split_arrays
    from neurojax.metrics import probes
    from neurojax.metrics.features import gather_features, make_features_step
    ds = config.dataset
    data_dir = ds.get("data_dir") or None
    train = load_split_arrays(ds.name, "train", data_dir=data_dir,
                              max_examples=probe_train_examples)
    test = load_split_arrays(ds.name, "test", data_dir=data_dir)

    from neurojax.train import augmentation
    recipe = augmentation.config_recipe(config, int(train["image"].shape[1]))
    inputs = (lambda x: x) if recipe is None else augmentation.eval_inputs_fn(recipe)

    def features(v, x):
        return model.apply(v, inputs(x), train=False, stop=stop).reshape(x.shape[0], -1)

    step = make_features_step(features)
    f_tr, f_te = (gather_features(step, variables, split["image"], batch_size=500)["features"]
                  for split in (train, test))
    num_classes = int(max(train["label"].max(), test["label"].max())) + 1
    ridge = probes.ridge_probe(f_tr, train["label"], f_te, test["label"],
                               num_classes=num_classes, seed=config.seed)
    knn = probes.knn_probe(f_tr, train["label"], f_te, test["label"], k=200,
                           temperature=0.1, num_classes=num_classes)
    return {"ridge_accuracy": float(ridge.test_accuracy), "knn_accuracy": float(knn)}


def run_supervised(base, ssl_base, *, steps: int, workdir: str, seed: int = 0,
                   probe_train_examples: int = 10_000, setting: str = "reference",
                   augment: str = "none") -> dict:
    """The supervised ceiling under the SSL probe, on the dataset and encoder
    of the SSL sweep setting ``setting`` (``augment``: see
    :func:`supervised_config`): its record."""
    from neurojax.train.loop import train_and_evaluate
    ssl_config = sweep_config(ssl_base, SETTINGS[setting], steps=1)
    config = supervised_config(base, steps=steps, ssl_config=ssl_config, seed=seed,
                               augment=augment)
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    result = train_and_evaluate(config, workdir, progress=False)
    from neurojax.models import get_model
    model = get_model("small_cnn", **{k: v for k, v in config.model.items() if k != "name"})
    variables = {"params": result.state.params, **result.state.model_state}
    out = probe_state(model, variables, config, stop=len(config.model.widths),
                      probe_train_examples=probe_train_examples)
    name = "supervised_ceiling" + ("" if setting == "reference" else f"_{setting}")
    return {"setting": name + ("" if augment == "none" else f"_{augment}"),
            "overrides": {"ssl_setting": setting, "dataset.name": config.dataset.name,
                          "dataset.fraction": config.dataset.fraction, "augment": augment},
            "seed": seed,
            "steps": int(result.num_steps), "batch_size": int(config.dataset.batch_size),
            "images_seen": int(result.num_steps) * int(config.dataset.batch_size),
            "probe_train_examples": probe_train_examples,
            "classifier_accuracy": float(result.eval_metrics["accuracy"]), **out,
            "train_seconds_loaded": round(float(result.seconds), 1),
            "wall_seconds_loaded": round(time.time() - start, 1)}


def quiet_step_budget(quiet_seconds: float, step_time_ratio: float) -> int:
    """Steps of a setting that fit ``quiet_seconds`` on 2 quiet cores:
    ``quiet_seconds / (REFERENCE_QUIET_SECONDS_PER_STEP * step_time_ratio)``,
    rounded down, where ``step_time_ratio`` is the setting's training seconds
    per step over the reference's, measured back to back."""
    for name, value in (("quiet_seconds", quiet_seconds), ("step_time_ratio", step_time_ratio)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return int(quiet_seconds / (REFERENCE_QUIET_SECONDS_PER_STEP * step_time_ratio))


def step_time_ratio(base, setting: str, *, steps: int, repeats: int, workdir: str) -> dict:
    """Training seconds per step of ``setting`` over the reference's, timed
    back to back (reference, setting, reference, ...; ``repeats`` pairs of
    ``steps``-step runs, compile and evaluation excluded by the loop's
    clock); the ratio of the medians, each pair's ratio, and the quiet
    15-minute step budget it implies."""
    per_step = {"reference": [], setting: []}
    for i in range(repeats):
        for name in ("reference", setting):
            record = run_setting(base, name, SETTINGS[name], steps=steps,
                                 workdir=os.path.join(workdir, f"timing_{name}_{i}"),
                                 probe_train_examples=500, probe_test_examples=500)
            per_step[name].append(record["train_seconds_loaded"] / record["steps"])
    ratio = float(np.median(per_step[setting]) / np.median(per_step["reference"]))
    return {"setting": setting, "steps": steps, "loaded_seconds_per_step": per_step,
            "pair_ratios": [b / a for a, b in zip(per_step["reference"], per_step[setting])],
            "step_time_ratio": ratio, "quiet_15min_steps": quiet_step_budget(900.0, ratio)}


def merge_record(path: str, record: dict, *, section: str = "runs") -> dict:
    """Adds ``record`` to the list ``section`` of the JSON at ``path``
    (replacing one with the same setting, steps, seed and probe size; other
    sections are kept); returns the document written."""
    doc = {}
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
    key = ("setting", "steps", "seed", "probe_train_examples")
    rows = [r for r in doc.get(section, [])
            if tuple(r.get(k) for k in key) != tuple(record.get(k) for k in key)]
    doc[section] = rows + [record]
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc


def main(argv) -> None:
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    logging.set_verbosity(logging.WARNING)
    command = " ".join(["python -m neurojax.analysis.ssl_sweep", *sys.argv[1:]])
    unknown = [s for s in [*f.settings, *([f.timing] if f.timing else []),
                           f.supervised_setting] if s not in SETTINGS]
    if unknown:
        raise app.UsageError(f"unknown settings {unknown}; known: {sorted(SETTINGS)}")
    if f.timing:
        out = step_time_ratio(f.config, f.timing, steps=f.steps, repeats=f.timing_repeats,
                              workdir=f.workdir)
        merge_record(f.out, {**out, "command": command}, section="timing")
        print(json.dumps(out), flush=True)
        return
    if f.collect:
        records = [collect_run(d, f.collect_name) for d in f.collect]
        for record in records:
            merge_record(f.out, {**record, "command": f.collect_command or command})
            print(json.dumps({k: v for k, v in record.items() if k != "curve"}), flush=True)
        if len(records) > 1:
            walls = [float(w) for w in f.collect_wall_seconds] or None
            summary = {**seed_summary(records, wall_seconds=walls),
                       "command": f.collect_command or command, "collected_by": command}
            merge_record(f.out, summary, section="seed_summaries")
            print(json.dumps(summary), flush=True)
        return
    seeds = [int(s) for s in f.seeds]
    if f.supervised_steps:
        for seed in seeds:
            workdir = os.path.join(f.workdir, f"supervised_{f.supervised_setting}_"
                                   f"{f.supervised_augment}_{f.supervised_steps}_s{seed}")
            record = run_supervised(f.supervised_config, f.config, steps=f.supervised_steps,
                                    workdir=workdir, seed=seed, probe_train_examples=f.probe_train_examples,
                                    setting=f.supervised_setting,
                                    augment=f.supervised_augment)
            merge_record(f.out, {**record, "command": command})
            print(json.dumps(record), flush=True)
        return
    for name in f.settings:
        for seed in seeds:
            print(f"[ssl_sweep] {name} seed {seed}: {SETTINGS[name]} for {f.steps} steps",
                  flush=True)
            workdir = os.path.join(f.workdir, f"{name}_s{seed}_{f.steps}")
            record = run_setting(f.config, name, SETTINGS[name], steps=f.steps,
                                 workdir=workdir, seed=seed,
                                 probe_train_examples=f.probe_train_examples,
                                 eval_every=f.eval_every)
            merge_record(f.out, {**record, "command": command})
            print(json.dumps({k: v for k, v in record.items() if k != "curve"}), flush=True)


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags
    config_flags.DEFINE_config_file("config", "configs/ssl_shapes.py",
                                    "The sweep's base SSL config file[:arg].")
    flags.DEFINE_list("settings", ["reference"], f"Settings to run ({', '.join(SETTINGS)}).")
    flags.DEFINE_list("seeds", ["0"], "Seeds of each setting.")
    flags.DEFINE_integer("steps", 120, "Training steps per run.")
    flags.DEFINE_integer("eval_every", 0, "Probe every k steps (0: only at the end).")
    flags.DEFINE_integer("probe_train_examples", 10_000, "Probe training features.")
    flags.DEFINE_string("out", "benchmarks/results/ssl_sweep.json", "The JSON of records.")
    flags.DEFINE_string("workdir", "/tmp/ssl_sweep", "Where the runs' workdirs go.")
    flags.DEFINE_string("timing", "", "Time this setting's step against the reference's "
                        "(back to back, --steps each) instead of sweeping.")
    flags.DEFINE_integer("timing_repeats", 2, "Pairs of timed runs.")
    flags.DEFINE_integer("supervised_steps", 0, "Train the supervised ceiling this many "
                         "steps instead of sweeping.")
    flags.DEFINE_list("collect", [], "Record the finished launch.run workdirs DIR,... instead "
                      "of training (with --collect_name and --collect_command); with "
                      "several (one setting's seeds) also their seed summary.")
    flags.DEFINE_list("collect_wall_seconds", [], "The wall-clock seconds of the collected "
                      "commands, one per workdir, for the summary.")
    flags.DEFINE_string("collect_name", "cpu_task", "The collected run's setting name.")
    flags.DEFINE_string("collect_command", "", "The command that made the collected run.")
    flags.DEFINE_enum("supervised_augment", "none", SUPERVISED_AUGMENT,
                      "The supervised ceiling's training augmentation (supervised_config).")
    flags.DEFINE_string("supervised_setting", "reference",
                        "The SSL setting whose dataset and encoder the supervised ceiling uses.")
    config_flags.DEFINE_config_file("supervised_config", "configs/supervised_shapes.py",
                                    "The supervised ceiling's base config.")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
