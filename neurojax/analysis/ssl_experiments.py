"""The small-scale SSL experiments of Part III, on the offline procedural shapes.

Ghosh et al., "Harnessing small projectors and multiple views for efficient
vision pretraining" (NeurIPS 2024; Ghosh, thesis Part III, Sec. 4), scaled to
2 CPU cores: the small CNN encoder on ``shapes_small`` (16 x 16 RGB, 10,000
training images; issue 22's task is ``configs/ssl_shapes.py:cpu``, the
command line's default ``:small``), Barlow Twins, probes every few hundred
steps (kNN and closed-form ridge on the encoder's features of the labelled
training set, scored on the test set).

Every setting runs once per seed (``--seeds``), and every claim is a
seed-paired difference of two settings (same seed: the same PRNG keys for
the initialisation, the augmentations and the data order) with a
Student-t 95% interval over the seeds (``outputs.paired_difference``) and
a verdict (``verdict``): reproduced, not reproduced, or unresolved at this
scale. Seeds are separate runs, not
the loop's vmapped replicas: for this conv net on XLA:CPU three vmapped
replicas took 5.0x the training time of one (60 steps, 28.1 s against
5.6 s, measured once with ``--config.train.num_replicas=3``), three
separate runs 3x.

Every function takes the sweep's base config as an argument (a
``SweepSettings``); the module never imports ``configs``.

Experiments (``--experiment``):

- ``projector`` (E1, Table 1/5, Fig. 2): probe accuracy against the
  projector dimension d for beta = c / d (the paper's recommendation) and
  for a fixed beta (the one for the largest d, as the paper's "fixed beta"
  is the one tuned for d = 8192). Claims: beta = c/d beats the fixed beta
  at each smaller d, and matches or beats the largest d.
- ``views`` (E2 and E3, Figs. 3-4, Tables 2-3, 6-7): m = 2, 4 and 8 views
  on all the data, and m = 4 on 50% / m = 8 on 25% of the unique images
  (the number of augmented samples per epoch fixed). Claims: more views
  beat fewer at equal epochs and at equal compute (m views at 2 S / m
  steps against m = 2 at S: equal augmented samples through the encoder;
  the measured seconds are reported beside), and the fraction runs match
  or beat m = 2 on all the data at equal epochs. Beta is the same for
  every m (5.12 / pdim), so only the number of views changes.
- ``alpha`` (alpha-ReQ, Part II; issue 4): every run of the sweep (each
  seed a point) plus a grid over the redundancy weight lambda and the
  learning rate (``alpha_grid``): probe accuracy and the final SSL loss
  against alpha of the encoder's features, Spearman rank correlations with
  bootstrap intervals (the claim: alpha tracks accuracy where the loss does
  not), and alpha-ReQ's Algorithm 1 run on this pool of real models
  (``metrics.model_selection.selection_over_orders``: probes spent and the accuracy
  found, against random search with as many probes).

Every run is a ``train_and_evaluate`` of the config in its own workdir under
``--outdir`` (``{experiment}/{setting}/seed{s}``); a finished run is not run
again (its ``result.json`` is read), and an interrupted one resumes from its
checkpoint, so the sweep can be stopped and restarted; a config already run
by another experiment (e.g. m = 2 views is the projector sweep's d = 256
run) is reused. Each experiment writes ``{experiment}.json`` (with the
command) and ``{experiment}.png``.

Run (issue 22's sweep: 1,000 steps of a full-data run, 3 seeds):
    python -m neurojax.analysis.ssl_experiments --config=configs/ssl_shapes.py:cpu \
        --steps=1000 --seeds=0,1,2 --dims=64,256,1024 --probe_train_examples=10000 \
        --experiment=all --outdir=/tmp/ssl_exp
    python -m neurojax.analysis.ssl_experiments --experiment=projector --epochs=6 \
        --outdir=/tmp/ssl_exp_small          # :small, by epochs, the config's seed

``--config`` names the base config file (default ``configs/ssl_shapes.py:small``)
and any field can be overridden (``--config.dataset.data_dir=DIR``);
``--steps`` sets the length of a full-data run (0: ``--epochs`` epochs).
"""
import copy
import dataclasses
import hashlib
import json
import os
import sys
from typing import Callable, Sequence

