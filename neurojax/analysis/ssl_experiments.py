"""The small-scale SSL experiments of Part III, on the offline procedural shapes.

Ghosh et al., "Harnessing small projectors and multiple views for efficient
vision pretraining" (NeurIPS 2024; Ghosh, thesis Part III, Sec. 4), scaled to
2 CPU cores: the small CNN encoder on ``shapes_small`` (16 x 16 RGB, 10,000
training images; the command line's default config is
``configs/ssl_shapes.py:small``), Barlow Twins, probes every few epochs (kNN
and closed-form ridge on the encoder's features of the labelled training
set, scored on the test set).

Every function takes the sweep's base config as an argument (a
``SweepSettings``); the module never imports ``configs``.

Experiments (``--experiment``):

- ``projector`` (E1, Table 1/5, Fig. 2): probe accuracy against the
  projector dimension d for beta = c / d (the paper's recommendation) and
  for a fixed beta (the one for the largest d, as the paper's "fixed beta"
  is the one tuned for d = 8192).
- ``views`` (E2 and E3, Figs. 3-4, Tables 2-3): m = 2 and 4 views on all
  the data, and m = 4 on 50% / m = 8 on 25% of the unique images (the
  number of augmented samples per epoch fixed), probe accuracy against
  epochs and against training time (``views_experiment(settings=...)``
  adds m = 8 on all the data, 4x the cost of m = 2). Beta is the same for
  every m (5.12 / pdim), so only the number of views changes.
- ``seeds``: the base run with seeds 0, 1, 2 (the spread of its probe
  accuracies). A difference between two settings is measured over seeds
  by running the sweep with ``--config.seed=1``, ``2``, ... into separate
  ``--outdir``s.
- ``alpha`` (alpha-ReQ, Part II; issue 4): a Barlow Twins sweep over the
  redundancy weight lambda, the projector dimension and the learning rate;
  probe accuracy and the final SSL loss against alpha of the encoder's
  features, with Spearman rank correlations (the claim: alpha tracks
  accuracy where the loss does not). It reuses the ``projector`` runs.

Every run is a ``train_and_evaluate`` of the config in its own workdir under
``--outdir``; a finished run is not run again (its ``result.json`` is read),
and an interrupted one resumes from its checkpoint, so the sweep can be
stopped and restarted; a config already run by another experiment (e.g.
m = 2 views is the projector sweep's d = 256 run) is reused. Each experiment
writes ``{experiment}.json`` and ``{experiment}.png``.

Run:
    python -m neurojax.analysis.ssl_experiments --experiment=projector --outdir=/tmp/ssl_exp
    python -m neurojax.analysis.ssl_experiments --experiment=all --epochs=6 --outdir=/tmp/ssl_exp
    python -m neurojax.analysis.ssl_experiments --experiment=projector --dims=16,256 \
        --config.seed=1 --outdir=/tmp/ssl_exp_seed1

``--config`` names the base config file (default ``configs/ssl_shapes.py:small``)
and any field can be overridden (``--config.seed=1``,
``--config.dataset.data_dir=DIR``); ``--epochs`` sets every run's
``train.num_epochs``.
"""
import copy
import dataclasses
import hashlib
import json
import os
from typing import Callable, Sequence

import ml_collections
import numpy as np
import scipy.stats
from matplotlib.figure import Figure

from neurojax.models.projector import PAPER_BT_BETA_TIMES_DIM

EXPERIMENTS = ("projector", "views", "alpha", "seeds")
PROBE_KEYS = ("ridge_accuracy", "knn_accuracy")


@dataclasses.dataclass(frozen=True, eq=False)
class SweepSettings:
    """What every run of a sweep shares: the base ``config`` (an SSL config
    such as ``configs/ssl_shapes.py:small``; its seed, data dir and every
    other field are kept unless a setting's overrides change them), trained
    for ``epochs``, probed every ``eval_every_epochs`` (kNN and ridge fitted
    on the first ``probe_train_examples`` training images, scored on the
    test split)."""
    config: ml_collections.ConfigDict
    epochs: int = 6
    eval_every_epochs: int = 2
    probe_train_examples: int = 5000


