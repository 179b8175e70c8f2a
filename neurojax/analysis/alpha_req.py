"""alpha-ReQ analyses: Fig. 2, Theorem 2.1 and Algorithm 1 (model selection).

Agrawal, Mondal, Ghosh & Richards, "alpha-ReQ: Assessing representation
quality by measuring eigenspectrum decay", NeurIPS 2022 (Sec. 2, Sec. 3.2,
App. A, App. B.5-B.6); thesis Part II (same text, extra appendices).

Run:
    python -m neurojax.analysis.alpha_req --outdir /tmp/alpha_req [--quick]

writes ``fig2.{png,json}`` (over-parameterised linear regression on power-law
Gaussian inputs: train/test MSE against alpha), ``thm21.{png,json}``
(gradient-descent steps to a training error against alpha and N) and
``model_selection.{png,json}`` (Algorithm 1 on a synthetic pool with planted
alphas and a synthetic Goldilocks accuracy).

The fourth analysis, alpha against probe accuracy and the final SSL loss
over a Barlow Twins sweep (lambda, projector dimension, views, learning
rate) on the offline shapes, with Algorithm 1 run on those trained models
(``neurojax.metrics.model_selection.selection_over_orders``), trains networks and lives with the other
SSL sweeps (``python -m neurojax.analysis.ssl_experiments --experiment=alpha``).

The pieces are in the library: the task is
``neurojax.data.synthetic.power_law_regression``; gradient descent, its
closed form and the steps to a tolerance are ``neurojax.metrics.least_squares``;
Algorithm 1 is ``neurojax.metrics.model_selection.select_models`` (its default
probe is ``neurojax.metrics.probes.ridge_probe``).

The task (Fig. 2, Sec. 2.2 "Another motivating example"). Inputs
x ~ N(0, R diag(lambda) R^T) with lambda_j = c j^-alpha (j = 1..d) and R a
Haar rotation (``neurojax.data.synthetic.power_law_gaussian``); a linear
teacher y = x^T theta* + eps, eps ~ N(0, sigma^2); N < d training examples
(over-parameterised); gradient descent from psi_0 = 0 on
F(w) = 1/2 ||Y - X w||^2 (App. A, Lemma A.1) with step size
eta = tau / lambda_1(X X^T), tau < 1 (the step size of the proof of
Theorem 2.1, App. A.2). The paper gives none of d, N, sigma, c, theta*, the
learning rate, the number of steps or the alpha grid; the choices here are
named arguments:

* ``normalization='trace'`` (default): c = 1 / sum_j j^-alpha, so
  tr Sigma = 1 and, with theta* ~ N(0, I_d), the signal variance
  E[(x^T theta*)^2] = 1 for every alpha: the signal-to-noise ratio 1/sigma^2
  is the same across the sweep and MSEs are comparable. ``'top'``:
  c = 1 (lambda_1 = 1), theta* ~ N(0, I_d / d); the signal variance is then
  sum_j j^-alpha / d and changes with alpha (so does the SNR).
* d = 512, N = 128, 4096 test examples, sigma in (0.1, 0.3, 1.0) (all noise
  levels share X and theta*; GD is linear in Y, so they run as columns of
  one Y), tau = 0.5, 10^4 steps, 4 seeds.

MSE is the mean squared error (1/n) ||Y - X w||^2 on the training set or on
the fresh test draw of the same distribution. ``closed_form_iterate``
(Lemma A.1, Eq. 5) gives the iterate for any k and k -> infinity (the
minimum-norm interpolator), reported as the converged reference.

Measured (``python -m neurojax.analysis.alpha_req --outdir DIR``, seed 0,
defaults above; 4.5-7.5 min on 2 shared CPU cores, jax 0.10.2; copies in
``benchmarks/results/alpha_req_{fig2,thm21}.{png,json}``):

* Fig. 2. Train MSE after 10^4 steps is ~1e-12 (interpolation) for
  alpha <= 1 and grows with alpha beyond (sigma = 0.1: 3e-5 at 1.5, 4e-3 at
  2, 9e-3 at 3): "alpha > 1 suffers from high train MSE" reproduces. Test
  MSE after 10^4 steps falls monotonically with alpha at every noise level
  (sigma = 0.1: 0.73 at alpha 0.25, 0.36 at 1, 0.012 at 3): the minimum is
  at the largest alpha of the grid (3.0), so "alpha ~ 1 generalises best"
  does not reproduce at a fixed step budget with equal SNR. For the
  converged minimum-norm interpolator the optimum moves towards 1 as the
  noise grows: alpha = 2.5 (sigma 0.1), 2.0 (sigma 0.3), 1.25 (sigma 1.0;
  there interpolation is no better than predicting 0). With a fixed-SNR
  isotropic teacher a fast-decaying spectrum concentrates the signal in few
  directions, which makes the task easier; the paper's setting (c, teacher,
  noise, budget) is not given, and the optimum depends on it.
* Theorem 2.1 (d = 4N, tolerance 1e-6, tau = 0.5, 3 seeds, N = 32..256):
  steps to threshold grow with alpha at every N (N = 256: 180, 2.6e3,
  4.2e4, 7.8e5 steps for alpha = 0.5, 1, 1.5, 2) and the fitted exponent of
  steps vs N is 0.27, 0.83, 1.30, 1.85 for alpha = 0.5, 1, 1.5, 2 (the
  proof's condition number mu_1 / mu_N: 0.36, 0.94, 1.48, 2.00). The
  theorem's O(N^alpha) is an upper bound on the steps: exponents at or
  below alpha are consistent with it, not a measured rate it predicts; at
  alpha = 0.5 the trace term of mu_1 (sum_j lambda_j ~ d^(1 - alpha)) keeps
  these sizes pre-asymptotic.
* Algorithm 1 demo (``--parts=selection``, 6 s; copy in
  ``benchmarks/results/alpha_req_model_selection.{png,json}``; 60 models
  with planted alpha log-uniform in [0.3, 3], measured alpha within 0.03 of
  planted; Goldilocks accuracy peaked at alpha = 1 plus 1-point noise;
  M = 10, K = 3, 200 orderings): the ``'fastssl'`` window finds a model
  within 1 point of the pool's best in 97% of orderings with 19.05 linear
  evaluations instead of 60 (per step: 10, 3.9, 2.0, 1.4, 0.9, 0.9, below
  M / step); ``'bracket'`` uses 12.4 but succeeds in 70% (the accuracy
  noise breaks its unimodality assumption and the window can shut out the
  best model). The accuracies are planted from alpha, so this measures the
  selection rule's bookkeeping, not whether alpha predicts accuracy.
"""


