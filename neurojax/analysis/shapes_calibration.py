"""How hard the procedural shapes are: raw pixels, a random encoder, a trained CNN.

Run:
    python -m neurojax.analysis.shapes_calibration --config_name=small --out /tmp/shapes_cal
    python -m neurojax.analysis.shapes_calibration --config_name=default --out /tmp/shapes_cal32

Writes to ``--out``:

- ``calibration.json``: test accuracies of
  - ``pixels_logistic``: multinomial logistic regression (scikit-learn,
    L-BFGS, ``C=--logistic_c``) on standardised raw pixels;
  - ``pixels_knn``: k-nearest neighbours (``k=--knn_k``, Euclidean, uniform
    vote) on raw pixels in [0, 1];
  - ``random_encoder_probe``: the same logistic probe on the standardised
    representation of a randomly initialised encoder with the supervised
    network's architecture (``small_cnn`` with ``num_classes=None``: the
    post-ReLU hidden layer a classifier head would see), and
    ``random_conv_probe`` on its last pooled conv features;
  - ``supervised``: the small CNN of ``configs/supervised_shapes.py``
    trained with ``neurojax.train.loop.train_and_evaluate``, with its eval
    accuracy after every evaluation (to show convergence) and wall time;
  plus the wall time of every part, the dataset's preparation time and the
  sizes used;
- ``examples.png``: a grid with one row per class, a few test images each;
- ``supervised/``: the training run's metrics, curves and checkpoints.

Both pixel baselines should stay near chance (10%); the gap between the
random encoder and the supervised network is the room in which
self-supervised methods are compared. Logistic probes are fitted on at most
``--probe_train_examples`` training examples (L-BFGS on 3072 raw pixels is
slow on 2 cores); kNN uses the whole training split, with k=10 (on raw
16x16 pixels of a draft of the generator, k=1, 10 and 50 agreed within a
point).

Measured (dataset version 1.0.0, seed 0, 2 CPU cores shared with other jobs,
jax 0.10.2; test accuracy, chance 10%), ``small`` (16x16, 10k / 2k) then
``default`` (32x32, 50k / 10k):

- preparation on first use: 3.2 s; 35 s
- pixels_logistic: 12.9%; 10.0% (both fitted on 10k examples)
- pixels_knn: 16.2% (10k neighbours); 20.4% (50k)
- random_encoder_probe: 21.5%; 21.6% (256 features)
- random_conv_probe: 26.1% (512 features); 27.8% (2048 features)
- supervised: 52.7% (40 epochs, 6.3 min); 97.5% (20 epochs, see below)
- whole script: 8.3 min; 8.6 min without the supervised run.

20 epochs of the default config take ~45 min on 2 CPU cores (2-2.5 min per
epoch), so its converged number comes from an equivalent loop on an NVIDIA
H200 (same model, optimiser, batch size and generated data); on the CPU,
``python -m launch.run --config configs/supervised_shapes.py
--config.train.num_epochs=4`` reaches 87.4% in 8 min.

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
from neurojax.models.features import intermediate_features

CONFIG_DATASETS = {"small": "shapes_small", "default": "shapes"}


def load_arrays(
    source: Sequence[dict[str, Any]], max_examples: int | None = None, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Reads a random-access source through the grain pipeline, in stored order.

    Returns:
        ``(images float32 [n, H, W, C] in [0, 1], labels int32 [n], factors)``
        where ``factors`` holds every other feature, float32 ``[n, ...]``.
    """
    n = len(source) if not max_examples else min(len(source), max_examples)
    if n == 0:
        raise ValueError("source must not be empty")
    sliced = [source[i] for i in range(n)] if n < len(source) else source
    loader = nj_data.make_loader(
        sliced, batch_size=min(batch_size, n), shuffle=False, num_epochs=1, drop_remainder=False
    )
    batches = list(loader)
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    factors = {
        k: np.concatenate([b[k] for b in batches])
        for k in batches[0]
        if k not in ("image", "label")
    }
    return images, labels, factors


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattens and standardises both with the training mean and std."""
    train = train.reshape(len(train), -1).astype(np.float32)
    test = test.reshape(len(test), -1).astype(np.float32)
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-6, std, 1.0)  # constant features stay at 0
    return (train - mean) / std, (test - mean) / std


def logistic_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, float]:
    """Test accuracy of multinomial logistic regression on standardised inputs."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = standardize(train_x, test_x)
    clf = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(train_x, train_y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {
        "test_accuracy": float(clf.score(test_x, test_y)),
        "train_accuracy": float(clf.score(train_x, train_y)),
        "converged": converged,
        "num_train": int(len(train_x)),
        "num_features": int(train_x.shape[1]),
    }


def knn_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 10
) -> dict[str, float]:
    """Test accuracy of a k-nearest-neighbour vote on flattened inputs."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute")
    clf.fit(train_x.reshape(len(train_x), -1), train_y)
    accuracy = clf.score(test_x.reshape(len(test_x), -1), test_y)
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

    @jax.jit
    def features(x):
        out = intermediate_features(model, variables, x, filter=["", last_pool])
        return out[""], out[last_pool].reshape(len(x), -1)

    reps, convs = [], []
    batch_size = min(batch_size, len(images))
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        n = len(batch)
        if n < batch_size:  # pad: one compiled shape for every batch
            padding = np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, padding])
        rep, conv = jax.device_get(features(batch))
        reps.append(rep[:n])
        convs.append(conv[:n])
    return {"representation": np.concatenate(reps), "conv": np.concatenate(convs)}


def supervised_run(config, workdir: str) -> dict[str, Any]:
    """Trains ``config`` with the standard loop; accuracies and wall time."""
    from neurojax.train.logging import read_metrics
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
) -> dict[str, Any]:
    """Runs every baseline on the named shapes config; writes JSON and PNG.

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
    train_x, train_y, _ = load_arrays(nj_data.data_source(name, "train", data_dir), max_examples)
    test_x, test_y, _ = load_arrays(nj_data.data_source(name, "test", data_dir), max_examples)
    results["read_seconds"] = round(time.time() - start, 1)
    results["num_train"], results["num_test"] = len(train_x), len(test_x)
    results["image_shape"] = list(train_x.shape[1:])
    example_grid(test_x, test_y, os.path.join(out, "examples.png"))

    n_probe = min(probe_train_examples or len(train_x), len(train_x))
    _timed(results, "pixels_logistic", logistic_probe, train_x[:n_probe], train_y[:n_probe],
           test_x, test_y, c=logistic_c)
    _timed(results, "pixels_knn", knn_probe, train_x, train_y, test_x, test_y, k=knn_k)

    # The random encoder is the supervised network's own architecture.
    config = supervised_config(config_name, data_dir, seed, supervised_overrides)
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
    config_name: str,
    data_dir: str | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
):
    """``configs/supervised_shapes.py`` for ``config_name``, with overrides.

    ``overrides`` maps dotted field names to values, e.g.
    ``{"train.num_epochs": 5}``.
    """
    from configs import supervised_shapes

    config = supervised_shapes.get_config("small" if config_name == "small" else "")
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
    )
    summary = {k: v["test_accuracy"] for k, v in results.items() if isinstance(v, dict)}
    print(json.dumps({"dataset": results["dataset"], **summary}), flush=True)


def _define_flags() -> None:
    from absl import flags

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
