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
over a Barlow Twins sweep (lambda, projector dimension, learning rate) on
the offline shapes, trains networks and lives with the other SSL sweeps:
:func:`barlow_twins_sweep` here runs
``neurojax.analysis.ssl_experiments``' ``alpha`` experiment
(``python -m neurojax.analysis.ssl_experiments --experiment=alpha``).

The task (Fig. 2, Sec. 2.2 "Another motivating example"). Inputs
x ~ N(0, R diag(lambda) R^T) with lambda_j = c j^-alpha (j = 1..d) and R a
Haar rotation (``neurojax.data.synthetic.power_law_gaussian``); a linear
teacher y = x^T theta* + eps, eps ~ N(0, sigma^2); N < d training examples
(over-parameterised); gradient descent from psi_0 = 0 on
F(w) = 1/2 ||Y - X w||^2 (App. A, Lemma A.1) with step size
eta = tau / lambda_1(X X^T), tau < 1 (the step size of the proof of
Theorem 2.1, App. A.2). The paper gives none of d, N, sigma, c, theta*, the
learning rate, the number of steps or the alpha grid (spec 000_partA.md
Sec. 1H); the choices here are named arguments:

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
  proof's condition number mu_1 / mu_N: 0.36, 0.94, 1.48, 2.00): N^alpha
  holds for alpha >= 1 to within 0.2 (0.06 for mu_1 / mu_N); at alpha = 0.5
  the trace term of mu_1 (sum_j lambda_j ~ d^(1 - alpha)) keeps these
  sizes pre-asymptotic.
* Algorithm 1 demo (60 models with planted alpha log-uniform in [0.3, 3],
  measured alpha within 0.03 of planted; Goldilocks accuracy peaked at
  alpha = 1 plus 1-point noise; M = 10, K = 3, 200 orderings): the
  ``'fastssl'`` window finds a model within 1 point of the pool's best in
  97% of orderings with 19.1 linear evaluations instead of 60 (per step:
  10, 3.9, 2.0, 1.4, 0.9, 0.9, below M / step); ``'bracket'`` uses 12.4
  but succeeds in 70% (the accuracy noise breaks its unimodality
  assumption and the window can shut out the best model).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from neurojax.data.synthetic import power_law_gaussian
from neurojax.metrics.spectrum import DEFAULT_FIT_RANGE
from neurojax.metrics.spectrum import alpha as fit_alpha

Array = jax.Array

NORMALIZATIONS = ("trace", "top")
WINDOW_RULES = ("fastssl", "bracket")
FIG2_ALPHAS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
THM21_ALPHAS = (0.5, 1.0, 1.5, 2.0)


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, *, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (
        v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {lo}{low}, {high}{hi}, got {value!r}")
    return v


def _check_alphas(name: str, alphas: Sequence[float]) -> np.ndarray:
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite numbers "
                         f">= 0, got {alphas!r}")
    return a


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


# --------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------


def power_law_scale(dim: int, alpha: float, normalization: str = "trace") -> float:
    """c in lambda_j = c j^-alpha: 1 / sum_j j^-alpha ('trace') or 1 ('top')."""
    _check_choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "top":
        return 1.0
    return float(1.0 / np.sum(np.arange(1, dim + 1, dtype=np.float64) ** -float(alpha)))


def power_law_regression_task(key: Array, *, alpha: float, num_train: int, num_test: int,
                              dim: int, noise_stds: Sequence[float] = (0.1,),
                              normalization: str = "trace") -> dict[str, Array]:
    """Teacher-student regression on power-law Gaussian inputs (alpha-ReQ Fig. 2).

    x_i ~ N(0, R diag(lambda) R^T), lambda_j = c j^-alpha (c from
    ``normalization``, see the module docstring), y_i = x_i^T theta* + eps_i,
    eps_i ~ N(0, sigma^2), with one target column per sigma in ``noise_stds``
    (the same standard-normal noise draw scaled by each sigma, so the columns
    are the same task at different noise levels). Train and test inputs
    share R and theta*.

    Returns:
        ``{"x_train": [N, d], "y_train": [N, S], "x_test": [n, d],
        "y_test": [n, S], "theta": [d], "eigenvalues": [d], "rotation":
        [d, d], "noise_stds": [S]}``.
    """
    num_train = _check_int("num_train", num_train)
    num_test = _check_int("num_test", num_test)
    dim = _check_int("dim", dim)
    alpha = _check_float("alpha", alpha, low=0.0)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    sig = np.asarray(noise_stds, dtype=np.float64)
    if sig.ndim != 1 or sig.size == 0 or not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError(f"noise_stds must be a non-empty 1-D sequence of numbers >= 0, "
                         f"got {noise_stds!r}")
    return _task(key, jnp.asarray(alpha, jnp.float32),
                 jnp.asarray(power_law_scale(dim, alpha, normalization), jnp.float32),
                 jnp.asarray(sig, jnp.float32), num_train=num_train, num_test=num_test,
                 dim=dim, top=normalization == "top")


