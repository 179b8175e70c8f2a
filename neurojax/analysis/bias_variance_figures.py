"""Figures 1, 3, 4 and 7 of Ghosh et al. (ICLR 2023), reproduced small on CPU.

Run ``python -m neurojax.analysis.bias_variance --figure {fig1,fig3,fig4,fig7}
--outdir DIR [--quick]``; each writes ``bias_variance_<fig>.png`` and
``bias_variance_<fig>.json`` (the numbers behind the verdict, under
``"summary"``). Figs. 3, 4 and 7 run in float64 (as the paper's
DoubleTensor runs, Appendix B); Fig. 1 in float32. Setups follow Appendix B
and the spec (``shared/specs/000_partB.md`` Sec. 2) with sizes cut down:

* Fig. 4 (App. B.3): linear teacher (``d = 25``, 100 examples), two-layer
  linear student (width 25, both layers trained), a control network trained by
  full-batch gradient descent (``dt`` = learning rate); at every step the
  one-step excess loss ``Delta L(b, 0)`` (Eq. 2) is measured and predicted
  (Theorem 2.4's P, Q from one Hessian-vector product).
* Fig. 3 (App. B.2): ReLU teacher with 4 hidden layers; linear and ReLU
  students of several depths and widths; ``Delta L(0, sigma^2)`` over a
  zero-sum noise set (``'mean_square'`` normalisation) along the control's
  true-gradient trajectory, against ``1/2 sigma^2 Tr H / N dt^2`` (Hutchinson).
* Fig. 7 (Sec. 3.2): linear students, spectra set through
  ``controlled_hessian_inputs``; probability of descent (in expectation over
  the noise, isotropic noise sets) on a (lambda_N, lambda_1) grid for the true
  gradient and for ``sigma = ||g||``, and on a (psi dt, b/||g||) grid for bias.
* Fig. 1 (App. B.1): full-batch gradient descent (SGD, momentum 0.9) of an
  MLP on the offline digits with bias and noise relative to ``||g||``
  (``optax.chain(inject_gradient_bias(., relative=True),
  inject_gradient_noise(., relative=True), optax.sgd)``), every grid cell and
  seed vmapped into one compiled run.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from tqdm import tqdm

from neurojax.analysis import bias_variance as bv
from neurojax.data import synthetic
from neurojax.metrics.curvature import hessian_trace, hvp
from neurojax.optim.factory import parse_transform_entry
from neurojax.optim.injection import (inject_gradient_bias, inject_gradient_noise,
                                      zero_sum_noise_set)

FIGURES = ("fig1", "fig3", "fig4", "fig7")


def _tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _num_params(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def _rounded(x, digits=6):
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return _rounded(np.asarray(x).tolist(), digits)
    if isinstance(x, (float, np.floating)):  # NaN/inf -> null: strict JSON
        return float(f"{float(x):.{digits}g}") if math.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


def _save(fig, results: dict, outdir: str, name: str) -> dict:
    os.makedirs(outdir, exist_ok=True)
    fig.savefig(os.path.join(outdir, f"bias_variance_{name}.png"), dpi=80)
    with open(os.path.join(outdir, f"bias_variance_{name}.json"), "w") as fh:
        json.dump(_rounded(results), fh, indent=1)
    return results


# ----------------------------------------------------------------------------- Fig. 4


@functools.partial(jax.jit, static_argnames=("steps", "width"))
def _fig4_run(key, bs, dt, lr, *, steps, width):
    kt, ks = jax.random.split(key)
    data = synthetic.teacher_student(kt, num_examples=100, input_dim=25, depth=1,
                                     activation="linear")
    x, y = data["x"].astype(jnp.float64), data["y"].astype(jnp.float64)
    params = bv.init_student(ks, input_dim=25, depth=2, width=width, dtype=jnp.float64)

    def loss(p):
        return bv.mse(p, x, y)

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


# ----------------------------------------------------------------------------- Fig. 7


def figure7(outdir: str, quick: bool = False, seed: int = 0, *, grid: Optional[int] = None,
            teachers: Optional[int] = None, students: Optional[int] = None) -> dict:
    """Fig. 7: empirical probability of descent against the Hessian spectrum.

    Linear MSE students in ``d = 10`` dimensions, ``dt = 0.1``, 10 teachers x
    100 students per cell (the paper's counts; ``quick``: 5 x 40; or ``teachers``,
    ``students``, and ``grid`` for the grid's side), spectra
    ``linspace(lambda_N, lambda_1, d)`` on a 16 x 16 grid of
    ``1 <= lambda_N <= lambda_1 <= 40`` (A, B) and ``s * linspace(0.1, 1,
    d)`` for 16 scales against 16 ratios ``b / ||g||`` in ``[1e-3, 1]`` (C).
    A cell's P(descent) is the fraction of students whose loss falls in
    expectation over the noise (exact over the isotropic set).

    Measured (full size, 2 CPU cores, 1-2 min; ``benchmarks/results/
    bias_variance_fig7.json``), against Theorem 3.1 (descent guaranteed when
    ``lambda_1 <= 2 / (dt (1 + sigma^2 / ||g||^2))``, ascent when ``lambda_N``
    is above it) and Theorem 3.2 (descent when ``b / ||g||`` is below Eq. 8):

    * A (true gradient, threshold 20): P = 1 in all 36 cells with
      ``lambda_1 <= 20``, P = 0 in all 36 cells with ``lambda_N >= 20``, mean
      0.21 in the 64 cells in between. B (``sigma = ||g||``, threshold 10):
      P = 1 in all 10 cells below, 0 in all 78 above, mean 0.11 between; the
      noise halves the threshold and shrinks the always-descend region from
      36 to 10 cells. Theorem 3.1 holds without exception (for a quadratic it
      is exact, so this checks the setup as much as the theorem).
    * C (bias): P = 1 in 180 of the 183 cells under Eq. 8. The three
      exceptions (P = 0.998-0.999: 1-2 of 1000 students ascend, at ratios
      0.01-0.04 < bound 0.060) are all in the sharpest column, ``psi dt =
      3.9`` with ``lambda_1 dt = 2``: at the edge of true-gradient stability,
      where the true step along the top eigenvector no longer lowers the loss
      and Eq. 8, which drops the ``1/2 g^T H g dt^2`` term, is only a
      leading-order statement. The ``'rigorous'`` form of
      ``bias_descent_bound`` (negative, i.e. no guarantee, for ``psi dt > 2``)
      holds in all 140 cells under it. Descent fails only well above the
      bound: the largest ratio with P = 1 is 0.9-3x the bound (the grid
      spacing is 1.6x), except in that last column (0.27x).

    Verdict: Fig. 7 reproduced; Theorem 3.1 exactly, Theorem 3.2 everywhere
    except at ``lambda_1 = 2 / dt``, where only the rigorous variant holds.
    """
    d, dt = 10, 0.1
    grid = grid or (10 if quick else 16)
    if teachers is None or students is None:
        teachers, students = (5, 40) if quick else (10, 100)
    kw = dict(num_teachers=teachers, num_students=students, num_examples=100)
    lams = np.linspace(1.0, 40.0, grid)
    key = jax.random.PRNGKey(seed)
    results = {}
    with jax.enable_x64(True):
        pairs = [(i, j) for i in range(grid) for j in range(i, grid)]
        specs = jnp.stack([jnp.linspace(lams[i], lams[j], d) for i, j in pairs])
        for panel, noise in tqdm((("A_true_gradient", 0.0), ("B_noise_sigma_eq_gnorm", 1.0)),
                                 desc="fig7 panels A, B", leave=False):
            p = np.full((grid, grid), np.nan)  # [i: lambda_N, j: lambda_1]
            out = bv.probability_of_descent_grid(key, specs, dt,
                                                 noise_ratios=jnp.full(len(pairs), noise), **kw)
            for (i, j), v in zip(pairs, np.asarray(out["p_descent"])):
                p[i, j] = v
            thr = (2.0 / dt) / (1.0 + noise ** 2)  # Theorem 3.1 with sigma = noise ||g||
            ln, l1 = np.meshgrid(lams, lams, indexing="ij")
            valid = ~np.isnan(p)
            below = valid & (l1 <= thr)
            above = valid & (ln >= thr)
            between = valid & ~below & ~above
            results[panel] = {"p": p, "threshold": thr,
                              "min_p_where_descent_guaranteed": float(np.min(p[below])),
                              "max_p_where_ascent_guaranteed": float(np.max(p[above])),
                              "cells_descent_guaranteed": int(below.sum()),
                              "cells_ascent_guaranteed": int(above.sum()),
                              "mean_p_in_between": float(np.mean(p[between]))
                              if between.any() else None}
        # (C) bias: spectra s * linspace(0.1, 1) -> psi; ratio b/||g||
        scales = np.geomspace(0.5, 20.0, grid)
        ratios = np.geomspace(1e-3, 1.0, grid)
        base = np.linspace(0.1, 1.0, d)
        psis = scales * np.linalg.norm(base)
        specs = jnp.asarray(np.repeat(scales[:, None] * base[None, :], grid, axis=0))
        out = bv.probability_of_descent_grid(jax.random.fold_in(key, 1), specs, dt,
                                             bias_ratios=jnp.asarray(np.tile(ratios, grid)), **kw)
        p = np.asarray(out["p_descent"]).reshape(grid, grid)  # [i: scale, j: ratio]
        bound = np.asarray(bv.bias_descent_bound(jnp.asarray(psis), d, dt))
        rig = np.asarray(bv.bias_descent_bound(jnp.asarray(psis), d, dt, form="rigorous"))
        under = ratios[None, :] <= bound[:, None]
        # empirical edge: largest ratio with p = 1 per psi
        edge = [float(ratios[p[i] == 1.0].max()) if (p[i] == 1.0).any() else 0.0
                for i in range(grid)]
        under_rig = ratios[None, :] <= rig[:, None]
        misses = [{"psi_dt": float(psis[i] * dt), "lambda_1_dt": float(scales[i] * dt),
                   "ratio": float(ratios[j]), "bound_paper": float(bound[i]),
                   "bound_rigorous": float(rig[i]), "p": float(p[i, j])}
                  for i, j in zip(*np.nonzero(under & (p < 1.0)))]
        results["C_bias"] = {"p": p, "psi": psis, "ratios": ratios, "bound_paper": bound,
                             "bound_rigorous": rig,
                             "min_p_under_paper_bound": float(np.min(p[under])),
                             "cells_under_bound": int(under.sum()),
                             "cells_under_paper_bound_with_p_below_1": misses,
                             "min_p_under_rigorous_bound": float(np.min(p[under_rig]))
                             if under_rig.any() else None,
                             "cells_under_rigorous_bound": int(under_rig.sum()),
                             "largest_ratio_with_p1": edge,
                             "edge_over_bound": (np.asarray(edge) / bound).tolist()}
    summary = {"dt": dt, "dim": d, "teachers": teachers, "students": students,
               **{k: {kk: vv for kk, vv in v.items() if kk not in ("p",)}
                  for k, v in results.items()}}
    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    for ax, panel in zip(axes[:2], ("A_true_gradient", "B_noise_sigma_eq_gnorm")):
        r = results[panel]
        im = ax.pcolormesh(lams, lams, r["p"].T, vmin=0, vmax=1, cmap="viridis", shading="auto")
        ax.axvline(r["threshold"], color="r", ls="--")  # lambda_N above: ascent guaranteed
        ax.axhline(r["threshold"], color="r", ls="--")  # lambda_1 below: descent guaranteed
        ax.set_xlabel("lambda_N (smallest)")
        ax.set_ylabel("lambda_1 (largest)")
        ax.set_title(f"{panel}: threshold {r['threshold']:.0f}")
        fig.colorbar(im, ax=ax, label="P(descent)")
    r = results["C_bias"]
    im = axes[2].pcolormesh(psis * dt, ratios, r["p"].T, vmin=0, vmax=1, cmap="viridis",
                            shading="auto")
    axes[2].plot(psis * dt, bound, "w--", label="Thm 3.2 (Eq. 8)")
    axes[2].plot(psis * dt, np.where(rig > 0, rig, np.nan), "r:",
                 label="rigorous variant (none past its end)")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("psi dt = ||H||_F dt")
    axes[2].set_ylabel("b / ||g||")
    axes[2].legend(loc="lower left", fontsize=8)
    axes[2].set_title("C: bias")
    fig.colorbar(im, ax=axes[2], label="P(descent)")
    fig.tight_layout()
    return _save(fig, {"summary": summary, "lambdas": lams,
                       "p_A": results["A_true_gradient"]["p"],
                       "p_B": results["B_noise_sigma_eq_gnorm"]["p"], "p_C": r["p"]},
                 outdir, "fig7")


# ----------------------------------------------------------------------------- Fig. 3


@functools.partial(jax.jit, static_argnames=("depth", "width", "activation", "steps",
                                             "num_vectors"))
def _fig3_run(key, sigmas, dt, *, depth, width, activation, steps, num_vectors):
    kt, ks, kn, kh = jax.random.split(key, 4)
    data = synthetic.teacher_student(kt, num_examples=100, input_dim=25, depth=5, width=32,
                                     activation="relu")
    x, y = data["x"].astype(jnp.float64), data["y"].astype(jnp.float64)
    params = bv.init_student(ks, input_dim=25, depth=depth + 1, width=width, dtype=jnp.float64)
    n = _num_params(params)

    def loss(p):
        return bv.mse(p, x, y, activation)

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


# ----------------------------------------------------------------------------- Fig. 1


def _digits_arrays(data_dir: Optional[str] = None):
    from neurojax.data import load
    out = {}
    for split in ("train", "test"):
        batch = next(iter(load("digits", split, batch_size=100_000, shuffle=False,
                               drop_remainder=False, data_dir=data_dir)))
        out[split] = (jnp.asarray(batch["image"].reshape(len(batch["label"]), -1)),
                      jnp.asarray(batch["label"]))
    return out


def digits_grid(biases, noises, seeds, *, steps: int = 100, lr: float = 0.05,
                momentum: float = 0.9, width: int = 64, label_smoothing: float = 0.1,
                data_dir: Optional[str] = None) -> dict:
    """Full-batch GD on the digits for every (relative bias, relative noise, seed).

    ``optax.chain(inject_gradient_bias(b, relative=True),
    inject_gradient_noise(s, key=k, relative=True), optax.sgd(lr, momentum))``
    on an MLP (64 -> width -> 10, ReLU) with label-smoothed cross-entropy
    (App. B.1's recipe: SGD with momentum 0.9, no schedule, one step per pass
    over the whole training set). All runs are one ``vmap``.

    Returns:
        ``{"train_acc", "test_acc"}`` arrays of shape ``(biases, noises, seeds)``.
    """
    from neurojax.models import get_model
    data = _digits_arrays(data_dir)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    model = get_model("mlp", widths=(width,), num_outputs=10)

    def loss(p):
        logits = model.apply(p, xtr)
        labels = optax.smooth_labels(jax.nn.one_hot(ytr, 10), label_smoothing)
        return jnp.mean(optax.softmax_cross_entropy(logits, labels))

    def acc(p, x, y):
        return jnp.mean(jnp.argmax(model.apply(p, x), -1) == y)

    def run(b, s, seed):
        k_init, k_noise = jax.random.split(jax.random.PRNGKey(seed))
        params = model.init(k_init, xtr[:1])
        opt = optax.chain(inject_gradient_bias(b, relative=True),
                          inject_gradient_noise(s, key=k_noise, relative=True),
                          optax.sgd(lr, momentum=momentum))

        def step(carry, _):
            p, st = carry
            g = jax.grad(loss)(p)
            u, st = opt.update(g, st, p)
            return (optax.apply_updates(p, u), st), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return acc(params, xtr, ytr), acc(params, xte, yte)

    bb, ss, ee = np.meshgrid(np.asarray(biases, np.float32), np.asarray(noises, np.float32),
                             np.asarray(seeds), indexing="ij")
    tr, te = jax.jit(jax.vmap(run))(jnp.asarray(bb.ravel()), jnp.asarray(ss.ravel()),
                                    jnp.asarray(ee.ravel()))
    shape = bb.shape
    return {"train_acc": np.asarray(tr).reshape(shape), "test_acc": np.asarray(te).reshape(shape),
            "num_params": _num_params(model.init(jax.random.PRNGKey(0), xtr[:1]))}


def figure1(outdir: str, quick: bool = False, seed: int = 0, *,
            biases: Optional[Sequence[float]] = None, noises: Optional[Sequence[float]] = None,
            num_seeds: Optional[int] = None, steps: Optional[int] = None,
            data_dir: Optional[str] = None) -> dict:
    """Fig. 1 (small): train/test accuracy over a relative bias x relative noise grid.

    Defaults: biases (0, 1e-4, ..., 0.1) per parameter and noises (0, 0.01,
    ..., 40) relative to ``||g||``, 5 seeds, 200 steps (``quick``: 3 seeds,
    100 steps). The first bias and noise should be 0 (the baseline cell) and
    the last the largest. ``data_dir``: where the digits TFDS dataset is
    prepared (default as ``neurojax.data.load``).
    """
    biases = list(biases or [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    noises = list(noises or [0.0, 1e-2, 0.1, 1.0, 5.0, 10.0, 40.0])
    seeds = list(range(seed, seed + (num_seeds or (3 if quick else 5))))
    steps = steps or (100 if quick else 200)
    with tqdm(total=1, desc="fig1 grid (one vmapped run)", leave=False) as bar:
        out = digits_grid(biases, noises, seeds, steps=steps, data_dir=data_dir)
        bar.update(1)
    tr, te = out["train_acc"].mean(-1), out["test_acc"].mean(-1)
    sem = out["test_acc"].std(-1, ddof=1) / math.sqrt(len(seeds))
    best = np.unravel_index(np.argmax(te), te.shape)
    summary = {"steps": steps, "seeds": len(seeds), "num_params": out["num_params"],
               "biases_rel_per_param": biases, "noises_rel": noises,
               "baseline_train_acc": float(tr[0, 0]), "baseline_test_acc": float(te[0, 0]),
               "baseline_test_sem": float(sem[0, 0]),
               "best_test_acc": float(te[best]), "best_test_sem": float(sem[best]),
               "best_cell": {"bias": biases[best[0]], "noise": noises[best[1]]},
               "test_acc_max_bias_no_noise": float(te[-1, 0]),
               "test_acc_max_noise_no_bias": float(te[0, -1]),
               "test_acc_max_both": float(te[-1, -1]),
               "train_acc_max_both": float(tr[-1, -1])}
    fig = _accuracy_heatmaps(tr, te, biases, noises, f"mean of {len(seeds)} seeds")
    return _save(fig, {"summary": summary, "train_acc": tr, "test_acc": te}, outdir, "fig1")


def _accuracy_heatmaps(tr, te, biases, noises, seeds_label: str):
    """Fig. 1's two panels: train and test accuracy over (bias, noise); NaN cells blank."""
    fig = Figure(figsize=(12, 5))
    axes = fig.subplots(1, 2)
    vmin = float(np.nanmin([np.nanmin(tr), np.nanmin(te)]))
    for ax, m, name in zip(axes, (tr, te), ("train", "test")):
        im = ax.imshow(m, origin="lower", cmap="Spectral", vmin=vmin, vmax=1.0)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{100 * m[i, j]:.1f}", ha="center", va="center",
                            fontsize=6)
        ax.set_xticks(range(len(noises)), [f"{v:g}" for v in noises])
        ax.set_yticks(range(len(biases)), [f"{v:g}" for v in biases])
        ax.set_xlabel("noise / ||g||")
        ax.set_ylabel("bias per parameter / ||g||")
        ax.set_title(f"{name} accuracy ({seeds_label})")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Fig. 1 (runs)