from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from neurojax._checks import check_int, check_real
from neurojax.analysis.outputs import jsonable, save_figure, write_json
from neurojax.data.synthetic import power_law_gaussian, power_law_regression
from neurojax.metrics.least_squares import (closed_form_iterate, gradient_descent,
                                            learning_rate, mse, steps_to_threshold)
from neurojax.metrics.model_selection import WINDOW_RULES, selection_over_orders
from neurojax.metrics.spectrum import alpha as fit_alpha

Array = jax.Array

FIG2_ALPHAS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
THM21_ALPHAS = (0.5, 1.0, 1.5, 2.0)


def _check_alphas(name: str, alphas: Sequence[float]) -> np.ndarray:
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite numbers "
                         f">= 0, got {alphas!r}")
    return a


# --------------------------------------------------------------------------
# Fig. 2: train and test MSE against alpha
# --------------------------------------------------------------------------


def fig2_sweep(key: Array, alphas: Sequence[float] = FIG2_ALPHAS, *, num_train: int = 128,
               dim: int = 512, num_test: int = 4096,
               noise_stds: Sequence[float] = (0.1, 0.3, 1.0), num_steps: int = 10_000,
               record_every: int = 100, tau: float = 0.5, num_seeds: int = 4,
               normalization: str = "trace", progress: bool = True) -> dict[str, Any]:
    """alpha-ReQ Fig. 2: GD on over-parameterised power-law regression, MSE vs alpha.

    For each alpha and seed: draw ``power_law_regression_task``, run
    ``gradient_descent`` from 0 with eta = tau / lambda_1(X X^T) for
    ``num_steps`` steps, record train and test MSE every ``record_every``
    steps, and the converged (k -> inf, minimum-norm) MSEs from
    ``closed_form_iterate``. The paper's claim: alpha > 1 suffers from high
    train and test MSE, alpha ~ 1 generalises best.

    Returns:
        dict of arrays: ``alphas`` [A], ``noise_stds`` [S], ``steps`` [R],
        ``train_mse``/``test_mse`` [A, seeds, R, S], ``*_mse_mean`` (over
        seeds, [A, R, S]), ``*_final`` (seed mean
        at ``num_steps``, [A, S]), ``*_converged`` (seed mean, minimum-norm
        limit, [A, S]), ``null_test_mse`` (predicting 0, [A, S]),
        ``best_alpha_final``/``best_alpha_converged`` ([S], argmin over the
        grid of the seed-mean test MSE) and the settings.
    """
    a = _check_alphas("alphas", alphas)
    num_seeds = check_int("num_seeds", num_seeds)
    check_int("num_train", num_train)
    check_int("dim", dim)
    if num_train >= dim:
        raise ValueError(f"num_train must be < dim (over-parameterised, N < d), got "
                         f"num_train={num_train}, dim={dim}")
    check_real("tau", tau, low=0.0, high=2.0, low_open=True)
    train, test, train_inf, test_inf, null = [], [], [], [], []
    steps = None
    keys = jax.random.split(key, num_seeds)
    bar = tqdm(total=a.size * num_seeds, desc="fig2 (alpha x seed)", disable=not progress)
    for al in a:
        per = ([], [], [], [], [])
        for s in range(num_seeds):
            task = power_law_regression(
                keys[s], alpha=float(al), num_train=num_train, num_test=num_test, dim=dim,
                noise_stds=noise_stds, normalization=normalization)
            eta = learning_rate(task["x_train"], tau)
            run = gradient_descent(task["x_train"], task["y_train"], learning_rate=eta,
                                   num_steps=num_steps, record_every=record_every)
            steps = run["steps"]
            w_inf = closed_form_iterate(task["x_train"], task["y_train"], learning_rate=eta,
                                        steps=[np.inf])
            x_tr, y_tr, x_te, y_te = (np.asarray(task[k], np.float64) for k in
                                      ("x_train", "y_train", "x_test", "y_test"))
            per[0].append(np.asarray(run["train_mse"]))
            per[1].append(np.asarray(mse(task["x_test"], task["y_test"], run["weights"])))
            per[2].append(np.mean((x_tr @ w_inf[0] - y_tr) ** 2, axis=0))
            per[3].append(np.mean((x_te @ w_inf[0] - y_te) ** 2, axis=0))
            per[4].append(np.mean(y_te ** 2, axis=0))
            bar.update(1)
        for lst, vals in zip((train, test, train_inf, test_inf, null), per):
            lst.append(np.stack(vals))
    bar.close()
    train, test = np.stack(train), np.stack(test)
    test_final = test[:, :, -1].mean(1)
    test_conv = np.stack(test_inf).mean(1)
    return {
        "alphas": a, "noise_stds": np.asarray(noise_stds, np.float64), "steps": steps,
        "train_mse": train, "test_mse": test,
        "train_mse_mean": train.mean(1), "test_mse_mean": test.mean(1),
        "train_mse_final": train[:, :, -1].mean(1), "test_mse_final": test_final,
        "train_mse_converged": np.stack(train_inf).mean(1), "test_mse_converged": test_conv,
        "null_test_mse": np.stack(null).mean(1),
        "best_alpha_final": a[np.argmin(test_final, axis=0)],
        "best_alpha_converged": a[np.argmin(test_conv, axis=0)],
        "settings": {"num_train": num_train, "dim": dim, "num_test": num_test,
                     "num_steps": num_steps, "record_every": record_every, "tau": tau,
                     "num_seeds": num_seeds, "normalization": normalization,
                     "loss": "F(w) = 1/2 ||Y - Xw||^2, eta = tau / lambda_1(XX^T), w_0 = 0",
                     "teacher": ("theta* ~ N(0, I_d)" if normalization == "trace"
                                 else "theta* ~ N(0, I_d / d)")},
    }


