"""The figure of ``neurojax.analysis.platonic`` (Oland 2024, Efficient Deep
Learning, ch. 7): one panel per part that ran, drawn from the results' JSON form.

Redraw a results file's figure (the PNG beside it)::

    python -m neurojax.analysis.platonic_figure benchmarks/results/platonic_full.json
"""
from __future__ import annotations

import numpy as np

from neurojax.analysis.outputs import save_figure
from neurojax.analysis.platonic import CHAPTER


def _deep_panels(d: dict, ax_lsd, ax_min, ax_scale, label: str, marker: str = "o-") -> None:
    """Fig 7.5 (per-layer LSD), Fig 7.6 (min over layers against N_tries) and
    the scale of Z_i for one deep part."""
    widths = sorted({r["width"] for r in d["runs"].values()})
    for run in d["runs"].values():
        ls = "-" if run["n_tries"] == 1 else "--"
        color = f"C{widths.index(run['width'])}"
        layers = run.get("layers", np.arange(1, len(run["lsd"]) + 1))
        ax_lsd.semilogy(layers, run["lsd"], ls, lw=0.8, color=color,
                        label=f"width {run['width']}, n={run['n_tries']}")
        if "log10_max_abs" in run:
            ax_scale.plot(layers, np.asarray(run["log10_max_abs"], float), ls, lw=0.8,
                          color=color, label=f"width {run['width']}, n={run['n_tries']}")
    ax_lsd.legend(fontsize=7)
    ax_lsd.set_xscale("log")
    ax_lsd.set(xlabel="layer", ylabel="LSD (MSE of the layer's LS read-out)",
               title=f"Fig 7.5: {d['num_layers']}-layer CELU nets, sine, {label}")
    for i, w in enumerate(widths):
        runs = sorted((r for r in d["runs"].values() if r["width"] == w),
                      key=lambda r: r["n_tries"])
        ax_min.semilogy([r["n_tries"] for r in runs], [r["min_lsd"] for r in runs], marker,
                        color=f"C{i}", label=f"width {w}, {label}")
    ax_min.set(xlabel="N_tries", ylabel="min LSD over layers", title="Fig 7.6")
    ax_min.legend(fontsize=7)
    if ax_scale.has_data() and max(np.nanmax(np.asarray(r.get("log10_max_abs", [0]), float))
                                   for r in d["runs"].values()) > 30:
        ax_scale.axhline(np.log10(np.finfo(np.float64).max), color="k", ls=":", lw=1,
                         label="float64 max")
    if ax_scale.has_data():
        ax_scale.set_xscale("log")
        ax_scale.set(xlabel="layer", ylabel="log10 max |Z_i|",
                     title=f"deep nets: scale of Z_i, {label}")
        ax_scale.legend(fontsize=7)


