"""Predicted effect of biased and noisy gradient updates (Ghosh et al., ICLR 2023).

Ghosh, Liu, Lajoie, Kording & Richards, "How gradient estimator variance and
bias impact learning in neural networks" (ICLR 2023), Secs. 2-3 and Appendix
A. The weight update is

    Delta w = -g + b beta + sigma sqrt(f(N)) n_hat,   w <- w + dt Delta w   (Eq. 1)

with ``g = grad L``, ``H = grad^2 L``, ``||beta|| = sqrt(N)`` (default all
ones), ``n_hat`` a random unit vector and ``dt`` the learning rate; the optax
transforms of ``neurojax.optim.injection`` apply exactly this update.

Predictions (pure functions of flat ``(N,)`` / ``(N, N)`` arrays):

* ``lemma21_excess_loss``: Lemma 2.1 / A.1 (Eq. 3, Eq. 17).
* ``bias_pq``: Theorem 2.4 / A.6's P and Q (Eqs. 6, 36-38).
* ``noise_threshold`` / ``noise_descent_conditions``: Theorem 3.1 / A.7
  (Eq. 7, Eqs. 39-45).
* ``bias_descent_bound``: Theorem 3.2 / A.8 (Eq. 8, Eqs. 46-56), plus a
  rigorous variant (see its docstring).
* ``corollary_a2_expected_loss``: the multi-step expansion (Eq. 19).
* ``hessian_trace_one_layer`` / ``hessian_trace_two_layer`` (linear or ReLU):
  Theorems A.3 (Eqs. 26-27) and A.5 (Eq. 34).

Measurement: ``measure_excess_loss``, Eq. 2 averaged over a noise set with
the update applied explicitly.

Loss convention for the network formulas: ``L = (1/|D|) sum_n ||y_n -
yhat_n||^2`` (the paper's MSE, Theorem A.3's proof; not halved).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from neurojax._checks import check_int, check_real, is_concrete

# ----------------------------------------------------------------------------- checks


def _concrete_float(name: str, value) -> Optional[float]:
    if not is_concrete(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None


def _vector(name: str, value) -> jax.Array:
    v = jnp.asarray(value)
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
    return v


def _square(name: str, value, n: int) -> jax.Array:
    m = jnp.asarray(value)
    if m.shape != (n, n):
        raise ValueError(f"{name} must have shape ({n}, {n}), got {m.shape}")
    return m


def _unit_beta(beta, n: int, dtype) -> jax.Array:
    """beta rescaled to ||beta|| = sqrt(N) (all ones by default): on a flat vector, what
    ``neurojax.optim.injection.gradient_bias_direction`` does to a PyTree."""
    if beta is None:
        return jnp.ones((n,), dtype)
    beta = _vector("beta", beta)
    if beta.shape[0] != n:
        raise ValueError(f"beta must have length {n} (that of g), got {beta.shape[0]}")
    beta = beta.astype(dtype)
    norm = jnp.linalg.norm(beta)
    if is_concrete(norm) and not float(norm) > 0:
        raise ValueError("beta must have a non-zero finite norm")
    return beta * (math.sqrt(n) / norm)


def _tree_beta(like_tree, beta):
    """``_unit_beta`` on a PyTree: ones, or ``beta`` rescaled to global norm sqrt(N)."""
    if beta is None:
        return jax.tree.map(jnp.ones_like, like_tree)
    n = optax.tree.size(like_tree)
    norm = optax.tree.norm(beta)
    return jax.tree.map(lambda d, x: (d * (math.sqrt(n) / norm)).astype(x.dtype), beta,
                        like_tree)


# ----------------------------------------------------------------------------- Lemma 2.1


def lemma21_excess_loss(g, dt, *, hessian=None, trace=None, b=0.0, beta=None, sigma=0.0,
                        f_n=1.0, noise_quadratic=None) -> dict:
    """Lemma 2.1 / A.1 (Eq. 3 = Eq. 17): the expected one-step excess loss.

        E_n[Delta L(b, sigma^2)] = b <g, beta> dt + 1/2 b^2 <beta, H beta> dt^2
                                   - 1/2 b <g, (H + H^T) beta> dt^2
                                   + 1/2 sigma^2 f(N) Tr[H] / N dt^2

    against a true-gradient step from the same point (Eq. 2). Exact for a
    quadratic loss once the terms odd in the noise average out (they do
    exactly over a zero-sum set) and the noise's second moment is that of
    ``n_hat`` (``E[n n^T] = I / N``, Eq. 15).

    Args:
        g: gradient, ``(N,)``.
        dt: step size (> 0).
        hessian: ``(N, N)``; needed for the bias terms (``b != 0``) and, unless
            ``trace`` or ``noise_quadratic`` is given, for the variance term.
        trace: ``Tr H`` (e.g. a Hutchinson estimate) for the variance term.
        b: bias magnitude per unit of ``beta`` (any finite number).
        beta: bias direction ``(N,)``, rescaled to norm ``sqrt(N)`` (default ones).
        sigma: noise magnitude (>= 0); the noise vector is ``sigma sqrt(f(N)) n``.
        f_n: ``f(N)`` (see ``noise_variance_factor``).
        noise_quadratic: replaces ``Tr H / N`` by a realised second moment, e.g.
            ``(1/R) sum_i n_i^T H n_i`` over the set actually used
            (``noise_set_quadratic``): the finite-set form that a measurement
            over that set matches exactly on a quadratic.

    Returns:
        dict with ``bias_linear``, ``bias_quadratic``, ``bias_cross``,
        ``variance`` and ``total``.
    """
    g = _vector("g", g)
    n = g.shape[0]
    check_real("dt", dt, low=0.0, low_open=True)
    check_real("b", b)
    check_real("sigma", sigma, low=0.0)
    check_real("f_n", f_n, low=0.0)
    dtype = jnp.result_type(g.dtype, jnp.float32)
    g = g.astype(dtype)
    bias_needed = not (_concrete_float("b", b) == 0.0)
    if hessian is not None:
        hessian = _square("hessian", hessian, n).astype(dtype)
    if bias_needed and hessian is None:
        raise ValueError("hessian is required when b != 0")
    beta = _unit_beta(beta, n, dtype)
    if noise_quadratic is None and trace is None and hessian is None:
        if _concrete_float("sigma", sigma) != 0.0:
            raise ValueError("one of hessian, trace or noise_quadratic is required "
                             "when sigma != 0")
        trace = jnp.zeros((), dtype)
    return _lemma21(g, dt, hessian, trace, b, beta, sigma, f_n, noise_quadratic)


@jax.jit
def _lemma21(g, dt, hessian, trace, b, beta, sigma, f_n, noise_quadratic):
    n = g.shape[0]
    dtype = g.dtype
    zero = jnp.zeros((), dtype)
    if hessian is not None:
        hb = hessian @ beta
        bias_linear = b * jnp.vdot(g, beta) * dt
        bias_quadratic = 0.5 * b ** 2 * jnp.vdot(beta, hb) * dt ** 2
        bias_cross = -0.5 * b * jnp.vdot(g, hb + hessian.T @ beta) * dt ** 2
    else:
        bias_linear = bias_quadratic = bias_cross = zero
    if noise_quadratic is None:
        if trace is None:
            trace = jnp.trace(hessian)
        noise_quadratic = jnp.asarray(trace, dtype) / n
    variance = 0.5 * sigma ** 2 * f_n * jnp.asarray(noise_quadratic, dtype) * dt ** 2
    total = bias_linear + bias_quadratic + bias_cross + variance
    return {"bias_linear": bias_linear, "bias_quadratic": bias_quadratic,
            "bias_cross": bias_cross, "variance": variance, "total": total}


def noise_set_quadratic(hessian, noise_set) -> jax.Array:
    """``(1/R) sum_i n_i^T H n_i`` for a set of flat noise vectors ``(R, N)``."""
    noise_set = jnp.asarray(noise_set)
    if noise_set.ndim != 2:
        raise ValueError(f"noise_set must have shape (R, N), got {noise_set.shape}")
    hessian = _square("hessian", hessian, noise_set.shape[1])
    return jnp.mean(jnp.einsum("ri,ij,rj->r", noise_set, hessian, noise_set))


# ----------------------------------------------------------------------------- measurement


def _tree_axpy(params, dt, direction):
    return optax.tree.add_scale(params, dt, optax.tree.cast_like(direction, params))


def measure_excess_loss(loss_fn: Callable[[Any], jax.Array], params, dt, *, b=0.0,
                        beta=None, sigma=0.0, noise_set=None, f_n=1.0) -> dict:
    """Eq. 2 measured: one update from ``params`` against a true-gradient step.

        Delta L = mean_i L(w + dt (-g + b beta + sigma sqrt(f_n) n_i)) - L(w - dt g)

    (``L(w)`` cancels). The mean runs over ``noise_set``, a PyTree like
    ``params`` with a leading axis of ``R`` vectors (e.g.
    ``zero_sum_noise_set``), which removes the odd noise terms exactly when
    the set sums to zero. Without a set (or with ``sigma = 0``) there is no
    noise. The update is applied explicitly (Eq. 1); see
    ``neurojax.analysis.bias_variance.measure_excess_loss_optax`` for the transform
    route.

    Args:
        loss_fn: ``params -> scalar``.
        params: the point ``w``.
        dt: step size (> 0).
        b, beta: bias magnitude and direction (PyTree like ``params`` or
            ``None`` for ones; rescaled to norm ``sqrt(N)``).
        sigma, noise_set, f_n: noise magnitude, the set and ``f(N)``.

    Returns:
        dict: ``delta_loss`` (the mean), ``per_vector`` (``(R,)``),
        ``loss_start``, ``loss_true_step`` and ``grad_norm``.
    """
    check_real("dt", dt, low=0.0, low_open=True)
    check_real("b", b)
    check_real("sigma", sigma, low=0.0)
    check_real("f_n", f_n, low=0.0)
    return _measure(loss_fn, params, dt, b, beta, sigma, noise_set, f_n)


@functools.partial(jax.jit, static_argnums=(0,))
def _measure(loss_fn, params, dt, b, beta, sigma, noise_set, f_n):
    loss0, g = jax.value_and_grad(loss_fn)(params)
    beta_tree = _tree_beta(g, beta)
    base = jax.tree.map(lambda gi, bi: -gi + b * bi, g, beta_tree)
    loss_true = loss_fn(_tree_axpy(params, dt, jax.tree.map(jnp.negative, g)))
    if noise_set is None:
        per = loss_fn(_tree_axpy(params, dt, base))[None]
    else:
        scale = sigma * jnp.sqrt(f_n)

        def one(n):
            return loss_fn(_tree_axpy(params, dt, jax.tree.map(
                lambda u, ni: u + scale * ni.astype(u.dtype), base, n)))

        per = jax.vmap(one)(noise_set)
    gnorm = optax.tree.norm(g)
    return {"delta_loss": jnp.mean(per) - loss_true, "per_vector": per - loss_true,
            "loss_start": loss0, "loss_true_step": loss_true, "grad_norm": gnorm}


# ----------------------------------------------------------------------------- Theorem 2.4


def bias_pq(g, hessian, dt, beta=None) -> tuple[jax.Array, jax.Array]:
    """Theorem 2.4 / A.6 (Eqs. 6, 36-38): ``Delta L(b, 0) = 1/2 b^2 Q dt^2 + b ||g|| P dt``.

        Q = <beta, H beta>,   P = <g_hat, beta> - 1/2 <g_hat, (H + H^T) beta> dt,

    ``g_hat = g / ||g||``: neither depends on ``||g||``, so at a fixed
    gradient direction the bias impact is affine in ``||g||`` (slope
    ``b P dt``) and tends to the quadratic ``1/2 b^2 Q dt^2`` as ``||g|| -> 0``.

    Returns:
        ``(P, Q)``.
    """
    g = _vector("g", g)
    n = g.shape[0]
    check_real("dt", dt, low=0.0, low_open=True)
    dtype = jnp.result_type(g.dtype, jnp.float32)
    hessian = _square("hessian", hessian, n).astype(dtype)
    beta = _unit_beta(beta, n, dtype)
    g_hat = g.astype(dtype) / jnp.linalg.norm(g.astype(dtype))
    q = jnp.vdot(beta, hessian @ beta)
    p = jnp.vdot(g_hat, beta) - 0.5 * jnp.vdot(g_hat, (hessian + hessian.T) @ beta) * dt
    return p, q


# ----------------------------------------------------------------------------- Theorem 3.1


def noise_threshold(grad_norm, sigma, dt, f_n=1.0) -> jax.Array:
    """Theorem 3.1 / A.7's curvature threshold ``(2/dt) / (1 + sigma^2 f(N) / ||g||^2)``.

    With ``b = 0`` the expected one-step change is (Eq. 41)

        E[L(w + dt Dw)] - L(w) = -||g||^2 dt + 1/2 (g^T H g + sigma^2 f(N) Tr H / N) dt^2,

    and ``lambda_N ||g||^2 <= g^T H g <= lambda_1 ||g||^2``,
    ``lambda_N <= Tr H / N <= lambda_1`` (Ineq. 42) give: ascent in
    expectation is guaranteed when ``lambda_N >= threshold`` (Eq. 7 / 44),
    descent when ``lambda_1 <= threshold`` (Eq. 45). The paper states
    ``f(N) = 1`` (noise norm ``sigma``); the ``f_n`` factor is the same
    derivation with Lemma 2.1's general variance term.
    """
    check_real("grad_norm", grad_norm, low=0.0, low_open=True)
    check_real("sigma", sigma, low=0.0)
    check_real("dt", dt, low=0.0, low_open=True)
    check_real("f_n", f_n, low=0.0)
    return (2.0 / dt) / (1.0 + sigma ** 2 * f_n / jnp.asarray(grad_norm) ** 2)


def noise_descent_conditions(lambda_max, lambda_min, grad_norm, sigma, dt, f_n=1.0) -> dict:
    """Theorem 3.1's sufficient conditions: ``{'threshold', 'descent_guaranteed'
    (lambda_1 <= threshold), 'ascent_guaranteed' (lambda_N >= threshold)}``."""
    thr = noise_threshold(grad_norm, sigma, dt, f_n)
    return {"threshold": thr, "descent_guaranteed": jnp.asarray(lambda_max) <= thr,
            "ascent_guaranteed": jnp.asarray(lambda_min) >= thr}


# ----------------------------------------------------------------------------- Theorem 3.2


def bias_descent_bound(psi, num_params: int, dt, *, form: str = "paper") -> jax.Array:
    """Theorem 3.2 / A.8: the largest ``b / ||g||`` with guaranteed descent.

    ``form='paper'`` (Eq. 8 / 46, exact root of Eq. 55):

        b / ||g|| <= (1/sqrt(N)) 2 / (1 + psi dt + sqrt(1 + 4 psi dt + psi^2 dt^2)),

    ``psi = ||H||_F``. ``form='approx'``: its first-order form
    ``1 / (sqrt(N) (1 + 3/2 psi dt))``. ``form='rigorous'``: the proof drops
    the true-gradient curvature term ``1/2 g^T H g dt^2`` when it factorises
    Eq. 49 (Eq. 50), so Eq. 8 is a leading-order statement. Keeping that term
    and bounding it by ``1/2 psi ||g||^2 dt^2`` (``lambda_1 <= psi``), the rest
    of the proof (Ineqs. 51-53, which are exact) gives the quadratic
    ``x^2 (1 - psi dt / 2) - x b sqrt(N) (1 + psi dt) - b^2 N psi dt / 2 > 0``
    in ``x = ||g||``, whose root gives

        b / ||g|| <= (1/sqrt(N)) (2 - psi dt) / (1 + psi dt + sqrt(1 + 4 psi dt))

    (negative for ``psi dt > 2``: then not even ``b = 0`` is guaranteed to
    descend). This variant is this module's reconstruction, checked in the
    tests: just below it the exact loss change of a quadratic is negative for
    every sampled case (random gradients, gradients along ``beta`` and along
    the top eigenvector), and for a linear loss (``psi = 0``) with ``g``
    parallel to ``beta`` it is attained (all three forms equal
    ``1/sqrt(N)`` there).
    """
    check_real("psi", psi, low=0.0)
    check_int("num_params", num_params)
    check_real("dt", dt, low=0.0, low_open=True)
    x = jnp.asarray(psi) * dt
    root_n = math.sqrt(num_params)
    if form == "paper":
        return 2.0 / (root_n * (1.0 + x + jnp.sqrt(1.0 + 4.0 * x + x ** 2)))
    if form == "approx":
        return 1.0 / (root_n * (1.0 + 1.5 * x))
    if form == "rigorous":
        return (2.0 - x) / (root_n * (1.0 + x + jnp.sqrt(1.0 + 4.0 * x)))
    raise ValueError(f"form must be one of ('paper', 'approx', 'rigorous'), got {form!r}")


# ----------------------------------------------------------------------------- Corollary A.2


def corollary_a2_expected_loss(loss_k, grads, hessians, biases, sigmas, dt, f_n=1.0) -> jax.Array:
    """Corollary A.2 (Eq. 19): expected loss after ``k`` noisy/biased steps.

        E[L(w~_k)] = L(w_k) + dt sum_i <b_i, g_{i-1}> + 1/2 dt^2 sum_i <b_i, H_{i-1} b_i>
                     - 1/2 dt^2 sum_i <b_i, (H_{i-1} + H_{i-1}^T) g_{i-1}>
                     + 1/2 dt^2 (1/N) sum_i sigma_i^2 f(N) Tr H_{i-1}
                     + dt^2 sum_i <H_{i-1} (sum_{j<i} b_j), b_i - 2 g_{i-1}>

    where ``w_k`` is exact gradient descent from the same start, ``g_{i-1}``,
    ``H_{i-1}`` the gradient and Hessian at ``w_{i-1}`` and ``b_i`` the bias
    *vectors* (``b beta`` of Eq. 1). Accurate to ``O(dt^2)`` (residual
    ``O(dt^3)``); for ``k = 1`` it is Lemma 2.1. The last term was re-derived
    here (expanding ``w~_k - w_k = dt sum_i u_i - dt^2 sum_i H sum_{j<i} u_j``
    on a quadratic; all ``g_i`` agree to ``O(dt)``) and matches.

    Args:
        loss_k: ``L(w_k)``.
        grads: ``(k, N)`` rows ``g_0 .. g_{k-1}``.
        hessians: ``(k, N, N)`` or one ``(N, N)`` for all steps.
        biases: ``(k, N)`` bias vectors ``b_1 .. b_k``.
        sigmas: ``(k,)`` noise magnitudes ``sigma_1 .. sigma_k``.
        dt: step size; f_n: ``f(N)``.
    """
    grads = jnp.asarray(grads)
    if grads.ndim != 2:
        raise ValueError(f"grads must have shape (k, N), got {grads.shape}")
    k, n = grads.shape
    biases = jnp.asarray(biases)
    if biases.shape != (k, n):
        raise ValueError(f"biases must have shape {(k, n)}, got {biases.shape}")
    sigmas = jnp.asarray(sigmas)
    if sigmas.shape != (k,):
        raise ValueError(f"sigmas must have shape {(k,)}, got {sigmas.shape}")
    hessians = jnp.asarray(hessians)
    if hessians.shape == (n, n):
        hessians = jnp.broadcast_to(hessians, (k, n, n))
    if hessians.shape != (k, n, n):
        raise ValueError(f"hessians must have shape {(k, n, n)} or {(n, n)}, got {hessians.shape}")
    check_real("dt", dt, low=0.0, low_open=True)
    prev_b = jnp.cumsum(biases, axis=0) - biases  # sum_{j<i} b_j
    hb = jnp.einsum("kij,kj->ki", hessians, biases)
    hsym_g = jnp.einsum("kij,kj->ki", hessians + jnp.swapaxes(hessians, 1, 2), grads)
    hprev = jnp.einsum("kij,kj->ki", hessians, prev_b)
    traces = jnp.trace(hessians, axis1=1, axis2=2)
    return (loss_k + dt * jnp.sum(biases * grads)
            + 0.5 * dt ** 2 * jnp.sum(biases * hb)
            - 0.5 * dt ** 2 * jnp.sum(biases * hsym_g)
            + 0.5 * dt ** 2 / n * jnp.sum(sigmas ** 2 * f_n * traces)
            + dt ** 2 * jnp.sum(hprev * (biases - 2.0 * grads)))


# ----------------------------------------------------------------------------- Theorems A.3 / A.5


def hessian_trace_one_layer(x) -> jax.Array:
    """Theorem A.3, Eq. 26: ``Tr H = (2/|D|) sum_{n,l} x_nl^2`` for ``yhat = x w``, MSE.

    Independent of the weights (``2 d`` for standardised inputs).
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (examples, features), got {x.shape}")
    return 2.0 / x.shape[0] * jnp.sum(x ** 2)


