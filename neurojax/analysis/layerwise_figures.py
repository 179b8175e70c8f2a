"""Figures of ``neurojax.analysis.layerwise``: one PNG per part, drawn from
the part's result dict (so a figure can be redrawn from the JSON)."""
from __future__ import annotations

from typing import Optional

from neurojax.analysis.outputs import save_figure

COLORS = {"backprop": "k", "dll": "C0", "random_robin": "C3", "init": "0.6",
          "dll_pooled_layer": "C2", "dll_flat_layer": "C4", "dll_flat_layer_e1": "C5"}
LABELS = {"backprop": "backprop", "dll": "DLL (bottom-up)", "random_robin": "Random Robin",
          "init": "initialisation", "dll_pooled_layer": "DLL, pooled\ndecision layer",
          "dll_flat_layer": "DLL, flat\ndecision layer",
          "dll_flat_layer_e1": "DLL, flat,\nE1 budget (1.8x)"}


def _errorbar(ax, xs, stats, scale=100.0, **kw):
    ax.errorbar(xs, [scale * s["mean"] for s in stats],
                yerr=[scale * s["std"] for s in stats], capsize=3, **kw)


def _table_panel(ax, table: dict, title: str) -> None:
    """Test accuracy per method (final network and peak read-out, every seed)."""
    runs = table["runs"]
    for i, name in enumerate(runs):
        for j, key in enumerate(("network", "peak")):
            if key not in runs[name]:
                continue
            x = i + (0.2 * j - 0.1 if "peak" in runs[name] else 0.0)
            stat = runs[name][key]
            ax.errorbar([x], [100 * stat["mean"]], yerr=[100 * stat["std"]], capsize=4,
                        fmt="o" if key == "network" else "s", color=COLORS[name])
            ax.plot([x] * len(stat["per_seed"]), [100 * v for v in stat["per_seed"]], ".",
                    color="0.5")
    ax.set_xticks(range(len(runs)), [LABELS[n] for n in runs], fontsize=7)
    diffs = table["difference_vs_backprop"]
    text = "\n".join(f"{k}: {100 * v['mean']:+.2f} [{100 * v['ci95'][0]:+.1f}, "
                     f"{100 * v['ci95'][1]:+.1f}]" for k, v in diffs.items())
    ax.text(0.02, 0.02, "vs backprop, paired by seed (points, 95%):\n" + text,
            transform=ax.transAxes, fontsize=6, va="bottom")
    s = table["setting"]
    ax.set(ylabel="test accuracy (%)",
           title=f"{title}, {s['num_steps']} backprop steps, {s['replicas']} seeds\n"
                 f"o: the trained network, s: peak read-out (chosen on validation)")