def configure(settings: SweepSettings, overrides: dict) -> ml_collections.ConfigDict:
    """A copy of ``settings.config`` with the sweep's schedule and the
    dotted-key ``overrides`` applied (``loss.lambd`` keeps following
    ``projector.output_dim`` unless overridden; ``"seed"`` sets the seed);
    eval and checkpoint intervals in epochs of the (possibly fractional)
    training set."""
    from neurojax import data as nj_data
    from neurojax.data.on_device import steps_per_epoch
    config = copy.deepcopy(settings.config)  # keeps its field references
    config.train.num_epochs = settings.epochs
    config.train.log_every = 20
    config.probe.accuracy_thresholds = ()
    config.probe.max_train_examples = settings.probe_train_examples
    for key, value in overrides.items():
        *blocks, field = key.split(".")
        node = config
        for block in blocks:
            node = node[block]
        node[field] = value
    n = nj_data.dataset_info(config.dataset.name,
                             data_dir=config.dataset.data_dir or None).num_examples["train"]
    per_epoch = steps_per_epoch(len(nj_data.fraction_indices(n, config.dataset.fraction)),
                                config.dataset.batch_size)
    config.train.eval_every = settings.eval_every_epochs * per_epoch
    config.train.checkpoint_every = settings.eval_every_epochs * per_epoch
    return config


