"""Theory checks of the kernel view of non-contrastive SSL: the figure.

Ghosh, Richards et al., "Harnessing small projectors and multiple views for
efficient vision pretraining" (NeurIPS 2024), Appendix B (Theorem B.4, the
linear Barlow Twins gradient flow, Eqs. 31-37) and Appendix C.3 (the toy
augmentation graph and its m-view estimate). The pieces are in the library:
the finite augmentation graph, its operators and losses in
``neurojax.metrics.augmentation_graph``; the ring and toy graphs and view
sampling in ``neurojax.data.augmentation_graphs``; the flow, its integrator
and metrics in ``neurojax.metrics.bt_flow``; the loss in
``neurojax.losses.ssl.barlow_twins_linear``.

Run ``python -m neurojax.analysis.ssl_theory --outdir DIR`` for the figure
(``ssl_theory.png`` + ``ssl_theory.json``): effective rank of W and alignment
with the top eigenvectors over time for several beta, and the toy-graph
estimate against the number of views m. Flags: ``--betas`` (comma-separated),
``--views`` (comma-separated), ``--t_end``, ``--num_trials``, ``--out_dim``,
``--init_scale``, ``--seed``.

Measured (defaults: n = 12 inputs, T's spectrum ``DEFAULT_SPECTRUM``, m = 4
outputs, W0 ~ 1e-4 N(0, 1/n), eta = 1, RK4 dt = 0.01, t <= 1000; float32,
CPU; ``benchmarks/results/ssl_theory_default.{png,json}``):

* Every beta first aligns all rows with v_1 (effective rank of W falls from
  3.6 to 1.23-1.28 at t ~ 2.7; mean cos^2(w_p, v_1) peaks at 0.97-0.997):
  the primacy bias of Theorem B.4.
* beta = 0 stays there: at t = 1000 effective rank of W 1.255 (of the output
  correlation C 1.013), cos^2 with v_1 0.997, 99.8% of tr C on v_1, loss 2e-12
  (a minimum: every C_pp = 1).
* beta > 0 then decorrelates the rows on a time scale ~ 1/beta: the effective
  rank of C passes 3.9 at t = 7.6 (beta = 1), 30 (0.1), 258 (0.01); at t = 1000
  W has effective rank 3.947 and each of the top-4 eigenvectors carries 25% of
  tr C; beta = 0.001 is still in transit (effective rank of C 2.69).
* Toy graph (rho', mu', nu', delta') = (0.5, 0.25, 0.15, 0.1), 400 draws:
  E||W-hat - W||_F^2 = 0.139, 0.044, 0.018, 0.008, 0.004, 0.002, 0.001 for
  m = 2, 4, ..., 128 (bound 1/m); the estimated class eigenvalue exceeds the
  pixel one in 56%, 65%, 79%, 90%, 96%, 99.5%, 100% of draws. The estimate is
  unbiased, so the Ansatz's |mu - nu| -> 0, delta -> 0 does not hold on
  average; what few views do is make the class-vs-pixel ordering a near coin flip.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.analysis.outputs import save_figure, write_json
from neurojax.data.augmentation_graphs import (TOY_EIGENVECTOR_NAMES, sample_views,
                                               toy_augmentation_matrix, toy_graph_eigen,
                                               toy_graph_parameters, toy_population_graph,
                                               toy_view_graph)
from neurojax.data.synthetic import correlation_with_spectrum
from neurojax.losses.ssl import barlow_twins_linear
from neurojax.metrics.bt_flow import dynamics_metrics, integrate_bt_flow


#: Spectrum of T in the figure: a gap after lambda_1, a null and two negative directions.
DEFAULT_SPECTRUM = (1.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, -0.2, -0.4, -0.6)
DEFAULT_BETAS = (0.0, 0.001, 0.01, 0.1, 1.0)
DEFAULT_TOY = (0.5, 0.25, 0.15, 0.1)       # rho', mu', nu', delta' (Eq. 45 assumptions hold)
DEFAULT_VIEWS = (2, 4, 8, 16, 32, 64, 128)


def run_dynamics(*, spectrum=DEFAULT_SPECTRUM, betas=DEFAULT_BETAS, out_dim: int = 4,
                 init_scale: float = 1e-4, dt: float = 0.01,
                 phases: Sequence[tuple[int, int]] = ((100, 20), (99, 1000)),
                 seed: int = 0) -> dict:
    """Eq. 34 from one small initialisation for each beta; metrics over time.

    W0 = init_scale * N(0, 1/n), T = V diag(spectrum) V^T (``correlation_with_spectrum``),
    eta = 1. ``phases``: (num_records, steps_per_record) segments integrated one
    after the other (fine records early, coarse late; default t in [0, 1000]).
    Returns a JSON-ready dict.
    """
    lam = jnp.sort(jnp.asarray(spectrum, jnp.float32))[::-1]
    k_t, k_w = jax.random.split(jax.random.PRNGKey(seed))
    t, v = correlation_with_spectrum(lam, k_t)
    n = lam.shape[0]
    if not 1 <= out_dim <= n:
        raise ValueError(f"out_dim must be in [1, {n}], got {out_dim!r}")
    w0 = init_scale * jax.random.normal(k_w, (out_dim, n)) / np.sqrt(n)
    times = [0.0]
    for num_records, steps in phases:
        times += [times[-1] + k * steps * dt for k in range(1, num_records + 1)]
    metrics_fn = jax.vmap(lambda w: dynamics_metrics(w, v, lam, out_dim))
    runs = []
    for beta in betas:
        start = time.perf_counter()
        segments, w = [w0[None]], w0
        for num_records, steps in phases:
            traj = integrate_bt_flow(w, t, beta, dt=dt, num_records=num_records,
                                     steps_per_record=steps)
            segments.append(traj[1:])
            w = traj[-1]
        traj = jnp.concatenate(segments, 0)
        m = jax.device_get(metrics_fn(traj))
        final_loss = float(barlow_twins_linear(traj[-1], t, beta)[0])
        runs.append({
            "beta": float(beta),
            "effective_rank_w": np.asarray(m["effective_rank_w"]).tolist(),
            "effective_rank_c": np.asarray(m["effective_rank_c"]).tolist(),
            "top1_alignment": np.asarray(m["top1_alignment"]).tolist(),
            "top_d_share": np.asarray(m["top_d_share"]).tolist(),
            "top_d_balance": np.asarray(m["top_d_balance"]).tolist(),
            "final_share": np.asarray(m["share"][-1]).tolist(),
            "final_loss": final_loss,
            "seconds": time.perf_counter() - start,
        })
    return {"spectrum": np.asarray(lam).tolist(), "out_dim": out_dim, "init_scale": init_scale,
            "dt": dt, "eta": 1.0, "seed": seed, "times": times, "runs": runs}


def run_toy(*, params=DEFAULT_TOY, views=DEFAULT_VIEWS, num_trials: int = 400,
            seed: int = 0) -> dict:
    """Toy-graph estimate vs number of views m (App. C.3).

    Per m, over ``num_trials`` draws (m views = the first m of one draw of
    max(views) views, ``sample_views``; graph by ``toy_view_graph``): mean squared
    Frobenius error (and its bound 1/m), Rayleigh quotients of the closed-form
    eigenvectors, the class-minus-pixel eigenvalue gap 2 (mu-hat - nu-hat) of the
    structure-projected estimate and how often it is positive (class information
    preferred), and the Ansatz's quantities delta-hat and |mu-hat - nu-hat|.
    """
    w, wp = toy_population_graph(*params)
    eig, vecs = toy_graph_eigen(*wp)
    aug = toy_augmentation_matrix(*params)
    # One draw of max(views) views per instance; m views = its first m (nested).
    all_views = sample_views(jax.random.PRNGKey(seed), aug, max(views), num_trials)
    rows = []
    for m in views:
        ws = toy_view_graph(all_views[..., :m], 4)
        err2 = np.asarray(jnp.sum((ws - w) ** 2, axis=(1, 2)))
        proj = np.asarray(toy_graph_parameters(ws))                    # (trials, 4)
        gap = 2 * (proj[:, 1] - proj[:, 2])                            # class - pixel eigenvalue
        eig_hat = np.asarray(jnp.einsum("ik,tij,jk->tk", vecs, ws, vecs))  # Rayleigh quotients
        rows.append({"m": int(m), "mse": float(err2.mean()), "mse_bound": 1.0 / m,
                     "eig_mean": eig_hat.mean(0).tolist(), "eig_std": eig_hat.std(0).tolist(),
                     "class_minus_pixel_mean": float(gap.mean()),
                     "class_minus_pixel_std": float(gap.std()),
                     # ties (gap == 0, frequent at small m) count one half
                     "p_class_above_pixel": float(np.mean(gap > 0) + 0.5 * np.mean(gap == 0)),
                     "delta_hat_mean": float(proj[:, 3].mean()),
                     "delta_hat_median": float(np.median(proj[:, 3])),
                     "p_delta_hat_zero": float(np.mean(proj[:, 3] == 0)),
                     "abs_mu_minus_nu_median": float(np.median(np.abs(proj[:, 1] - proj[:, 2])))})
    return {"params_prime": list(params), "params": [float(x) for x in wp],
            "eigenvalues": np.asarray(eig).tolist(), "eigenvector_names": TOY_EIGENVECTOR_NAMES,
            "num_trials": num_trials, "rows": rows}


def plot(results: dict):
    """Three panels of dynamics (effective rank, top-1 alignment, top-d balance) + toy graph."""
    from matplotlib.figure import Figure

    dyn, toy = results["dynamics"], results["toy"]
    fig = Figure(figsize=(18, 3.8))
    axes = fig.subplots(1, 4)
    times = np.asarray(dyn["times"])
    for run in dyn["runs"]:
        lab = f"beta={run['beta']:g}"
        axes[0].plot(times, run["effective_rank_w"], label=lab)
        axes[1].plot(times, run["top1_alignment"], label=lab)
        axes[2].plot(times, run["top_d_balance"], label=lab)
    axes[0].set_ylabel("effective rank of W (RankMe)")
    axes[1].set_ylabel("mean cos^2(w_p, v_1)")
    axes[2].set_ylabel(f"top-{dyn['out_dim']} balance  d * min_i share_i")
    for ax in axes[:3]:
        ax.set_xlabel("time (eta = 1)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[0].set_title(f"linear BT flow (Eq. 34), m={dyn['out_dim']}, n={len(dyn['spectrum'])}")
    ms = np.array([r["m"] for r in toy["rows"]])
    ax = axes[3]
    ax.loglog(ms, [r["mse"] for r in toy["rows"]], "o-", label="E||W_hat - W||_F^2")
    ax.loglog(ms, 1 / ms, "k--", label="bound 1/m")
    ax2 = ax.twinx()
    ax2.plot(ms, [r["p_class_above_pixel"] for r in toy["rows"]], "s-", color="C3",
             label="P(class eig > pixel eig)")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("P(class eig > pixel eig)", color="C3")
    ax.set_xlabel("views per instance m")
    ax.set_title("toy graph (App. C.3): m-view estimate")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run(outdir: str, *, seed: int = 0, out_dim: int = 4, init_scale: float = 1e-4,
        betas: Sequence[float] = DEFAULT_BETAS, t_end: float = 1000.0,
        num_trials: int = 400, views: Sequence[int] = DEFAULT_VIEWS) -> dict:
    """The figure: writes ``ssl_theory.json`` and ``ssl_theory.png`` under ``outdir``.

    ``t_end``: integration horizon (dt = 0.01; 100 records on [0, 20], 99 after).
    """
    if not t_end > 0:
        raise ValueError(f"t_end must be > 0, got {t_end}")
    if t_end <= 20:       # one phase of 100 records
        phases = ((100, max(1, int(round(t_end / 0.01 / 100)))),)
    else:                 # 100 records on [0, 20], then 99 up to t_end
        phases = ((100, 20), (99, max(1, int(round((t_end - 20) / 0.01 / 99)))))
    start = time.perf_counter()
    results = {
        "dynamics": run_dynamics(betas=betas, out_dim=out_dim, init_scale=init_scale,
                                 phases=phases, seed=seed),
        "toy": run_toy(views=views, num_trials=num_trials, seed=seed),
    }
    results["seconds"] = time.perf_counter() - start
    write_json(results, os.path.join(outdir, "ssl_theory.json"), digits=5, indent=None)
    save_figure(plot(results), os.path.join(outdir, "ssl_theory.png"))
    for r in results["dynamics"]["runs"]:
        print(f"beta={r['beta']:g}: effective rank W {r['effective_rank_w'][-1]:.3f}, "
              f"C {r['effective_rank_c'][-1]:.3f}, top-1 alignment "
              f"{r['top1_alignment'][-1]:.3f}, top-d balance {r['top_d_balance'][-1]:.3f}, "
              f"final loss {r['final_loss']:.2e}")
    for row in results["toy"]["rows"]:
        print(f"m={row['m']}: mse {row['mse']:.4f} (bound {row['mse_bound']:.4f}), "
              f"P(class>pixel) {row['p_class_above_pixel']:.3f}")
    return results


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("outdir", None, "Directory for ssl_theory.{png,json}.")
    flags.DEFINE_integer("seed", 0, "Seed of T's eigenvectors, W0 and the view draws.")
    flags.DEFINE_integer("out_dim", 4, "Outputs m of the linear net.")
    flags.DEFINE_float("init_scale", 1e-4, "Scale of the initial weights.")
    flags.DEFINE_list("betas", [str(b) for b in DEFAULT_BETAS], "Redundancy weights beta.")
    flags.DEFINE_float("t_end", 1000.0, "Integration horizon (dt = 0.01).")
    flags.DEFINE_integer("num_trials", 400, "Draws of the toy-graph estimate per m.")
    flags.DEFINE_list("views", [str(m) for m in DEFAULT_VIEWS],
                      "Views per instance m of the toy-graph estimate.")
    flags.mark_flag_as_required("outdir")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    run(f.outdir, seed=f.seed, out_dim=f.out_dim, init_scale=f.init_scale,
        betas=[float(b) for b in f.betas], t_end=f.t_end, num_trials=f.num_trials,
        views=[int(m) for m in f.views])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
