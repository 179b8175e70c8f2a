"""Fig. 1 of Ghosh et al. (ICLR 2023): accuracy over a grid of relative gradient
bias and noise, small on the offline digits, or collected from training runs.

Ghosh, Liu, Lajoie, Kording & Richards, "How gradient estimator variance and
bias impact learning in neural networks" (ICLR 2023), Fig. 1 and App. B.1:
full-batch gradient descent (SGD, momentum 0.9) of an MLP with bias and noise
relative to ``||g||`` (``optax.chain(inject_gradient_bias(., relative=True),
inject_gradient_noise(., relative=True), optax.sgd)``), every grid cell and
seed vmapped into one compiled run (``figure1``); or the same heatmaps from
separate ``launch.run`` runs of ``configs/bias_variance_{digits,cifar10}.py``
(``figure1_collect``). Float32.

Run through ``python -m neurojax.analysis.bias_variance --figure fig1`` (or
``fig1_collect --workdirs ...``).
"""
from __future__ import annotations

import json
import math
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure
from tqdm import tqdm

from neurojax.analysis.bias_variance_figures import _num_params, _save
from neurojax.optim.factory import parse_transform_entry
from neurojax.optim.injection import inject_gradient_bias, inject_gradient_noise


# ----------------------------------------------------------------------------- Fig. 1


def _digits_arrays(data_dir: Optional[str] = None):
    from neurojax.data import load
    out = {}
    for split in ("train", "test"):
        batch = next(iter(load("digits", split, batch_size=100_000, shuffle=False,
                               drop_remainder=False, data_dir=data_dir)))
        out[split] = (jnp.asarray(batch["image"].reshape(len(batch["label"]), -1)),
                      jnp.asarray(batch["label"]))
    return out


def digits_grid(biases, noises, seeds, *, steps: int = 100, lr: float = 0.05,
                momentum: float = 0.9, width: int = 64, label_smoothing: float = 0.1,
                data_dir: Optional[str] = None) -> dict:
    """Full-batch GD on the digits for every (relative bias, relative noise, seed).

    ``optax.chain(inject_gradient_bias(b, relative=True),
    inject_gradient_noise(s, key=k, relative=True), optax.sgd(lr, momentum))``
    on an MLP (64 -> width -> 10, ReLU) with label-smoothed cross-entropy
    (App. B.1's recipe: SGD with momentum 0.9, no schedule, one step per pass
    over the whole training set). All runs are one ``vmap``.

    Returns:
        ``{"train_acc", "test_acc"}`` arrays of shape ``(biases, noises, seeds)``.
    """
    from neurojax.models import get_model
    data = _digits_arrays(data_dir)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    model = get_model("mlp", widths=(width,), num_outputs=10)

    def loss(p):
        logits = model.apply(p, xtr)
        labels = optax.smooth_labels(jax.nn.one_hot(ytr, 10), label_smoothing)
        return jnp.mean(optax.softmax_cross_entropy(logits, labels))

    def acc(p, x, y):
        return jnp.mean(jnp.argmax(model.apply(p, x), -1) == y)

    def run(b, s, seed):
        k_init, k_noise = jax.random.split(jax.random.PRNGKey(seed))
        params = model.init(k_init, xtr[:1])
        opt = optax.chain(inject_gradient_bias(b, relative=True),
                          inject_gradient_noise(s, key=k_noise, relative=True),
                          optax.sgd(lr, momentum=momentum))

        def step(carry, _):
            p, st = carry
            g = jax.grad(loss)(p)
            u, st = opt.update(g, st, p)
            return (optax.apply_updates(p, u), st), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return acc(params, xtr, ytr), acc(params, xte, yte)

    bb, ss, ee = np.meshgrid(np.asarray(biases, np.float32), np.asarray(noises, np.float32),
                             np.asarray(seeds), indexing="ij")
    tr, te = jax.jit(jax.vmap(run))(jnp.asarray(bb.ravel()), jnp.asarray(ss.ravel()),
                                    jnp.asarray(ee.ravel()))
    shape = bb.shape
    return {"train_acc": np.asarray(tr).reshape(shape), "test_acc": np.asarray(te).reshape(shape),
            "num_params": _num_params(model.init(jax.random.PRNGKey(0), xtr[:1]))}


