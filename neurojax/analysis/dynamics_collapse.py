"""Part "collapse" of the learning-dynamics study: stochastic collapse (Chen, Kunin,
Yamamura & Ganguli, NeurIPS 2023).

1. Invariance on a real run: a digits MLP put on a vanishing set and an
   identical-neuron set (``project_to_invariant_set``) and trained by
   minibatch SGD with momentum and weight decay in float32 stays on both: the
   vanishing neurons' weights stay exactly 0 (check: predicted 0), the tied
   neurons stay equal up to float32 round-off of the matmuls (check:
   predicted 0, reported as the largest difference relative to the layer's
   largest weight; see ``tests/metrics/test_collapse.py`` for bitwise
   equality in exact arithmetic).
2. The detector over training: the same MLP from an ordinary initialisation,
   trained with a small learning rate throughout, or with a large one first
   and then the small one (the paper's Sec. 5 schedule), with weight decay;
   ``collapse_metrics`` (vanishing / duplicated / independent neurons) and
   the test accuracy are recorded along the way. The paper's claim that more
   gradient noise (larger ``lr / batch``) collapses more neurons is an
   empirical trend: it is shown, not checked against a closed form.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax.analysis._dynamics_digits import (accuracy, check_record, cross_entropy,
                                                digits_arrays, sgd_segment)
from neurojax.analysis.outputs import jsonable, save_figure
from neurojax.metrics.collapse import (collapse_metrics, collapse_report, neuron_vectors,
                                       project_to_invariant_set)

PART = "collapse"
WIDTHS = (128, 128)
RTOL = 0.02  # detection threshold, relative to a layer's largest neuron
WEIGHT_DECAY = 5e-3  # dead ReLUs shrink only by decay: (1 - lr wd)^steps


def invariance_part(model, params, data, *, steps: int, seed: int = 0):
    """Train from a point of the invariant sets; returns the checks of item 1 and
    how far the free neurons' incoming weights moved (so the run did train)."""
    xtr, ytr = data
    vanish, groups = [0, 1, 2], [[3, 4, 5], [6, 7]]
    p = params
    for layer in ("dense_0", "dense_1"):
        p = project_to_invariant_set(p, layer, vanishing=vanish, groups=groups)
    opt = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
    p, _, _ = sgd_segment(cross_entropy(model), opt, p, opt.init(p), xtr, ytr,
                          key=jax.random.PRNGKey(seed), start=0, num_steps=steps,
                          batch_size=32)
    checks, moved = [], 0.0
    for layer in ("dense_0", "dense_1"):
        w_in, w_out = neuron_vectors(p, layer)
        v = np.asarray(jnp.concatenate([w_in, w_out], axis=1))
        scale = np.abs(v).max()
        checks.append(check_record(f"{layer}: max |weight| of vanishing neurons after "
                                   f"{steps} SGD steps", np.abs(v[vanish]).max(), 0.0))
        tied = max(np.abs(v[g] - v[g[0]]).max() for g in groups) / scale
        checks.append(check_record(f"{layer}: max |difference| of tied neurons / max |weight| "
                                   f"after {steps} steps (float32 round-off)", tied, 0.0))
        w0_in, _ = neuron_vectors(params, layer)
        moved = max(moved, float(jnp.abs(w_in - w0_in)[8:].max()))
    return checks, moved


