"""Figures of the chapter-4 driver (``neurojax.analysis.amplification``):
Table 4.1's analogue on the digits, and Figs. 4.1a, 4.2, 4.3 and 4.5's on
the shapes, drawn from the driver's results (or its JSON) with
``matplotlib.figure.Figure``.
"""
from __future__ import annotations

import numpy as np

from neurojax.analysis.amplification import DELTA_BATCH, DELTA_EPOCHS, finished_runs
from neurojax.analysis.outputs import save_figure


def _box(ax, values: dict, ylabel: str, title: str) -> None:
    names = list(values)
    ax.boxplot([values[n] for n in names], widths=0.5, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
    ax.set(ylabel=ylabel, title=title)


def plot_digits(results: dict, path: str) -> None:
    """Table 4.1's analogue: best test error and epochs to best per pair
    (box over seeds, one image = 100 / n_test points), and the median test
    error per epoch."""
    from matplotlib.figure import Figure
    runs = finished_runs(results["runs"])
    summ, n = results["summary"], next(iter(runs.values()))["num_test"]
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    best = {p: s["best_error"]["per_seed"] for p, s in summ.items()}
    _box(axes[0], best, f"best test error (%); 1 image = {100 / n:.2f}", "minimum over epochs")
    top = 2 * max(np.percentile(v, 90) for v in best.values())
    axes[0].set_ylim(0, top)
    for i, v in enumerate(best.values()):   # seeds off the scale, counted
        if max(v) > top:
            axes[0].annotate(f"{sum(x > top for x in v)} seed(s) at {max(v):.0f}%",
                             (i + 1, 0.95 * top), ha="center", fontsize=7)
    _box(axes[1], {p: s["epochs_to_best"]["per_seed"] for p, s in summ.items()},
         "epoch of minimum test error", "epochs to best")
    for p, s in summ.items():
        curve = s["median_curve"]
        axes[2].plot(range(1, len(curve) + 1), curve, label=p)
    axes[2].set(xlabel="epoch", ylabel="median test error (%)", title="test error vs epoch",
                yscale="log")
    axes[2].legend(fontsize=8)
    seeds = len(next(iter(runs.values()))["test_errors"][0])
    fig.suptitle(f"Gradient amplification, Table 4.1 analogue: MLP 64-50-10 on digits, "
                 f"{seeds} seeds, SGD (constant LR per pair)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_shapes(results: dict, path: str) -> None:
    """Fig. 4.1a (test error per epoch), Fig. 4.2 (delta histograms), Fig. 4.3
    (gradient RMS per layer, replica 0) and Fig. 4.5 (softmax ``s``)."""
    from matplotlib.figure import Figure
    runs = finished_runs(results["runs"])
    fig = Figure(figsize=(16, 8.5))
    axes = fig.subplots(2, 3)
    ax = axes[0, 0]
    for i, (p, r) in enumerate(runs.items()):
        e = np.asarray(r["test_errors"], np.float64) * 100.0 / r["num_test"]
        epochs = np.arange(1, e.shape[0] + 1)
        ax.plot(epochs, np.median(e, axis=1), color=f"C{i}", label=p)
        ax.plot(epochs, e, color=f"C{i}", lw=0.5, alpha=0.4)
    ax.set(xlabel="epoch", ylabel="test error (%)", title="Fig. 4.1a: test error (median, seeds)")
    ax.legend(fontsize=8)
    for ax, epoch in zip((axes[0, 1], axes[0, 2]), [str(e) for e in DELTA_EPOCHS]):
        for i, (p, r) in enumerate(runs.items()):
            h = r["deltas"].get(epoch)
            if h is None:
                continue
            ax.stairs(h["counts"], h["edges"], color=f"C{i}", label=p)
        ax.set(yscale="log", xlabel="output delta y - t", ylabel="count",
               title=f"Fig. 4.2: deltas after epoch {epoch} ({DELTA_BATCH} images)")
        if ax.has_data():
            ax.legend(fontsize=8)
    with_rms = {p: r["grad_rms"]["replica0"] for p, r in runs.items() if "grad_rms" in r}
    kernels = [k for k in next(iter(with_rms.values()), {}) if k.endswith("kernel")]
    for ax, pairs in ((axes[1, 0], ("softmax", "exp_ga")), (axes[1, 1], ("softmax", "pow3_ga"))):
        for li, k in enumerate(kernels):
            for p, ls in zip(pairs, ("--", "-")):
                if p in with_rms:
                    v = with_rms[p][k]
                    ax.plot(range(1, len(v) + 1), v, ls, color=f"C{li}", label=f"{p} {k}")
        ax.set(yscale="log", xlabel="epoch", ylabel="gradient RMS (epoch mean)",
               title=f"Fig. 4.3: per-layer gradient RMS, {pairs[1]} (solid) vs softmax")
        ax.legend(fontsize=6, ncol=2)
    ax = axes[1, 2]
    if "softmax" in runs:
        s = np.exp(runs["softmax"]["median_log_normalizer"])
        ax.plot(range(1, len(s) + 1), s, "o-")
    ax.set(yscale="log", xlabel="epoch", ylabel="median s over the batch",
           title="Fig. 4.5: softmax normaliser s = sum_i e^{x_i}")
    cfg = results["config"]
    fig.suptitle(f"Gradient amplification, Figs. 4.1a-4.5 analogues: 5-layer CNN with BN on "
                 f"{cfg['dataset']['name']} ({cfg['dataset']['fraction']:g} of train), "
                 f"{cfg['train']['num_replicas']} seeds")
    fig.tight_layout()
    save_figure(fig, path)
