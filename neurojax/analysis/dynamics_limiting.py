"""Part "limiting" of the learning-dynamics study: the limiting dynamics of SGD
(Kunin et al. 2021, "Rethinking the limiting dynamics of SGD").

1. A quadratic with a Hessian spectrum spread over two decades, trained by
   ``optax.chain(inject_gradient_noise(sigma), optax.sgd(lr[, momentum]))``
   (the library's noise transform: noise covariance ``sigma^2 / d I`` per
   step), many replicas: the measured stationary covariance and the MSD
   against the discrete Lyapunov prediction
   (``neurojax.metrics.limiting_dynamics``), and the anomalous exponent fitted
   on the measured MSD against the one fitted on the predicted MSD over the
   same window. These checks hold for a linear recursion by construction of
   the theory; what they test is the code (the transform's noise scale, the
   optax conventions, the Lyapunov solver, the MSD formula).
2. A digits MLP trained by SGD with momentum and weight decay until the
   training loss has converged, then followed: ``MSD(k)`` of the parameters
   over the next steps and its fitted exponent ``c``. The paper's claim here
   is empirical (a power law with non-trivial ``c``; no closed form for a
   nonlinear network), so it is reported as a measurement, not a check.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax.analysis._dynamics_digits import (accuracy, check_record, cross_entropy,
                                                digits_arrays, flat_params, log_lags,
                                                sgd_segment)
from neurojax.analysis.outputs import jsonable, save_figure
from neurojax.metrics.limiting_dynamics import (fit_diffusion_exponent,
                                                mean_squared_displacement,
                                                stationary_covariance, stationary_msd)
from neurojax.optim.injection import inject_gradient_noise

PART = "limiting"


def quadratic_ensemble(eigenvalues, *, lr: float, sigma: float, momentum: float = 0.0,
                       replicas: int, burn_in: int, steps: int, seed: int = 0) -> np.ndarray:
    """Trajectories ``(replicas, steps, d)`` of SGD with the injected noise on
    ``0.5 theta^T diag(eigenvalues) theta``, after ``burn_in`` steps from
    ``theta = 0`` (float32)."""
    h = jnp.asarray(eigenvalues, jnp.float32)
    d = h.shape[0]
    opt = optax.chain(inject_gradient_noise(sigma, seed=seed),
                      optax.sgd(lr, momentum=momentum or None))

    def run(key):
        theta = jnp.zeros(d, jnp.float32)
        state = opt.init(theta)
        state = (state[0]._replace(rng_key=key),) + tuple(state[1:])

        def step(carry, _):
            p, s = carry
            u, s = opt.update(h * p, s, p)
            p = optax.apply_updates(p, u)
            return (p, s), p

        carry, _ = jax.lax.scan(step, (theta, state), None, length=burn_in)
        return jax.lax.scan(step, carry, None, length=steps)[1]

    keys = jax.random.split(jax.random.PRNGKey(seed + 1), replicas)
    return np.asarray(jax.jit(jax.vmap(run))(keys))


def quadratic_part(quick: bool) -> dict:
    d = 8
    eig = np.logspace(-2, 0, d)
    lr, sigma = 0.5, 0.1
    replicas, burn, steps = (512, 1000, 500) if quick else (256, 3000, 4000)
    out = {"eigenvalues": eig, "lr": lr, "sigma": sigma, "replicas": replicas,
           "burn_in": burn, "steps": steps, "runs": {}}
    checks = []
    for name, beta in (("sgd", 0.0), ("momentum_0.5", 0.5)):
        if quick and beta:
            continue
        traj = quadratic_ensemble(eig, lr=lr, sigma=sigma, momentum=beta, replicas=replicas,
                                  burn_in=burn, steps=steps)
        c = sigma ** 2 / d * np.eye(d)
        pred_cov = np.asarray(stationary_covariance(np.diag(eig), c, lr, momentum=beta))
        x = traj.reshape(-1, d)
        emp_cov = x.T @ x / len(x)
        lags = log_lags(steps // 4, 16)
        pred_msd = np.asarray(stationary_msd(np.diag(eig), c, lr, lags, momentum=beta))
        emp_msd = np.asarray(mean_squared_displacement(traj, lags))
        window = (10, steps // 4)
        c_emp = float(fit_diffusion_exponent(lags, emp_msd, window=window).exponent)
        c_pred = float(fit_diffusion_exponent(lags, pred_msd, window=window).exponent)
        checks += [
            check_record(f"quadratic {name}: tr stationary covariance",
                         np.trace(emp_cov), np.trace(pred_cov)),
            check_record(f"quadratic {name}: Sigma_11 (slowest direction)",
                         emp_cov[0, 0], pred_cov[0, 0]),
            check_record(f"quadratic {name}: MSD(k={int(lags[-1])})", emp_msd[-1], pred_msd[-1]),
            check_record(f"quadratic {name}: MSD(k={int(lags[len(lags) // 2])})",
                         emp_msd[len(lags) // 2], pred_msd[len(lags) // 2]),
            check_record(f"quadratic {name}: MSD exponent over k in {window}", c_emp, c_pred),
        ]
        out["runs"][name] = {"momentum": beta, "lags": lags, "msd_measured": emp_msd,
                             "msd_predicted": pred_msd, "cov_diag_measured": np.diag(emp_cov),
                             "cov_diag_predicted": np.diag(pred_cov),
                             "exponent_measured": c_emp, "exponent_predicted": c_pred,
                             "window": window}
    return out, checks


def digits_part(quick: bool, seed: int = 0) -> dict:
    """MSD of a digits MLP's parameters after its training loss has converged."""
    from neurojax.models.mlp import MLP
    xtr, ytr, xte, yte = digits_arrays()
    model = MLP(widths=(64,), num_outputs=10)
    loss = cross_entropy(model)
    params = jax.jit(model.init)(jax.random.PRNGKey(seed), xtr[:1])["params"]
    lrs = (0.05,) if quick else (0.02, 0.05, 0.1)
    train_steps, follow = (400, 256) if quick else (6000, 4096)
    every = 4
    out = {"model": "MLP 64-64-10 ReLU", "batch_size": 32, "momentum": 0.9,
           "weight_decay": 5e-4, "train_steps": train_steps, "follow_steps": follow,
           "record_every": every, "runs": {}}
    for lr in lrs:
        opt = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(lr, momentum=0.9))
        key = jax.random.PRNGKey(seed + 7)
        p, s, _ = sgd_segment(loss, opt, params, opt.init(params), xtr, ytr, key=key, start=0,
                              num_steps=train_steps, batch_size=32)
        loss_before = float(loss(p, xtr, ytr))
        p, s, traj = sgd_segment(loss, opt, p, s, xtr, ytr, key=key, start=train_steps,
                                 num_steps=follow, batch_size=32, record_every=every,
                                 record=flat_params)
        lags = log_lags(follow // every // 2, 16)
        msd = np.asarray(mean_squared_displacement(traj, lags))
        fit = fit_diffusion_exponent(lags * every, msd)
        out["runs"][str(lr)] = {
            "lr": lr, "train_loss_at_follow_start": loss_before,
            "train_loss_at_end": float(loss(p, xtr, ytr)),
            "train_accuracy": accuracy(model, p, xtr, ytr),
            "test_accuracy": accuracy(model, p, xte, yte),
            "lags": lags * every, "msd": msd, "exponent": float(fit.exponent),
            "exponent_r2": float(fit.r2)}
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 4.5))
    ax = fig.subplots(1, 3)
    q = result["quadratic"]
    for i, (name, r) in enumerate(q["runs"].items()):
        ax[0].loglog(r["lags"], r["msd_measured"], "o", color=f"C{i}",
                     label=f"{name} measured (c={r['exponent_measured']:.2f})")
        ax[0].loglog(r["lags"], r["msd_predicted"], "-", color=f"C{i}",
                     label=f"2 tr[(I-A^k) Sigma] (c={r['exponent_predicted']:.2f})")
        ax[1].loglog(q["eigenvalues"], r["cov_diag_measured"], "o", color=f"C{i}",
                     label=f"{name} measured")
        ax[1].loglog(q["eigenvalues"], r["cov_diag_predicted"], "-", color=f"C{i}",
                     label="Lyapunov")
    ax[0].set(xlabel="lag k (steps)", ylabel="MSD(k)",
              title="quadratic + inject_gradient_noise: MSD")
    ax[1].set(xlabel="Hessian eigenvalue", ylabel="stationary variance",
              title="stationary covariance (diagonal)")
    for r in result["digits"]["runs"].values():
        ax[2].loglog(r["lags"], r["msd"], "o-", label=f"lr {r['lr']}: c={r['exponent']:.2f}")
    ax[2].set(xlabel="steps after convergence", ylabel="MSD of parameters",
              title="digits MLP after convergence (measured, no closed form)")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, str(path))


def run(outdir: pathlib.Path, *, quick: bool = False) -> dict:
    """Both experiments; writes ``limiting.png`` into ``outdir``; returns the
    numbers with ``checks`` (closed-form comparisons on the quadratic)."""
    outdir = pathlib.Path(outdir)
    quad, checks = quadratic_part(quick)
    result = {"part": PART, "quick": quick, "quadratic": quad, "digits": digits_part(quick),
              "checks": checks}
    result = jsonable(result)
    plot(result, outdir / f"{PART}.png")
    return result