def figure1(outdir: str, quick: bool = False, seed: int = 0, *,
            biases: Optional[Sequence[float]] = None, noises: Optional[Sequence[float]] = None,
            num_seeds: Optional[int] = None, steps: Optional[int] = None,
            data_dir: Optional[str] = None) -> dict:
    """Fig. 1 (small): train/test accuracy over a relative bias x relative noise grid.

    Defaults: biases (0, 1e-4, ..., 0.1) per parameter and noises (0, 0.01,
    ..., 40) relative to ``||g||``, 5 seeds, 200 steps (``quick``: 3 seeds,
    100 steps). The first bias and noise should be 0 (the baseline cell) and
    the last the largest. ``data_dir``: where the digits TFDS dataset is
    prepared (default as ``neurojax.data.load``).
    """
    biases = list(biases or [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    noises = list(noises or [0.0, 1e-2, 0.1, 1.0, 5.0, 10.0, 40.0])
    seeds = list(range(seed, seed + (num_seeds or (3 if quick else 5))))
    steps = steps or (100 if quick else 200)
    with tqdm(total=1, desc="fig1 grid (one vmapped run)", leave=False) as bar:
        out = digits_grid(biases, noises, seeds, steps=steps, data_dir=data_dir)
        bar.update(1)
    tr, te = out["train_acc"].mean(-1), out["test_acc"].mean(-1)
    sem = out["test_acc"].std(-1, ddof=1) / math.sqrt(len(seeds))
    best = np.unravel_index(np.argmax(te), te.shape)
    summary = {"steps": steps, "seeds": len(seeds), "num_params": out["num_params"],
               "biases_rel_per_param": biases, "noises_rel": noises,
               "baseline_train_acc": float(tr[0, 0]), "baseline_test_acc": float(te[0, 0]),
               "baseline_test_sem": float(sem[0, 0]),
               "best_test_acc": float(te[best]), "best_test_sem": float(sem[best]),
               "best_cell": {"bias": biases[best[0]], "noise": noises[best[1]]},
               "test_acc_max_bias_no_noise": float(te[-1, 0]),
               "test_acc_max_noise_no_bias": float(te[0, -1]),
               "test_acc_max_both": float(te[-1, -1]),
               "train_acc_max_both": float(tr[-1, -1])}
    fig = _accuracy_heatmaps(tr, te, biases, noises, f"mean of {len(seeds)} seeds")
    return _save(fig, {"summary": summary, "train_acc": tr, "test_acc": te}, outdir, "fig1")


def _accuracy_heatmaps(tr, te, biases, noises, seeds_label: str):
    """Fig. 1's two panels: train and test accuracy over (bias, noise); NaN cells blank."""
    fig = Figure(figsize=(12, 5))
    axes = fig.subplots(1, 2)
    vmin = float(np.nanmin([np.nanmin(tr), np.nanmin(te)]))
    for ax, m, name in zip(axes, (tr, te), ("train", "test")):
        im = ax.imshow(m, origin="lower", cmap="Spectral", vmin=vmin, vmax=1.0)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{100 * m[i, j]:.1f}", ha="center", va="center",
                            fontsize=6)
        ax.set_xticks(range(len(noises)), [f"{v:g}" for v in noises])
        ax.set_yticks(range(len(biases)), [f"{v:g}" for v in biases])
        ax.set_xlabel("noise / ||g||")
        ax.set_ylabel("bias per parameter / ||g||")
        ax.set_title(f"{name} accuracy ({seeds_label})")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Fig. 1 (runs)


def _transform_kwargs(transforms, name: str) -> Optional[dict]:
    for entry in transforms or ():
        entry_name, kwargs = parse_transform_entry(entry)
        if entry_name == name:
            return kwargs
    return None


def read_cell(workdir: str) -> dict:
    """One finished training run of a Fig. 1 cell (``configs/bias_variance_cifar10.py``
    or ``bias_variance_digits.py``): what ran and how it ended.

    The cell is read from the run's ``config.json`` as it ran: ``b`` of its
    ``inject_gradient_bias`` and ``sigma`` of its ``inject_gradient_noise``
    transform (0 without one; both must be ``relative``) and ``seed``. From
    ``metrics.jsonl``: ``test_acc``, the accuracy of the last evaluation, and
    ``train_acc``, that of the last training record (with full-batch
    training, or a full batch accumulated over ``optim.accumulate_steps``
    batches and ``log_every`` equal to it: the whole training set's accuracy
    at the last update's parameters, before that update, as the paper's code
    reports it).

    Raises:
        ValueError: naming the workdir, if a file is missing or the run has
            no evaluation at its last training step (unfinished).
    """
    from neurojax.train.metrics_log import read_metrics
    cfg_path = os.path.join(workdir, "config.json")
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    for path in (cfg_path, metrics_path):
        if not os.path.exists(path):
            raise ValueError(f"workdir {workdir!r} has no {os.path.basename(path)}")
    with open(cfg_path) as fh:
        config = json.load(fh)
    transforms = config.get("optim", {}).get("transforms", ())
    cell = {"seed": int(config.get("seed", 0))}
    for key, name, field in (("bias", "inject_gradient_bias", "b"),
                             ("noise", "inject_gradient_noise", "sigma")):
        kwargs = _transform_kwargs(transforms, name)
        if kwargs is not None and not kwargs.get("relative", False):
            raise ValueError(f"workdir {workdir!r}: {name} is not relative to ||g||")
        cell[key] = float(kwargs.get(field, 0.0)) if kwargs is not None else 0.0
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("split") == "train" and "accuracy" in r]
    evals = [r for r in records if r.get("split") == "eval" and "accuracy" in r]
    if not train or not evals or evals[-1]["step"] < train[-1]["step"]:
        raise ValueError(f"workdir {workdir!r} has not finished (no evaluation after its "
                         f"last training step)")
    return {**cell, "train_acc": float(train[-1]["accuracy"]),
            "test_acc": float(evals[-1]["accuracy"]), "step": int(evals[-1]["step"]),
            "workdir": workdir}


