"""The figure of ``neurojax.analysis.platonic`` (Oland 2024, Efficient Deep
Learning, ch. 7): one panel per part that ran, drawn from the results' JSON form."""
from __future__ import annotations

import numpy as np

from neurojax.analysis.outputs import save_figure
from neurojax.analysis.platonic import CHAPTER


def plot(results: dict, path: str) -> None:
    """One panel per part that ran."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(20, 9))
    axes = fig.subplots(2, 4).ravel()
    if "sine" in results:
        ax, s = axes[0], results["sine"]
        for i, dtype in enumerate(s):
            ax.semilogy(np.full(len(s[dtype]["mse"]), i), s[dtype]["mse"], "o", alpha=0.6)
        ax.axhline(CHAPTER["sine_mse"], color="k", ls="--", lw=1, label="chapter 2e-5")
        ax.set_xticks(range(len(s)), list(s))
        ax.set(ylabel="train MSE", title="Sec 7.5: sine, 1-16-16-1 CELU, seeds")
        ax.legend()
    if "deep" in results:
        d = results["deep"]
        widths = sorted({r["width"] for r in d["runs"].values()})
        for run in d["runs"].values():
            ls = "-" if run["n_tries"] == 1 else "--"
            axes[1].semilogy(np.arange(1, len(run["lsd"]) + 1), run["lsd"], ls, lw=0.8,
                             color=f"C{widths.index(run['width'])}",
                             label=f"width {run['width']}, n={run['n_tries']}")
        axes[1].legend(fontsize=7)
        axes[1].set(xlabel="layer", ylabel="LSD (MSE of the layer's LS read-out)",
                    title=f"Fig 7.5: {d['num_layers']}-layer CELU nets on the sine")
        for w in widths:
            runs = sorted((r for r in d["runs"].values() if r["width"] == w),
                          key=lambda r: r["n_tries"])
            axes[2].semilogy([r["n_tries"] for r in runs], [r["min_lsd"] for r in runs], "o-",
                             label=f"width {w}")
        axes[2].set(xlabel="N_tries", ylabel="min LSD over layers", title="Fig 7.6")
        axes[2].legend(fontsize=7)
    if "spirals" in results:
        sp = results["spirals"]
        rows = sp["table"]
        labels = [f"a{r['alpha']:g} {r['solver']} {r['precision'][:7]}"
                  + ("+tol" if "atol" in r["precision"] else "") for r in rows]
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
    fig.tight_layout()
    save_figure(fig, path, dpi=70)
