"""Platonic projections: gradient-free, closed-form fits of MLPs, layer by layer.

Oland 2024, Efficient Deep Learning, Ch. 7. A hidden layer Z_i = sigma(Z_{i-1} W_i)
(Z_0 = X) is fitted to a target built from its own input and the labels,

    T_i = alpha [Z~_{i-1} | beta Y] P_i,     W~_i = Z~_{i-1}^+ T_i           (Sec 7.3.2, 7.5.2)

where Z~ = [1 | Z] carries the bias column (Fig 7.3: the bias is row 0 of W~) and
P_i is random, P ~ N(0, 1) of shape (n + 1 + k) x d (Fig 7.3). The output layer
is the least-squares decision layer W~_L = Z~_{L-1}^+ Y. Nothing iterates and no
gradient is taken. With N_tries candidates per layer the candidate whose
representation has the lowest least-squares distance (Sec 7.5.1, Eq 5.3)

    LSD(Z_i) = (1/m) ||Y - Z~_i Z~_i^+ Y||_F^2

is kept. Z~_{i-1}^+ is computed once per layer: the solver is linear in its
right-hand side, so S = solve(Z~, [Z~ | beta Y]) (one SVD) gives every
candidate as W~ = alpha S P by a matmul. Expanding that product is Eq 7.2
(see :func:`eq72_weights`). Def 9: when d >= n + k (the thesis's "d > k + d"
means n + k), a dense Gaussian P almost surely keeps Y linearly recoverable
from T = [X | Y] P; narrower P must not be orthogonal to the label axes.

Hidden-layer methods (``method``; one name for all hidden layers, or one per layer):

* ``'random'``: the Platonic projection above (Sec 7.3-7.7).
* ``'elm'``: W~ ~ N(0, 1) for kernel and bias, the extreme learning machine
  baseline (Sec 7.4, 7.9.2); with N_tries it keeps the best of the draws.
* ``'pca'``: Platonic PCA (Sec 7.8.1, :func:`platonic_pca_projection`).
* ``'sorted_pca'``: samples as weights (Sec 7.8.2, :func:`sorted_pca_weights`).
* ``'deterministic'``: fully deterministic Platonic projections (Sec 7.8.3,
  7.9.3): Sorted PCA in the first hidden layer, Platonic PCA in the others;
  use it with ``solver='ridge'`` and ``ema`` as the chapter does.

``ema`` (lambda_EMA of Sec 7.9.3) turns on per-sample re-weighting: d = 1 at
the start; after each hidden layer a decision layer is fitted on Z_i and
d_j <- lambda d_j + (1 - lambda) ||y_j - yhat_j||^2. The next Platonic PCA takes
its components from alpha [Z | beta d * Y]; the weights change only P, the
target is still formed from the unweighted alpha [Z | beta Y]. The text uses
lambda_EMA = 0.2, the caption of Table 7.3 says 0.02; neither is a default.

Solvers (``solver``), each with one factorisation per representation and many
right-hand sides: the kept hidden representation's factorisation serves its
own LSD, the decision-layer errors (``ema``) and the next layer's solve, so a
layer with N_tries = 1 costs one SVD (N_tries + 1 with more candidates, the
best one's factorisation being redone once):

* ``'pinv'``: the SVD of Z~, singular values s <= max(atol, rtol s_max)
  dropped. Default tolerance: ``rtol = eps(dtype)``, ``atol = 0``: a cut at
  the rounding level of the SVD, scale-free (unlike an absolute cut), that
  keeps the small but real directions narrow layers need. Measured with this
  module on the chapter's sine example (y = sin(2 pi x), 5000 points on
  [-1, 1], 1-16-16-1, CELU, alpha = beta = 1, seeds 0-9), median train MSE in
  float32: 2.1e-4 with the default, 8.0e-4 with no cut, 4.1e-4 with the
  chapter's atol = 1e-5, 1.9e-3 with PyTorch's rtol = max(m, n) eps and 0.13
  with jnp.linalg.pinv's 10 max(m, n) eps; float64 with the default: 1.9e-4.
* ``'lstsq'``: ``jnp.linalg.lstsq``'s rule with ``rcond = rtol`` (no
  ``atol``): JAX's lstsq is SVD-based, so unlike PyTorch's CPU lstsq (QR) it
  equals ``'pinv'`` up to the tie at the cut (s >= vs s >).
* ``'ridge'``: W~ = (Z~^T Z~ + lambda I)^{-1} Z~^T T through ``jnp.linalg.solve``
  (LU), as the chapter's ``torch.linalg.solve`` (Sec 7.6.2). The bias row is
  penalised too (the chapter solves with the ones column inside Z~). A
  singular system in float32 gives non-finite weights rather than an error:
  ``info['finite']`` reports it (the "Failed" cells of Table 7.1).

The fit returns a plain parameter tree named as ``neurojax.models.MLP`` names
its layers, ``{'dense_0': {'kernel', 'bias'}, ..., 'head': {...}}``, so
``MLP(widths, num_outputs=k, activation=...).apply({'params': params}, x)``
computes the fitted network (this module does not import the models).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_int, check_real

__all__ = ["SOLVERS", "METHODS", "fit_platonic", "solve_linear",
           "default_tolerance", "eq72_weights", "least_squares_distance",
           "platonic_pca_projection", "sorted_pca_indices", "sorted_pca_weights"]

Array = jax.Array
Activation = Union[str, Callable[[Array], Array]]

SOLVERS = ("pinv", "lstsq", "ridge")
METHODS = ("random", "elm", "pca", "sorted_pca")
_RANDOM = ("random", "elm")


# --------------------------------------------------------------------------
# Linear solves
# --------------------------------------------------------------------------


def default_tolerance(dtype: Any) -> tuple[float, float]:
    """The default ``(rtol, atol)`` of ``solver='pinv'`` (and ``rtol`` of
    ``'lstsq'``): ``(eps, 0)``.

    eps is the dtype's machine epsilon (1.2e-7 in float32, 2.2e-16 in float64):
    singular values at or below eps * s_max are rounding noise of the SVD.
    """
    return float(jnp.finfo(dtype).eps), 0.0


def _with_bias(z: Array) -> Array:
    """Z~ = [1 | Z] (the bias column first, as in Fig 7.3)."""
    return jnp.concatenate([jnp.ones((z.shape[0], 1), z.dtype), z], axis=1)


def _thin_svd(z: Array) -> tuple[Array, Array, Array]:
    """``jnp.linalg.svd(z, full_matrices=False)`` by way of a QR for tall z:
    Z = QR, R = U_R S V^T, U = Q U_R. Householder QR is backward stable, so the
    singular values agree with the direct SVD's to rounding; on CPU it is
    ~1.5x faster for the 5000 x 33 layers of the two-spirals fit (the direct
    SVD forms its m x n U through a longer LAPACK path)."""
    m, n = z.shape
    if m < 2 * n:  # nearly square or wide: nothing to gain
        return jnp.linalg.svd(z, full_matrices=False)
    q, r = jnp.linalg.qr(z)
    u_r, s, vt = jnp.linalg.svd(r)
    return q @ u_r, s, vt


def _factor(z: Array, solver: str, rtol: Array, atol: Array, ridge: Array) -> tuple:
    """The solver's factorisation of ``z``, for :func:`_apply` to any number of
    right-hand sides: the SVD with the cut singular values' inverses zeroed
    ('pinv': s <= max(atol, rtol s_max); 'lstsq': s < rtol s_max, the rule of
    ``jnp.linalg.lstsq``, which is SVD-based), or the LU of the ridge Gram
    matrix (as ``jnp.linalg.solve`` factors it)."""
    if solver in ("pinv", "lstsq"):
        u, s, vt = _thin_svd(z)
        keep = ((s > jnp.maximum(atol, rtol * s[0])) if solver == "pinv"
                else (s >= rtol * s[0])) & (s > 0)
        return u, jnp.where(keep, 1.0 / jnp.where(keep, s, 1.0), 0.0), vt
    gram = z.T @ z + ridge * jnp.eye(z.shape[1], dtype=z.dtype)
    return jax.scipy.linalg.lu_factor(gram), z


def _apply(factor: tuple, b: Array) -> Array:
    """W with Z W ~ B from :func:`_factor`'s factorisation of Z."""
    if len(factor) == 3:
        u, s_inv, vt = factor
        hi = jax.lax.Precision.HIGHEST
        return jnp.matmul(vt.T, s_inv[:, None] * jnp.matmul(u.T, b, precision=hi), precision=hi)
    lu, z = factor
    return jax.scipy.linalg.lu_solve(lu, z.T @ b)