def figure1_collect(workdirs: Sequence[str], outdir: str, *, name: str = "fig1_collect",
                    skip_unfinished: bool = False) -> dict:
    """Fig. 1 from separate training runs, one per (bias, noise, seed) cell.

    Reads every workdir with ``read_cell``, averages train and test accuracy
    over the seeds of each (bias, noise) cell and draws the two heatmaps on
    the grid of the values found (cells without a run are blank). Writes
    ``bias_variance_<name>.{png,json}``.

    Args:
        workdirs: run directories (shell patterns are expanded).
        skip_unfinished: leave out runs that have not finished (listed in the
            JSON) instead of raising.
    """
    import glob
    paths = set()
    for w in workdirs:  # a pattern contributes its directories; a plain path itself
        paths |= {p for p in glob.glob(w) if os.path.isdir(p)} if glob.has_magic(w) else {w}
    paths = sorted(paths)
    if not paths:
        raise ValueError(f"workdirs matched no directory: {list(workdirs)!r}")
    cells, skipped = [], []
    for path in paths:
        try:
            cells.append(read_cell(path))
        except ValueError as e:
            if not skip_unfinished:
                raise
            skipped.append(str(e))
    if not cells:
        raise ValueError(f"no finished run among {paths!r}")
    biases = sorted({c["bias"] for c in cells})
    noises = sorted({c["noise"] for c in cells})
    acc = {split: [[[] for _ in noises] for _ in biases] for split in ("train", "test")}
    for c in cells:
        i, j = biases.index(c["bias"]), noises.index(c["noise"])
        for split in acc:
            acc[split][i][j].append(c[f"{split}_acc"])
    mean = {s: np.array([[np.mean(v) if v else np.nan for v in row] for row in acc[s]])
            for s in acc}
    count = np.array([[len(v) for v in row] for row in acc["test"]])
    sem = np.array([[np.std(v, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else np.nan
                     for v in row] for row in acc["test"]])
    tr, te = mean["train"], mean["test"]
    best = np.unravel_index(np.nanargmax(te), te.shape)
    summary = {"runs": len(cells), "cells": int((count > 0).sum()),
               "seeds_per_cell": [int(count[count > 0].min()), int(count.max())],
               "biases_rel_per_param": biases, "noises_rel": noises,
               "best_test_acc": float(te[best]), "best_test_sem": float(sem[best]),
               "best_cell": {"bias": biases[best[0]], "noise": noises[best[1]]},
               "skipped": skipped}
    if biases[0] == 0.0 and noises[0] == 0.0 and count[0, 0]:
        summary.update(baseline_train_acc=float(tr[0, 0]), baseline_test_acc=float(te[0, 0]),
                       baseline_test_sem=float(sem[0, 0]))
    lo, hi = summary["seeds_per_cell"]
    fig = _accuracy_heatmaps(tr, te, biases, noises,
                             f"mean of {lo if lo == hi else f'{lo}-{hi}'} seed(s)")
    return _save(fig, {"summary": summary, "train_acc": tr, "test_acc": te,
                       "seeds": count, "runs": cells}, outdir, name)
