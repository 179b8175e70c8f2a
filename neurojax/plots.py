"""Matplotlib figures written as PNG files (headless backend)."""
import collections

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)


def plot_training_curves(records: list[dict], path: str, *, title: str = "") -> None:
    """One panel per scalar (loss, accuracy, ...), train and eval splits overlaid."""
    series = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in records:
        for key, value in r.items():
            if key in ("step", "split") or not isinstance(value, (int, float)):
                continue
            series[key][r["split"]].append((r["step"], value))
    names = [k for k in ("loss", "accuracy") if k in series] + sorted(
        k for k in series if k not in ("loss", "accuracy", "steps_per_sec", "lr"))
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        for split, points in sorted(series[name].items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if split != "train" else None,
                    markersize=3, label=split)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if name == "loss" and all(v > 0 for pts in series[name].values() for _, v in pts):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