def _solve(z: Array, b: Array, solver: str, rtol: Array, atol: Array, ridge: Array) -> Array:
    return _apply(_factor(z, solver, rtol, atol, ridge), b)


def _check_solver(solver: str, rtol: Optional[float], atol: Optional[float],
                  ridge: Optional[float], dtype: Any) -> tuple[float, float, float]:
    """Validated ``(rtol, atol, ridge)`` for ``solver``, with the defaults filled in."""
    check_choice("solver", solver, SOLVERS)
    if solver == "ridge":
        if rtol is not None or atol is not None:
            raise ValueError("rtol and atol apply to solver='pinv' or 'lstsq', not 'ridge'")
        if ridge is None:
            raise ValueError("solver='ridge' needs ridge (lambda > 0)")
        return 0.0, 0.0, float(check_real("ridge", ridge, low=0.0, low_open=True))
    if ridge not in (None, 0, 0.0):
        raise ValueError(f"ridge applies to solver='ridge' only, got ridge={ridge!r} "
                         f"with solver={solver!r}")
    if solver == "lstsq" and atol not in (None, 0, 0.0):
        raise ValueError("atol applies to solver='pinv' only (lstsq has a relative cut, rtol)")
    d_rtol, d_atol = default_tolerance(dtype)
    rtol = d_rtol if rtol is None else float(check_real("rtol", rtol, low=0.0))
    atol = d_atol if atol is None else float(check_real("atol", atol, low=0.0))
    return rtol, atol, 0.0


