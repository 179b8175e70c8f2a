"""Gradient descent on least squares: iterates, closed form, steps to a tolerance.

Agrawal, Mondal, Ghosh & Richards, "alpha-ReQ: Assessing representation
quality by measuring eigenspectrum decay" (NeurIPS 2022), App. A: full-batch
gradient descent from w_0 = 0 on F(w) = 1/2 ||Y - X w||^2 (Eq. 6), its k-th
iterate in closed form (Lemma A.1, Eq. 5), the step size
eta = tau / lambda_1(X X^T) of Theorem 2.1's proof (App. A.2), and the exact
number of steps until the training loss falls to a tolerance (Theorem 2.1:
O(mu_1 / (tau mu_N)) steps, O(N^alpha) for a power-law spectrum).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_int, check_real

Array = jax.Array


def _check_float(name: str, value: Any, *, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float if it is a finite number in the range (``check_real``)."""
    return float(check_real(name, value, low=low, high=high, low_open=low_open,
                            high_open=high_open))


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
    num_steps = check_int("num_steps", num_steps, minimum=0)
    record_every = check_int("record_every", record_every)
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
    max_steps = check_int("max_steps", max_steps)
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
    max_steps = check_int("max_steps", max_steps)
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