def _transform_kwargs(transforms, name: str) -> Optional[dict]:
    for entry in transforms or ():
        entry_name, kwargs = parse_transform_entry(entry)
        if entry_name == name:
            return kwargs
    return None


def read_cell(workdir: str) -> dict:
    """One finished training run of a Fig. 1 cell (``configs/bias_variance_cifar10.py``
    or ``bias_variance_digits.py``): what ran and how it ended.

    The cell is read from the run's ``config.json`` as it ran: ``b`` of its
    ``inject_gradient_bias`` and ``sigma`` of its ``inject_gradient_noise``
    transform (0 without one; both must be ``relative``) and ``seed``. From
    ``metrics.jsonl``: ``test_acc``, the accuracy of the last evaluation, and
    ``train_acc``, that of the last training record (with full-batch
    training, or a full batch accumulated over ``optim.accumulate_steps``
    batches and ``log_every`` equal to it: the whole training set's accuracy
    at the last update's parameters, before that update, as the paper's code
    reports it).

    Raises:
        ValueError: naming the workdir, if a file is missing or the run has
            no evaluation at its last training step (unfinished).
    """
    from neurojax.train.logging import read_metrics
    cfg_path = os.path.join(workdir, "config.json")
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    for path in (cfg_path, metrics_path):
        if not os.path.exists(path):
            raise ValueError(f"workdir {workdir!r} has no {os.path.basename(path)}")
    with open(cfg_path) as fh:
        config = json.load(fh)
    transforms = config.get("optim", {}).get("transforms", ())
    cell = {"seed": int(config.get("seed", 0))}
    for key, name, field in (("bias", "inject_gradient_bias", "b"),
                             ("noise", "inject_gradient_noise", "sigma")):
        kwargs = _transform_kwargs(transforms, name)
        if kwargs is not None and not kwargs.get("relative", False):
            raise ValueError(f"workdir {workdir!r}: {name} is not relative to ||g||")
        cell[key] = float(kwargs.get(field, 0.0)) if kwargs is not None else 0.0
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("split") == "train" and "accuracy" in r]
    evals = [r for r in records if r.get("split") == "eval" and "accuracy" in r]
    if not train or not evals or evals[-1]["step"] < train[-1]["step"]:
        raise ValueError(f"workdir {workdir!r} has not finished (no evaluation after its "
                         f"last training step)")
    return {**cell, "train_acc": float(train[-1]["accuracy"]),
            "test_acc": float(evals[-1]["accuracy"]), "step": int(evals[-1]["step"]),
            "workdir": workdir}