def solve_linear(z: Array, b: Array, *, solver: str = "pinv", rtol: Optional[float] = None,
                 atol: Optional[float] = None, ridge: Optional[float] = None) -> Array:
    """W with Z W ~ B by the layer rule's solver (see the module docstring).

    ``'pinv'``: W = Z^+ B with singular values <= max(atol, rtol s_max) cut
    (defaults :func:`default_tolerance`); ``'lstsq'``: ``jnp.linalg.lstsq``,
    rcond = rtol; ``'ridge'``: W = (Z^T Z + ridge I)^{-1} Z^T B (Oland 2024,
    Efficient Deep Learning, Sec 7.6.2). ``z`` is [m, n], ``b`` [m] or [m, c].
    """
    z, b = jnp.asarray(z), jnp.asarray(b)
    if z.ndim != 2 or b.ndim not in (1, 2) or b.shape[0] != z.shape[0]:
        raise ValueError(f"z must be [m, n] and b [m] or [m, c]; got {z.shape} and {b.shape}")
    rtol, atol, ridge = _check_solver(solver, rtol, atol, ridge, z.dtype)
    return _solve_jit(z, b, solver, rtol, atol, ridge)


@functools.partial(jax.jit, static_argnums=(2,))
def _solve_jit(z, b, solver, rtol, atol, ridge):
    return _solve(z, b, solver, rtol, atol, ridge)