def plot_table(result: dict, path: str) -> None:
    """Table 6.1's analogue on the shapes (and the digits, when run) and
    Fig. 6.3 (stable rank per layer)."""
    from matplotlib.figure import Figure
    digits = result.get("digits", {})
    sweeps = [(name, table) for name, table in (("shapes_small", result), ("digits", digits))
              if "budget_sweep" in table]
    panels = 2 + bool(digits) + bool(sweeps)
    fig = Figure(figsize=(5.5 * panels, 4.6))
    axes = fig.subplots(1, panels)
    _table_panel(axes[0], result, "small CNN, shapes_small")
    if digits:
        _table_panel(axes[1], digits, "small CNN, digits")
    if sweeps:
        ax = axes[2]
        for (dataset, table), color in zip(sweeps, ("C0", "C3")):
            gaps = {1: (table["setting"]["num_steps"],
                        table["difference_vs_backprop"]["dll_flat_layer_network"]),
                    **{int(m): (row["num_steps"], row["difference"])
                       for m, row in table["budget_sweep"].items()}}
            xs, ds = [gaps[m][0] for m in sorted(gaps)], [gaps[m][1] for m in sorted(gaps)]
            ax.errorbar(xs, [100 * d["mean"] for d in ds],
                        yerr=[[100 * (d["mean"] - d["ci95"][0]) for d in ds],
                              [100 * (d["ci95"][1] - d["mean"]) for d in ds]],
                        capsize=3, marker="o", color=color, label=dataset)
            ax.plot([x for x, d in zip(xs, ds) for _ in d["per_seed"]],
                    [100 * v for d in ds for v in d["per_seed"]], ".", color=color, alpha=0.4)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="total training steps (both methods)",
               ylabel="flat DLL - backprop, paired by seed\n(points; bars: 95% interval)",
               title="the gap as both near convergence")
        ax.legend(fontsize=8)
    ax2 = axes[-1]
    rank = result["stable_rank"]
    layers = list(rank["backprop"])
    for name in ("init", "backprop", "dll", "random_robin", "dll_pooled_layer",
                 "dll_flat_layer", "dll_flat_layer_e1"):
        if name in rank:
            _errorbar(ax2, range(len(layers)), [rank[name][l] for l in layers], scale=1.0,
                      marker="o", color=COLORS[name], label=LABELS[name].replace("\n", " "))
    ax2.set_xticks(range(len(layers)), layers)
    ax2.set(ylabel="stable rank ||W||_F^2 / ||W||_2^2", title="Fig. 6.3 analogue")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_depth(result: dict, path: str) -> None:
    """E2: DLL read-out accuracy after every block, and backprop per depth."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    curve = result["dll_readout"]
    blocks = sorted(int(b) for b in curve)
    _errorbar(ax, blocks, [curve[str(b)] for b in blocks], color=COLORS["dll"], lw=1,
              label="DLL, read out after block d")
    bp = result["backprop"]
    depths = sorted(int(d) for d in bp)
    _errorbar(ax, depths, [bp[str(d)]["final"] for d in depths], color=COLORS["backprop"],
              marker="o", label="backprop, depth d")
    ax.axhline(10, color="0.6", ls=":", lw=1, label="chance")
    s = result["setting"]
    ax.set(xlabel="depth d (hidden layers)", ylabel="test accuracy (%)", xscale="log",
           title=f"digits, ReLU MLP width {s['width']}, {s['dll_steps_per_block']} steps "
                 f"per block, {s['replicas']} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_window(result: dict, path: str, equal_total: Optional[dict] = None) -> None:
    """Fig. 6.2: test accuracy against the segment-wise window, at equal steps
    per subnet and (``equal_total``: ``{"windows": ..., "num_steps": n}``) at
    equal steps in all."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    windows = result["windows"]
    ks = sorted(int(k) for k in windows)
    s = result.get("setting", {})
    if ks:
        _errorbar(ax, ks, [windows[str(k)]["final"] for k in ks], marker="o", color="C0",
                  label=f"final network, {s.get('steps_per_subnet')} steps per subnet")
    if ks and all("peak" in windows[str(k)] for k in ks):
        _errorbar(ax, [k + 0.05 for k in ks], [windows[str(k)]["peak"] for k in ks],
                  marker="s", color="C1", ls="--", label="peak read-out (validation)")
    if equal_total:
        totals = equal_total["windows"]
        kt = sorted(int(k) for k in totals)
        _errorbar(ax, [k - 0.05 for k in kt], [totals[str(k)]["final"] for k in kt],
                  marker="^", color="C2",
                  label=f"final network, {equal_total['num_steps']} steps in all")
        ks = sorted(set(ks) | set(kt))
    ax.set_xticks(ks)
    ax.set(xlabel="window (blocks per subnet, step 1)", ylabel="test accuracy (%)",
           title="segment-wise small CNN, shapes_small")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_window_total(result: dict, path: str) -> None:
    """The ``window_total`` part alone (its windows at equal total steps)."""
    plot_window({"windows": {}}, path, equal_total={
        "windows": result["windows"], "num_steps": result["setting"]["num_steps"]})


PLOTS = {"table": plot_table, "depth": plot_depth, "window": plot_window,
         "window_total": plot_window_total}