def hessian_trace_two_layer(x, w1, w2, activation: str = "linear") -> jax.Array:
    """Theorems A.3 (Eq. 27) and A.5 (Eq. 34): ``Tr H`` of ``yhat = phi(x W1) w2``, MSE.

        Tr H = (2/|D|) sum_n [ sum_k phi(h_nk)^2 + sum_{k,l} w2_k^2 phi'(h_nk)^2 x_nl^2 ],

    ``h = x W1`` (``W1`` is ``(d_in, d_hidden)``, ``w2`` is ``(d_hidden,)`` or
    ``(d_hidden, 1)``; scalar output, no biases). For ``phi = id`` this is
    Eq. 27, ``(p + sum_k w2_k^2) Tr H_1`` with ``p = sum_{n,k} h_nk^2 /
    sum_{n,l} x_nl^2``; exact because every diagonal second derivative of
    ``yhat`` vanishes. For ReLU it is exact almost everywhere (``phi'' = 0``,
    the assumption of Eq. 34), and ``phi^2 <= h^2``, ``phi'^2 <= 1`` give
    Theorem A.5's ``Tr H_ReLU <= Tr H_linear`` for the same weights.
    """
    x = jnp.asarray(x)
    w1 = jnp.asarray(w1)
    w2 = jnp.asarray(w2).reshape(-1)
    if x.ndim != 2 or w1.ndim != 2 or w1.shape[0] != x.shape[1] or w1.shape[1] != w2.shape[0]:
        raise ValueError(f"x (n, d), w1 (d, k), w2 (k,) do not fit: {x.shape}, {w1.shape}, "
                         f"{w2.shape}")
    h = x @ w1
    if activation == "linear":
        phi, dphi = h, jnp.ones_like(h)
    elif activation == "relu":
        phi, dphi = jax.nn.relu(h), (h > 0).astype(h.dtype)
    else:
        raise ValueError(f"activation must be 'linear' or 'relu', got {activation!r}")
    x_sq = jnp.sum(x ** 2, axis=1)  # (n,)
    per_example = jnp.sum(phi ** 2, axis=1) + jnp.sum(w2 ** 2 * dphi ** 2, axis=1) * x_sq
    return 2.0 / x.shape[0] * jnp.sum(per_example)
