"""Matplotlib figures written as PNG files.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``), which renders
to a file without a GUI backend: importing this module leaves the backend a user
chose (a notebook's inline one, say) as it was, and no figure enters the
global figure manager.
"""
import collections

from matplotlib.figure import Figure


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
    fig = Figure(figsize=(4.5 * len(names), 3.5))
    axes = fig.subplots(1, len(names), squeeze=False)
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


def plot_eigenspectrum(eigenvalues, path: str, *, fit=None, title: str = "") -> None:
    """Log-log eigenspectrum lambda_j vs rank j, with the fitted power law.

    alpha-ReQ Fig. 1B: the covariance eigenvalues in log-log scale and the
    line lambda_j = c j^-alpha drawn over the ranks it was fitted on.
    Non-positive eigenvalues (numerical zeros) are not drawn.

    Args:
        eigenvalues: 1-D spectrum (any order; sorted descending here).
        path: PNG file to write.
        fit: ``neurojax.metrics.PowerLawFit`` (from ``alpha`` on this
            spectrum), or a mapping with ``alpha`` and ``intercept`` (or
            ``alpha_intercept``, as in ``spectrum_metrics``) and optionally
            ``first_rank``/``last_rank`` (default: all ranks), ``normalizer``
            (what the spectrum was divided by before the fit; default: its
            sum, as ``alpha`` normalises) and ``r2``/``alpha_r2``.
        title: figure title.
    """
    import numpy as np  # local: the module's existing plots do not need it

    lam = np.sort(np.asarray(eigenvalues, np.float64).ravel())[::-1]
    ranks = np.arange(1, lam.size + 1)
    keep = lam > 0
    fig = Figure(figsize=(4.5, 3.5))
    ax = fig.subplots()
    ax.loglog(ranks[keep], lam[keep], ".", markersize=3, label="eigenvalues")
    if fit is not None:
        f = fit._asdict() if hasattr(fit, "_asdict") else dict(fit)

        def get(name, default=None):
            for key in (name, f"alpha_{name}"):
                if key in f and f[key] is not None:
                    return float(np.asarray(f[key]))
            return default
        a, b = get("alpha"), get("intercept")
        if a is None or b is None:
            raise ValueError(f"fit needs 'alpha' and 'intercept', got keys {sorted(f)}")
        first = int(get("first_rank", 1))
        last = int(get("last_rank", lam.size))
        scale = get("normalizer", float(lam[lam > 0].sum()))
        r2 = get("r2")
        if np.isfinite(a) and np.isfinite(b):
            j = np.arange(first, last + 1, dtype=np.float64)
            label = rf"$\alpha$ = {a:.3f}" + (f", $R^2$ = {r2:.3f}" if r2 is not None else "")
            ax.loglog(j, scale * np.exp(b) * j ** -a, "r--", lw=2, label=label)
    ax.set_xlabel("rank j")
    ax.set_ylabel(r"eigenvalue $\lambda_j$")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