@functools.partial(jax.jit, static_argnames=("num_train", "num_test", "dim", "top"))
def _task(key, alpha, scale, sig, *, num_train, num_test, dim, top):
    k_x, k_theta, k_noise = jax.random.split(key, 3)
    data = power_law_gaussian(k_x, num_examples=num_train + num_test, dim=dim, alpha=alpha,
                              scale=scale)
    dt = data["x"].dtype
    theta = jax.random.normal(k_theta, (dim,), dt)
    if top:
        theta = theta / math.sqrt(dim)
    eps = jax.random.normal(k_noise, (num_train + num_test, 1), dt)
    y = jnp.matmul(data["x"], theta, precision=jax.lax.Precision.HIGHEST)[:, None] + (
        eps * sig.astype(dt)[None, :])
    return {"x_train": data["x"][:num_train], "y_train": y[:num_train],
            "x_test": data["x"][num_train:], "y_test": y[num_train:], "theta": theta,
            "eigenvalues": data["eigenvalues"], "rotation": data["rotation"],
            "noise_stds": sig.astype(dt)}


def learning_rate(x: Array, tau: float = 0.5) -> float:
    """eta = tau / lambda_1(X X^T), the step size of Theorem 2.1's proof (App. A.2).

    GD on F(w) = 1/2 ||Y - X w||^2 multiplies the residual's component along
    the i-th eigenvector of X X^T by (1 - eta lambda_i) per step, so it
    converges for 0 < tau < 2; the theorem takes tau < 1 (each factor in
    [0, 1)).
    """
    tau = _check_float("tau", tau, low=0.0, high=2.0, low_open=True)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be a matrix [N, d], got shape {x.shape}")
    top = float(np.linalg.eigvalsh(x @ x.T)[-1])
    if not top > 0:
        raise ValueError("x must not be all zeros (lambda_1(X X^T) = 0)")
    return tau / top


# --------------------------------------------------------------------------
# Gradient descent and its closed form (Lemma A.1)
# --------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("num_records", "record_every"))
def _gd_scan(x, y, eta, *, num_records, record_every):
    def step(w, _):
        return w - eta * (x.T @ (x @ w - y)), None

    def record(w, _):
        w, _ = jax.lax.scan(step, w, None, length=record_every)
        return w, w

    w0 = jnp.zeros((x.shape[1],) + y.shape[1:], x.dtype)
    _, ws = jax.lax.scan(record, w0, None, length=num_records)
    return jnp.concatenate([w0[None], ws], axis=0)