def schedule_part(model, params, data, *, schedules: dict, steps: int, record_every: int,
                  batch_size: int, weight_decay: float, seed: int = 0) -> dict:
    """Train under each lr schedule ``{name: [(lr, num_steps), ...]}``; record
    collapse metrics and test accuracy every ``record_every`` steps."""
    xtr, ytr, xte, yte = data
    loss = cross_entropy(model)
    runs = {}
    for name, phases in schedules.items():
        if sum(n for _, n in phases) != steps:
            raise ValueError(f"schedule {name} must total {steps} steps, got {phases}")
        p, step, hist = params, 0, {"step": [], "test_accuracy": [], "fraction_independent": [],
                                    "vanishing": [], "duplicated": []}
        key = jax.random.PRNGKey(seed + 1)

        def record(q):
            m = collapse_metrics(q, rtol=RTOL)
            acc = jnp.mean(jnp.argmax(model.apply({"params": q}, xte), -1) == yte)
            van = sum(v for k, v in m.items() if k.endswith("/vanishing"))
            dup = sum(v for k, v in m.items() if k.endswith("/duplicated"))
            return {"acc": acc, "frac": m["collapse/fraction_independent"], "van": van,
                    "dup": dup}

        for lr, n in phases:
            opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr))
            p, _, rec = sgd_segment(loss, opt, p, opt.init(p), xtr, ytr, key=key, start=step,
                                    num_steps=n, batch_size=batch_size,
                                    record_every=record_every, record=record)
            hist["step"] += list(step + record_every * np.arange(1, n // record_every + 1))
            hist["test_accuracy"] += list(np.asarray(rec["acc"]))
            hist["fraction_independent"] += list(np.asarray(rec["frac"]))
            hist["vanishing"] += list(np.asarray(rec["van"]))
            hist["duplicated"] += list(np.asarray(rec["dup"]))
            step += n
        rep = collapse_report(p, rtol=RTOL)
        hist["final"] = {layer: {k: int(r[k]) for k in ("num_vanishing", "num_duplicated",
                                                        "num_independent", "width")}
                         for layer, r in rep.items()}
        hist["final_test_accuracy"] = accuracy(model, p, xte, yte)
        hist["final_train_accuracy"] = accuracy(model, p, xtr, ytr)
        hist["phases"] = phases
        runs[name] = hist
    return runs


def plot(result: dict, path: pathlib.Path) -> None:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 4.5))
    ax = fig.subplots(1, 3)
    for i, (name, r) in enumerate(result["schedules"].items()):
        ax[0].plot(r["step"], r["fraction_independent"], color=f"C{i}", label=name)
        ax[1].plot(r["step"], r["vanishing"], color=f"C{i}", label=f"{name}: vanishing")
        ax[1].plot(r["step"], r["duplicated"], "--", color=f"C{i}", label=f"{name}: duplicated")
        ax[2].plot(r["step"], r["test_accuracy"], color=f"C{i}", label=name)
    ax[0].set(xlabel="step", ylabel="independent / hidden neurons",
              title=f"stochastic collapse, digits MLP {WIDTHS} (rtol {RTOL})")
    ax[1].set(xlabel="step", ylabel="neurons", title="vanishing and duplicated neurons")
    ax[2].set(xlabel="step", ylabel="test accuracy", title="large-then-small vs small lr")
    for a in ax:
        a.legend(fontsize=7)
    worst = max(c["measured"] for c in result["checks"])
    fig.suptitle(f"invariance: SGD started on the vanishing/identical sets leaves them by at "
                 f"most {worst:.1e} (free neurons moved {result['free_neurons_max_change']:.2f})",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, str(path))


def run(outdir: pathlib.Path, *, quick: bool = False) -> dict:
    """Both experiments; writes ``collapse.png`` into ``outdir``."""
    from neurojax.models.mlp import MLP
    outdir = pathlib.Path(outdir)
    xtr, ytr, xte, yte = digits_arrays()
    model = MLP(widths=WIDTHS, num_outputs=10)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), xtr[:1])["params"]
    checks, moved = invariance_part(model, params, (xtr, ytr), steps=100 if quick else 500)
    steps, switch, every = (1600, 1200, 200) if quick else (8000, 4000, 250)
    large, small = 0.5, 0.02
    schedules = {f"small lr {small}": [(small, steps)],
                 f"large lr {large} then {small}": [(large, switch), (small, steps - switch)]}
    if not quick:
        schedules[f"large lr {large} throughout"] = [(large, steps)]
    runs = schedule_part(model, params, (xtr, ytr, xte, yte), schedules=schedules,
                         steps=steps, record_every=every, batch_size=16,
                         weight_decay=WEIGHT_DECAY)
    result = {"part": PART, "quick": quick, "model": f"MLP {WIDTHS} ReLU", "rtol": RTOL,
              "weight_decay": WEIGHT_DECAY, "batch_size": 16, "seeds": 1,
              "free_neurons_max_change": moved, "schedules": runs, "checks": checks}
    result = jsonable(result)
    plot(result, outdir / f"{PART}.png")
    return result