def least_squares_distance(z: Array, y: Array, **solver_kwargs: Any) -> Array:
    """LSD = (1/m) ||Y - Z~ W||_F^2 with W = solve(Z~, Y), Z~ = [1 | Z].

    Eq 5.3 as used to rank the N_tries candidates (Oland 2024, Efficient Deep
    Learning, Sec 7.5.1): the error of the decision layer (with a bias) that
    the solver fits on the representation ``z`` [m, d]; ``y`` is [m, k].
    ``solver_kwargs`` go to :func:`solve_linear`.
    """
    zt = _with_bias(jnp.asarray(z))
    y = _as_matrix(y)
    w = solve_linear(zt, y, **solver_kwargs)
    return jnp.sum((y - zt @ w) ** 2) / y.shape[0]


def eq72_weights(z: Array, y: Array, p: Array, *, alpha: float = 1.0, beta: float = 1.0,
                 rtol: Optional[float] = None, atol: Optional[float] = None) -> Array:
    """Eq 7.2: W = alpha (P_Z + beta Z^+ Y P_Y), P split by rows (P_Z on top).

    Oland 2024, Efficient Deep Learning, Sec 7.10.2: W = Z^+ T with
    T = alpha [Z | beta Y] P expands to Eq 7.2 because Z^+ Z = I, which needs Z
    [m, n] of full column rank (the thesis writes P = [P_Z | P_Y]; the split is
    by rows, P_Z [n, d] over P_Y [k, d]). For a rank-deficient Z the layer rule
    gives (Z^+ Z) P_Z in place of P_Z. Only Z^+ Y (k right-hand sides) is
    solved, with the ``'pinv'`` tolerances. In the layer rule ``z`` is Z~ =
    [1 | Z_{i-1}].
    """
    z, y, p = jnp.asarray(z), _as_matrix(y), jnp.asarray(p)
    if z.ndim != 2 or y.ndim != 2 or y.shape[0] != z.shape[0] or p.ndim != 2 \
            or p.shape[0] != z.shape[1] + y.shape[1]:
        raise ValueError(f"need z [m, n], y [m, k] and p [n + k, d]; got {z.shape}, {y.shape} "
                         f"and {p.shape}")
    n = z.shape[1]
    g = solve_linear(z, y, solver="pinv", rtol=rtol, atol=atol)
    return alpha * (p[:n] + beta * g @ p[n:])


def _as_matrix(y: Array) -> Array:
    y = jnp.asarray(y)
    return y[:, None] if y.ndim == 1 else y


# --------------------------------------------------------------------------
# Deterministic projections (Sec 7.8)
# --------------------------------------------------------------------------


def _top_components(a: Array, num: int) -> Array:
    """The top ``num`` right singular vectors of ``a`` as columns, each signed
    so that its largest-magnitude entry is positive (scikit-learn's svd_flip
    convention, so the result does not depend on the LAPACK's sign choice)."""
    _, _, vt = jnp.linalg.svd(a, full_matrices=False)
    v = vt[:num].T
    big = jnp.argmax(jnp.abs(v), axis=0)
    return v * jnp.sign(v[big, jnp.arange(num)])


def platonic_pca_projection(z: Array, y: Array, width: int, *, alpha: float = 1.0,
                            beta: float = 1.0, sample_weights: Optional[Array] = None,
                            center: bool = True) -> tuple[Array, Array]:
    """Platonic PCA (Oland 2024, Efficient Deep Learning, Sec 7.8.1, 7.9.3):
    ``(P, T)`` with P the top ``width`` principal directions of
    A = alpha [Z | beta d * Y] and T = alpha [Z | beta Y] P.

    ``z`` [m, n] is the layer's input without the bias column, ``y`` [m, k],
    ``sample_weights`` d [m] (ones when None) scales the rows of Y in the PCA
    only. ``center=True`` (the thesis does not say): the columns of A are
    centred before the SVD and T is formed from the centred unweighted A (its
    mean lands in the bias, since [1 | Z] spans it); ``center=False`` uses the
    raw A for both. P is [n + k, width], so width <= n + k (and <= m).
    Directions are signed as in ``_top_components``; the result is
    deterministic.
    """
    z, y = jnp.asarray(z), _as_matrix(y)
    m, n = z.shape
    k = y.shape[1]
    check_int("width", width)
    if width > min(n + k, m):
        raise ValueError(f"width must be <= n + k = {n + k} (and <= m = {m}) for Platonic "
                         f"PCA, got {width}")
    d = jnp.ones((m,), z.dtype) if sample_weights is None else jnp.asarray(sample_weights, z.dtype)
    return _pca_projection(z, y, d, alpha, beta, width, center)