import ml_collections
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from neurojax.analysis.outputs import (paired_difference, rank_correlation, spread, verdict,
                                      write_json)
from neurojax.metrics.model_selection import selection_over_orders
from neurojax.models.projector import PAPER_BT_BETA_TIMES_DIM
from neurojax.train.config import apply_overrides

EXPERIMENTS = ("projector", "views", "alpha")
PROBE_KEYS = ("ridge_accuracy", "knn_accuracy")


@dataclasses.dataclass(frozen=True, eq=False)
class SweepSettings:
    """What every run of a sweep shares: the base ``config`` (an SSL config
    such as ``configs/ssl_shapes.py:cpu``; its data dir and every other
    field are kept unless a setting's overrides change them), the seeds
    every setting is run with (``seeds``; empty: the config's own seed),
    and the length of a run: ``steps`` > 0 trains a full-data run for that
    many steps and a run on a fraction f of the images for ``steps * f``
    (equal augmented samples, hence equal passes over each run's own image
    set, as the paper's E3; the loop's epoch counter, which drops each
    epoch's partial batch, reads a little higher on the smaller sets), probed
    every ``eval_every_steps``; ``steps = 0`` trains ``epochs`` epochs,
    probed every ``eval_every_epochs``. Probes: kNN and ridge fitted on the
    first ``probe_train_examples`` training images, scored on the test
    split."""
    config: ml_collections.ConfigDict
    epochs: int = 6
    eval_every_epochs: int = 2
    probe_train_examples: int = 5000
    steps: int = 0
    eval_every_steps: int = 250
    seeds: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("epochs", "eval_every_epochs", "probe_train_examples", "eval_every_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0 (0: train by epochs), got {self.steps!r}")
        seeds = tuple(self.seeds)
        if not all(isinstance(s, int) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct ints >= 0, got {self.seeds!r}")

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(self.seeds) or (int(self.config.seed),)


def configure(settings: SweepSettings, overrides: dict) -> ml_collections.ConfigDict:
    """A copy of ``settings.config`` with the sweep's schedule and the
    dotted-key ``overrides`` applied (``loss.lambd`` keeps following
    ``projector.output_dim`` unless overridden; ``"seed"`` sets the seed);
    eval and checkpoint intervals in steps, or in epochs of the (possibly
    fractional) training set."""
    from neurojax import data as nj_data
    from neurojax.data.on_device import steps_per_epoch
    config = copy.deepcopy(settings.config)  # keeps its field references
    config.train.log_every = 20
    config.probe.accuracy_thresholds = ()
    config.probe.max_train_examples = settings.probe_train_examples
    apply_overrides(config, overrides)
    if settings.steps:
        config.train.num_epochs = 0
        config.train.num_steps = max(1, round(settings.steps * config.dataset.fraction))
        config.train.eval_every = min(settings.eval_every_steps, config.train.num_steps)
        config.train.checkpoint_every = config.train.eval_every
        return config
    config.train.num_steps = 0
    config.train.num_epochs = settings.epochs
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


def config_key(config) -> str:
    """The key of a resolved config in ``outdir/runs.json``: a hash of its JSON."""
    return hashlib.sha1(config.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]


def _workdir(outdir: str, config, default: str) -> str:
    """The workdir of ``config``: an earlier run's if an identical config was
    run before under ``outdir`` (any experiment), else ``default``. The
    index ``outdir/runs.json`` maps a hash of the resolved config to it."""
    key = config_key(config)
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
          grid: Sequence[tuple[str, dict]], progress: bool) -> dict[str, list[dict]]:
    """name -> the runs of that setting (``run``'s dicts with their
    ``workdir``), one per seed of ``sweep.seed_list`` (workdir
    ``outdir/experiment/name/seed{s}``, or an identical earlier run's)."""
    out = {}
    seeds = sweep.seed_list
    for i, (name, overrides) in enumerate(grid):
        out[name] = []
        for seed in seeds:
            print(f"[{experiment}] setting {i + 1}/{len(grid)}: {name} {overrides}, seed {seed}",
                  flush=True)
            config = configure(sweep, {**overrides, "seed": seed})
            default = os.path.join(outdir, experiment, name, f"seed{seed}")
            workdir = _workdir(outdir, config, default)
            out[name].append({**run(config, workdir, progress=progress), "workdir": workdir})
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