def run(config, workdir: str, *, progress: bool = True) -> dict:
    """Final eval metrics and the eval history of one run (cached in
    ``workdir/result.json``)."""
    path = os.path.join(workdir, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    from neurojax.train.metrics_log import read_metrics
    from neurojax.train.loop import train_and_evaluate
    result = train_and_evaluate(config, workdir, progress=progress)
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    train = [r for r in records if r["split"] == "train"]
    out = {"final": result.eval_metrics,
           "history": [r for r in records if r["split"] == "eval"],
           "final_loss": float(np.mean([r["loss"] for r in train[-5:]])),
           "config": json.loads(config.to_json_best_effort())}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return out


def _workdir(outdir: str, config, default: str) -> str:
    """The workdir of ``config``: an earlier run's if an identical config was
    run before under ``outdir`` (any experiment), else ``default``. The
    index ``outdir/runs.json`` maps a hash of the resolved config to it."""
    key = hashlib.sha1(config.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(outdir, "runs.json")
    index = {}
    if os.path.exists(path):
        with open(path) as f:
            index = json.load(f)
    if key not in index:
        index[key] = default
        with open(path, "w") as f:
            json.dump(index, f, indent=1)
    return index[key]


def _runs(outdir: str, experiment: str, sweep: SweepSettings,
          grid: Sequence[tuple[str, dict]], progress: bool) -> dict[str, dict]:
    out = {}
    for i, (name, overrides) in enumerate(grid):
        print(f"[{experiment}] run {i + 1}/{len(grid)}: {name} {overrides}", flush=True)
        config = configure(sweep, overrides)
        workdir = _workdir(outdir, config, os.path.join(outdir, experiment, name))
        out[name] = run(config, workdir, progress=progress)
    return out


# ---------------------------------------------------------------------------
# E1: projector dimension, beta = c / d vs fixed beta
# ---------------------------------------------------------------------------

def projector_grid(dims: Sequence[int], c: float = PAPER_BT_BETA_TIMES_DIM):
    """(name, overrides) for beta = c / d and for the fixed beta c / max(dims)."""
    fixed = c / max(dims)
    grid = [(f"d{d}_scaled", {"projector.output_dim": d, "loss.lambd": c / d}) for d in dims]
    grid += [(f"d{d}_fixed", {"projector.output_dim": d, "loss.lambd": fixed})
             for d in dims if d != max(dims)]
    return grid, fixed


def projector_experiment(outdir: str, sweep: SweepSettings, dims: Sequence[int],
                         progress: bool) -> dict:
    grid, fixed = projector_grid(dims)
    runs = _runs(outdir, "projector", sweep, grid, progress)
    rows = []
    for d in dims:
        for kind in ("scaled", "fixed"):
            name = f"d{d}_{kind}" if (kind == "scaled" or d != max(dims)) else f"d{d}_scaled"
            final = runs[name]["final"]
            rows.append({"d": d, "beta": "c/d" if kind == "scaled" else "fixed",
                         "lambd": runs[name]["config"]["loss"]["lambd"],
                         **{k: final[k] for k in (*PROBE_KEYS, "alpha", "effective_rank")}})
    summary = {"dims": list(dims), "c": PAPER_BT_BETA_TIMES_DIM, "fixed_beta": fixed,
               "rows": rows}
    _plot_projector(summary, os.path.join(outdir, "projector.png"))
    return summary


def _plot_projector(summary: dict, path: str) -> None:
    fig = Figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, PROBE_KEYS):
        for beta, style in (("c/d", "o-"), ("fixed", "s--")):
            rows = [r for r in summary["rows"] if r["beta"] == beta]
            label = (rf"$\beta = {summary['c']:g}/d$" if beta == "c/d"
                     else rf"fixed $\beta = {summary['fixed_beta']:.2g}$")
            ax.plot([r["d"] for r in rows], [100 * r[key] for r in rows], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("projector dimension d")
        ax.set_ylabel(f"{key.split('_')[0]} probe accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Barlow Twins on shapes_small: projector dimension (E1)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# E2/E3: number of views, and views on a fraction of the data
# ---------------------------------------------------------------------------

VIEW_SETTINGS = ((2, 1.0), (4, 1.0), (4, 0.5), (8, 0.25))


def views_experiment(outdir: str, sweep: SweepSettings, settings=VIEW_SETTINGS,
                     progress: bool = True) -> dict:
    grid = [(f"m{m}_f{int(100 * f)}", {"views.num_views": m, "dataset.fraction": f})
            for m, f in settings]
    runs = _runs(outdir, "views", sweep, grid, progress)
    curves = {}
    for (name, _), (m, f) in zip(grid, settings):
        hist = runs[name]["history"]
        curves[name] = {"m": m, "fraction": f,
                        "epoch": [r["epoch"] for r in hist],
                        "train_seconds": [r["train_seconds"] for r in hist],
                        **{k: [r[k] for r in hist] for k in PROBE_KEYS},
                        "final": {k: runs[name]["final"][k] for k in PROBE_KEYS}}
    summary = {"settings": [list(s) for s in settings], "curves": curves}
    _plot_views(summary, os.path.join(outdir, "views.png"))
    return summary


def _plot_views(summary: dict, path: str) -> None:
    fig = Figure(figsize=(9, 7))
    axes = fig.subplots(2, 2)
    for row, key in enumerate(PROBE_KEYS):
        for col, x in enumerate(("epoch", "train_seconds")):
            ax = axes[row, col]
            for name, c in summary["curves"].items():
                style = "-" if c["fraction"] == 1.0 else "--"
                ax.plot(c[x], [100 * a for a in c[key]], style, marker=".",
                        label=f"m = {c['m']}, {int(100 * c['fraction'])}% data")
            ax.set_xlabel("epoch" if x == "epoch" else "training time (s, 2 CPU cores)")
            ax.set_ylabel(f"{key.split('_')[0]} probe accuracy (%)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Barlow Twins on shapes_small: views per image (E2, E3)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# alpha-ReQ: does alpha track probe accuracy across a Barlow Twins sweep?
# ---------------------------------------------------------------------------

def alpha_grid(pdim: int = 256):
    """lambda and learning-rate variations around the base run (the projector
    runs add the pdim axis)."""
    grid = [(f"lambd{lam:g}", {"loss.lambd": lam}) for lam in (0.002, 0.3)]
    grid += [(f"lr{lr:g}", {"optim.lr": lr}) for lr in (1e-4, 3e-3)]
    return grid


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy), nan when undefined."""
    rho = scipy.stats.spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else float("nan")


def alpha_experiment(outdir: str, sweep: SweepSettings, dims: Sequence[int],
                     progress: bool) -> dict:
    runs = dict(_runs(outdir, "alpha", sweep, alpha_grid(), progress))
    runs.update({f"projector/{k}": v for k, v in
                 _runs(outdir, "projector", sweep, projector_grid(dims)[0], progress).items()})
    points = [{"run": name, "alpha": r["final"]["alpha"], "final_loss": r["final_loss"],
               **{k: r["final"][k] for k in PROBE_KEYS}} for name, r in runs.items()]
    # The paper's claim is about |alpha - 1| for alpha near 1 as well as alpha
    # itself; report both rank correlations.
    corr = {}
    for key in PROBE_KEYS:
        acc = [p[key] for p in points]
        corr[key] = {"alpha": spearman([p["alpha"] for p in points], acc),
                     "abs_alpha_minus_1": spearman([abs(p["alpha"] - 1) for p in points], acc),
                     "final_ssl_loss": spearman([p["final_loss"] for p in points], acc)}
    summary = {"points": points, "spearman": corr}
    _plot_alpha(summary, os.path.join(outdir, "alpha.png"))
    return summary


def _plot_alpha(summary: dict, path: str) -> None:
    pts = summary["points"]
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    key = "ridge_accuracy"
    acc = [100 * p[key] for p in pts]
    rho = summary["spearman"][key]
    axes[0].scatter([p["alpha"] for p in pts], acc)
    axes[0].set_xlabel(r"$\alpha$ of the encoder features (test set)")
    axes[0].set_title(rf"Spearman $\rho$ = {rho['alpha']:.2f}")
    axes[1].scatter([p["final_loss"] for p in pts], acc, color="C1")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("final Barlow Twins loss")
    axes[1].set_title(rf"Spearman $\rho$ = {rho['final_ssl_loss']:.2f}")
    for ax in axes:
        ax.set_ylabel("ridge probe accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(r"Barlow Twins sweep on shapes_small ($\lambda$, d, lr): $\alpha$ vs loss")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# seed noise: how large a difference the sweeps can resolve
# ---------------------------------------------------------------------------

def seeds_experiment(outdir: str, sweep: SweepSettings, seeds: Sequence[int] = (0, 1, 2),
                     progress: bool = True) -> dict:
    """The base run (m = 2, d = 256) with several seeds: mean and standard
    deviation of each probe's final accuracy (the spread of one setting;
    a difference between settings needs its own seeds)."""
    grid = [(f"seed{seed}", {"seed": seed}) for seed in seeds]
    by_name = _runs(outdir, "seeds", sweep, grid, progress)
    runs = {seed: by_name[f"seed{seed}"] for seed in seeds}
    summary = {"seeds": list(seeds)}
    for key in PROBE_KEYS:
        acc = np.array([runs[s]["final"][key] for s in seeds])
        summary[key] = {"values": acc.tolist(), "mean": float(acc.mean()),
                        "std": float(acc.std(ddof=1)) if len(acc) > 1 else float("nan")}
    return summary


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def main(argv) -> None:
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    os.makedirs(f.outdir, exist_ok=True)
    sweep = SweepSettings(config=f.config, epochs=f.epochs)
    dims = [int(d) for d in f.dims]
    experiments: dict[str, Callable[[], dict]] = {
        "projector": lambda: projector_experiment(f.outdir, sweep, dims, True),
        "views": lambda: views_experiment(f.outdir, sweep),
        "alpha": lambda: alpha_experiment(f.outdir, sweep, dims, True),
        "seeds": lambda: seeds_experiment(f.outdir, sweep),
    }
    names = EXPERIMENTS if f.experiment == "all" else (f.experiment,)
    for name in names:
        summary = experiments[name]()
        summary["epochs"] = f.epochs
        summary["seed"] = f.config.seed
        with open(os.path.join(f.outdir, f"{name}.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
        print(json.dumps({name: summary}, indent=1)[:4000])


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags
    config_flags.DEFINE_config_file(
        "config", "configs/ssl_shapes.py:small",
        "The sweep's base SSL config file[:arg], relative to the working directory.")
    flags.DEFINE_enum("experiment", "all", (*EXPERIMENTS, "all"), "Which experiment.")
    flags.DEFINE_string("outdir", None, "Where runs, JSON and PNG go.")
    flags.DEFINE_integer("epochs", 6, "Pretraining epochs per run (sets train.num_epochs).")
    flags.DEFINE_list("dims", ["16", "64", "256"], "Projector dims for E1.")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