@functools.partial(jax.jit, static_argnums=(5, 6))
def _pca_projection(z, y, d, alpha, beta, width, center):
    a = alpha * jnp.concatenate([z, beta * y], axis=1)
    a_w = alpha * jnp.concatenate([z, beta * d[:, None] * y], axis=1)
    if center:
        a = a - a.mean(axis=0)
        a_w = a_w - a_w.mean(axis=0)
    p = _top_components(a_w, width)
    return p, a @ p


def sorted_pca_indices(z: Array, num_samples: int) -> Array:
    """Sorted PCA's sample selection (Oland 2024, Efficient Deep Learning,
    Sec 7.8.2, Fig 7.14): the rows of ``z`` [m, n] sorted by their projection on
    the first principal component c of the centred z (c signed as in
    ``_top_components``; stable sort), then positions floor(j m / s + 1/2),
    j = 0..s-1, s = ``num_samples`` <= m: s distinct, evenly spaced indices.

    Fig 7.14 writes round(arange(0, m - 1, m / s)), which rounds ties to even
    and gives m - 1 positions when s = m; the formula here is the same for
    s < m away from exact ties and always returns s distinct indices.
    """
    z = jnp.asarray(z)
    m = z.shape[0]
    num_samples = check_int("num_samples", num_samples)
    if num_samples > m:
        raise ValueError(f"num_samples must be <= m = {m} (Sorted PCA picks rows), "
                         f"got {num_samples}")
    c = _top_components(z - z.mean(axis=0), 1)[:, 0]
    order = jnp.argsort(z @ c, stable=True)
    j = np.arange(num_samples, dtype=np.int64)
    return order[(2 * j * m + num_samples) // (2 * num_samples)]


def sorted_pca_weights(z: Array, num_samples: int, *, center: bool = True) -> tuple[Array, Array]:
    """``(kernel, bias)`` of a Sorted PCA layer (Oland 2024, Efficient Deep
    Learning, Sec 7.8.2): the selected samples are the weight vectors.

    With ``center=True`` the kernel's columns are the selected rows of the
    centred z and bias = -mean(z) @ kernel, so the layer computes
    sigma((z - mean) . w): the centring is folded into the bias and the layer
    takes raw inputs. It has to be: with non-negative inputs (pixels), no
    centring and no bias every pre-activation is >= 0 and a ReLU does nothing.
    ``center=False`` uses the raw rows and a zero bias (the literal Fig 7.14).
    """
    z = jnp.asarray(z)
    idx = sorted_pca_indices(z, num_samples)
    mean = z.mean(axis=0) if center else jnp.zeros((z.shape[1],), z.dtype)
    kernel = (z[idx] - mean).T
    return kernel, -mean @ kernel


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


def _dense(z: Array, w: Array) -> Array:
    """z @ kernel + bias with W~ = [bias; kernel], the order of flax's Dense."""
    return z @ w[1:] + w[0]


def _decision(h, y, solver, rtol, atol, ridge):
    """The factorisation of H~ = [1 | h], the decision layer on it and each
    sample's squared error ||y_j - yhat_j||^2."""
    factor = _factor(_with_bias(h), solver, rtol, atol, ridge)
    w = _apply(factor, y)
    return factor, w, jnp.sum((y - _dense(h, w)) ** 2, axis=1)


@functools.partial(jax.jit, static_argnums=(2,))
def _input_factor(z, tol, solver):
    return _factor(_with_bias(z), solver, *tol)


def _random_layer(key, z, z_factor, y, alpha, beta, tol, method, width, n_tries, act, solver):
    """N_tries candidate hidden layers from one solve; keep the lowest LSD.

    Each candidate is computed alone (its draw, its weights, its LSD) in a
    sequential ``lax.map``, so candidate t is bit-identical whatever n_tries
    (nested tries), and each LSD solve is an unbatched LAPACK call (batched
    ones can deadlock on CPU with jaxlib 0.10.2). Returns the kept layer's
    weights, draw, the candidates' LSDs, its index, its representation and
    the decision layer's factorisation and errors on it.
    """
    n, k = z.shape[1], y.shape[1]
    if method == "random":
        zt = _with_bias(z)
        s_aug = _apply(z_factor, jnp.concatenate([zt, beta * y], axis=1))

        def candidate(t):
            p = jax.random.normal(jax.random.fold_in(key, t), (n + 1 + k, width), z.dtype)
            return alpha * (s_aug @ p), p
    else:  # elm
        def candidate(t):
            w = jax.random.normal(jax.random.fold_in(key, t), (n + 1, width), z.dtype)
            return w, None

    def evaluate(t):
        w, p = candidate(t)
        h = act(_dense(z, w))
        return w, p, h, _decision(h, y, solver, *tol)

    if n_tries == 1:  # the only candidate's factorisation is the kept one's
        w, p, h, (factor, _, err) = evaluate(0)
        return w, p, jnp.mean(err)[None], jnp.zeros((), jnp.int32), h, factor, err
    lsds = jax.lax.map(lambda t: jnp.mean(evaluate(t)[3][2]), jnp.arange(n_tries))
    best = jnp.argmin(jnp.where(jnp.isnan(lsds), jnp.inf, lsds))
    w, p, h, (factor, _, err) = evaluate(best)
    return w, p, lsds, best, h, factor, err


@functools.partial(jax.jit, static_argnums=(8, 9, 10, 11, 12, 13))
def _hidden_layer(key, z, z_factor, y, d, alpha, beta, tol, method, width, n_tries, act,
                  solver, center):
    """One hidden layer by ``method`` from its input z and z~'s factorisation:
    (W~, P, candidate LSDs, kept index, Z_i, Z~_i's factorisation, per-sample
    errors of the decision layer on Z_i). One compiled program."""
    if method in _RANDOM:
        return _random_layer(key, z, z_factor, y, alpha, beta, tol, method, width, n_tries,
                             act, solver)
    p = None
    if method == "pca":
        p, t = _pca_projection(z, y, d, alpha, beta, width, center)
        w = _apply(z_factor, t)
    else:  # sorted_pca
        kernel, bias = sorted_pca_weights(z, width, center=center)
        w = jnp.concatenate([bias[None], kernel], axis=0)
    h = act(_dense(z, w))
    factor, _, err = _decision(h, y, solver, *tol)
    return w, p, None, None, h, factor, err


@jax.jit
def _output_layer(z, z_factor, y):
    w = _apply(z_factor, y)
    return w, _dense(z, w)


# --------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------


def _resolve_activation(activation: Activation) -> Callable[[Array], Array]:
    if callable(activation):
        return activation
    if isinstance(activation, str) and callable(getattr(jax.nn, activation, None)):
        return getattr(jax.nn, activation)
    raise ValueError(f"activation must be a callable or the name of a jax.nn function "
                     f"('relu', 'celu', 'tanh', ...), got {activation!r}")


def _resolve_methods(method: Union[str, Sequence[str]], num_hidden: int) -> tuple[str, ...]:
    if method == "deterministic":
        return tuple("sorted_pca" if i == 0 else "pca" for i in range(num_hidden))
    if isinstance(method, str):
        return (check_choice("method", method, METHODS),) * num_hidden
    methods = tuple(method)
    if len(methods) != num_hidden:
        raise ValueError(f"method must be one name or {num_hidden} names (one per hidden "
                         f"layer), got {len(methods)}")
    for i, name in enumerate(methods):
        check_choice(f"method[{i}]", name, METHODS)
    return methods


def _resolve_dtype(dtype: Any, x: Array) -> Any:
    if dtype is None:
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
    check_choice("dtype", name, ("float32", "float64"))
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 "
                         "(jax.config.update('jax_enable_x64', True))")
    return jnp.dtype(name)