def plot_fig2(result: dict[str, Any], *, noise_index: int = 0):
    """Fig. 2 as three panels: (A) train MSE vs alpha after ``num_steps``; (B) test
    MSE vs alpha after ``num_steps`` (solid) and converged (dashed), one colour
    per noise level, with the null predictor's MSE (dotted); (C) test MSE vs
    GD step for each alpha at ``noise_stds[noise_index]``. Accepts the dict
    of ``fig2_sweep`` or its JSON. Returns the Figure."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    r = {k: (np.asarray(v, np.float64) if isinstance(v, (list, np.ndarray)) else v)
         for k, v in result.items()}
    a, sig = r["alphas"], r["noise_stds"]
    if not 0 <= noise_index < sig.size:
        raise ValueError(f"noise_index must lie in [0, {sig.size}), got {noise_index}")
    steps = int(r["settings"]["num_steps"])
    fig = Figure(figsize=(15, 4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    colours = colormaps["viridis"](np.linspace(0, 0.85, sig.size))
    for s, c in enumerate(colours):
        ax1.plot(a, r["train_mse_final"][:, s], "o-", color=c, label=rf"$\sigma$={sig[s]:g}")
        ax2.plot(a, r["test_mse_final"][:, s], "o-", color=c,
                 label=rf"$\sigma$={sig[s]:g}, {steps} steps")
        ax2.plot(a, r["test_mse_converged"][:, s], "s--", color=c, ms=4, alpha=0.7,
                 label=rf"$\sigma$={sig[s]:g}, converged (min-norm)")
        ax2.plot(a, r["null_test_mse"][:, s], ":", color=c, lw=1)
    for ax, title in ((ax1, f"A. train MSE after {steps} GD steps"),
                      (ax2, "B. test MSE (dotted: predicting 0)")):
        ax.axvline(1.0, color="k", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\alpha$ (input covariance $\lambda_j \propto j^{-\alpha}$)")
        ax.set_ylabel("MSE (seed mean)")
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    st = r["steps"]
    for i, c in enumerate(colormaps["coolwarm"](np.linspace(0, 1, a.size))):
        ax3.plot(st[1:], r["test_mse_mean"][i, 1:, noise_index], color=c,
                 label=rf"$\alpha$={a[i]:g}")
    ax3.set_xscale("log")
    ax3.set_yscale("log")
    ax3.set_xlabel("GD step")
    ax3.set_ylabel("test MSE (seed mean)")
    ax3.set_title(rf"C. test MSE during training, $\sigma$={sig[noise_index]:g}")
    ax3.legend(fontsize=7, ncol=2)
    ax3.grid(alpha=0.3, which="both")
    st_ = r["settings"]
    fig.suptitle(f"alpha-ReQ Fig. 2: N={st_['num_train']}, d={st_['dim']}, "
                 f"normalization={st_['normalization']}, {st_['teacher']}, "
                 f"tau={st_['tau']}, {st_['num_seeds']} seeds", fontsize=9)
    fig.tight_layout()
    return fig

def _slope(log_x: np.ndarray, log_y: np.ndarray) -> float:
    """Least-squares slope of log_y on log_x."""
    xc = log_x - log_x.mean()
    return float(np.sum(xc * (log_y - log_y.mean())) / np.sum(xc * xc))


def convergence_time_sweep(key: Array, alphas: Sequence[float] = THM21_ALPHAS,
                           num_trains: Sequence[int] = (32, 64, 128, 256), *,
                           dim_ratio: int = 4, noise_std: float = 0.1, tau: float = 0.5,
                           tolerance: float = 1e-6, num_seeds: int = 3,
                           normalization: str = "trace",
                           progress: bool = True) -> dict[str, Any]:
    """Theorem 2.1: GD steps to a training error against alpha and N.

    The Fig. 2 task with d = ``dim_ratio`` * N (over-parameterised at every
    N); for each (alpha, N, seed) the exact number of GD steps k* until the
    training loss is ``tolerance`` x its initial value
    (``steps_to_threshold``), and the proof's bound's ingredient
    mu_1 / mu_N, the condition number of X X^T (k* = O(mu_1 / (tau mu_N))).
    Theorem 2.1 predicts k* = O(N^alpha): the slope of log k* against log N
    is compared with alpha. (For d >> N and alpha < 1 the tail
    sum_{j > N} lambda_j lifts mu_N and the scaling saturates; d
    proportional to N keeps mu_1 / mu_N ~ N^alpha.)

    Returns:
        ``alphas`` [A], ``num_trains`` [N], ``steps`` [A, N, seeds],
        ``condition`` [A, N, seeds] (mu_1 / mu_N), ``steps_exponent`` [A]
        (slope of the seed-mean log k* on log N), ``condition_exponent`` [A],
        ``theory_exponent`` [A] (= alpha) and the settings.
    """
    a = _check_alphas("alphas", alphas)
    ns = np.asarray(num_trains)
    if ns.ndim != 1 or ns.size < 2 or not all(
            isinstance(n, (int, np.integer)) and n >= 2 for n in num_trains) or len(
            set(int(n) for n in num_trains)) != ns.size:
        raise ValueError(f"num_trains must hold at least 2 distinct ints >= 2, "
                         f"got {num_trains!r}")
    dim_ratio = check_int("dim_ratio", dim_ratio, minimum=2)
    num_seeds = check_int("num_seeds", num_seeds)
    check_real("noise_std", noise_std, low=0.0)
    steps = np.zeros((a.size, ns.size, num_seeds), np.int64)
    cond = np.zeros((a.size, ns.size, num_seeds))
    keys = jax.random.split(key, num_seeds)
    bar = tqdm(total=a.size * ns.size * num_seeds, desc="thm2.1 (alpha x N x seed)",
               disable=not progress)
    for i, al in enumerate(a):
        for j, n in enumerate(ns):
            for s in range(num_seeds):
                task = power_law_regression(
                    jax.random.fold_in(keys[s], int(n)), alpha=float(al), num_train=int(n),
                    num_test=1, dim=dim_ratio * int(n), noise_stds=(noise_std,),
                    normalization=normalization)
                steps[i, j, s] = steps_to_threshold(task["x_train"], task["y_train"],
                                                    tau=tau, tolerance=tolerance)
                x64 = np.asarray(task["x_train"], np.float64)
                mu = np.linalg.eigvalsh(x64 @ x64.T)
                cond[i, j, s] = mu[-1] / mu[0]
                bar.update(1)
    bar.close()
    log_n = np.log(ns.astype(np.float64))
    return {
        "alphas": a, "num_trains": ns, "steps": steps, "condition": cond,
        "steps_exponent": np.array([_slope(log_n, np.log(steps[i]).mean(-1))
                                    for i in range(a.size)]),
        "condition_exponent": np.array([_slope(log_n, np.log(cond[i]).mean(-1))
                                        for i in range(a.size)]),
        "theory_exponent": a.copy(),
        "settings": {"dim_ratio": dim_ratio, "noise_std": noise_std, "tau": tau,
                     "tolerance": tolerance, "num_seeds": num_seeds,
                     "normalization": normalization,
                     "threshold": "||Y - X w_k||^2 <= tolerance ||Y||^2 (exact, Lemma A.1)"},
    }


def plot_thm21(result: dict[str, Any]):
    """(A) steps k* vs alpha, one line per N; (B) k* vs N (log-log) per alpha with
    the fitted exponent and a reference line of slope alpha. Returns the Figure."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    result = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in result.items()}
    a, ns = np.asarray(result["alphas"]), np.asarray(result["num_trains"])
    k = np.exp(np.log(np.asarray(result["steps"], np.float64)).mean(-1))
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for j, c in enumerate(colormaps["viridis"](np.linspace(0, 0.85, ns.size))):
        ax1.plot(a, k[:, j], "o-", color=c, label=f"N={ns[j]}")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"$\alpha$")
    ax1.set_ylabel("GD steps to threshold (geometric mean over seeds)")
    ax1.set_title("A. steps vs alpha")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3, which="both")
    for i, c in enumerate(colormaps["coolwarm"](np.linspace(0, 1, a.size))):
        ax2.loglog(ns, k[i], "o-", color=c,
                   label=rf"$\alpha$={a[i]:g}: slope {result['steps_exponent'][i]:.2f}")
        ax2.loglog(ns, k[i, 0] * (ns / ns[0]) ** a[i], ":", color=c, lw=1)
    ax2.set_xlabel("N (training examples), d = %d N" % result["settings"]["dim_ratio"])
    ax2.set_ylabel("GD steps to threshold")
    ax2.set_title(r"B. steps vs N (dotted: $N^\alpha$, Theorem 2.1)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle(f"alpha-ReQ Theorem 2.1: tolerance {result['settings']['tolerance']:g} "
                 f"x initial loss, tau={result['settings']['tau']}", fontsize=9)
    fig.tight_layout()
    return fig