def figure1_collect(workdirs: Sequence[str], outdir: str, *, name: str = "fig1_collect",
                    skip_unfinished: bool = False) -> dict:
    """Fig. 1 from separate training runs, one per (bias, noise, seed) cell.

    Reads every workdir with ``read_cell``, averages train and test accuracy
    over the seeds of each (bias, noise) cell and draws the two heatmaps on
    the grid of the values found (cells without a run are blank). Writes
    ``bias_variance_<name>.{png,json}``.

    Args:
        workdirs: run directories (shell patterns are expanded).
        skip_unfinished: leave out runs that have not finished (listed in the
            JSON) instead of raising.
    """
    import glob
    paths = set()
    for w in workdirs:  # a pattern contributes its directories; a plain path itself
        paths |= {p for p in glob.glob(w) if os.path.isdir(p)} if glob.has_magic(w) else {w}
    paths = sorted(paths)
    if not paths:
        raise ValueError(f"workdirs matched no directory: {list(workdirs)!r}")
    cells, skipped = [], []
    for path in paths:
        try:
            cells.append(read_cell(path))
        except ValueError as e:
            if not skip_unfinished:
                raise
            skipped.append(str(e))
    if not cells:
        raise ValueError(f"no finished run among {paths!r}")
    biases = sorted({c["bias"] for c in cells})
    noises = sorted({c["noise"] for c in cells})
    acc = {split: [[[] for _ in noises] for _ in biases] for split in ("train", "test")}
    for c in cells:
        i, j = biases.index(c["bias"]), noises.index(c["noise"])
        for split in acc:
            acc[split][i][j].append(c[f"{split}_acc"])
    mean = {s: np.array([[np.mean(v) if v else np.nan for v in row] for row in acc[s]])
            for s in acc}
    count = np.array([[len(v) for v in row] for row in acc["test"]])
    sem = np.array([[np.std(v, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else np.nan
                     for v in row] for row in acc["test"]])
    tr, te = mean["train"], mean["test"]
    best = np.unravel_index(np.nanargmax(te), te.shape)
    summary = {"runs": len(cells), "cells": int((count > 0).sum()),
               "seeds_per_cell": [int(count[count > 0].min()), int(count.max())],
               "biases_rel_per_param": biases, "noises_rel": noises,
               "best_test_acc": float(te[best]), "best_test_sem": float(sem[best]),
               "best_cell": {"bias": biases[best[0]], "noise": noises[best[1]]},
               "skipped": skipped}
    if biases[0] == 0.0 and noises[0] == 0.0 and count[0, 0]:
        summary.update(baseline_train_acc=float(tr[0, 0]), baseline_test_acc=float(te[0, 0]),
                       baseline_test_sem=float(sem[0, 0]))
    lo, hi = summary["seeds_per_cell"]
    fig = _accuracy_heatmaps(tr, te, biases, noises,
                             f"mean of {lo if lo == hi else f'{lo}-{hi}'} seed(s)")
    return _save(fig, {"summary": summary, "train_acc": tr, "test_acc": te,
                       "seeds": count, "runs": cells}, outdir, name)


# ----------------------------------------------------------------------------- CLI


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m neurojax.analysis.bias_variance",
        description="Ghosh et al. 2023 figures (PNG + JSON).")
    parser.add_argument("--figure", required=True, choices=FIGURES + ("fig1_collect", "all"))
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--quick", action="store_true", help="smaller grids and fewer seeds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdirs", nargs="+", default=(),
                        help="fig1_collect: finished run directories (patterns allowed)")
    parser.add_argument("--skip_unfinished", action="store_true",
                        help="fig1_collect: leave out unfinished runs instead of failing")
    args = parser.parse_args(argv)
    if args.figure == "fig1_collect" and not args.workdirs:
        parser.error("--figure fig1_collect needs --workdirs")
    makers = {"fig1": figure1, "fig3": figure3, "fig4": figure4, "fig7": figure7}
    names = FIGURES if args.figure == "all" else (args.figure,)
    out = {}
    for name in names:
        t0 = time.time()
        if name == "fig1_collect":
            out[name] = figure1_collect(args.workdirs, args.outdir,
                                        skip_unfinished=args.skip_unfinished)
        else:
            out[name] = makers[name](args.outdir, quick=args.quick, seed=args.seed)
        print(f"{name}: {time.time() - t0:.0f} s")
        print(json.dumps(_rounded(out[name]["summary"], 4), indent=1))
    return out
