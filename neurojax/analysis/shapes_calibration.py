"""How hard the procedural shapes are: raw pixels, a random encoder, a trained CNN.

Run:
    python -m neurojax.analysis.shapes_calibration --config_name=small --out /tmp/shapes_cal
    python -m neurojax.analysis.shapes_calibration --config_name=default --out /tmp/shapes_cal32

Writes to ``--out``:

- ``calibration.json``: test accuracies of
  - ``pixels_logistic``: multinomial logistic regression on standardised raw
    pixels: ``neurojax.metrics.linear_probe`` with the L2 penalty of
    scikit-learn's ``LogisticRegression(C=--logistic_c)``, 4000 Adam steps
    (see :func:`logistic_probe`);
  - ``pixels_knn``: k-nearest neighbours (``k=--knn_k``, Euclidean, uniform
    vote: ``neurojax.metrics.knn_probe(metric='euclidean')``) on raw pixels
    in [0, 1];
  - ``random_encoder_probe``: the same logistic probe on the standardised
    representation of a randomly initialised encoder with the supervised
    network's architecture (``small_cnn`` with ``num_classes=None``: the
    post-ReLU hidden layer a classifier head would see), and
    ``random_conv_probe`` on its last pooled conv features (both read in one
    pass by ``neurojax.metrics.gather_features``);
  - ``supervised``: the small CNN of ``configs/supervised_shapes.py``
    trained with ``neurojax.train.loop.train_and_evaluate``, with its eval
    accuracy after every evaluation (to show convergence) and wall time;
  plus the wall time of every part, the dataset's preparation time and the
  sizes used;
- ``examples.png``: a grid with one row per class, a few test images each;
- ``supervised/``: the training run's metrics, curves and checkpoints.

The splits are read whole with ``neurojax.data.on_device.load_split_arrays``
(the training loader's preprocessing). Both pixel baselines should stay near
chance (10%); the gap between the random encoder and the supervised network
is the room in which self-supervised methods are compared. Logistic probes
are fitted on at most ``--probe_train_examples`` training examples (10k:
4000 steps are then 200 epochs, the thesis's probe length); kNN uses the
whole training split, with k=10 (on raw 16x16 pixels of a draft of the
generator, k=1, 10 and 50 agreed within a point).

Measured with this code (dataset version 1.0.0, seed 0, 2 CPU cores shared
with other jobs, jax 0.10.2; test accuracy, chance 10%; the committed
``benchmarks/results/shapes_calibration_{small,default}.json``), ``small``
(16x16, 10k / 2k) then ``default`` (32x32, 50k / 10k, without the supervised
run):

- preparation on first use: 3.2 s (an earlier run); 42 s
- pixels_logistic: 12.4%; 10.5% (both fitted on 10k examples)
- pixels_knn: 16.2% (10k neighbours); 20.3% (50k)
- random_encoder_probe: 21.1%; 21.6% (256 features)
- random_conv_probe: 26.1% (512 features); 30.2% (2048 features)
- supervised: 55.6% (40 epochs, 21 min on the loaded CPU; 56.8% after 16)
- whole script: 22 min; 2.4 min without the supervised run.

(scikit-learn's L-BFGS logistic regression and kNN, which this script used
before, gave 12.9%, 16.2%, 21.5%, 26.1% and 10.0%, 20.4%, 21.6%, 27.8%.)
The default config's 20 supervised epochs are sized for a GPU (2-2.5 min
per epoch on 2 CPU cores); no number from this code is recorded for them.

kNN on raw pixels creeps up with the training set (16% at 10k, 20% at 50k):
the nuisance factors are finitely many, so neighbours that share pose and
colours eventually share the class; a linear readout of the pixels cannot
use that and stays near chance.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from neurojax import data as nj_data
from neurojax import models
from neurojax.data import shapes
from neurojax.data.on_device import load_split_arrays
from neurojax.metrics import probes
from neurojax.metrics.features import gather_features, make_features_step
from neurojax.models.intermediates import intermediate_features

CONFIG_DATASETS = {"small": "shapes_small", "default": "shapes"}


def logistic_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float = 1.0,
    steps: int = 4000,
) -> dict[str, float]:
    """Test accuracy of multinomial logistic regression on standardised inputs.

    ``neurojax.metrics.linear_probe`` with the features z-scored, no label
    smoothing and the L2 penalty of scikit-learn's ``LogisticRegression(C=c)``
    (``(1/2C) ||W||^2`` on the summed loss, i.e. coupled weight decay
    ``1 / (C n)`` on the mean loss; the bias is decayed too), trained with
    Adam (lr 1e-3, batches of 512) for the whole epochs that make at least
    ``steps`` steps (200 epochs of 10k examples), rather than by L-BFGS to
    convergence; ``final_loss`` is the last epoch's mean training loss. On
    blobs its test predictions agree with scikit-learn's on 99% of points
    (tests/analysis/test_shapes_calibration.py).
    """
    n = len(train_x)
    batch_size = probes.PAPER_PROBE_BATCH_SIZE
    epochs = max(1, -(-steps // -(-n // batch_size)))
    result = probes.linear_probe(
        train_x, train_y, test_x, test_y, num_classes=shapes.NUM_CLASSES, epochs=epochs,
        batch_size=batch_size, weight_decay=1.0 / (c * n), label_smoothing=0.0,
        standardize=True)
    return {
        "test_accuracy": float(result.test_accuracy),
        "train_accuracy": float(result.train_accuracy),
        "final_loss": float(result.final_loss),
        "epochs": int(epochs),
        "steps": int(epochs * -(-n // batch_size)),
        "num_train": int(n),
        "num_features": int(np.prod(train_x.shape[1:])),
    }


def knn_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 10
) -> dict[str, float]:
    """Test accuracy of a k-nearest-neighbour majority vote (Euclidean
    distance) on flattened inputs: ``neurojax.metrics.knn_probe`` with
    ``metric='euclidean', weighting='uniform'``."""
    accuracy = probes.knn_probe(train_x, train_y, test_x, test_y,
                                num_classes=shapes.NUM_CLASSES, k=k, weighting="uniform",
                                metric="euclidean")
    return {"test_accuracy": float(accuracy), "k": int(k), "num_train": int(len(train_x))}


def random_encoder_features(
    images: np.ndarray, *, seed: int = 0, batch_size: int = 1000, **model_kwargs: Any
) -> dict[str, np.ndarray]:
    """Features of a randomly initialised ``small_cnn`` encoder.

    ``model_kwargs`` are ``small_cnn`` fields (``widths``, ``hidden``, ...).

    Returns:
        ``{"representation": [n, hidden], "conv": [n, h * w * c]}``: the
        encoder's output (``num_classes=None``) and its last pooled conv
        stage, flattened.
    """
    model = models.get_model("small_cnn", num_classes=None, **model_kwargs)
    last_pool = f"pool_{len(model.widths) - 1}"
    # Jitted: eager init dispatches (and compiles) op by op, which is slower.
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), images[:1])

    def features(v, x):
        out = intermediate_features(model, v, x, filter=["", last_pool])
        return {"representation": out[""], "conv": out[last_pool]}

    step = make_features_step(features)
    return gather_features(step, variables, images,
                           batch_size=min(batch_size, len(images)))["features"]


def supervised_run(config, workdir: str) -> dict[str, Any]:
    """Trains ``config`` with the standard loop; accuracies and wall time."""
    from neurojax.train.metrics_log import read_metrics
    from neurojax.train.loop import train_and_evaluate

    start = time.time()
    result = train_and_evaluate(config, workdir, progress=False)
    seconds = time.time() - start
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    evals = [r for r in records if r["split"] == "eval"]
    return {
        "test_accuracy": float(result.eval_metrics["accuracy"]),
        "model": config.model.name,
        "num_steps": int(result.num_steps),
        "num_epochs": int(config.train.num_epochs),
        "batch_size": int(config.dataset.batch_size),
        "eval_curve": [(int(r["step"]), round(float(r["accuracy"]), 4)) for r in evals],
        "train_seconds": round(result.seconds, 1),
        "wall_seconds": round(seconds, 1),
    }


def example_grid(
    images: np.ndarray,
    labels: np.ndarray,
    path: str,
    per_class: int = 8,
    class_names: Sequence[str] = shapes.CLASS_NAMES,
) -> None:
    """Saves a PNG grid: one row per class, its first ``per_class`` images.

    The grid is tiled in NumPy and drawn as one image (one axis per example
    would take seconds in matplotlib).
    """
    from matplotlib.figure import Figure

    height, width = images.shape[1:3]
    pad = max(1, height // 8)
    rows, cols = len(class_names), per_class
    grid = np.ones((rows * (height + pad) + pad, cols * (width + pad) + pad, 3), np.float32)
    for c in range(rows):
        for j, i in enumerate(np.flatnonzero(labels == c)[:cols]):
            top, left = pad + c * (height + pad), pad + j * (width + pad)
            grid[top : top + height, left : left + width] = images[i]
    fig = Figure(figsize=(cols * 0.9 + 1.0, rows * 0.9))  # 90 px per example
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + c * (height + pad) + height / 2 for c in range(rows)], class_names)
    ax.tick_params(length=0, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)


def _timed(results: dict, name: str, fn, *args, **kwargs):
    start = time.time()
    out = fn(*args, **kwargs)
    out["seconds"] = round(time.time() - start, 1)
    results[name] = out
    print(f"{name}: {json.dumps(out)}", flush=True)
    return out


def calibrate(
    config_name: str,
    out: str,
    *,
    data_dir: str | None = None,
    probe_train_examples: int = 10_000,
    knn_k: int = 10,
    logistic_c: float = 1.0,
    seed: int = 0,
    supervised: bool = True,
    supervised_overrides: Mapping[str, Any] | None = None,
    max_examples: int | None = None,
    config=None,
) -> dict[str, Any]:
    """Runs every baseline on the named shapes config; writes JSON and PNG.

    ``config``: the supervised CNN's config (``configs/supervised_shapes.py``;
    its model is also the random encoder).

    ``max_examples`` caps the examples read from each split for the probes
    (quick checks; the supervised run always uses the whole dataset).
    """
    if config_name not in CONFIG_DATASETS:
        raise ValueError(
            f"config_name must be one of {sorted(CONFIG_DATASETS)}, got {config_name!r}"
        )
    os.makedirs(out, exist_ok=True)
    name = CONFIG_DATASETS[config_name]
    results: dict[str, Any] = {"dataset": name, "chance": 1.0 / shapes.NUM_CLASSES}

    # Preparation time, when this run is the one that generates the data
    # (its metadata file is then newer than the start).
    start = time.time()
    builder = nj_data.sources.get_builder(name, data_dir)
    info_file = os.path.join(os.fspath(builder.data_dir), "dataset_info.json")
    prepared_here = os.path.getmtime(info_file) >= start - 1.0
    results["prepare_seconds"] = round(time.time() - start, 1) if prepared_here else None
    results["version"] = str(builder.info.version)

    start = time.time()
    train = load_split_arrays(name, "train", data_dir=data_dir, max_examples=max_examples)
    test = load_split_arrays(name, "test", data_dir=data_dir, max_examples=max_examples)
    train_x, train_y, test_x, test_y = train["image"], train["label"], test["image"], test["label"]
    results["read_seconds"] = round(time.time() - start, 1)
    results["num_train"], results["num_test"] = len(train_x), len(test_x)
    results["image_shape"] = list(train_x.shape[1:])
    example_grid(test_x, test_y, os.path.join(out, "examples.png"))

    n_probe = min(probe_train_examples or len(train_x), len(train_x))
    _timed(results, "pixels_logistic", logistic_probe, train_x[:n_probe], train_y[:n_probe],
           test_x, test_y, c=logistic_c)
    _timed(results, "pixels_knn", knn_probe, train_x, train_y, test_x, test_y, k=knn_k)

    # The random encoder is the supervised network's own architecture.
    config = supervised_config(config, config_name, data_dir, seed, supervised_overrides)
    if config.model.name != "small_cnn":
        raise ValueError(f"the calibration's encoder must be small_cnn, got {config.model.name!r}")
    model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
    start = time.time()
    feats = random_encoder_features(np.concatenate([train_x[:n_probe], test_x]), seed=seed,
                                    **model_kwargs)
    feature_seconds = round(time.time() - start, 1)
    for key, label in (("representation", "random_encoder_probe"), ("conv", "random_conv_probe")):
        train_f, test_f = feats[key][:n_probe], feats[key][n_probe:]
        out_ = _timed(results, label, logistic_probe, train_f, train_y[:n_probe],
                      test_f, test_y, c=logistic_c)
        out_["feature_seconds"] = feature_seconds
    _write(results, out)

    if supervised:
        _timed(results, "supervised", supervised_run, config, os.path.join(out, "supervised"))
        _write(results, out)
    return results


def supervised_config(
    base,
    config_name: str,
    data_dir: str | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
):
    """A copy of ``base`` (the supervised CNN's config, e.g.
    ``configs/supervised_shapes.py``) on the dataset of ``config_name``, with
    overrides: ``overrides`` maps dotted field names to values, e.g.
    ``{"train.num_epochs": 5}``.
    """
    if base is None or not hasattr(base, "model"):
        raise ValueError(f"config must be the supervised CNN's ConfigDict "
                         f"(configs/supervised_shapes.py), got {base!r}")
    config = base.copy_and_resolve_references()
    config.dataset.name = CONFIG_DATASETS[config_name]
    config.dataset.data_dir = data_dir or ""
    config.seed = seed
    config.update_from_flattened_dict(dict(overrides or {}))
    return config


def _write(results: dict, out: str) -> None:
    with open(os.path.join(out, "calibration.json"), "w") as f:
        json.dump(results, f, indent=2)


def main(argv: Sequence[str]) -> None:
    del argv
    from absl import flags, logging

    logging.set_verbosity(logging.WARNING)  # TFDS and orbax log every file at INFO

    f = flags.FLAGS
    overrides = {}
    if f.supervised_epochs:
        overrides["train.num_epochs"] = f.supervised_epochs
    results = calibrate(
        f.config_name,
        f.out,
        data_dir=f.data_dir or None,
        probe_train_examples=f.probe_train_examples,
        knn_k=f.knn_k,
        logistic_c=f.logistic_c,
        seed=f.seed,
        supervised=f.supervised,
        supervised_overrides=overrides,
        config=f.config,
    )
    summary = {k: v["test_accuracy"] for k, v in results.items() if isinstance(v, dict)}
    print(json.dumps({"dataset": results["dataset"], **summary}), flush=True)


def _define_flags() -> None:
    from absl import flags

    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "configs/supervised_shapes.py:small",
                                    "The supervised CNN's config (also the random encoder's model).")
    flags.DEFINE_enum("config_name", "small", sorted(CONFIG_DATASETS), "Shapes builder config.")
    flags.DEFINE_string("out", None, "Output directory (calibration.json, examples.png).")
    flags.DEFINE_string(
        "data_dir", "", "TFDS data dir ('' = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets)."
    )
    flags.DEFINE_integer(
        "probe_train_examples", 10_000, "Training examples for the logistic probes (0 = all)."
    )
    flags.DEFINE_integer("knn_k", 10, "Neighbours of the raw-pixel kNN.")
    flags.DEFINE_float("logistic_c", 1.0, "Inverse L2 strength of the logistic probes.")
    flags.DEFINE_integer("seed", 0, "Seed of the random encoder and the supervised run.")
    flags.DEFINE_bool("supervised", True, "Train the supervised reference CNN.")
    flags.DEFINE_integer("supervised_epochs", 0, "Override the config's epochs (0 = keep).")
    flags.mark_flag_as_required("out")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