def goldilocks_accuracy(alpha_values: Any, *, peak: float = 1.0, best: float = 0.9,
                        width: float = 0.5) -> np.ndarray:
    """A synthetic Goldilocks accuracy curve for the model-selection demo.

    acc(alpha) = best (1/2 + 1/2 exp(-(log(alpha / peak))^2 / (2 width^2))):
    ``best`` at alpha = ``peak``, falling symmetrically in log alpha to
    best / 2 (the shape of alpha-ReQ Fig. 5's accuracy against alpha, not
    its values).
    """
    a = np.asarray(alpha_values, np.float64)
    return best * (0.5 + 0.5 * np.exp(-np.log(a / peak) ** 2 / (2 * width ** 2)))


def model_selection_demo(key: Array, *, pool_size: int = 60, num_parallel: int = 10,
                         top_k: int = 3, num_examples: int = 2000, dim: int = 256,
                         alpha_range: tuple[float, float] = (0.3, 3.0),
                         accuracy_noise: float = 0.01, num_orderings: int = 200,
                         progress: bool = True) -> dict[str, Any]:
    """Algorithm 1 on a synthetic pool (FastSSL's Fig. 18 simulation, here synthetic).

    ``pool_size`` feature sets with planted alphas (log-uniform in
    ``alpha_range``; ``power_law_gaussian``) stand for trained models; their
    "linear-probe accuracy" is ``goldilocks_accuracy`` of the planted alpha
    plus Gaussian noise (``accuracy_noise``), fixed per model. alpha is
    measured on the features once; ``select_models`` then runs over
    ``num_orderings`` random orders of the pool with each window rule.
    Reported per rule: probability that the selection is within 1 point of
    the pool's best accuracy, mean shortfall, mean number of probes against
    M H (no filtering), and the mean probes per step against M / step
    (App. B.6: epsilon_r = O(1/r) gives O(M log H) probes).
    """
    pool_size = check_int("pool_size", pool_size, minimum=2)
    num_orderings = check_int("num_orderings", num_orderings)
    lo_a, hi_a = (check_real("alpha_range", v, low=0.0, low_open=True) for v in alpha_range)
    if not lo_a < hi_a:
        raise ValueError(f"alpha_range must be (low, high) with low < high, got {alpha_range}")
    k_a, k_acc, k_f, k_ord = jax.random.split(key, 4)
    planted = np.exp(np.asarray(jax.random.uniform(
        k_a, (pool_size,), minval=math.log(lo_a), maxval=math.log(hi_a)), np.float64))
    acc = goldilocks_accuracy(planted) + accuracy_noise * np.asarray(
        jax.random.normal(k_acc, (pool_size,)), np.float64)
    features, measured = [], []
    for i in tqdm(range(pool_size), desc="pool features", disable=not progress):
        f = power_law_gaussian(jax.random.fold_in(k_f, i), num_examples=num_examples, dim=dim,
                               alpha=float(planted[i]))["x"]
        features.append(f)
        measured.append(float(fit_alpha(f).alpha))
    measured = np.asarray(measured)
    rng = np.random.default_rng(int(jax.random.randint(k_ord, (), 0, 2 ** 31 - 1)))
    orders = [rng.permutation(pool_size) for _ in range(num_orderings)]
    out: dict[str, Any] = {"planted_alpha": planted, "measured_alpha": measured,
                           "accuracy": acc, "pool_best_accuracy": float(acc.max()),
                           "pool_best_alpha": float(planted[np.argmax(acc)]),
                           "settings": {"pool_size": pool_size, "num_parallel": num_parallel,
                                        "top_k": top_k, "num_examples": num_examples,
                                        "dim": dim, "alpha_range": list(alpha_range),
                                        "accuracy_noise": accuracy_noise,
                                        "num_orderings": num_orderings,
                                        "accuracy": "0.9 (0.5 + 0.5 exp(-log(alpha)^2 / 0.5))"}}
    out.update(selection_over_orders(acc, measured, orders, num_parallel=num_parallel,
                                     top_k=top_k, progress=progress))
    return out