def plot(results: dict, path: str) -> None:
    """One panel per part that ran."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(25, 13.5))
    axes = fig.subplots(3, 5).ravel()
    if "sine" in results:
        ax, s = axes[0], results["sine"]
        for i, dtype in enumerate(s):
            ax.semilogy(np.full(len(s[dtype]["mse"]), i), s[dtype]["mse"], "o", alpha=0.6)
        ax.axhline(CHAPTER["sine_mse"], color="k", ls="--", lw=1, label="chapter 2e-5")
        ax.set_xticks(range(len(s)), list(s))
        ax.set(ylabel="train MSE", title="Sec 7.5: sine, 1-16-16-1 CELU, seeds")
        ax.legend()
    if "deep" in results:
        _deep_panels(results["deep"], axes[1], axes[2], axes[12], "alpha = 1")
    if "deep_scaled" in results:
        _deep_panels(results["deep_scaled"], axes[13], axes[2], axes[14],
                     "alpha = 1/sqrt(w+1)", marker="s--")
    if "spirals" in results:
        sp = results["spirals"]
        rows = sp["table"]
        labels = [f"a{r['alpha']:g} b{r['beta']:g} {r['solver']} {r['precision']}"
                  for r in rows]
        means = [r["train_accuracy"].get("mean", np.nan) for r in rows]
        stds = [r["train_accuracy"].get("std", 0.0) for r in rows]
        axes[3].barh(np.arange(len(rows)), means, xerr=stds, color="C0")
        bp = sp["backprop"]["train_accuracy"]["mean"]
        axes[3].axvline(bp, color="k", ls="--", lw=1, label=f"backprop {bp:.4f}")
        axes[3].set_yticks(np.arange(len(rows)), labels, fontsize=6)
        axes[3].set(xlim=(0.5, 1.0), xlabel="train accuracy (mean ± std over seeds)",
                    title=f"Table 7.1 analogue, spirals ({sp['turns']:g} turns)")
        axes[3].legend(fontsize=7)
        ax = axes[4]
        for i, (a, b, dt) in enumerate([(a, b, dt) for a, b in ((0.1, 10.0), (1.0, 2.0))
                                        for dt in ("float32", "float64")]):
            pts = [r for r in sp["turns_sweep"] if (r["alpha"], r["beta"], r["precision"])
                   == (a, b, dt)]
            ax.errorbar([r["turns"] for r in pts], [r["test_accuracy"]["mean"] for r in pts],
                        yerr=[r["test_accuracy"]["std"] for r in pts], marker="o", capsize=2,
                        label=f"alpha={a:g} beta={b:g} {dt}")
        ax.set(xlabel="spiral turns", ylabel="test accuracy", title="spirals: turns sweep")
        ax.legend(fontsize=7)
    if "checkerboard" in results:
        rows = results["checkerboard"]["rows"]
        ax = axes[5]
        ax.semilogx([r["width"] for r in rows], [r["train_accuracy"] for r in rows], "o-",
                    base=2, label="train")
        ax.semilogx([r["width"] for r in rows], [r["test_accuracy"] for r in rows], "s--",
                    base=2, label="test")
        chapter = CHAPTER["checkerboard_width_accuracy"]
        ax.plot([int(w) for w in chapter], list(chapter.values()), "k*", ms=10,
                label="chapter (train?)")
        ax.set(xlabel="hidden width (3 layers)", ylabel="accuracy",
               title="Fig 7.11: 8x8 checkerboard")
        ax.legend(fontsize=7)
    if "digits" in results:
        dg = results["digits"]
        ax = axes[6]
        for i, m in enumerate(("elm", "random", "pca", "sorted_pca")):
            pts = [r for r in dg["single"] if r["method"] == m]
            ax.errorbar([r["width"] for r in pts], [r["test_accuracy"]["mean"] for r in pts],
                        yerr=[r["test_accuracy"]["std"] for r in pts], marker="o", capsize=2,
                        label=m)
        ax.set_xscale("log", base=2)
        ax.axhline(dg["backprop"]["test_accuracy"]["mean"], color="k", ls="--", lw=1,
                   label="backprop 392-50")
        ax.set(xlabel="hidden width", ylabel="test accuracy",
               title="Table 7.2 analogue: digits, 1 hidden layer")
        ax.legend(fontsize=7)
        ax = axes[7]
        rows = dg["deep"]
        ax.plot([r["params"] for r in rows], [r["train_accuracy"] for r in rows], "o-",
                label="train")
        ax.plot([r["params"] for r in rows], [r["test_accuracy"] for r in rows], "s--",
                label="test")
        for r in rows:
            ax.annotate("-".join(map(str, r["widths"])), (r["params"], r["test_accuracy"]),
                        fontsize=6)
        ax.set_xscale("log")
        ax.set(xlabel="parameters", ylabel="accuracy",
               title="Table 7.3 analogue: deterministic PP, digits")
        ax.legend(fontsize=7)
    if "spirals_tries" in results:
        ax, st = axes[8], results["spirals_tries"]
        rows = st["rows"]
        for key, marker in (("train_accuracy", "o-"), ("test_accuracy", "s--")):
            ax.errorbar([r["n_tries"] for r in rows], [r[key]["mean"] for r in rows],
                        yerr=[r[key]["std"] for r in rows], fmt=marker, capsize=2,
                        label=f"{key.split('_')[0]} (mean ± std, {rows[0][key]['n']} seeds)")
        chapter = CHAPTER["spirals_n_tries"]
        ax.plot([int(n) for n in chapter], list(chapter.values()), "k*", ms=10,
                label="chapter (one seed)")
        ax.set_xscale("log")
        ax.set(xlabel="N_tries", ylabel="accuracy",
               title="Sec 7.6.2: N_tries, spirals, alpha 0.1 beta 10 float32")
        ax.legend(fontsize=7)
    if "ablation" in results:
        ax, rows = axes[9], results["ablation"]["spirals"] + results["ablation"]["digits"]
        labels = [(f"spirals a{r['alpha']:g} {r['precision']}" if "precision" in r
                   else f"digits w{r['width']}") + f" T={r['target'].upper()}P" for r in rows]
        colors = {"zy": "C0", "y": "C3", "z": "C2"}
        ax.barh(np.arange(len(rows)), [r["test_accuracy"].get("mean", np.nan) for r in rows],
                xerr=[r["test_accuracy"].get("std", 0.0) for r in rows],
                color=[colors[r["target"]] for r in rows])
        ax.set_yticks(np.arange(len(rows)), labels, fontsize=6)
        ax.set(xlim=(0.4, 1.0), xlabel="test accuracy (mean ± std)",
               title="Sec 7.3.2 ablation: T = [Z|bY]P vs YP vs ZP")
    if "mnist" in results:
        mn = results["mnist"]
        ax = axes[10]
        for m in ("elm", "random", "pca", "sorted_pca"):
            pts = [r for r in mn["single"] if r["method"] == m]
            ax.errorbar([r["width"] for r in pts], [r["test_accuracy"]["mean"] for r in pts],
                        yerr=[r["test_accuracy"]["std"] for r in pts], marker="o", capsize=2,
                        label=m)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="hidden width", ylabel="test accuracy", title="Table 7.2: MNIST")
        ax.legend(fontsize=7)
        ax = axes[11]
        rows = mn["deep"]
        ax.plot([r["params"] for r in rows], [r["train_accuracy"] for r in rows], "o-",
                label="train")
        ax.plot([r["params"] for r in rows], [r["test_accuracy"] for r in rows], "s--",
                label="test")
        ax.set_xscale("log")
        ax.set(xlabel="parameters", ylabel="accuracy", title="Table 7.3: MNIST, deterministic PP")
        ax.legend(fontsize=7)
    for ax in axes:
        if not ax.has_data():
            ax.set_axis_off()
    fig.tight_layout()
    save_figure(fig, path, dpi=70)


if __name__ == "__main__":
    import json
    import sys
    if len(sys.argv) != 2 or not sys.argv[1].endswith(".json"):
        raise SystemExit("usage: python -m neurojax.analysis.platonic_figure RESULTS.json")
    with open(sys.argv[1]) as fh:
        plot(json.load(fh), sys.argv[1][:-len(".json")] + ".png")
