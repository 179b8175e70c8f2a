"""The figures of ``neurojax.analysis.credit_assignment``: one PNG per part,
drawn from the part's result dict (the same numbers its JSON holds)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from neurojax.analysis.outputs import save_figure

SHORT = {"backprop": "BP", "feedback_alignment": "FA", "sign_symmetry": "SS",
         "sign_symmetry_random": "SS|B0|", "kolen_pollack": "KP", "weight_mirror": "WM",
         "symmetric_alignment": "SA", "activation_alignment": "AA",
         "information_alignment": "IA"}


def _colors(names):
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _arr(values) -> np.ndarray:
    """A float array with JSON's nulls (NaN written out) back as NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)


def _hidden_layers(rows: Mapping[str, Any]) -> list[str]:
    """Layers whose gradient a rule changes (all but the head, which keeps its
    exact gradient), in the tree's order."""
    layers = list(next(iter(rows.values()))["final"]["grad_angle"])
    return [k for k in layers if k not in ("all", "head")]


def plot_rules(result: Mapping[str, Any], path: str) -> None:
    """Per task: test accuracy over training, the gradient angle over training
    (layer 0, the deepest from the loss), and final per-layer gradient and
    weight angles (bars: seed mean, whiskers: seed std)."""
    tasks = result["tasks"]
    fig = Figure(figsize=(17, 3.8 * len(tasks)))
    axes = fig.subplots(len(tasks), 4, squeeze=False)
    for row, (name, block) in zip(axes, tasks.items()):
        rows = block["rules"]
        colors = _colors(rows)
        layers = _hidden_layers(rows)
        for rule, r in rows.items():
            c = r["curves"]
            row[0].plot(c["step"], _arr(c["test_accuracy"]), color=colors[rule],
                        label=SHORT[rule])
            if layers:
                row[1].plot(c["step"], _arr(c["grad_angle"][layers[0]]), color=colors[rule])
        row[0].set(title=f"{name}: test accuracy (seed mean)", xlabel="step")
        row[0].legend(fontsize=7, ncol=2)
        row[1].set(title=f"gradient angle, {layers[0] if layers else '-'}", xlabel="step",
                   ylabel="degrees")
        width = 0.8 / max(len(layers), 1)
        for col, key in ((2, "grad_angle"), (3, "weight_angle")):
            ax = row[col]
            for j, layer in enumerate(layers + (["head"] if key == "weight_angle" else [])):
                xs, means, stds = [], [], []
                for i, rule in enumerate(rows):
                    v = rows[rule]["final"][key].get(layer)
                    if v is None:
                        continue
                    xs.append(i + (j - len(layers) / 2) * width)
                    means.append(np.nan if v["mean"] is None else v["mean"])
                    stds.append(0.0 if v["std"] is None else v["std"])
                ax.bar(xs, means, width, yerr=stds, label=layer)
            ax.set_xticks(range(len(rows)), [SHORT[r] for r in rows], fontsize=7)
            ax.axhline(90, color="gray", lw=0.5, ls=":")
            ax.set(title=f"final {key.replace('_', ' ')} per layer", ylabel="degrees")
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def plot_depth(result: Mapping[str, Any], path: str) -> None:
    """Test accuracy and the gap to backprop against depth (seed mean +- std)."""
    depths = result["depths"]
    fig = Figure(figsize=(10, 3.8))
    ax_acc, ax_gap = fig.subplots(1, 2)
    colors = _colors(result["rules"])
    for rule, per_depth in result["rules"].items():
        acc = [per_depth[str(d)]["test_accuracy"] for d in depths]
        ax_acc.errorbar(depths, [a["mean"] for a in acc], [a["std"] for a in acc],
                        color=colors[rule], marker="o", capsize=3, label=SHORT[rule])
        if rule != "backprop":
            gap = [per_depth[str(d)]["gap_to_backprop"] for d in depths]
            ax_gap.errorbar(depths, [g["mean"] for g in gap], [g["std"] for g in gap],
                            color=colors[rule], marker="o", capsize=3, label=SHORT[rule])
    ax_acc.set(title="digits MLP (width 64): test accuracy", xlabel="hidden layers")
    ax_acc.legend(fontsize=8)
    ax_gap.axhline(0, color="gray", lw=0.5)
    ax_gap.set(title="backprop accuracy - rule accuracy (paired by seed)",
               xlabel="hidden layers")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def plot_transfer(result: Mapping[str, Any], path: str) -> None:
    """Per rule and architecture, test accuracy over the (rate, decay) grid; the
    best cell of each architecture is boxed on both (when both were run)."""
    names = list(result["rules"])
    rates, decays = result["rates"], result["decays"]
    fig = Figure(figsize=(4.2 * 2, 3.4 * len(names)))
    axes = fig.subplots(len(names), 2, squeeze=False)
    for row, name in zip(axes, names):
        block = result["rules"][name]
        for ax, arch in zip(row, ("A", "B")):
            if arch not in block["cells"]:
                ax.set_axis_off()
                continue
            grid = np.array([[block["cells"][arch][f"rate={r:g},decay={d:g}"]
                              ["test_accuracy"]["mean"] for d in decays] for r in rates])
            im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
            for i in range(len(rates)):
                for j in range(len(decays)):
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7,
                            color="w")
            regret = block.get("regret", {})
            for best, style in ((regret.get("best_a"), "-"), (regret.get("best_b"), "--")):
                if best is None:
                    continue
                r, d = (float(part.split("=")[1]) for part in best.split(","))
                ax.add_patch(_box(decays.index(d), rates.index(r), style))
            depth = len(result["architectures"][arch]["model_kwargs"]["widths"])
            ax.set(title=f"{SHORT[name]} on {arch} (depth {depth})", xlabel="decay x",
                   ylabel="rate x", xticks=range(len(decays)), yticks=range(len(rates)),
                   xticklabels=[f"{d:g}" for d in decays], yticklabels=[f"{r:g}" for r in rates])
            fig.colorbar(im, ax=ax)
    fig.suptitle("boxes: best on A (solid), best on B (dashed)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def _box(j, i, style):
    from matplotlib.patches import Rectangle
    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="r", lw=2, ls=style)


