"""The closed-form ridge probe (``neurojax.metrics.probes.ridge_probe``).

Least squares onto one-hot (+-1) targets with an unpenalised intercept, the
regulariser chosen on a held-out split of the training features, then
refitted. One ``eigh`` per fit serves every regulariser of the grid (as
big_vision's few-shot ridge: one eigendecomposition, many regularisers).
"""
import functools
from typing import Any, Literal, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_bool, check_choice, check_real, is_concrete
from neurojax.metrics._probe_inputs import (ArrayLike, Seed, check_features, check_labels,
                                            check_num_classes, check_probe_data, prng_key)
from neurojax.metrics.covariance_spectrum import accumulation_dtype

# Ridge regularisers lambda of the per-example objective (see ridge_probe):
# one per decade from 1e-6 to 1e3, in units of the (standardised) feature
# covariance's eigenvalues, whose mean is 1 after standardisation.
DEFAULT_RIDGE_REGULARIZERS = tuple(float(10.0 ** p) for p in range(-6, 4))
# Eigenvalues below this multiple of eps * lambda_max are round-off of a
# zero eigenvalue (as in neurojax.metrics.spectrum): their directions carry
# no signal and are dropped from the ridge solution instead of being
# amplified by 1 / (0 + lambda).
_RCOND_EPS_MULTIPLE = 100

_RIDGE_METHODS = ("auto", "covariance", "gram")


class RidgeProbeResult(NamedTuple):
    """Outcome of ``ridge_probe`` (a PyTree: jit- and vmap-friendly).

    Attributes:
        test_accuracy: test accuracy of the final fit at the chosen regulariser.
        regularizer: the chosen lambda.
        train_accuracy: accuracy of that fit on the rows it was fitted on.
        regularizers: (R,) the grid, ascending.
        val_accuracy: (R,) held-out accuracy of each lambda (the selection).
        test_accuracy_per_regularizer: (R,) test accuracy of the final fit at
            each lambda (for analysis only: selecting on it would be cheating).
        kernel: (D, C) weights of the final fit on the raw (unstandardised,
            flattened) features: scores = x @ kernel + bias.
        bias: (C,).
    """
    test_accuracy: jax.Array
    regularizer: jax.Array
    train_accuracy: jax.Array
    regularizers: jax.Array
    val_accuracy: jax.Array
    test_accuracy_per_regularizer: jax.Array
    kernel: jax.Array
    bias: jax.Array