def gradient_descent(x: Array, y: Array, *, learning_rate: float, num_steps: int,
                     record_every: int = 1) -> dict[str, Array]:
    """Full-batch gradient descent from w_0 = 0 (alpha-ReQ App. A, Eq. 6).

    w_{k+1} = w_k - eta X^T (X w_k - Y), the gradient of
    F(w) = 1/2 ||Y - X w||^2; a jitted ``lax.scan`` (an inner scan of
    ``record_every`` steps inside an outer scan over records). ``y`` may be
    [N] or [N, S] (S independent targets trained at once).

    Returns:
        ``{"steps": [R + 1] (0, record_every, ..., num_steps), "weights":
        [R + 1, d (, S)], "train_mse": [R + 1 (, S)]}`` with R =
        num_steps / record_every.
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    if x.ndim != 2:
        raise ValueError(f"x must be a matrix [N, d], got shape {x.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [N] or [N, S] with N = {x.shape[0]}, "
                         f"got {y.shape}")
    num_steps = _check_int("num_steps", num_steps, minimum=0)
    record_every = _check_int("record_every", record_every)
    if num_steps % record_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of record_every "
                         f"({record_every})")
    eta = _check_float("learning_rate", learning_rate, low=0.0, low_open=True)
    ws = _gd_scan(x, y, jnp.asarray(eta, x.dtype), num_records=num_steps // record_every,
                  record_every=record_every)
    return {"steps": np.arange(0, num_steps + 1, record_every),
            "weights": ws, "train_mse": mse(x, y, ws)}


@jax.jit
def _mse(x, y, ws):
    pred = jnp.einsum("nd,rd...->rn...", x, ws, precision=jax.lax.Precision.HIGHEST)
    return jnp.mean((pred - y[None]) ** 2, axis=1)


def mse(x: Array, y: Array, weights: Array) -> Array:
    """(1/n) ||Y - X w||^2 for each w in ``weights`` [R, d (, S)] -> [R (, S)]."""
    return _mse(jnp.asarray(x), jnp.asarray(y, jnp.asarray(x).dtype), jnp.asarray(weights))


def closed_form_iterate(x: Array, y: Array, *, learning_rate: float,
                        steps: Sequence[float]) -> np.ndarray:
    """The k-th GD iterate in the eigenbasis of X X^T (Lemma A.1, Eq. 5).

    w_k = X^T (X X^T)^-1 [I - (I - eta X X^T)^k] Y
        = X^T U diag((1 - (1 - eta mu_i)^k) / mu_i) U^T Y,   X X^T = U diag(mu) U^T,

    in float64 on the host. ``k = inf`` gives the limit X^T (X X^T)^+ Y, the
    minimum-norm interpolator (for N <= d, 0 < eta mu_1 < 2). Modes with
    mu_i <= 1e-12 mu_1 are treated as null (factor 0).

    Returns:
        [len(steps), d (, S)].
    """
    eta = _check_float("learning_rate", learning_rate, low=0.0, low_open=True)
    x64 = np.asarray(x, np.float64)
    y64 = np.asarray(y, np.float64)
    mu, u = np.linalg.eigh(x64 @ x64.T)
    live = mu > 1e-12 * mu[-1]
    s = u.T @ y64
    out = []
    for k in steps:
        if np.isinf(k):
            factor = np.where(live, 1.0, 0.0)
        else:
            factor = 1.0 - np.power(1.0 - eta * mu, float(k))
        coef = np.where(live, factor / np.where(live, mu, 1.0), 0.0)
        out.append(x64.T @ (u @ (coef.reshape((-1,) + (1,) * (s.ndim - 1)) * s)))
    return np.stack(out)


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
    num_seeds = _check_int("num_seeds", num_seeds)
    _check_int("num_train", num_train)
    _check_int("dim", dim)
    if num_train >= dim:
        raise ValueError(f"num_train must be < dim (over-parameterised, N < d), got "
                         f"num_train={num_train}, dim={dim}")
    _check_float("tau", tau, low=0.0, high=2.0, low_open=True)
    train, test, train_inf, test_inf, null = [], [], [], [], []
    steps = None
    keys = jax.random.split(key, num_seeds)
    bar = tqdm(total=a.size * num_seeds, desc="fig2 (alpha x seed)", disable=not progress)
    for al in a:
        per = ([], [], [], [], [])
        for s in range(num_seeds):
            task = power_law_regression_task(
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


def plot_fig2(result: dict[str, Any], path: str, *, noise_index: int = 0) -> None:
    """Fig. 2 as three panels: (A) train MSE vs alpha after ``num_steps``; (B) test
    MSE vs alpha after ``num_steps`` (solid) and converged (dashed), one colour
    per noise level, with the null predictor's MSE (dotted); (C) test MSE vs
    GD step for each alpha at ``noise_stds[noise_index]``. Accepts the dict
    of ``fig2_sweep`` or its JSON. PNG at ``path``."""
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
    fig.savefig(path, dpi=80)


# --------------------------------------------------------------------------
# Theorem 2.1: steps to a training error
# --------------------------------------------------------------------------


def _relative_loss(log_decay2: np.ndarray, weights: np.ndarray, k: float) -> float:
    return float(np.sum(weights * np.exp(k * log_decay2)))


def steps_to_threshold(x: Array, y: Array, *, tau: float = 0.5, tolerance: float = 1e-6,
                       max_steps: int = 10 ** 12) -> int:
    """Number of GD steps until the training loss falls to ``tolerance`` x initial.

    k* = min {k >= 0 : ||Y - X w_k||^2 <= tolerance ||Y||^2}, for GD from
    w_0 = 0 with eta = tau / mu_1 (Theorem 2.1). Exact through Lemma A.1:
    the residual is (I - eta X X^T)^k Y, so with X X^T = U diag(mu) U^T and
    S = U^T Y (summed over target columns),

        ||r_k||^2 / ||Y||^2 = sum_i (1 - eta mu_i)^(2k) S_i^2 / sum_i S_i^2,

    non-increasing in k (|1 - eta mu_i| < 1 for 0 < tau < 2); found by
    doubling then bisection, in float64. ``gd_steps_to_threshold`` counts the
    same thing by running GD. Theorem 2.1: k* = O(mu_1 / (tau mu_N)), which
    for mu_n = c n^-alpha is O(N^alpha).

    Raises:
        ValueError if the threshold is not reached within ``max_steps``
        (e.g. a residual outside the row space of X, when N > rank).
    """
    tau = _check_float("tau", tau, low=0.0, high=2.0, low_open=True)
    tolerance = _check_float("tolerance", tolerance, low=0.0, high=1.0, low_open=True,
                             high_open=False)
    max_steps = _check_int("max_steps", max_steps)
    x64 = np.asarray(x, np.float64)
    y64 = np.asarray(y, np.float64).reshape(x64.shape[0], -1)
    mu, u = np.linalg.eigh(x64 @ x64.T)
    eta = tau / mu[-1]
    s2 = np.sum((u.T @ y64) ** 2, axis=1)
    weights = s2 / np.sum(s2)
    decay2 = (1.0 - eta * mu) ** 2
    log_decay2 = np.log(np.where(decay2 > 0, decay2, 1.0))
    log_decay2 = np.where(decay2 > 0, log_decay2, -np.inf)

    def loss(k: int) -> float:
        if k == 0:
            return 1.0
        return _relative_loss(log_decay2, weights, float(k))

    if loss(0) <= tolerance:
        return 0
    hi = 1
    while loss(hi) > tolerance:
        hi *= 2
        if hi > 2 * max_steps:
            raise ValueError(f"the training loss does not reach tolerance={tolerance} "
                             f"within max_steps={max_steps}")
    lo = hi // 2   # loss(lo) > tolerance (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if loss(mid) <= tolerance:
            hi = mid
        else:
            lo = mid
    if hi > max_steps:
        raise ValueError(f"the training loss does not reach tolerance={tolerance} "
                         f"within max_steps={max_steps}")
    return hi


@functools.partial(jax.jit, static_argnames=("max_steps",))
def _gd_count(x, y, eta, threshold, *, max_steps):
    def loss(w):
        r = x @ w - y
        return jnp.sum(r * r)

    def cond(state):
        k, w, l = state
        return (l > threshold) & (k < max_steps)

    def body(state):
        k, w, _ = state
        w = w - eta * (x.T @ (x @ w - y))
        return k + 1, w, loss(w)

    w0 = jnp.zeros((x.shape[1],) + y.shape[1:], x.dtype)
    k, _, l = jax.lax.while_loop(cond, body, (jnp.asarray(0), w0, loss(w0)))
    return k, l


def gd_steps_to_threshold(x: Array, y: Array, *, tau: float = 0.5, tolerance: float = 1e-6,
                          max_steps: int = 1_000_000) -> int:
    """``steps_to_threshold`` by running GD (a jitted ``lax.while_loop``).

    w_{k+1} = w_k - eta X^T (X w_k - Y) from 0 until
    ||Y - X w_k||^2 <= tolerance ||Y||^2. Costs one pass over X per step:
    for checking the closed form on small problems.
    """
    tau = _check_float("tau", tau, low=0.0, high=2.0, low_open=True)
    tolerance = _check_float("tolerance", tolerance, low=0.0, high=1.0, low_open=True,
                             high_open=False)
    max_steps = _check_int("max_steps", max_steps)
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    eta = learning_rate(x, tau)
    threshold = tolerance * float(jnp.sum(y * y))
    k, l = _gd_count(x, y, jnp.asarray(eta, x.dtype), jnp.asarray(threshold, x.dtype),
                     max_steps=max_steps)
    if float(l) > threshold:
        raise ValueError(f"the training loss does not reach tolerance={tolerance} "
                         f"within max_steps={max_steps}")
    return int(k)


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
    dim_ratio = _check_int("dim_ratio", dim_ratio, minimum=2)
    num_seeds = _check_int("num_seeds", num_seeds)
    _check_float("noise_std", noise_std, low=0.0)
    steps = np.zeros((a.size, ns.size, num_seeds), np.int64)
    cond = np.zeros((a.size, ns.size, num_seeds))
    keys = jax.random.split(key, num_seeds)
    bar = tqdm(total=a.size * ns.size * num_seeds, desc="thm2.1 (alpha x N x seed)",
               disable=not progress)
    for i, al in enumerate(a):
        for j, n in enumerate(ns):
            for s in range(num_seeds):
                task = power_law_regression_task(
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


def plot_thm21(result: dict[str, Any], path: str) -> None:
    """(A) steps k* vs alpha, one line per N; (B) k* vs N (log-log) per alpha with
    the fitted exponent and a reference line of slope alpha. PNG at ``path``."""
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
    fig.savefig(path, dpi=90)


# --------------------------------------------------------------------------
# Algorithm 1 / 2: model selection with alpha
# --------------------------------------------------------------------------


def ridge_probe_accuracy(features: Array, labels: Array, *, l2: float = 1e-3,
                         test_fraction: float = 0.25, seed: int = 0) -> float:
    """Held-out accuracy of a closed-form ridge-regression classifier on one-hot labels.

    Features standardised with training statistics (plus a bias column);
    W = (Z^T Z + l2 n I)^-1 Z^T Y on a random split (``test_fraction``
    held out, ``seed``); prediction argmax_k (z^T W)_k. A cheap stand-in for
    the paper's linear probe (Sec. 3.1), used by ``select_models`` when no
    ``probe_fn`` is given.
    """
    f = np.asarray(features, np.float64)
    f = f.reshape(f.shape[0], -1) if f.ndim > 1 else f
    if f.ndim != 2 or f.shape[0] < 4:
        raise ValueError(f"features must have shape (n >= 4, ...), got {np.shape(features)}")
    if labels is None:
        raise ValueError("labels must be given for the default ridge probe "
                         "(or pass a probe_fn that works without labels)")
    y = np.asarray(labels)
    if y.shape != (f.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids of shape ({f.shape[0]},), got "
                         f"{y.dtype} {y.shape}")
    l2 = _check_float("l2", l2, low=0.0, low_open=True)
    test_fraction = _check_float("test_fraction", test_fraction, low=0.0, high=1.0,
                                 low_open=True)
    n = f.shape[0]
    n_test = max(1, int(round(test_fraction * n)))
    if n_test >= n:
        raise ValueError(f"test_fraction={test_fraction} leaves no training examples")
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[n_test:], perm[:n_test]
    mean, std = f[tr].mean(0), f[tr].std(0)
    std = np.where(std > 0, std, 1.0)
    z = np.concatenate([(f - mean) / std, np.ones((n, 1))], axis=1)
    classes, y_idx = np.unique(y, return_inverse=True)
    onehot = np.eye(classes.size)[y_idx]
    a = z[tr].T @ z[tr] + l2 * tr.size * np.eye(z.shape[1])
    w = np.linalg.solve(a, z[tr].T @ onehot[tr])
    return float(np.mean(np.argmax(z[te] @ w, axis=1) == y_idx[te]))


def _update_window(alphas: np.ndarray, perfs: np.ndarray, lo: float, hi: float, rule: str,
                   window_top_k: int) -> tuple[float, float]:
    """New [alpha_min, alpha_max] from every probed (alpha, performance) pair."""
    if rule == "bracket":
        # alpha_min = max{alpha_j : some m has alpha_m > alpha_j and perf_m > perf_j}
        # alpha_max = min{alpha_j : some m has alpha_m < alpha_j and perf_m > perf_j}
        better = perfs[:, None] > perfs[None, :]            # [m, j]: m beats j
        right = better & (alphas[:, None] > alphas[None, :])
        left = better & (alphas[:, None] < alphas[None, :])
        beaten_from_right = right.any(axis=0)
        beaten_from_left = left.any(axis=0)
        if beaten_from_right.any():
            lo = max(lo, float(alphas[beaten_from_right].max()))
        if beaten_from_left.any():
            hi = min(hi, float(alphas[beaten_from_left].min()))
        return lo, hi
    # 'fastssl': scripts/model_selection_sim.py. The top-k probed models by
    # performance; the window becomes the alpha range they span, on each side
    # only if some probed model lies beyond them on that side.
    k = min(window_top_k, perfs.size)
    top = np.argsort(-perfs, kind="stable")[:k]
    order = np.argsort(alphas, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    first, last = int(position[top].min()), int(position[top].max())
    if first != 0:
        lo = float(alphas[order[first]])
    if last != order.size - 1:
        hi = float(alphas[order[last]])
    return lo, hi


def select_models(features_list: Sequence[Any], labels_list: Any = None, *,
                  num_parallel: int, top_k: int,
                  probe_fn: Optional[Callable[[Any, Any], float]] = None,
                  alphas: Optional[Sequence[float]] = None,
                  fit_range: tuple[int, int] = DEFAULT_FIT_RANGE,
                  window_rule: str = "fastssl", window_top_k: Optional[int] = None,
                  progress: bool = False) -> dict[str, Any]:
    """Model selection with alpha (alpha-ReQ Algorithm 1; App. B.5 Algorithm 2).

    The pool is visited in order in H = ceil(P / M) sequential steps of
    M = ``num_parallel`` models ("train M models in parallel"). With
    alpha_min = 0, alpha_max = inf and an empty models_dict, each step:

    1. computes alpha for each of its M models (``neurojax.metrics.alpha``
       on the features, ``fit_range``; or the given ``alphas``);
    2. probes (``probe_fn(features, labels) -> performance``) only the
       models with alpha in [alpha_min, alpha_max] (inclusive) and inserts
       (alpha, performance) into models_dict;
    3. updates alpha_min, alpha_max from every model probed so far;
    4. trims models_dict to the ``top_k`` (K) best performances.

    Returns the best performance in models_dict. A model whose alpha is not
    finite (no power-law fit, e.g. collapsed features) is never probed.
    Algorithm 1 in the main
    text overwrites its ``models_stat`` every step; Algorithm 2 (App. B.5)
    accumulates it, which is what is implemented (spec 000_partA.md, 1D).

    The window update. The paper's set-builder (OCR, both algorithms) reads
    alpha_min = max{alpha_m | alpha_m > alpha_j & perf_m > perf_j, m, j in
    models_dict}, alpha_max = min{alpha_m | alpha_m < alpha_j & perf_m >
    perf_j}. Taken literally it is degenerate: on (alpha, perf) =
    (0.5, .60), (1.0, .90), (2.0, .70) it gives alpha_min = 2.0 >
    alpha_max = 1.0, an empty window (read with "for all j", both collapse
    onto the best model). Two readings are implemented:

    * ``'fastssl'`` (default; the authors' simulation behind Fig. 18,
      FastSSL ``scripts/model_selection_sim.py``): take the
      ``window_top_k`` (default max(1, M // 2), the code's M // 2) best
      probed models; sort all probed alphas; alpha_min becomes the smallest
      alpha among the top models unless that is the smallest probed alpha
      (then alpha_min is unchanged), alpha_max symmetrically with the
      largest. The window can widen again. Differences from the script:
      ties in performance are broken by index (the script matched top
      models by accuracy value) and k >= 1 (M // 2 = 0 made it take all).
    * ``'bracket'``: the set-builder with the element read as the beaten
      model j: alpha_min = max{alpha_j : exists m, alpha_m > alpha_j,
      perf_m > perf_j} and alpha_max = min{alpha_j : exists m, alpha_m <
      alpha_j, perf_m > perf_j} (unchanged when the set is empty). If
      performance is unimodal in alpha (the Goldilocks zone) this window
      always contains the maximiser and the best probed model, and it only
      shrinks.

    Args:
        features_list: P feature arrays (n_i, ...), one per trained model.
        labels_list: None (``probe_fn`` gets None), one label array shared
            by every model, or a sequence of P label arrays (or Nones).
        num_parallel: M >= 1.
        top_k: K >= 1 models kept.
        probe_fn: (features, labels) -> performance (higher is better);
            default ``ridge_probe_accuracy`` (needs integer labels).
        alphas: precomputed alpha per model (then features are only passed
            to ``probe_fn``).
        fit_range: ranks for ``neurojax.metrics.alpha``.
        window_rule: 'fastssl' or 'bracket'.
        window_top_k: for 'fastssl'.
        progress: tqdm bar over the steps.

    Returns:
        dict: ``best_index``, ``best_performance``, ``selected`` (indices of
        the kept top-K, best first), ``selected_performance``, ``alphas``
        [P], ``probed`` [P] bool, ``performance`` [P] (NaN where not
        probed), ``num_probes``, ``probes_per_step`` [H],
        ``windows`` [H, 2] (after each step), ``num_steps`` H.
    """
    if isinstance(features_list, (np.ndarray, jax.Array)) or not isinstance(
            features_list, Sequence) or len(features_list) == 0:
        raise ValueError("features_list must be a non-empty sequence of feature arrays")
    p = len(features_list)
    m = _check_int("num_parallel", num_parallel)
    k_keep = _check_int("top_k", top_k)
    _check_choice("window_rule", window_rule, WINDOW_RULES)
    k_window = max(1, m // 2) if window_top_k is None else _check_int("window_top_k",
                                                                     window_top_k)
    if probe_fn is None:
        probe_fn = ridge_probe_accuracy
    elif not callable(probe_fn):
        raise ValueError(f"probe_fn must be callable (features, labels) -> performance, "
                         f"got {probe_fn!r}")
    if labels_list is None:
        labels = [None] * p
    elif isinstance(labels_list, (np.ndarray, jax.Array)):
        labels = [labels_list] * p
    elif isinstance(labels_list, Sequence) and len(labels_list) == p:
        labels = list(labels_list)
    else:
        raise ValueError(f"labels_list must be None, one label array, or a sequence of "
                         f"{p} label arrays, got {type(labels_list).__name__}"
                         + (f" of length {len(labels_list)}"
                            if isinstance(labels_list, Sequence) else ""))
    if alphas is not None:
        alpha_arr = np.asarray(alphas, np.float64)
        if alpha_arr.shape != (p,) or not np.all(np.isfinite(alpha_arr)):
            raise ValueError(f"alphas must hold {p} finite numbers, got {alphas!r}")
    else:
        alpha_arr = np.full(p, np.nan)

    lo, hi = 0.0, math.inf
    probed = np.zeros(p, bool)
    perf = np.full(p, np.nan)
    kept: list[int] = []
    probes_per_step, windows = [], []
    num_steps = -(-p // m)
    for step in tqdm(range(num_steps), desc="model selection", disable=not progress):
        batch = range(step * m, min(p, (step + 1) * m))
        if alphas is None:
            for i in batch:
                alpha_arr[i] = float(fit_alpha(features_list[i], fit_range).alpha)
        count = 0
        for i in batch:
            if np.isfinite(alpha_arr[i]) and lo <= alpha_arr[i] <= hi:
                value = float(probe_fn(features_list[i], labels[i]))
                if not math.isfinite(value):
                    raise ValueError(f"probe_fn returned {value} for model {i}")
                perf[i] = value
                probed[i] = True
                kept.append(i)
                count += 1
        probes_per_step.append(count)
        if probed.any():
            idx = np.flatnonzero(probed)
            lo, hi = _update_window(alpha_arr[idx], perf[idx], lo, hi, window_rule, k_window)
        kept = sorted(kept, key=lambda i: (-perf[i], i))[:k_keep]
        windows.append((lo, hi))
    best = kept[0] if kept else None
    return {
        "best_index": best,
        "best_performance": None if best is None else float(perf[best]),
        "selected": list(kept), "selected_performance": [float(perf[i]) for i in kept],
        "alphas": alpha_arr, "probed": probed, "performance": perf,
        "num_probes": int(probed.sum()), "probes_per_step": np.asarray(probes_per_step),
        "windows": np.asarray(windows, np.float64), "num_steps": num_steps,
    }


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
    pool_size = _check_int("pool_size", pool_size, minimum=2)
    num_orderings = _check_int("num_orderings", num_orderings)
    lo_a, hi_a = (_check_float("alpha_range", v, low=0.0, low_open=True) for v in alpha_range)
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
    acc_of = {id(f): a for f, a in zip(features, acc)}

    def probe(f, _labels):
        return acc_of[id(f)]

    rng = np.random.default_rng(int(jax.random.randint(k_ord, (), 0, 2 ** 31 - 1)))
    orders = [rng.permutation(pool_size) for _ in range(num_orderings)]
    best_acc = float(acc.max())
    out: dict[str, Any] = {"planted_alpha": planted, "measured_alpha": measured,
                           "accuracy": acc, "pool_best_accuracy": best_acc,
                           "pool_best_alpha": float(planted[np.argmax(acc)]),
                           "settings": {"pool_size": pool_size, "num_parallel": num_parallel,
                                        "top_k": top_k, "num_examples": num_examples,
                                        "dim": dim, "alpha_range": list(alpha_range),
                                        "accuracy_noise": accuracy_noise,
                                        "num_orderings": num_orderings,
                                        "accuracy": "0.9 (0.5 + 0.5 exp(-log(alpha)^2 / 0.5))"}}
    h = -(-pool_size // num_parallel)
    for rule in tqdm(WINDOW_RULES, desc="window rules", disable=not progress):
        shortfall, probes, per_step = [], [], []
        for order in orders:
            r = select_models([features[i] for i in order], None, num_parallel=num_parallel,
                              top_k=top_k, probe_fn=probe, alphas=measured[order],
                              window_rule=rule)
            shortfall.append(best_acc - r["best_performance"])
            probes.append(r["num_probes"])
            per_step.append(r["probes_per_step"])
        shortfall = np.asarray(shortfall)
        out[rule] = {"p_within_1pt": float(np.mean(shortfall <= 0.01)),
                     "mean_shortfall": float(shortfall.mean()),
                     "max_shortfall": float(shortfall.max()),
                     "mean_probes": float(np.mean(probes)),
                     "probes_without_filtering": pool_size,
                     "mean_probes_per_step": np.mean(np.stack(per_step), axis=0),
                     "num_steps": h}
    return out


def plot_model_selection(result: dict[str, Any], path: str) -> None:
    """(A) accuracy vs measured alpha of the pool; (B) probes per step for each
    window rule against M / step (Fig. 18). PNG at ``path``."""
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
    fig.savefig(path, dpi=90)


# --------------------------------------------------------------------------
# Output and CLI
# --------------------------------------------------------------------------


def barlow_twins_sweep(outdir: str, *, epochs: int = 6,
                       dims: Sequence[int] = (16, 64, 256)) -> dict[str, Any]:
    """alpha vs accuracy and vs the final loss over a Barlow Twins sweep.

    Paper Sec. 3 (Fig. 4: alpha tracks linear-probe accuracy across BT
    hyperparameters where the BT loss does not). Runs (or reads back)
    ``ssl_experiments.alpha_experiment`` under ``outdir``: lambda in
    {0.002, 0.3}, learning rate in {1e-4, 3e-3} around the base run, and the
    projector sweep's d in ``dims`` with beta = 5.12 / d and fixed beta,
    each ``epochs`` epochs of ``configs/ssl_shapes.py:small``; writes
    ``alpha.png`` and returns the points with the Spearman rank correlations
    of alpha, |alpha - 1| and the final loss with each probe's accuracy.
    """
    from neurojax.analysis import ssl_experiments
    return ssl_experiments.alpha_experiment(outdir, ssl_experiments.Base(epochs=epochs),
                                            dims, True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(obj).tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def _round(obj: Any, digits: int) -> Any:
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v, digits) for v in obj]
    if isinstance(obj, float) and obj != 0.0:
        return float(f"{obj:.{digits}g}")
    return obj


def write_json(result: dict[str, Any], path: str, *, exclude: Sequence[str] = (),
               significant_digits: Optional[int] = None) -> None:
    """Write a result dict (arrays as nested lists, NaN/inf as null) to ``path``.

    ``exclude`` drops top-level keys (e.g. per-seed curves);
    ``significant_digits`` rounds every float (smaller files).
    """
    out = _jsonable({k: v for k, v in result.items() if k not in exclude})
    if significant_digits is not None:
        out = _round(out, _check_int("significant_digits", significant_digits))
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)


QUICK = {
    "fig2": dict(alphas=(0.5, 1.0, 1.5, 2.0, 3.0), num_train=64, dim=256, num_test=1024,
                 num_steps=2000, record_every=100, num_seeds=2),
    "thm21": dict(alphas=(0.5, 1.0, 2.0), num_trains=(16, 32, 64), num_seeds=2),
    "selection": dict(pool_size=30, num_parallel=5, num_examples=1000, dim=128,
                      num_orderings=50),
}


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """CLI: ``python -m neurojax.analysis.alpha_req --outdir DIR [--quick] [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    key = jax.random.PRNGKey(args.seed)
    k1, k2, k3 = jax.random.split(key, 3)
    cfg = QUICK if args.quick else {"fig2": {}, "thm21": {}, "selection": {}}
    summary: dict[str, Any] = {}

    t0 = time.time()
    fig2 = fig2_sweep(k1, **cfg["fig2"])
    fig2["seconds"] = time.time() - t0
    # Seed means only (the per-seed curves would make the file ~0.7 MB).
    write_json(fig2, os.path.join(args.outdir, "fig2.json"),
               exclude=("train_mse", "test_mse"), significant_digits=6)
    plot_fig2(fig2, os.path.join(args.outdir, "fig2.png"))
    summary["fig2"] = {f"sigma={s:g}": {
        "best_alpha_final": float(fig2["best_alpha_final"][i]),
        "best_alpha_converged": float(fig2["best_alpha_converged"][i])}
        for i, s in enumerate(fig2["noise_stds"])}

    t0 = time.time()
    thm = convergence_time_sweep(k2, **cfg["thm21"])
    thm["seconds"] = time.time() - t0
    write_json(thm, os.path.join(args.outdir, "thm21.json"))
    plot_thm21(thm, os.path.join(args.outdir, "thm21.png"))
    summary["thm21"] = {f"alpha={a:g}": {"steps_exponent": float(e), "condition_exponent": float(c)}
                        for a, e, c in zip(thm["alphas"], thm["steps_exponent"],
                                           thm["condition_exponent"])}

    t0 = time.time()
    sel = model_selection_demo(k3, **cfg["selection"])
    sel["seconds"] = time.time() - t0
    write_json(sel, os.path.join(args.outdir, "model_selection.json"))
    plot_model_selection(sel, os.path.join(args.outdir, "model_selection.png"))
    summary["model_selection"] = {rule: {k: sel[rule][k] for k in
                                         ("p_within_1pt", "mean_probes", "mean_shortfall")}
                                  for rule in WINDOW_RULES}
    print(json.dumps(_jsonable(summary), indent=1))
    return summary


if __name__ == "__main__":
    main()