def isotropic_excess_loss(relative_bias, relative_noise, *, grad_norm: float,
                          trace_over_n: float, dt: float):
    """Lemma 2.1 for a bias and noise in isotropic directions (``<g, beta> = 0``,
    ``<beta, H beta> = Tr H``, ``E n^T H n = ||n||^2 Tr H / N``) as functions of
    their norms relative to ``||g||``: ``1/2 dt^2 (Tr H / N) ||g||^2 (x^2 + y^2)``."""
    x, y = np.asarray(relative_bias), np.asarray(relative_noise)
    return 0.5 * dt ** 2 * trace_over_n * grad_norm ** 2 * (x ** 2 + y ** 2)


def plot_bias_variance(result: Mapping[str, Any], path: str) -> None:
    """The rules in the bias/variance plane (relative bias ``||d||/||g||``,
    relative noise), at initialisation (circles) and trained (squares), with
    Lemma 2.1's isotropic contours at the shared initialisation; and the
    predicted against the measured one-step excess loss."""
    points = result["points"]
    colors = _colors(points)
    fig = Figure(figsize=(12, 4.4))
    ax, ax_pm = fig.subplots(1, 2)
    init = next(iter(points.values()))["init"]
    xs = [p[w]["relative_bias"] for p in points.values() for w in p]
    ys = [p[w]["relative_noise"] for p in points.values() for w in p]
    gx = np.linspace(0, max(max(xs), 0.1) * 1.15, 80)
    gy = np.linspace(0, max(max(ys), 0.1) * 1.15, 80)
    z = isotropic_excess_loss(gx[None, :], gy[:, None], grad_norm=init["grad_norm"],
                              trace_over_n=init["trace_over_n"], dt=result["dt"])
    cs = ax.contour(gx, gy, z, levels=6, colors="gray", linewidths=0.6)
    ax.clabel(cs, fontsize=6, fmt="%.1e")
    lo, hi = np.inf, -np.inf
    for rule, p in points.items():
        for where, marker in (("init", "o"), ("trained", "s")):
            q = p[where]
            ax.plot(q["relative_bias"], q["relative_noise"], marker, color=colors[rule],
                    label=SHORT[rule] if where == "init" else None)
            pred, meas = q["predicted"]["total"], q["measured"]["total"]
            ax_pm.plot(pred, meas, marker, color=colors[rule])
            lo, hi = min(lo, pred, meas), max(hi, pred, meas)
            if where == "trained":
                ax.annotate(f"{pred:.1e}", (q["relative_bias"], q["relative_noise"]),
                            fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="relative bias ||E g_rule - g|| / ||g||",
           ylabel="relative noise sqrt(E||g_i - E g_i||^2) / ||g||",
           title="rules (o init, [] trained); contours: Lemma 2.1, isotropic, at init")
    ax.legend(fontsize=7, ncol=2)
    pad = 0.05 * (hi - lo)
    ax_pm.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k:", lw=0.8)
    ax_pm.set(xlabel="Lemma 2.1 predicted excess loss", ylabel="measured (Eq. 2)",
              title=f"one step dt={result['dt']}: predicted vs measured")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
