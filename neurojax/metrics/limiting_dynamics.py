"""Limiting dynamics of SGD near a minimum: stationary covariance, mean squared
displacement and the anomalous-diffusion exponent.

Kunin, Sagastuy-Brena, Gillespie, Margalit, Tanaka, Ganguli & Yamins,
"Rethinking the limiting dynamics of SGD: modified loss, phase space
oscillations, and anomalous diffusion" (2021/2023; Sec. 3 for the empirical
power law, Sec. 5 for linear regression). Long after the loss has converged
the parameters keep moving; the mean squared displacement

    MSD(k) = E || theta_{t+k} - theta_t ||^2  ~  k^c

grows as a power law with a non-trivial exponent ``c`` (the paper's Fig. 1).
In the linear-regression setting of its Sec. 5 the gradient near the minimum
``theta*`` is ``g_k = H' (theta_k - theta*) + xi_k`` with ``H' = H + wd I``
(weight decay ``wd`` moves the minimum, not the noise) and zero-mean noise
``xi_k`` of covariance ``C`` (minibatch noise, ``sgd_noise_covariance``, or an
injected one). This module treats that linear recursion *exactly in discrete
time*, in optax's conventions:

* plain SGD (``optax.sgd(lr)`` after ``optax.add_decayed_weights(wd)``)::

      delta_{k+1} = A delta_k - lr xi_k,       A = I - lr H'

* heavy-ball momentum ``beta`` (``optax.sgd(lr, momentum=beta)``: the trace
  ``m_{k+1} = beta m_k + g_k`` and ``theta_{k+1} = theta_k - lr m_{k+1}``),
  on the phase-space state ``z = (delta, m)``::

      z_{k+1} = [[I - lr H', -lr beta I], [H', beta I]] z_k + [[-lr I], [I]] xi_k.

The stationary covariance of ``z`` solves the discrete Lyapunov equation

    Sigma = A Sigma A^T + B C B^T,

(no momentum: ``Sigma = (I - lr H') Sigma (I - lr H')^T + lr^2 C``), and at
stationarity, because the noise after time ``t`` is independent of ``z_t``,

    MSD(k) = 2 tr[ P (I - A^k) Sigma P^T ]     (P: the theta block of z),

which without momentum is ``2 tr[(I - (I - lr H')^k) Sigma]``. For small
``k lr H'`` it is diffusive (``MSD ~ k lr^2 tr C``), for large ``k`` it
saturates at ``2 tr Sigma``; a Hessian spectrum spread over decades gives an
intermediate power law with ``0 < c < 1``.

Named conventions (where references differ):

* The paper models SGD by a continuous-time underdamped Langevin equation and
  gets, for ``beta = 0``, ``H Sigma + Sigma H = lr C`` to leading order; the
  discrete equation here is exact for the discrete recursion and gives
  ``H Sigma + Sigma H = lr (C + H Sigma H)``: the two differ at order
  ``lr H``.
* ``C`` is the covariance of the gradient *noise per step* (not of one
  example's gradient): for minibatches of size ``S`` drawn with replacement
  it is ``(1/S)`` times the per-example covariance (the paper's
  ``Sigma(theta) / S``); without replacement it carries the finite-population
  factor ``(N - S) / (N - 1)``.
* Momentum follows optax's (PyTorch's) form ``m <- beta m + g``, not the
  ``(1 - beta)``-damped form; the effective learning rate is ``lr / (1 - beta)``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_int, check_matrix, check_real, is_concrete

__all__ = ["sgd_transition", "lyapunov_solve", "stationary_covariance",
           "stationary_msd", "sgd_noise_covariance", "DiffusionFit",
           "fit_diffusion_exponent", "mean_squared_displacement"]

_DEFAULT_DOUBLINGS = 60


def _float(x):
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_hyper(lr, momentum, weight_decay):
    check_real("lr", lr, low=0, low_open=True)
    check_real("momentum", momentum, low=0, high=1, high_open=True)
    check_real("weight_decay", weight_decay, low=0)


def sgd_transition(hessian, lr, *, momentum=0.0, weight_decay=0.0):
    """``(A, B)`` of the linear SGD recursion ``z_{k+1} = A z_k + B xi_k``.

    Without momentum (``momentum == 0``, a Python number) ``z = delta``,
    ``A = I - lr (H + wd I)`` and ``B = -lr I`` (both ``d x d``). With momentum
    ``z = (delta, m)`` and ``A = [[I - lr H', -lr beta I], [H', beta I]]``,
    ``B = [[-lr I], [I]]`` (``2d x 2d`` and ``2d x d``), in optax's
    ``sgd(lr, momentum=beta)`` convention (module docstring).

    Args:
        hessian: ``(d, d)`` Hessian ``H`` at the minimum (symmetric).
        lr: learning rate ``> 0``.
        momentum: ``beta`` in ``[0, 1)``.
        weight_decay: ``wd >= 0`` as ``optax.add_decayed_weights(wd)``.
    """
    h = _float(check_matrix("hessian", hessian, square=True))
    _check_hyper(lr, momentum, weight_decay)
    d = h.shape[0]
    eye = jnp.eye(d, dtype=h.dtype)
    hp = h + weight_decay * eye
    if isinstance(momentum, (int, float)) and momentum == 0:
        return eye - lr * hp, -lr * eye
    a = jnp.block([[eye - lr * hp, -lr * momentum * eye], [hp, momentum * eye]])
    b = jnp.concatenate([-lr * eye, eye], axis=0)
    return a, b


def _check_stable(a) -> None:
    if is_concrete(a):
        rho = float(np.max(np.abs(np.linalg.eigvals(np.asarray(a, np.float64)))))
        if not rho < 1.0:
            raise ValueError(
                "the SGD recursion has no stationary state: the spectral radius of its "
                f"transition matrix is {rho:.6g} >= 1 (lr too large for the Hessian, or a "
                "zero/negative curvature direction without weight decay)")


def lyapunov_solve(a, q, *, num_doublings: int = _DEFAULT_DOUBLINGS):
    """``X`` with ``X = A X A^T + Q``: the stationary covariance of
    ``z_{k+1} = A z_k + noise`` with noise covariance ``Q``.

    Smith's doubling: ``X = sum_{j >= 0} A^j Q (A^T)^j`` is summed as
    ``X_{i+1} = X_i + A_i X_i A_i^T``, ``A_{i+1} = A_i^2`` (``X_0 = Q``,
    ``A_0 = A``), so ``num_doublings`` iterations cover ``2^num_doublings``
    terms (the default 60 is exact to rounding for any spectral radius below
    ``1 - 1e-15``). Same equation as ``scipy.linalg.solve_discrete_lyapunov(a,
    q)``. Concrete ``A`` with spectral radius ``>= 1`` raises ``ValueError``.
    Runs under ``jit``.
    """
    a = _float(check_matrix("a", a, square=True))
    q = _float(check_matrix("q", q, square=True))
    if q.shape != a.shape:
        raise ValueError(f"q must have the shape of a {a.shape}, got {q.shape}")
    num_doublings = check_int("num_doublings", num_doublings)
    _check_stable(a)
    dt = jnp.promote_types(a.dtype, q.dtype)
    return _smith(a.astype(dt), q.astype(dt), num_doublings)


def _smith(a, q, num_doublings):
    def body(_, carry):
        x, ak = carry
        return x + ak @ x @ ak.T, ak @ ak
    x, _ = jax.lax.fori_loop(0, num_doublings, body, (q, a))
    return 0.5 * (x + x.T)


def _state_covariance(hessian, noise_cov, lr, momentum, weight_decay, num_doublings):
    c = _float(check_matrix("noise_cov", noise_cov, square=True))
    d = jnp.shape(hessian)[0] if jnp.ndim(hessian) == 2 else None
    if d is not None and c.shape[0] != d:
        raise ValueError(f"noise_cov must be {d}x{d} like the hessian, got {c.shape}")
    a, b = sgd_transition(hessian, lr, momentum=momentum, weight_decay=weight_decay)
    return a, lyapunov_solve(a, b @ c.astype(b.dtype) @ b.T, num_doublings=num_doublings)


def stationary_covariance(hessian, noise_cov, lr, *, momentum=0.0, weight_decay=0.0,
                          full_state: bool = False,
                          num_doublings: int = _DEFAULT_DOUBLINGS):
    """Stationary covariance of SGD on a quadratic with additive gradient noise.

    Solves ``Sigma = A Sigma A^T + B C B^T`` for the recursion of
    ``sgd_transition`` (module docstring; Kunin et al. 2021, Sec. 5, in exact
    discrete time). Without momentum this is
    ``Sigma = (I - lr H') Sigma (I - lr H')^T + lr^2 C``.

    Args:
        hessian: ``(d, d)`` Hessian at the minimum.
        noise_cov: ``(d, d)`` covariance ``C`` of the gradient noise per step
            (``sgd_noise_covariance`` for minibatch noise; ``sigma^2 / d * I``
            for ``inject_gradient_noise(sigma)``, whose unit direction has
            ``E[n n^T] = I / d``).
        lr, momentum, weight_decay: as in ``sgd_transition``.
        full_state: with momentum, return the ``2d x 2d`` covariance of
            ``(delta, m)`` instead of its ``theta`` block.

    Returns:
        The ``(d, d)`` covariance of ``theta - theta*`` (or the full state's).
    """
    _, sigma = _state_covariance(hessian, noise_cov, lr, momentum, weight_decay,
                                 num_doublings)
    d = jnp.shape(noise_cov)[0]
    return sigma if full_state else sigma[:d, :d]


def _matrix_power(a, k, bits: int = 40):
    """``A^k`` for a traced non-negative integer ``k < 2^bits`` (binary powers)."""
    def body(i, carry):
        result, base = carry
        bit = (k >> i) & 1
        result = jnp.where(bit == 1, result @ base, result)
        return result, base @ base
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jax.lax.fori_loop(0, bits, body, (eye, a))[0]


def stationary_msd(hessian, noise_cov, lr, lags, *, momentum=0.0, weight_decay=0.0,
                   num_doublings: int = _DEFAULT_DOUBLINGS):
    """Predicted ``MSD(k) = E||theta_{t+k} - theta_t||^2`` at stationarity.

    ``MSD(k) = 2 tr[P (I - A^k) Sigma P^T]`` with ``Sigma`` the stationary
    covariance of the state (``stationary_covariance(..., full_state=True)``)
    and ``P`` the projection on ``theta``; without momentum
    ``2 tr[(I - (I - lr H')^k) Sigma]``. Derivation: ``z_{t+k} - z_t =
    (A^k - I) z_t + sum_{j<k} A^j B xi`` with the sum independent of ``z_t``
    and of covariance ``Sigma - A^k Sigma A^kT``.

    Args:
        lags: 1-D integer lags ``k >= 0`` (values below ``2^40``).
        the rest: as in ``stationary_covariance``.

    Returns:
        ``(len(lags),)`` predicted MSD.
    """
    lags_arr = jnp.asarray(lags)
    if lags_arr.ndim != 1 or not jnp.issubdtype(lags_arr.dtype, jnp.integer):
        raise ValueError(f"lags must be a 1-D integer array, got shape {lags_arr.shape} "
                         f"and dtype {lags_arr.dtype}")
    if is_concrete(lags_arr) and lags_arr.size and (int(lags_arr.min()) < 0
                                                     or int(lags_arr.max()) >= 2 ** 40):
        raise ValueError(f"lags must be in [0, 2^40), got {np.asarray(lags_arr)}")
    a, sigma = _state_covariance(hessian, noise_cov, lr, momentum, weight_decay,
                                 num_doublings)
    d = jnp.shape(noise_cov)[0]

    def one(k):
        ak = _matrix_power(a, k)
        return 2.0 * (jnp.trace(sigma[:d, :d]) - jnp.trace((ak @ sigma)[:d, :d]))

    return jax.vmap(one)(lags_arr)


def sgd_noise_covariance(per_example_grads, batch_size: int, *, replacement: bool = True):
    """Covariance ``C`` of the minibatch-gradient noise ``g_B - g`` per step.

    With ``per_example_grads`` the ``(N, d)`` gradients ``g_i`` of the ``N``
    training examples and ``g = mean_i g_i``, a batch of ``S`` examples has
    ``Cov(g_B) = (1/S) [ (1/N) sum_i g_i g_i^T - g g^T ]`` when drawn with
    replacement (i.i.d. indices; the paper's ``Sigma(theta)/S``), times
    ``(N - S) / (N - 1)`` without replacement (uniform ``S``-subsets).
    """
    g = _float(check_matrix("per_example_grads", per_example_grads))
    n = g.shape[0]
    batch_size = check_int("batch_size", batch_size)
    if not isinstance(replacement, bool):
        raise ValueError(f"replacement must be a bool, got {replacement!r}")
    if not replacement and batch_size > n:
        raise ValueError(f"batch_size must be <= the {n} examples without replacement, "
                         f"got {batch_size}")
    centered = g - jnp.mean(g, axis=0)
    per_example = centered.T @ centered / n
    factor = 1.0 / batch_size
    if not replacement:
        factor = factor * ((n - batch_size) / (n - 1) if n > 1 else 0.0)
    return factor * per_example


def mean_squared_displacement(trajectory, lags):
    """Empirical ``MSD(k) = mean_t ||theta_{t+k} - theta_t||^2`` of a trajectory.

    Args:
        trajectory: ``(T, d)`` parameters at consecutive recorded times, or
            ``(R, T, d)`` for ``R`` independent replicas (averaged too).
        lags: 1-D integer lags in ``[0, T)`` (in units of recorded times).

    Returns:
        ``(len(lags),)`` MSD averaged over all start times ``t <= T - 1 - k``
        (and replicas).
    """
    x = _float(trajectory)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"trajectory must be (T, d) or (R, T, d), got shape {x.shape}")
    lags = np.asarray(lags)
    t = x.shape[1]
    if lags.ndim != 1 or not np.issubdtype(lags.dtype, np.integer) or \
            (lags.size and (lags.min() < 0 or lags.max() >= t)):
        raise ValueError(f"lags must be 1-D integers in [0, {t}), got {lags!r}")
    return jnp.stack([jnp.mean(jnp.sum((x[:, int(k):] - x[:, :t - int(k)]) ** 2, axis=-1))
                      for k in lags])


class DiffusionFit(NamedTuple):
    """``MSD(k) ~ prefactor * k^exponent`` fitted over ``num_points`` lags."""
    exponent: jax.Array
    prefactor: jax.Array
    r2: jax.Array
    num_points: jax.Array


def fit_diffusion_exponent(lags, msd, *, window: Optional[tuple[float, float]] = None
                           ) -> DiffusionFit:
    """Anomalous-diffusion exponent ``c`` of ``MSD(k) ~ a k^c`` (Kunin et al.
    2021, Sec. 3, Fig. 1: a straight line in log-log axes).

    Ordinary least squares of ``log MSD`` on ``log k`` over the lags inside
    ``window = (k_min, k_max)`` (inclusive; default all lags ``> 0``):
    ``c = cov(log k, log MSD) / var(log k)``, ``a = exp(mean log MSD - c
    mean log k)``; ``r2`` is the usual coefficient of determination of that
    line (``np.polyfit(log k, log MSD, 1)`` gives the same line). Lags
    ``<= 0`` and non-positive or non-finite MSD values get weight 0. The
    window is a choice the paper makes by eye (after convergence, before any
    saturation); report it with the exponent. With fewer than 2 usable
    points: ``ValueError`` when concrete, NaN when traced. Runs under ``jit``.
    """
    k, m = _float(lags), _float(msd)
    if k.ndim != 1 or m.shape != k.shape:
        raise ValueError(f"lags and msd must be 1-D of equal length, got {k.shape} and {m.shape}")
    dt = jnp.promote_types(k.dtype, m.dtype)
    k, m = k.astype(dt), m.astype(dt)
    keep = (k > 0) & (m > 0) & jnp.isfinite(m)
    if window is not None:
        try:
            lo, hi = (float(w) for w in window)
        except (TypeError, ValueError):
            raise ValueError(f"window must be a pair (k_min, k_max), got {window!r}") from None
        check_real("window[0]", lo, low=0, low_open=True)
        check_real("window[1]", hi, low=lo)
        keep &= (k >= lo) & (k <= hi)
    n = jnp.sum(keep)
    if is_concrete(n) and int(n) < 2:
        raise ValueError(f"fit_diffusion_exponent needs >= 2 positive lags with positive MSD "
                         f"inside window={window}, got {int(n)}")
    w = keep.astype(dt)
    x = jnp.log(jnp.where(keep, k, 1))
    y = jnp.log(jnp.where(keep, m, 1))
    xbar, ybar = jnp.sum(w * x) / n, jnp.sum(w * y) / n
    slope = jnp.sum(w * (x - xbar) * (y - ybar)) / jnp.sum(w * (x - xbar) ** 2)
    intercept = ybar - slope * xbar
    resid = y - (intercept + slope * x)
    r2 = 1 - jnp.sum(w * resid ** 2) / jnp.sum(w * (y - ybar) ** 2)
    return DiffusionFit(exponent=slope, prefactor=jnp.exp(intercept), r2=r2, num_points=n)
