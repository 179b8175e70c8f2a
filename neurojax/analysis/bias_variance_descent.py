"""Fig. 7 of Ghosh et al. (ICLR 2023): probability of descent against the
Hessian spectrum, for the true gradient, noise and bias (Theorems 3.1, 3.2).

Ghosh, Liu, Lajoie, Kording & Richards, "How gradient estimator variance and
bias impact learning in neural networks" (ICLR 2023), Sec. 3.2. Linear MSE
students whose Hessian spectrum is set by the inputs
(``neurojax.data.synthetic.controlled_hessian_inputs``); one update in the
relative mode of the paper's Fig. 7; a cell's P(descent) is the fraction of
students whose loss falls in expectation over the noise. Runs in float64.

What it can and cannot show: the student is exactly quadratic and the
default noise set is exactly isotropic (``isotropic_noise_set``), so the set
average *is* the expectation of Lemma 2.1 and Theorem 3.1 reduces to an
eigenvalue inequality that must hold; panels A and B therefore confirm the
set-up (spectra, thresholds, the noise's scaling), not the theorem. Theorem
3.2 (panel C) drops a curvature term and can fail; it does, at the edge of
stability (see ``figure7``).

Run through ``python -m neurojax.analysis.bias_variance --figure fig7``.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from neurojax.analysis.bias_variance_figures import _save
from neurojax.data.synthetic import controlled_hessian_inputs, isotropic_noise_set
from neurojax._checks import check_int, check_real
from neurojax.metrics.imperfect_gradients import _vector, bias_descent_bound
from neurojax.optim.injection import zero_sum_noise_set


def _linear_one_step(w, x, y, dt, bias_ratio, noise_ratio, noise_set):
    """Loss change of one relative-mode update of a linear MSE student, per noise vector."""
    def loss(v):
        return jnp.mean((x @ v - y) ** 2)

    l0, g = jax.value_and_grad(loss)(w)
    gn = jnp.linalg.norm(g)
    base = w + dt * (-g + bias_ratio * gn * jnp.ones_like(w))
    per = jax.vmap(lambda n: loss(base + dt * noise_ratio * gn * n))(noise_set) - l0
    return per, gn


@functools.partial(jax.jit, static_argnames=("num_teachers", "num_students", "num_examples",
                                             "num_vectors", "noise_set"))
def _descent_trials(key, eigenvalues, dt, bias_ratio, noise_ratio, *, num_teachers,
                    num_students, num_examples, num_vectors, noise_set):
    d = eigenvalues.shape[0]
    dtype = eigenvalues.dtype

    def teacher(k):
        kx, kt, ks, kn = jax.random.split(k, 4)
        x = controlled_hessian_inputs(kx, num_examples, eigenvalues, dtype)["x"]
        y = x @ (jax.random.normal(kt, (d,), dtype) / math.sqrt(d))
        ws = jax.random.normal(ks, (num_students, d), dtype) / math.sqrt(d)
        if noise_set == "isotropic":
            make = lambda kk: isotropic_noise_set(kk, d, dtype)  # noqa: E731
        else:
            make = lambda kk: zero_sum_noise_set(  # noqa: E731
                kk, jnp.zeros((d,), dtype), num_vectors, normalization="mean_square")
        sets = jax.vmap(make)(jax.random.split(kn, num_students))
        return jax.vmap(lambda w, s: _linear_one_step(w, x, y, dt, bias_ratio, noise_ratio, s))(
            ws, sets)

    per, gn = jax.vmap(teacher)(jax.random.split(key, num_teachers))
    return per.reshape(-1, per.shape[-1]), gn.reshape(-1)


def probability_of_descent(key, eigenvalues, dt, *, bias_ratio=0.0, noise_ratio=0.0,
                           num_teachers: int = 10, num_students: int = 100,
                           num_examples: int = 100, noise_set: str = "isotropic",
                           num_vectors: int = 20) -> dict:
    """Empirical probability that one update lowers the loss (Fig. 7).

    For each of ``num_teachers`` draws: inputs with Hessian spectrum
    ``eigenvalues`` (``controlled_hessian_inputs``), a linear teacher
    ``w* ~ N(0, I/d)``, ``y = X w*``; for each of ``num_students`` students
    ``w ~ N(0, I/d)`` one update in the relative mode of the paper's Fig. 7,
    ``w + dt (-g + bias_ratio ||g|| 1 + noise_ratio ||g|| n)``, for every
    ``n`` of a noise set: ``'isotropic'`` (default; ``isotropic_noise_set``,
    ``2d`` vectors whose average is the exact expectation over the noise of
    Theorem 3.1, ``sigma = noise_ratio ||g||``, ``f(N) = 1``) or
    ``'zero_sum'`` (``num_vectors`` vectors of ``zero_sum_noise_set`` with
    ``'mean_square'`` normalisation, the paper's Appendix B scheme, whose
    average only estimates it). Vmapped over teachers and students and
    compiled once per shape.

    Returns:
        dict: ``p_descent`` (fraction of students whose set-mean loss change
        is < 0: descent in expectation over the noise), ``p_descent_draw``
        (fraction of single updates with a loss decrease), ``delta``
        (``(teachers * students, R)`` loss changes; row ``t * students + s``),
        ``grad_norm``.
    """
    eigenvalues = _vector("eigenvalues", eigenvalues)
    check_real("dt", dt, low=0.0, low_open=True)
    check_real("bias_ratio", bias_ratio, low=0.0)
    check_real("noise_ratio", noise_ratio, low=0.0)
    for name, v in [("num_teachers", num_teachers), ("num_students", num_students)]:
        check_int(name, v)
    check_int("num_examples", num_examples, eigenvalues.shape[0])
    check_int("num_vectors", num_vectors, 2)
    if noise_set not in ("isotropic", "zero_sum"):
        raise ValueError(f"noise_set must be 'isotropic' or 'zero_sum', got {noise_set!r}")
    dtype = jnp.result_type(eigenvalues.dtype, jnp.float32)
    per, gn = _descent_trials(key, eigenvalues.astype(dtype), dt, bias_ratio, noise_ratio,
                              num_teachers=num_teachers, num_students=num_students,
                              num_examples=num_examples, num_vectors=num_vectors,
                              noise_set=noise_set)
    return {"p_descent": jnp.mean(jnp.mean(per, axis=1) < 0),
            "p_descent_draw": jnp.mean(per < 0), "delta": per, "grad_norm": gn}


def probability_of_descent_grid(key, spectra, dt, *, bias_ratios=None, noise_ratios=None,
                                num_teachers: int = 10, num_students: int = 100,
                                num_examples: int = 100) -> dict:
    """``probability_of_descent`` for many cells in one compiled call.

    Args:
        spectra: ``(C, d)`` Hessian spectra, one per cell.
        bias_ratios, noise_ratios: ``(C,)`` (default zeros).
        Other arguments as ``probability_of_descent`` (isotropic noise sets);
        cell ``c`` uses ``jax.random.fold_in(key, c)``.

    Returns:
        dict: ``p_descent`` and ``p_descent_draw``, each ``(C,)``.
    """
    spectra = jnp.asarray(spectra)
    if spectra.ndim != 2:
        raise ValueError(f"spectra must have shape (cells, d), got {spectra.shape}")
    check_real("dt", dt, low=0.0, low_open=True)
    c, d = spectra.shape
    check_int("num_examples", num_examples, d)
    dtype = jnp.result_type(spectra.dtype, jnp.float32)
    zeros = jnp.zeros((c,), dtype)
    br = zeros if bias_ratios is None else jnp.asarray(bias_ratios, dtype)
    nr = zeros if noise_ratios is None else jnp.asarray(noise_ratios, dtype)
    for name, v in (("bias_ratios", br), ("noise_ratios", nr)):
        if v.shape != (c,):
            raise ValueError(f"{name} must have shape ({c},), got {v.shape}")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(c))
    per = _grid_trials(keys, spectra.astype(dtype), dt, br, nr, num_teachers=num_teachers,
                       num_students=num_students, num_examples=num_examples)
    return {"p_descent": jnp.mean(jnp.mean(per, axis=2) < 0, axis=1),
            "p_descent_draw": jnp.mean(per < 0, axis=(1, 2))}


@functools.partial(jax.jit, static_argnames=("num_teachers", "num_students", "num_examples"))
def _grid_trials(keys, spectra, dt, bias_ratios, noise_ratios, *, num_teachers, num_students,
                 num_examples):
    """``_descent_trials`` for each cell (vmapped over teachers and students inside).

    Cells go through ``lax.map``, not ``vmap``: the same values (to rounding), and
    XLA:CPU compiles it in about 0.6x the time (jaxlib 0.10.2, 21 cells of Fig. 7,
    same process: 12-17 s against 26-27 s on a loaded 2-core machine; the run
    itself takes milliseconds); the full-size Fig. 7 reproduces
    ``benchmarks/results/bias_variance_fig7.json`` cell for cell. One
    module-level jit, so calls with the same shapes (Fig. 7's panels A and B)
    compile once.
    """
    fn = functools.partial(_descent_trials, num_teachers=num_teachers,
                           num_students=num_students, num_examples=num_examples,
                           num_vectors=2, noise_set="isotropic")
    per, _ = jax.lax.map(lambda c: fn(c[0], c[1], dt, c[2], c[3]),
                         (keys, spectra, bias_ratios, noise_ratios))
    return per


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
            out = probability_of_descent_grid(key, specs, dt,
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
        out = probability_of_descent_grid(jax.random.fold_in(key, 1), specs, dt,
                                             bias_ratios=jnp.asarray(np.tile(ratios, grid)), **kw)
        p = np.asarray(out["p_descent"]).reshape(grid, grid)  # [i: scale, j: ratio]
        bound = np.asarray(bias_descent_bound(jnp.asarray(psis), d, dt))
        rig = np.asarray(bias_descent_bound(jnp.asarray(psis), d, dt, form="rigorous"))
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