def ridge_probe(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike,
                test_y: ArrayLike, *, num_classes: Optional[int] = None,
                regularizers: Sequence[float] = DEFAULT_RIDGE_REGULARIZERS,
                val_fraction: float = 0.2, val_data: Optional[tuple] = None,
                refit: bool = True, seed: Seed = 0, standardize: bool = True,
                method: Literal["auto", "covariance", "gram"] = "auto",
                dtype: Any = None) -> RidgeProbeResult:
    """Closed-form ridge (least-squares) linear probe with a selected regulariser.

    For a fitting set {(x_i, y_i)}_{i=1..n} and targets t_i = 2 onehot(y_i) - 1
    (+-1, as sklearn's ``RidgeClassifier`` and big_vision's few-shot probe)

        W, b = argmin (1/n) sum_i ||t_i - W^T x_i - b||^2 + lambda ||W||_F^2,

    i.e. with centred X_c, T_c and the covariance C = X_c^T X_c / n = V E V^T,

        W(lambda) = V (E + lambda I)^-1 V^T X_c^T T_c / n,   b = t_bar - W^T x_bar,

    and the prediction is argmax_c (W^T x + b)_c. This is sklearn's
    ``Ridge(alpha=n * lambda, fit_intercept=True)``: lambda is per example, so
    the same grid suits any n, and it is on the scale of C's eigenvalues (after
    standardisation their mean is 1). When D > n the n x n Gram form
    W = X_c^T U (E + lambda I)^-1 U^T T_c / n with X_c X_c^T / n = U E U^T gives
    the same W (push-through identity). Either way one ``eigh`` serves every
    lambda of the grid (big_vision ``evaluators/fewshot_lsr.py``); with
    ``standardize=False`` it is the ``eigh`` whose eigenvalues alpha-ReQ fits.
    Directions whose eigenvalue is round-off of zero (below 100 eps E_max)
    are dropped. Targets in {0, 1} instead of {-1, 1} give the same argmax:
    with an intercept the scores are an affine image of each other.

    Protocol: the training features are split at random (``seed``) into a
    fitting part and a held-out part of ``round(val_fraction * n)`` rows (or
    ``val_data`` is the held-out part and all of ``train_x`` is fitted); each
    lambda is fitted on the fitting part and scored on the held-out part; the
    best lambda (the largest among ties: more regularisation) is then refitted
    on all training rows (fitting + held-out) and scored on the test set.
    ``standardize`` uses the mean and (population) standard deviation of the
    rows being fitted; features with zero variance are only centred.

    Args:
        train_x, train_y: (n, D) features and (n,) integer labels.
        test_x, test_y: (m, D) and (m,).
        num_classes: C; inferred from the labels if None (needs concrete labels).
        regularizers: the lambda grid (positive, finite); default one per
            decade from 1e-6 to 1e3.
        val_fraction: held-out fraction of ``train_x`` used to choose lambda,
            in (0, 1); ignored when ``val_data`` is given.
        val_data: optional explicit held-out split ``(val_x, val_y)``.
        refit: refit the chosen lambda on all training rows (default); False
            keeps the fit from the selection step.
        seed: int or PRNG key for the random split.
        standardize: z-score the features (statistics of the fitted rows).
        method: 'covariance' (eigh of D x D), 'gram' (eigh of n x n) or 'auto'
            (the smaller of the two).
        dtype: accumulation dtype; default float64 with ``jax_enable_x64``,
            else float32 (matrix products at ``Precision.HIGHEST``).

    Returns:
        A ``RidgeProbeResult``.
    """
    tx, ty, ex, ey, num_classes = check_probe_data(train_x, train_y, test_x, test_y, num_classes)
    check_choice("method", method, _RIDGE_METHODS)
    check_bool("standardize", standardize)
    check_bool("refit", refit)
    lams = _regularizers(regularizers)
    key = prng_key(seed)
    n = tx.shape[0]
    if val_data is not None:
        if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
            raise ValueError("val_data must be a pair (val_x, val_y)")
        vx = check_features("val_x", val_data[0])
        if vx.shape[1] != tx.shape[1]:
            raise ValueError(f"val_x must have {tx.shape[1]} features per example like "
                             f"train_x, got {vx.shape[1]}")
        vy = check_labels("val_y", val_data[1], vx.shape[0], "val_x")
        check_num_classes(num_classes, {"val_y": vy})
        if n < 2:
            raise ValueError(f"train_x needs at least 2 examples to fit, got {n}")
        fit_idx = jnp.arange(n)
        num_val = vx.shape[0]
        all_x = jnp.concatenate([tx, vx.astype(tx.dtype)])
        all_y = jnp.concatenate([ty, vy])
        val_idx = jnp.arange(n, n + num_val)
    else:
        check_real("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
        num_val = int(round(float(val_fraction) * n))
        if num_val < 1 or n - num_val < 2:
            raise ValueError(f"val_fraction={val_fraction} leaves {num_val} held-out and "
                             f"{n - num_val} fitting examples of train_x's {n}: need at "
                             f"least 1 held-out and 2 fitting examples")
        perm = jax.random.permutation(key, n)
        fit_idx, val_idx = perm[num_val:], perm[:num_val]
        all_x, all_y = tx, ty
    acc = accumulation_dtype(tx.dtype) if dtype is None else jnp.dtype(dtype)
    return _ridge_probe(all_x, all_y, fit_idx, val_idx, ex, ey, lams, num_classes,
                        standardize, method, refit, acc)


def _regularizers(regularizers) -> jax.Array:
    if not is_concrete(regularizers):
        lams = jnp.asarray(regularizers)
        if lams.ndim != 1:
            raise ValueError(f"regularizers must be 1-D, got shape {lams.shape}")
        return jnp.sort(lams)
    lams = np.asarray(regularizers, dtype=np.float64)
    if lams.ndim != 1 or lams.size < 1:
        raise ValueError(f"regularizers must be a non-empty 1-D sequence, got {regularizers!r}")
    if not np.all(np.isfinite(lams)) or not np.all(lams > 0):
        raise ValueError(f"regularizers must be finite and > 0, got {regularizers!r}")
    return jnp.asarray(np.sort(lams))


@functools.partial(jax.jit, static_argnums=(7, 8, 9, 10, 11))
def _ridge_probe(x, y, fit_idx, val_idx, test_x, test_y, lams, num_classes, standardize,
                 method, refit, acc):
    lams = lams.astype(acc)
    x, test_x = x.astype(acc), test_x.astype(acc)
    t = 2 * jax.nn.one_hot(y, num_classes, dtype=acc) - 1
    fx, ft, vx = x[fit_idx], t[fit_idx], x[val_idx]
    w, b, mu, sd = _ridge_fit(fx, ft, lams, standardize, method)
    val_acc = _accuracy_per_lambda((vx - mu) / sd, y[val_idx], w, b)
    # argmax over the reversed grid: among ties, the largest lambda.
    r = lams.shape[0]
    best = r - 1 - jnp.argmax(val_acc[::-1])
    if refit:
        all_idx = jnp.concatenate([fit_idx, val_idx])
        fx, fy = x[all_idx], y[all_idx]
        w, b, mu, sd = _ridge_fit(fx, t[all_idx], lams, standardize, method)
    else:
        fy = y[fit_idx]
    test_acc = _accuracy_per_lambda((test_x - mu) / sd, test_y, w, b)
    train_acc = _accuracy_per_lambda((fx - mu) / sd, fy, w[best][None], b[best][None])[0]
    kernel = w[best] / sd[:, None]
    bias = b[best] - (mu / sd) @ w[best]
    return RidgeProbeResult(test_accuracy=test_acc[best], regularizer=lams[best],
                            train_accuracy=train_acc, regularizers=lams,
                            val_accuracy=val_acc, test_accuracy_per_regularizer=test_acc,
                            kernel=kernel, bias=bias)


def _ridge_fit(x, t, lams, standardize, method):
    """W (R, D, C), b (R, C) on the standardised scale, and mu, sd (D,)."""
    n, d = x.shape
    hi = jax.lax.Precision.HIGHEST
    mu = jnp.mean(x, axis=0)
    xc = x - mu
    if standardize:
        sd = jnp.sqrt(jnp.mean(xc * xc, axis=0))
        sd = jnp.where(sd > 0, sd, 1)
        xc = xc / sd
    else:
        sd = jnp.ones((d,), x.dtype)
    t_bar = jnp.mean(t, axis=0)
    tc = t - t_bar
    if method == "auto":
        method = "covariance" if d <= n else "gram"
    if method == "covariance":
        e, v = jnp.linalg.eigh(jnp.matmul(xc.T, xc, precision=hi) / n)
        proj = jnp.matmul(v.T, jnp.matmul(xc.T, tc, precision=hi), precision=hi) / n
        left = v
    else:
        e, u = jnp.linalg.eigh(jnp.matmul(xc, xc.T, precision=hi) / n)
        proj = jnp.matmul(u.T, tc, precision=hi) / n
        left = jnp.matmul(xc.T, u, precision=hi)
    tol = _RCOND_EPS_MULTIPLE * jnp.finfo(x.dtype).eps * jnp.maximum(jnp.max(e), 0)
    filt = jnp.where(e[None, :] > tol, 1 / (jnp.maximum(e, 0)[None, :] + lams[:, None]), 0)
    # (D, K) @ (R, K, C) -> (R, D, C): memory R K C, never R D K.
    w = jnp.matmul(left, filt[:, :, None] * proj[None], precision=hi)
    b = jnp.broadcast_to(t_bar, (lams.shape[0], t.shape[1]))
    return w, b, mu, sd


def _accuracy_per_lambda(x, y, w, b):
    scores = jnp.einsum("md,rdc->rmc", x, w, precision=jax.lax.Precision.HIGHEST) + b[:, None]
    return jnp.mean(jnp.argmax(scores, axis=-1) == y[None, :], axis=-1)
