"""Figs. 3 and 4 of Ghosh et al. (ICLR 2023): the one-step excess loss measured
along training and predicted (Lemma 2.1, Theorem 2.4), reproduced small on CPU.

Ghosh, Liu, Lajoie, Kording & Richards, "How gradient estimator variance and
bias impact learning in neural networks" (ICLR 2023), Sec. 2 and Appendix
B.2-B.3. Both run in float64 (as the paper's DoubleTensor runs):

* Fig. 4 (App. B.3): linear teacher (``d = 25``, 100 examples), two-layer
  linear student (width 25, both layers trained), a control network trained by
  full-batch gradient descent (``dt`` = learning rate); at every step the
  one-step excess loss ``Delta L(b, 0)`` (Eq. 2) is measured and predicted
  (Theorem 2.4's P, Q from one Hessian-vector product). Agreement is expected
  by construction at small ``dt``: Theorem 2.4 is the second-order Taylor
  expansion in ``dt`` of the measured quantity, so at ``dt = 1e-3`` the
  residual is the third-order term; the figure checks the implementation
  and the ``||g||`` / ``b^2`` scalings, not a property of learning.
* Fig. 3 (App. B.2): ReLU teacher with 4 hidden layers; linear and ReLU
  students of several depths and widths; ``Delta L(0, sigma^2)`` over a
  zero-sum noise set (``'mean_square'`` normalisation) along the control's
  true-gradient trajectory, against ``1/2 sigma^2 Tr H / N dt^2`` (Hutchinson).

Run through ``python -m neurojax.analysis.bias_variance --figure fig3``
(or ``fig4``).
"""
from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from tqdm import tqdm

from neurojax.analysis.outputs import save_figure, write_json
from neurojax.data import synthetic
from neurojax.metrics.curvature import hessian_trace, hvp
from neurojax.optim.injection import zero_sum_noise_set


_tree_dot = optax.tree.vdot