def _final(run: dict, key: str) -> float:
    return run["final"][key]


def _finals(runs: Sequence[dict], key: str) -> list[float]:
    return [_final(r, key) for r in runs]


def _compare(runs: dict[str, list[dict]], setting: str, reference: str, claim: str,
             value: Callable[[dict, str], float] = _final,
             reference_value: Callable[[dict, str], float] = _final) -> dict:
    """Per probe: the seed-paired difference setting - reference (each read
    by its ``value`` function; default the final probe) and its verdict."""
    out = {"setting": setting, "reference": reference, "claim": claim}
    for key in PROBE_KEYS:
        diff = paired_difference([value(r, key) for r in runs[setting]],
                                 [reference_value(r, key) for r in runs[reference]])
        out[key] = {**diff, "verdict": verdict(diff, claim)}
    return out


def projector_experiment(outdir: str, sweep: SweepSettings, dims: Sequence[int],
                         progress: bool) -> dict:
    """E1 over seeds. Claims (Table 5): at each d below the largest, beta = c/d
    beats the fixed beta (tuned for the largest d), and matches or beats the
    largest d's accuracy."""
    grid, fixed = projector_grid(dims)
    runs = _runs(outdir, "projector", sweep, grid, progress)
    top = f"d{max(dims)}_scaled"
    rows, comparisons = [], []
    for d in dims:
        for kind in ("scaled", "fixed"):
            name = f"d{d}_{kind}" if (kind == "scaled" or d != max(dims)) else top
            rows.append({"d": d, "beta": "c/d" if kind == "scaled" else "fixed",
                         "lambd": runs[name][0]["config"]["loss"]["lambd"],
                         **{k: spread(_finals(runs[name], k))
                            for k in (*PROBE_KEYS, "alpha", "effective_rank")}})
        if d != max(dims):
            comparisons.append(_compare(runs, f"d{d}_scaled", f"d{d}_fixed", "greater"))
            comparisons.append(_compare(runs, f"d{d}_scaled", top, "match_or_beat"))
    summary = {"dims": list(dims), "c": PAPER_BT_BETA_TIMES_DIM, "fixed_beta": fixed,
               "seeds": list(sweep.seed_list), "rows": rows, "comparisons": comparisons}
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
            ax.errorbar([r["d"] for r in rows], [100 * r[key]["mean"] for r in rows],
                        yerr=[100 * r[key]["std"] for r in rows], fmt=style, capsize=3,
                        label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("projector dimension d")
        ax.set_ylabel(f"{key.split('_')[0]} probe accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Barlow Twins on shapes_small: projector dimension (E1), mean +- sd over "
                 f"{len(summary['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# E2/E3: number of views, and views on a fraction of the data
# ---------------------------------------------------------------------------

VIEW_SETTINGS = ((2, 1.0), (4, 1.0), (8, 1.0), (4, 0.5), (8, 0.25))


def _at_step(run: dict, step: int, key: str) -> float:
    """``key`` of the run's eval record at ``step`` (KeyError naming the steps there are)."""
    for record in run["history"]:
        if record["step"] == step:
            return record[key]
    raise KeyError(f"no eval record at step {step}; the run has "
                   f"{[r['step'] for r in run['history']]}")


def views_grid(settings=VIEW_SETTINGS) -> list[tuple[str, dict]]:
    """(name, overrides) of each (m views, fraction of the images)."""
    return [(f"m{m}_f{int(100 * f)}", {"views.num_views": m, "dataset.fraction": f})
            for m, f in settings]


def views_experiment(outdir: str, sweep: SweepSettings, settings=VIEW_SETTINGS,
                     progress: bool = True) -> dict:
    """E2 and E3 over seeds. Claims (Sec. 4, Tables 2-3, 6-7): on all the
    data, m = 4 beats m = 2 and m = 8 beats m = 4 at equal epochs; m = 4 and
    m = 8 beat m = 2 at equal compute (their probes at S * 2 / m steps
    against m = 2 at S steps; the augmented views, hence the encoder's work,
    are equal, and the measured training seconds are reported beside);
    m = 4 on 50% and m = 8 on 25% of the images match or beat m = 2 on 100%
    at equal epochs (equal augmented samples). Comparisons whose settings
    were not run are left out."""
    grid = views_grid(settings)
    runs = _runs(outdir, "views", sweep, grid, progress)
    curves = {}
    for (name, _), (m, f) in zip(grid, settings):
        steps = [r["step"] for r in runs[name][0]["history"]]
        curves[name] = {"m": m, "fraction": f, "step": steps,
                        "epoch": [r["epoch"] for r in runs[name][0]["history"]],
                        "train_seconds": np.mean([[r["train_seconds"] for r in run["history"]]
                                                  for run in runs[name]], axis=0).tolist(),
                        **{k: np.mean([[r[k] for r in run["history"]] for run in runs[name]],
                                      axis=0).tolist() for k in PROBE_KEYS},
                        "final": {k: spread(_finals(runs[name], k)) for k in PROBE_KEYS}}
    comparisons = []
    base = "m2_f100"
    if base in runs:
        full = [n for n in ("m4_f100", "m8_f100") if n in runs]
        for lower, upper in (("m2_f100", "m4_f100"), ("m4_f100", "m8_f100")):
            if lower in runs and upper in runs:
                comparisons.append({"kind": "equal epochs",
                                    **_compare(runs, upper, lower, "greater")})
        final_step = runs[base][0]["history"][-1]["step"]
        for name in full:
            step = final_step * 2 // curves[name]["m"]
            try:
                row = _compare(runs, name, base, "greater",
                               value=lambda r, k, s=step: _at_step(r, s, k),
                               reference_value=lambda r, k: _at_step(r, final_step, k))
            except KeyError as e:  # no probe at the equal-compute step
                comparisons.append({"kind": "equal compute", "setting": name,
                                    "reference": base, "skipped": str(e)})
                continue
            row["steps"] = {name: step, base: final_step}
            row["train_seconds"] = {
                name: float(np.mean([_at_step(r, step, "train_seconds") for r in runs[name]])),
                base: float(np.mean([_at_step(r, final_step, "train_seconds")
                                     for r in runs[base]]))}
            comparisons.append({"kind": "equal compute", **row})
        for name in ("m4_f50", "m8_f25"):
            if name in runs:
                comparisons.append({"kind": "equal epochs, fraction of the data",
                                    **_compare(runs, name, base, "match_or_beat")})
    summary = {"settings": [list(s) for s in settings], "seeds": list(sweep.seed_list),
               "curves": curves, "comparisons": comparisons}
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
            ax.set_xlabel("epoch of the run's image set" if x == "epoch"
                          else "training time (s, 2 CPU cores)")
            ax.set_ylabel(f"{key.split('_')[0]} probe accuracy (%)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Barlow Twins on shapes_small: views per image (E2, E3), mean of "
                 f"{len(summary['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# alpha-ReQ: does alpha track probe accuracy across a Barlow Twins sweep?
# ---------------------------------------------------------------------------

#: Factors on the base config's loss weight and learning rate for the alpha
#: sweep (lower loss weights come from the projector runs' fixed beta; two
#: settings, as each costs ~10 minutes of 2 cores for 3 seeds).
ALPHA_LAMBDA_FACTORS = (10.0,)
ALPHA_LR_FACTORS = (0.1,)


def alpha_grid(config) -> list[tuple[str, dict]]:
    """Loss-weight and learning-rate variations around the base ``config``
    (the projector and views runs add the pdim and view axes)."""
    lambd, lr = float(config.loss.lambd), float(config.optim.lr)
    grid = [(f"lambd{lambd * f:.3g}", {"loss.lambd": lambd * f}) for f in ALPHA_LAMBDA_FACTORS]
    grid += [(f"lr{lr * f:.3g}", {"optim.lr": lr * f}) for f in ALPHA_LR_FACTORS]
    return grid


def alpha_experiment(outdir: str, sweep: SweepSettings, dims: Sequence[int],
                     progress: bool, *, num_parallel: int = 6, top_k: int = 3,
                     num_orderings: int = 200) -> dict:
    """alpha against probe accuracy over every run of the sweep (each seed a
    point): the loss-weight and learning-rate grid (``alpha_grid``), the
    projector runs and the views runs. Rank correlations with bootstrap
    intervals of accuracy against alpha, |alpha - 1| and the final SSL loss;
    and alpha-ReQ's Algorithm 1
    (``neurojax.metrics.model_selection.selection_over_orders``) on
    this pool of real models, its probe the ridge accuracy each run measured,
    against random search with as many probes."""
    runs = {}
    for experiment, grid in (("alpha", alpha_grid(sweep.config)),
                             ("projector", projector_grid(dims)[0]),
                             ("views", views_grid())):
        for name, seeded in _runs(outdir, experiment, sweep, grid, progress).items():
            runs[f"{experiment}/{name}"] = seeded
    points, seen = [], set()
    for name, seeded in runs.items():
        for seed, r in zip(sweep.seed_list, seeded):
            if r["workdir"] in seen:  # one run reached from two grids (m = 2 is d = 256)
                continue
            seen.add(r["workdir"])
            points.append({"run": name, "seed": seed, "alpha": r["final"]["alpha"],
                           "final_loss": r["final_loss"],
                           **{k: r["final"][k] for k in PROBE_KEYS}})
    # a failed power-law fit (collapsed features) has no alpha to rank or select by
    excluded = [(p["run"], p["seed"]) for p in points if not np.isfinite(p["alpha"])]
    points = [p for p in points if np.isfinite(p["alpha"])]
    if len(points) < 3:
        raise ValueError(f"the alpha sweep needs at least 3 runs with a finite alpha, got "
                         f"{len(points)} (excluded: {excluded})")
    # The paper's claim is about |alpha - 1| for alpha near 1 as well as alpha
    # itself; report both rank correlations.
    corr = {}
    for key in PROBE_KEYS:
        acc = [p[key] for p in points]
        corr[key] = {"alpha": rank_correlation([p["alpha"] for p in points], acc),
                     "abs_alpha_minus_1": rank_correlation(
                         [abs(p["alpha"] - 1) for p in points], acc),
                     "final_ssl_loss": rank_correlation([p["final_loss"] for p in points], acc)}
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(points)) for _ in range(num_orderings)]
    selection = selection_over_orders([p["ridge_accuracy"] for p in points],
                                      [p["alpha"] for p in points], orders,
                                      num_parallel=num_parallel, top_k=top_k)
    summary = {"seeds": list(sweep.seed_list), "points": points,
               "excluded_nonfinite_alpha": excluded, "spearman": corr,
               "model_selection": {"num_parallel": num_parallel, "top_k": top_k,
                                   "num_orderings": num_orderings,
                                   "pool_best_ridge_accuracy": max(p["ridge_accuracy"]
                                                                   for p in points),
                                   **selection}}
    _plot_alpha(summary, os.path.join(outdir, "alpha.png"))
    return summary


def _rho_title(corr: dict) -> str:
    low, high = corr["ci95"]
    return rf"Spearman $\rho$ = {corr['rho']:.2f} [{low:.2f}, {high:.2f}], n = {corr['n']}"


def _plot_alpha(summary: dict, path: str) -> None:
    pts = summary["points"]
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    key = "ridge_accuracy"
    acc = [100 * p[key] for p in pts]
    rho = summary["spearman"][key]
    groups = sorted({p["run"].split("/")[0] for p in pts})
    colours = [f"C{groups.index(p['run'].split('/')[0])}" for p in pts]
    axes[0].scatter([p["alpha"] for p in pts], acc, c=colours)
    axes[0].set_xlabel(r"$\alpha$ of the encoder features (test set)")
    axes[0].set_title(_rho_title(rho["alpha"]))
    axes[1].scatter([p["final_loss"] for p in pts], acc, c=colours)
    for i, group in enumerate(groups):
        axes[0].scatter([], [], color=f"C{i}", label=f"{group} runs")
    axes[0].legend(fontsize=8)
    axes[1].set_xscale("log")
    axes[1].xaxis.set_minor_formatter(NullFormatter())  # unlabelled minor ticks
    axes[1].set_xlabel("final Barlow Twins loss")
    axes[1].set_title(_rho_title(rho["final_ssl_loss"]))
    for ax in axes:
        ax.set_ylabel("ridge probe accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(r"Barlow Twins sweep on shapes_small ($\lambda$, d, lr): $\alpha$ vs loss")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def main(argv) -> None:
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    sweep = SweepSettings(config=f.config, epochs=f.epochs, steps=f.steps,
                          eval_every_steps=f.eval_every_steps,
                          probe_train_examples=f.probe_train_examples,
                          seeds=tuple(int(s) for s in f.seeds))
    dims = [int(d) for d in f.dims]
    os.makedirs(f.outdir, exist_ok=True)
    experiments: dict[str, Callable[[], dict]] = {
        "projector": lambda: projector_experiment(f.outdir, sweep, dims, True),
        "views": lambda: views_experiment(f.outdir, sweep),
        "alpha": lambda: alpha_experiment(f.outdir, sweep, dims, True),
    }
    names = EXPERIMENTS if f.experiment == "all" else (f.experiment,)
    for name in names:
        summary = experiments[name]()
        summary.update(epochs=0 if f.steps else f.epochs, steps=f.steps,
                       command="python -m neurojax.analysis.ssl_experiments "
                               + " ".join(sys.argv[1:]))
        write_json(summary, os.path.join(f.outdir, f"{name}.json"))
        print(json.dumps({name: summary.get("comparisons", summary.get("spearman"))},
                         indent=1, default=str)[:4000])


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags
    config_flags.DEFINE_config_file(
        "config", "configs/ssl_shapes.py:small",
        "The sweep's base SSL config file[:arg], relative to the working directory.")
    flags.DEFINE_enum("experiment", "all", (*EXPERIMENTS, "all"), "Which experiment.")
    flags.DEFINE_string("outdir", None, "Where runs, JSON and PNG go.")
    flags.DEFINE_integer("epochs", 6, "Pretraining epochs per run when --steps=0.")
    flags.DEFINE_integer("steps", 0, "Steps of a full-data run (a run on a fraction f of "
                         "the images trains steps * f); 0: train --epochs.")
    flags.DEFINE_integer("eval_every_steps", 250, "Probe interval with --steps.")
    flags.DEFINE_integer("probe_train_examples", 5000, "Training images the probes fit on.")
    flags.DEFINE_list("seeds", [], "Seeds of every setting (default: the config's seed).")
    flags.DEFINE_list("dims", ["16", "64", "256"], "Projector dims for E1.")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