def plot_model_selection(result: dict[str, Any]):
    """(A) accuracy vs measured alpha of the pool; (B) probes per step for each
    window rule against M / step (Fig. 18). Returns the Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(result["measured_alpha"], result["accuracy"], "o", ms=4)
    ax1.set_xscale("log")
    ax1.set_xlabel(r"measured $\alpha$")
    ax1.set_ylabel("synthetic accuracy")
    ax1.set_title("A. pool")
    ax1.grid(alpha=0.3)
    m = result["settings"]["num_parallel"]
    for rule in WINDOW_RULES:
        ps = np.asarray(result[rule]["mean_probes_per_step"])
        steps = np.arange(1, ps.size + 1)
        ax2.plot(steps, ps, "o-", label=f"{rule}: {result[rule]['mean_probes']:.1f} probes, "
                 f"P(within 1pt)={result[rule]['p_within_1pt']:.2f}")
    steps = np.arange(1, result["fastssl"]["num_steps"] + 1)
    ax2.plot(steps, m / steps, "k--", label="M / step")
    ax2.set_xlabel("sequential step")
    ax2.set_ylabel("linear evaluations per step (mean)")
    ax2.set_title("B. Algorithm 1: probes per step")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


QUICK = {
    "fig2": dict(alphas=(0.5, 1.0, 1.5, 2.0, 3.0), num_train=64, dim=256, num_test=1024,
                 num_steps=2000, record_every=100, num_seeds=2),
    "thm21": dict(alphas=(0.5, 1.0, 2.0), num_trains=(16, 32, 64), num_seeds=2),
    "selection": dict(pool_size=30, num_parallel=5, num_examples=1000, dim=128,
                      num_orderings=50),
}


def run(outdir: str, *, quick: bool = False, seed: int = 0,
        parts: Sequence[str] = ("fig2", "thm21", "selection")) -> dict[str, Any]:
    """Runs the analyses in ``parts`` and writes their PNG + JSON under ``outdir``.

    ``quick``: the sizes of ``QUICK`` (about a minute). Returns a summary.
    """
    unknown = set(parts) - set(QUICK)
    if unknown:
        raise ValueError(f"parts must be among {tuple(QUICK)}, got {sorted(unknown)}")
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    cfg = QUICK if quick else {k: {} for k in QUICK}
    summary: dict[str, Any] = {}
    if "fig2" in parts:
        t0 = time.time()
        fig2 = fig2_sweep(k1, **cfg["fig2"])
        fig2["seconds"] = time.time() - t0
        # Seed means only (the per-seed curves would make the file ~0.7 MB).
        write_json(fig2, os.path.join(outdir, "fig2.json"),
                   exclude=("train_mse", "test_mse"), digits=6)
        save_figure(plot_fig2(fig2), os.path.join(outdir, "fig2.png"), dpi=80)
        summary["fig2"] = {f"sigma={s:g}": {
            "best_alpha_final": float(fig2["best_alpha_final"][i]),
            "best_alpha_converged": float(fig2["best_alpha_converged"][i])}
            for i, s in enumerate(fig2["noise_stds"])}
    if "thm21" in parts:
        t0 = time.time()
        thm = convergence_time_sweep(k2, **cfg["thm21"])
        thm["seconds"] = time.time() - t0
        write_json(thm, os.path.join(outdir, "thm21.json"))
        save_figure(plot_thm21(thm), os.path.join(outdir, "thm21.png"))
        summary["thm21"] = {f"alpha={a:g}": {"steps_exponent": float(e),
                                             "condition_exponent": float(c)}
                            for a, e, c in zip(thm["alphas"], thm["steps_exponent"],
                                               thm["condition_exponent"])}
    if "selection" in parts:
        t0 = time.time()
        sel = model_selection_demo(k3, **cfg["selection"])
        sel["seconds"] = time.time() - t0
        write_json(sel, os.path.join(outdir, "model_selection.json"))
        save_figure(plot_model_selection(sel), os.path.join(outdir, "model_selection.png"))
        summary["model_selection"] = {rule: {k: sel[rule][k] for k in
                                             ("p_within_1pt", "mean_probes", "mean_shortfall")}
                                      for rule in WINDOW_RULES}
    return jsonable(summary)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("outdir", None, "Directory for the PNG + JSON outputs.")
    flags.DEFINE_bool("quick", False, "Small sizes (about a minute).")
    flags.DEFINE_integer("seed", 0, "Seed.")
    flags.DEFINE_list("parts", list(QUICK), "Which analyses: fig2, thm21, selection.")
    flags.mark_flag_as_required("outdir")


def main(argv: Sequence[str]) -> None:
    import json

    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    print(json.dumps(run(f.outdir, quick=f.quick, seed=f.seed, parts=f.parts), indent=1))


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