def _num_params(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def init_student(key, *, input_dim: int, depth: int, width: int, output_dim: int = 1,
                 dtype=jnp.float32) -> list:
    """Student weights: ``depth`` bias-free layers, entries ``N(0, 1/fan_in)``
    (variance-preserving, as the Xavier assumption of Theorem A.3); the same
    generator as the teacher (``synthetic.teacher_params``)."""
    return [w.astype(dtype) for w in synthetic.teacher_params(
        key, input_dim=input_dim, output_dim=output_dim, depth=depth, width=width)]


def mse(weights, x, y, activation: str = "linear") -> jax.Array:
    """``(1/|D|) sum_n ||y_n - f(x_n)||^2`` (the paper's MSE, Theorem A.3) of the
    bias-free MLP ``synthetic.teacher_forward``."""
    pred = synthetic.teacher_forward(list(weights), x, activation)
    return jnp.mean(jnp.sum((y - pred) ** 2, axis=-1))


def _save(fig, results: dict, outdir: str, name: str) -> dict:
    """``bias_variance_<name>.png`` and ``.json`` (6 significant digits) under ``outdir``."""
    save_figure(fig, os.path.join(outdir, f"bias_variance_{name}.png"), dpi=80)
    write_json(results, os.path.join(outdir, f"bias_variance_{name}.json"), digits=6)
    return results


# ----------------------------------------------------------------------------- Fig. 4


@functools.partial(jax.jit, static_argnames=("steps", "width"))
def _fig4_run(key, bs, dt, lr, *, steps, width):
    kt, ks = jax.random.split(key)
    data = synthetic.teacher_student(kt, num_examples=100, input_dim=25, depth=1,
                                     activation="linear")
    x, y = data["x"].astype(jnp.float64), data["y"].astype(jnp.float64)
    params = init_student(ks, input_dim=25, depth=2, width=width, dtype=jnp.float64)

    def loss(p):
        return mse(p, x, y)

    beta = jax.tree.map(jnp.ones_like, params)

    def step(p, _):
        g = jax.grad(loss)(p)
        gnorm = jnp.sqrt(_tree_dot(g, g))
        hb = hvp(loss, p, beta)
        q = _tree_dot(beta, hb)
        pp = _tree_dot(g, beta) / gnorm - _tree_dot(g, hb) / gnorm * dt  # H symmetric
        pred = 0.5 * bs ** 2 * q * dt ** 2 + bs * gnorm * pp * dt   # Theorem 2.4
        scale = 0.5 * bs ** 2 * jnp.abs(q) * dt ** 2 + bs * gnorm * jnp.abs(pp) * dt
        loss_true = loss(jax.tree.map(lambda a, b: a - dt * b, p, g))
        meas = jax.vmap(lambda b: loss(jax.tree.map(
            lambda a, gg, bb: a + dt * (-gg + b * bb), p, g, beta)))(bs) - loss_true
        return jax.tree.map(lambda a, b: a - lr * b, p, g), (gnorm, meas, pred, scale, q)

    _, out = jax.lax.scan(step, params, None, length=steps)
    return out


def figure4(outdir: str, quick: bool = False, seed: int = 0, *,
            teachers: Optional[int] = None, students: Optional[int] = None,
            steps: int = 300) -> dict:
    """Fig. 4: ``Delta L(b, 0)`` against ``||g||`` (A) and against ``b`` as ``||g|| -> 0`` (B).

    ``teachers`` x ``students`` runs (default 20 x 20; ``quick``: 4 x 4) of
    ``steps`` control steps each.
    """
    if teachers is None or students is None:
        teachers, students = (4, 4) if quick else (20, 20)
    dt, lr = 1e-3, 0.05  # measurement step dt; the control trains with lr
    b_small = [0.02, 0.04]
    b_large = list(np.geomspace(0.02, 0.5, 9)) + [0.2, 0.35]
    with jax.enable_x64(True):
        bs = jnp.asarray(b_small + b_large, jnp.float64)
        keys = jax.random.split(jax.random.PRNGKey(seed), teachers * students)
        outs = []
        for k in tqdm(keys, desc="fig4 teacher x student", leave=False):
            outs.append(jax.tree.map(np.asarray, _fig4_run(k, bs, dt, lr, steps=steps, width=25)))
    gnorm = np.stack([o[0] for o in outs])            # (runs, steps)
    meas = np.stack([o[1] for o in outs])             # (runs, steps, len(bs))
    pred = np.stack([o[2] for o in outs])
    scale = np.stack([o[3] for o in outs])
    qs = np.stack([o[4] for o in outs])
    rel_err = np.abs(meas - pred) / scale  # against the size of Theorem 2.4's two terms
    # (A) b = 0.02: |Delta L| against ||g||, on the part of the trajectory where the
    # linear term dominates (||g|| above 10x the crossover b Q dt / (2 |P|))
    a0, a1 = meas[..., 0].ravel(), meas[..., 1].ravel()
    g_all = gnorm.ravel()
    big = g_all > np.quantile(g_all, 0.5)
    loglog = np.polyfit(np.log(g_all[big]), np.log(np.abs(a0[big]) + 1e-300), 1)[0]
    ratio_b = np.median(np.abs(a1[big]) / np.abs(a0[big]))
    frac_neg = float(np.mean(a0 < 0))
    # (B) smallest gradient norm of each run: Delta L against b
    last = np.argmin(gnorm, axis=1)
    bl = np.asarray(b_large)
    final = np.stack([meas[r, last[r], 2:] for r in range(len(outs))])  # (runs, len(b_large))
    order = np.argsort(bl)[:9]
    slopes_b = [np.polyfit(np.log(bl[order]), np.log(np.abs(final[r, order])), 1)[0]
                for r in range(len(outs))]
    summary = {
        "runs": len(outs), "steps": steps, "dt": dt, "control_lr": lr,
        "num_params": 25 * 25 + 25, "Q_median": float(np.median(qs)),
        "median_rel_err_pred_vs_meas": float(np.median(rel_err)),
        "max_rel_err_pred_vs_meas": float(np.max(rel_err)),
        "loglog_slope_absDL_vs_gnorm_b0.02": float(loglog),
        "median_ratio_DL_b0.04_over_b0.02_large_g": float(ratio_b),
        "fraction_negative_DL_b0.02": frac_neg,
        "min_final_gnorm": float(gnorm.min()), "median_final_gnorm": float(np.median(gnorm[:, -1])),
        "loglog_slope_DL_vs_b_at_smallest_g_mean": float(np.mean(slopes_b)),
        "loglog_slope_DL_vs_b_at_smallest_g_range": [float(np.min(slopes_b)),
                                                      float(np.max(slopes_b))],
        "final_DL_positive_fraction": float(np.mean(final > 0)),
    }
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    sub = slice(None, None, max(1, len(outs) // 8))
    for r in range(len(outs))[sub]:
        axes[0].plot(gnorm[r], meas[r, :, 0], ".", ms=2)
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set_xlabel("||grad L||")
    axes[0].set_ylabel("Delta L(b=0.02, 0)")
    axes[0].set_title(f"A: linear in ||g|| (log-log slope {loglog:.2f}), either sign")
    for r in range(len(outs))[sub]:
        axes[1].plot(bl[order], final[r, order], "o-", ms=3)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].set_xlabel("b")
    axes[1].set_ylabel("Delta L(b, 0) at smallest ||g||")
    axes[1].set_title(f"B: quadratic in b (slope {np.mean(slopes_b):.2f})")
    fig.tight_layout()
    return _save(fig, {"summary": summary, "b": bs, "gnorm_run0": gnorm[0],
                       "delta_run0_b0.02": meas[0, :, 0], "pred_run0_b0.02": pred[0, :, 0]},
                 outdir, "fig4")


# ----------------------------------------------------------------------------- Fig. 3


@functools.partial(jax.jit, static_argnames=("depth", "width", "activation", "steps",
                                             "num_vectors"))
def _fig3_run(key, sigmas, dt, *, depth, width, activation, steps, num_vectors):
    kt, ks, kn, kh = jax.random.split(key, 4)
    data = synthetic.teacher_student(kt, num_examples=100, input_dim=25, depth=5, width=32,
                                     activation="relu")
    x, y = data["x"].astype(jnp.float64), data["y"].astype(jnp.float64)
    params = init_student(ks, input_dim=25, depth=depth + 1, width=width, dtype=jnp.float64)
    n = _num_params(params)

    def loss(p):
        return mse(p, x, y, activation)

    def step(p, i):
        g = jax.grad(loss)(p)
        nset = zero_sum_noise_set(jax.random.fold_in(kn, i), p, num_vectors,
                                  normalization="mean_square")
        true = loss(jax.tree.map(lambda a, b: a - dt * b, p, g))
        base = jax.tree.map(lambda a, b: a - dt * b, p, g)

        def one(s):
            vals = jax.vmap(lambda nv: loss(jax.tree.map(lambda a, e: a + dt * s * e, base,
                                                         nv)))(nset)
            return jnp.mean(vals) - true

        meas = jax.vmap(one)(sigmas)
        tr = hessian_trace(loss, p, jax.random.fold_in(kh, i), 8)
        pred = 0.5 * sigmas ** 2 * tr / n * dt ** 2
        return base, (meas, pred, tr / n)

    _, out = jax.lax.scan(step, params, jnp.arange(steps))
    return out


def figure3(outdir: str, quick: bool = False, seed: int = 0, *,
            depths: Optional[Sequence[int]] = None, widths: Optional[Sequence[int]] = None,
            pairs: Optional[int] = None, steps: Optional[int] = None,
            activations: Sequence[str] = ("linear", "relu")) -> dict:
    """Fig. 3: ``Delta L(0, sigma^2)`` against width and depth, linear vs ReLU students.

    Defaults: hidden depths (1, 2, 4, 8), widths (16, 32, 64, 128), 10
    teacher-student pairs, 50 control steps (``quick``: (1, 2, 4), (16, 32,
    64), 3, 20), linear and ReLU students (each configuration compiles once).
    """
    activations = tuple(activations)
    if not activations or not set(activations) <= {"linear", "relu"}:
        raise ValueError(f"activations must be a non-empty subset of ('linear', 'relu'), "
                         f"got {activations!r}")
    depths = tuple(depths or ((1, 2, 4) if quick else (1, 2, 4, 8)))
    widths = tuple(widths or ((16, 32, 64) if quick else (16, 32, 64, 128)))
    pairs = pairs or (3 if quick else 10)
    steps = steps or (20 if quick else 50)
    dt, num_vectors = 0.01, 20
    sig2 = np.array([0.1, 0.2, 0.3, 0.4])
    res = {}
    configs = [(a, dp, w) for a in activations for dp in depths for w in widths]
    with jax.enable_x64(True):
        sigmas = jnp.sqrt(jnp.asarray(sig2))
        keys = jax.random.split(jax.random.PRNGKey(seed), pairs)
        for act, dp, w in tqdm(configs, desc="fig3 configs", leave=False):
            run = jax.vmap(lambda k: _fig3_run(k, sigmas, dt, depth=dp, width=w, activation=act,
                                               steps=steps, num_vectors=num_vectors))
            meas, pred, trn = jax.tree.map(np.asarray, run(keys))
            res[(act, dp, w)] = {"delta_mean": meas.mean(axis=(0, 1)),  # per sigma^2
                                 "pred_mean": pred.mean(axis=(0, 1)),
                                 "trace_over_n": float(trn.mean())}
    k = 0  # sigma^2 = 0.1 for the verdict (Delta L is linear in sigma^2)
    dl = {c: float(v["delta_mean"][k]) for c, v in res.items()}
    width_dec = [all(dl[(a, dp, widths[i + 1])] < dl[(a, dp, widths[i])]
                     for i in range(len(widths) - 1)) for a in activations for dp in depths]
    depth_dec = [all(dl[(a, depths[i + 1], w)] < dl[(a, depths[i], w)]
                     for i in range(len(depths) - 1)) for a in activations for w in widths]
    relu_below = ([dl[("relu", dp, w)] < dl[("linear", dp, w)] for dp in depths for w in widths]
                  if len(activations) == 2 else [])
    ratio = np.array([res[c]["delta_mean"] / res[c]["pred_mean"] for c in res])
    lin = np.array([np.polyfit(sig2, res[c]["delta_mean"], 1)[1] / res[c]["delta_mean"][-1]
                    for c in res])
    summary = {
        "depths_hidden": depths, "widths": widths, "teacher_student_pairs": pairs,
        "steps": steps, "dt": dt, "num_vectors": num_vectors,
        "delta_L_sigma2_0.1": {f"{a}_d{dp}_w{w}": v for (a, dp, w), v in dl.items()},
        "trace_over_N": {f"{a}_d{dp}_w{w}": v["trace_over_n"] for (a, dp, w), v in res.items()},
        "decreasing_in_width": f"{sum(width_dec)}/{len(width_dec)} (activation, depth) rows",
        "decreasing_in_depth": f"{sum(depth_dec)}/{len(depth_dec)} (activation, width) rows",
        "relu_below_linear": f"{sum(relu_below)}/{len(relu_below)} (depth, width) cells",
        "measured_over_predicted": [float(ratio.min()), float(np.median(ratio)),
                                    float(ratio.max())],
        "intercept_over_value_linear_in_sigma2_max": float(np.max(np.abs(lin))),
    }
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for a, ls in (("linear", "-"), ("relu", "--")):
        if a not in activations:
            continue
        for dp in depths:
            axes[0].plot(widths, [dl[(a, dp, w)] for w in widths], ls, marker="o",
                         label=f"{a}, {dp} hidden")
        for w in widths:
            axes[1].plot(depths, [dl[(a, dp, w)] for dp in depths], ls, marker="o",
                         label=f"{a}, width {w}")
    for ax, xl in zip(axes, ("width", "hidden layers")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("Delta L(0, sigma^2 = 0.1)")
        ax.legend(fontsize=6)
    fig.suptitle("Fig. 3: impact of variance vs width / depth, linear (solid) vs ReLU (dashed)")
    fig.tight_layout()
    return _save(fig, {"summary": summary, "sigma2": sig2,
                       "delta_mean": {f"{a}_d{dp}_w{w}": v["delta_mean"]
                                      for (a, dp, w), v in res.items()}}, outdir, "fig3")