def fit_platonic(key: Optional[Array], x: Array, y: Array, widths: Sequence[int],
                 activation: Activation, *, method: Union[str, Sequence[str]] = "random",
                 alpha: float = 1.0, beta: float = 1.0, n_tries: int = 1,
                 solver: str = "pinv", rtol: Optional[float] = None,
                 atol: Optional[float] = None, ridge: Optional[float] = None,
                 ema: Optional[float] = None, center: bool = True,
                 dtype: Any = None) -> tuple[dict, dict]:
    """Fit an MLP by Platonic projections (Oland 2024, Efficient Deep Learning, Ch. 7).

    Hidden layer i: W~_i = solve(Z~_{i-1}, alpha [Z~_{i-1} | beta Y] P_i) for
    ``method='random'`` (Sec 7.3.2, 7.5.2), or the other methods of the module
    docstring; Z_i = activation(Z_{i-1} W_i + b_i); output layer
    W~_L = solve(Z~_{L-1}, Y). Random methods draw ``n_tries`` candidates per
    layer (candidate t of layer i from ``fold_in(fold_in(key, i), t)``, so the
    candidates for n_tries = 5 are the first five of n_tries = 50) and keep the
    one with the lowest LSD (Sec 7.5.1).

    Args:
        key: PRNG key; may be None when no layer is random.
        x: inputs [m, ...] (flattened to [m, n], as the MLP does).
        y: targets [m, k] (one-hot or +-1 labels, or regression targets) or [m].
        widths: hidden widths (may be empty: a least-squares linear model).
        activation: a callable or a ``jax.nn`` name; pass the same to the MLP.
        method: 'random', 'elm', 'pca', 'sorted_pca' (one for every hidden
            layer or a sequence, one per layer) or 'deterministic'.
        alpha, beta: target scale and label weight (Sec 7.5.2; the chapter uses
            (0.1, 10) and (1, 2) on spirals, beta up to 8e7 on MNIST).
        n_tries: candidates per random layer.
        solver, rtol, atol, ridge: see the module docstring; ``ridge`` is the
            L2 lambda of ``solver='ridge'``.
        ema: lambda_EMA for sample re-weighting of Platonic PCA (Sec 7.9.3), in
            [0, 1]; None: no re-weighting.
        center: centring in Platonic PCA and Sorted PCA (their docstrings).
        dtype: 'float32' or 'float64' (needs jax_enable_x64); None: x's dtype.

    Returns:
        ``(params, info)``: params as ``MLP(widths, num_outputs=k)`` names
        them, in ``dtype``; info has, per hidden layer, 'lsd' [L - 1] (the
        kept layer's LSD, Eq 5.3, with the configured solver), 'candidate_lsd'
        (an [n_tries] array, None for deterministic layers), 'selected'
        (candidate index, a scalar array, or None), 'projection' (the P used,
        or None), 'sample_weights' (d after each layer when ``ema`` is set);
        and 'outputs' (Yhat [m, k], the fitted network on x), 'train_lsd'
        (1/m ||Y - Yhat||_F^2), 'train_mse' (the mean over all m k entries)
        and 'finite' (a bool array: all parameters finite).

    The fit is one compiled program (recompiled for new widths, methods,
    n_tries, activation, solver, centring or shapes; alpha, beta, ema and the
    tolerances are traced). It also runs under an outer ``jax.jit`` with
    everything but ``key``, ``x``, ``y`` static.
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must be [m, ...] with at least 2 dims, got shape {x.shape}")
    y = jnp.asarray(y)
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be [m] or [m, k] with m = {x.shape[0]}, got shape {y.shape}")
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"widths must be a sequence of positive ints, got {widths!r}")
    widths = tuple(check_int(f"widths[{i}]", w) for i, w in enumerate(widths))
    act = _resolve_activation(activation)
    methods = _resolve_methods(method, len(widths))
    dtype = _resolve_dtype(dtype, x)
    tol = _check_solver(solver, rtol, atol, ridge, dtype)
    n_tries = check_int("n_tries", n_tries)
    alpha = float(check_real("alpha", alpha, low=0.0, low_open=True))
    beta = float(check_real("beta", beta))
    if ema is not None:
        ema = float(check_real("ema", ema, low=0.0, high=1.0))
    if not isinstance(center, bool):
        raise ValueError(f"center must be a bool, got {center!r}")
    if key is None and any(name in _RANDOM for name in methods):
        raise ValueError(f"key is needed for the random methods {_RANDOM}, got None")

    m, n = x.shape[0], math.prod(x.shape[1:])
    k = y.shape[1] if y.ndim == 2 else 1
    for i, name in enumerate(methods):
        fan_in = n if i == 0 else widths[i - 1]
        if name == "sorted_pca" and widths[i] > m:
            raise ValueError(f"widths[{i}] must be <= m = {m} for Sorted PCA, got {widths[i]}")
        if name == "pca" and widths[i] > min(fan_in + k, m):
            raise ValueError(f"widths[{i}] must be <= n + k = {fan_in + k} (its input width plus "
                             f"the {k} targets; and <= m = {m}) for Platonic PCA, "
                             f"got {widths[i]}")
    return _fit(key, x, y, alpha, beta, ema, tol, widths=widths, methods=methods,
                n_tries=n_tries, act=act, solver=solver, center=center, dtype=dtype)


@functools.partial(jax.jit, static_argnames=("widths", "methods", "n_tries", "act", "solver",
                                             "center", "dtype"))
def _fit(key, x, y, alpha, beta, ema, tol, *, widths, methods, n_tries, act, solver, center,
         dtype):
    """The whole fit as one compiled program (per-layer programs cost a
    dispatch each, which dominated a small network's fit)."""
    z = x.reshape(x.shape[0], -1).astype(dtype)
    y = _as_matrix(y).astype(dtype)
    tol = tuple(jnp.asarray(t, dtype) for t in tol)
    m = z.shape[0]
    # the input's factorisation: the first layer's solve (random, pca) or the
    # output layer's when there is no hidden layer; Sorted PCA and ELM need none
    needs_input_factor = not widths or methods[0] in ("random", "pca")
    d = jnp.ones((m,), z.dtype)
    params: dict[str, dict[str, Array]] = {}
    info: dict[str, Any] = {k: [] for k in ("lsd", "candidate_lsd", "selected", "projection")}
    info["sample_weights"] = [] if ema is not None else None
    factor = _input_factor(z, tol, solver) if needs_input_factor else None
    for i, (name, width) in enumerate(zip(methods, widths)):
        layer_key = jax.random.fold_in(key, i) if name in _RANDOM else None
        w, p, lsds, best, z, factor, err = _hidden_layer(
            layer_key, z, factor, y, d, alpha, beta, tol, name, width, n_tries, act,
            solver, center)
        params[f"dense_{i}"] = {"kernel": w[1:], "bias": w[0]}
        if ema is not None:
            d = ema * d + (1.0 - ema) * err
            info["sample_weights"].append(d)
        info["lsd"].append(jnp.mean(err))
        info["candidate_lsd"].append(lsds)
        info["selected"].append(best)
        info["projection"].append(p)
    w, outputs = _output_layer(z, factor, y)
    params["head"] = {"kernel": w[1:], "bias": w[0]}
    resid = y - outputs
    info["lsd"] = jnp.stack(info["lsd"]) if widths else jnp.zeros((0,), z.dtype)
    info["train_lsd"] = jnp.sum(resid ** 2) / m
    info["train_mse"] = jnp.mean(resid ** 2)
    info["outputs"] = outputs
    info["finite"] = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf))
                                        for leaf in jax.tree_util.tree_leaves(params)]))
    return params, info

