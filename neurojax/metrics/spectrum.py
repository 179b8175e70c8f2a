"""Label-free metrics of a representation's covariance eigenspectrum.

One eigendecomposition, many metrics (as big_vision's few-shot ridge): ``eigenspectrum`` computes
the eigenvalues of the centred feature covariance once, and every metric here
accepts either features or those eigenvalues, so ``spectrum_metrics`` returns
alpha, R^2, both effective ranks and the participation ratio from one ``eigh``.

* ``alpha``: the decay coefficient of alpha-ReQ (Agrawal, Mondal, Ghosh et
  al., NeurIPS 2022, Sec. 2-3; thesis Part II), lambda_j ~ c j^-alpha, fitted
  by (weighted) least squares in log-log coordinates.
* ``effective_rank``: RankMe (Garrido et al., ICML 2023), the exponential of
  the entropy of the normalised spectrum, on singular values (the paper) or on
  covariance eigenvalues (reptrix).
* ``participation_ratio``: (sum lambda)^2 / sum lambda^2.
* ``tail_ratio``: r_t of alpha-ReQ Theorem 2.2, Eq. (2).

Conventions where the references disagree (the alpha-ReQ paper and its
official FastSSL code are the defaults; the others are options):

* Fit range: ranks 4..100 (1-based, inclusive), the range the authors' code
  uses to log alpha during training and linear evaluation (FastSSL
  ``scripts/train_model.py``: ``trange=np.arange(3, 100)``, 0-based).
  reptrix uses ``np.arange(10, 100)`` (ranks 11..100; ``REPTRIX_FIT_RANGE``),
  and FastSSL's plotting scripts ranks 6..50 (``FASTSSL_PLOT_FIT_RANGE``).
* Weights: 1/rank (Stringer et al. 2019's fit, copied into FastSSL's
  ``stringer_get_powerlaw``); ``weighting='none'`` is ordinary least squares.
* Normalisation: the fit is on lambda / sum(lambda), i.e. sklearn's
  ``explained_variance_ratio_`` as in FastSSL's ``get_eigenspectrum``; alpha
  does not depend on it, the intercept does.
* RankMe: on singular values by default (Garrido et al.); reptrix's
  eigenvalue convention is ``convention='eigenvalues'``. epsilon = 1e-7.
"""
import functools
from typing import Literal, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_int

ArrayLike = Union[jax.Array, np.ndarray]
Method = Literal["auto", "covariance", "gram", "svd"]
Weighting = Literal["inverse_rank", "none"]
RankConvention = Literal["singular_values", "eigenvalues"]

DEFAULT_FIT_RANGE = (4, 100)          # FastSSL train_model.py, trange=np.arange(3, 100)
REPTRIX_FIT_RANGE = (11, 100)         # reptrix get_alpha, np.arange(10, 100)
FASTSSL_PLOT_FIT_RANGE = (6, 50)      # FastSSL plot scripts, np.arange(5, 50)
RANKME_EPS = 1e-7                     # Garrido et al. 2023 (float32)
_RCOND_EPS_MULTIPLE = 100             # numerical-zero threshold, in units of eps * lambda_1

_METHODS = ("auto", "covariance", "gram", "svd")
_WEIGHTINGS = ("inverse_rank", "none")
_CONVENTIONS = ("singular_values", "eigenvalues")


def accumulation_dtype(dtype=None) -> jnp.dtype:
    """float64 when ``jax_enable_x64`` is on, else float32 (at least ``dtype``).

    Low-precision inputs (bfloat16, float16) are always promoted: their
    covariance would lose most of the spectrum's tail.
    """
    wide = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64
    if dtype is None:
        return jnp.dtype(wide)
    return jnp.promote_types(wide, jnp.dtype(dtype))


def _as_matrix(features: ArrayLike) -> jax.Array:
    """(n, ...) -> (n, D): one row per example, every unit a column."""
    features = jnp.asarray(features)
    if features.ndim < 2:
        raise ValueError(f"features must have shape (num_examples, ...) with at least "
                         f"2 dimensions, got shape {features.shape}")
    return features.reshape(features.shape[0], -1)


def _check_max_eigenvalues(max_eigenvalues: Optional[int]) -> None:
    if max_eigenvalues is not None:
        check_int("max_eigenvalues (None or an int)", max_eigenvalues)


def _descending(eigenvalues: jax.Array, max_eigenvalues: Optional[int]) -> jax.Array:
    # eigh returns ascending order; round-off can make zero eigenvalues of a
    # PSD matrix slightly negative, which would break log / sqrt downstream.
    lam = jnp.maximum(eigenvalues[::-1], 0)
    return lam if max_eigenvalues is None else lam[:max_eigenvalues]


def eigenspectrum_from_covariance(covariance: ArrayLike, *,
                                  max_eigenvalues: Optional[int] = None) -> jax.Array:
    """Eigenvalues of a symmetric PSD matrix, descending, clipped at 0."""
    _check_max_eigenvalues(max_eigenvalues)
    covariance = jnp.asarray(covariance)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"covariance must be a square matrix, got shape {covariance.shape}")
    return _descending(jnp.linalg.eigvalsh(covariance), max_eigenvalues)


def eigenspectrum(features: ArrayLike, *, max_eigenvalues: Optional[int] = None,
                  center: bool = True, method: Method = "auto",
                  dtype=None) -> jax.Array:
    """Eigenvalues of the empirical feature covariance, largest first.

    Sigma_n(f) = 1/n sum_i (f(x_i) - mu)(f(x_i) - mu)^T, with the m = min(n, D)
    eigenvalues lambda_1 >= ... >= lambda_m >= 0 (alpha-ReQ Sec. 2.1;
    thesis Part II Sec. 2.1-2.2). Features of shape (n, ...) are flattened
    per example, as the thesis defines a representation (all units of a
    layer). The 1/n normalisation is the paper's; sklearn's PCA uses
    1/(n - 1), which rescales every eigenvalue and changes no metric here.

    Numerics. The features are centred first (two-pass: mean, then the
    centred second moment), never through E[ff^T] - mu mu^T, which cancels
    catastrophically in float32. Accumulation is in ``dtype`` (default:
    float64 when ``jax_enable_x64`` is on, else float32); the matrix
    product runs at ``Precision.HIGHEST`` so that GPUs do not use TF32 (on
    an H200, default precision gave eigenvalue errors of 4e-6 lambda_1
    against 7e-7 with HIGHEST, vs float64, for 8000 x 512 features).
    Zero eigenvalues come out as +-(a few) eps * lambda_1 and are clipped
    at 0. In float32 the tail below ~1e-5 lambda_1 is round-off; enable
    x64 for steeper spectra (alpha = 2 reaches 1e-5 lambda_1 at rank ~300).

    Args:
        features: (n, ...) array, one row per example.
        max_eigenvalues: keep only the largest ones (the rest are still
            computed: ``eigh`` has no cheaper partial mode).
        center: subtract the mean over examples. ``False`` gives the
            uncentred second moment X^T X / n, whose eigenvalues are
            s_k^2 / n for the singular values s_k of the embedding matrix
            itself (what RankMe's paper uses).
        method: 'covariance' (eigh of the D x D matrix X^T X / n, cost
            n D^2 + D^3), 'gram' (eigh of the n x n matrix X X^T / n, same
            nonzero eigenvalues, cost n^2 D + n^3), 'svd' (singular values of
            X, lambda = s^2 / n: more accurate for the smallest eigenvalues,
            slower) or 'auto': 'covariance' if D <= n else 'gram'. Shapes
            are static, so under ``jax.jit`` the choice is made at trace time.
        dtype: accumulation dtype (see above).

    Returns:
        (min(n, D, max_eigenvalues),) eigenvalues, descending, >= 0.
    """
    check_choice("method", method, _METHODS)
    _check_max_eigenvalues(max_eigenvalues)
    x = _as_matrix(features)
    n, d = x.shape
    if center and n < 2:
        raise ValueError(f"a centred covariance needs at least 2 examples, got {n}")
    acc = accumulation_dtype(x.dtype) if dtype is None else jnp.dtype(dtype)
    if method == "auto":
        method = "covariance" if d <= n else "gram"
    return _eigenspectrum(x, acc, center, method, max_eigenvalues)


# One compiled program per shape and setting: eager callers pay one dispatch,
# not one per primitive; under an outer jit this is inlined.
@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _eigenspectrum(x: jax.Array, acc: jnp.dtype, center: bool, method: str,
                   max_eigenvalues: Optional[int]) -> jax.Array:
    n, d = x.shape
    x = x.astype(acc)
    if center:
        x = x - jnp.mean(x, axis=0)
    m = min(n, d)
    hi = jax.lax.Precision.HIGHEST
    if method == "svd":
        s = jnp.linalg.svd(x, compute_uv=False)       # descending
        lam = (s[:m] ** 2 / n)[::-1]                   # ascending, like eigvalsh
    elif method == "covariance":
        lam = jnp.linalg.eigvalsh(jnp.matmul(x.T, x, precision=hi) / n)[d - m:]
    else:
        lam = jnp.linalg.eigvalsh(jnp.matmul(x, x.T, precision=hi) / n)[n - m:]
    return _descending(lam, max_eigenvalues)


def _spectrum(features_or_eigenvalues: ArrayLike, **kwargs) -> jax.Array:
    """A 1-D input is taken as eigenvalues (any order); anything else as features."""
    a = jnp.asarray(features_or_eigenvalues)
    if a.ndim == 1:
        return _sorted_spectrum(a)
    return eigenspectrum(a, **kwargs)


@jax.jit
def _sorted_spectrum(lam: jax.Array) -> jax.Array:
    lam = lam.astype(jnp.promote_types(lam.dtype, jnp.float32))
    return jnp.maximum(jnp.sort(lam)[::-1], 0)


class PowerLawFit(NamedTuple):
    """Result of ``alpha``: log(lambda_j / normalizer) ~ intercept - alpha log j.

    ``first_rank``/``last_rank`` are the 1-based ranks actually fitted (the
    requested range clipped to the spectrum's length); ``num_points`` counts
    those above the numerical-zero threshold. ``normalizer`` is what the
    eigenvalues were divided by (sum of eigenvalues, or 1), so the fitted
    line in the input's units is normalizer * exp(intercept) * j^-alpha.
    """
    alpha: jax.Array
    intercept: jax.Array
    r2: jax.Array
    num_points: jax.Array
    normalizer: jax.Array
    first_rank: jax.Array
    last_rank: jax.Array


def _check_range(name: str, rng: tuple[int, int], m: int) -> tuple[int, int]:
    try:
        first, last = (int(r) for r in rng)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of 1-based ranks (first, last), "
                         f"got {rng!r}") from None
    if not 1 <= first < last:
        raise ValueError(f"{name} must satisfy 1 <= first < last, got {rng!r}")
    last = min(last, m)
    if last - first + 1 < 2:
        raise ValueError(f"{name}={rng!r} leaves fewer than 2 eigenvalues of a "
                         f"spectrum with {m}")
    return first, last


def alpha(features_or_eigenvalues: ArrayLike,
          fit_range: tuple[int, int] = DEFAULT_FIT_RANGE, *,
          weighting: Weighting = "inverse_rank", normalize: bool = True,
          rcond: Optional[float] = None,
          r2_range: Optional[tuple[int, int]] = None,
          method: Method = "auto") -> PowerLawFit:
    """Eigenspectrum decay coefficient alpha of alpha-ReQ, with intercept and R^2.

    Power law lambda_j = c j^-alpha (alpha-ReQ Sec. 2.1, Fig. 1B), estimated
    "by fitting a linear model on the eigenspectrum in log-log scale"
    (Sec. 3.1). The authors' code (FastSSL ``stringer_get_powerlaw``) solves
    the weighted least squares

        (alpha, b) = argmin sum_{j in R} w_j (log lambda_j + alpha log j - b)^2,

    with w_j = 1/j ('inverse_rank', the default) or w_j = 1 ('none':
    ordinary least squares, ``np.polyfit`` / ``scipy.stats.linregress``), over
    ranks R = ``fit_range`` (1-based, inclusive; default 4..100 as FastSSL
    logs alpha in training; see the module docstring for the others). The
    closed form is slope = sum w (x - xbar)(y - ybar) / sum w (x - xbar)^2 with
    weighted means, x = log j, y = log lambda_j, alpha = -slope.

    Robustness. Eigenvalues <= ``rcond`` * lambda_1 (default 100 eps of the
    spectrum's dtype: below this, float round-off dominates) are numerical
    zeros; they get weight 0 instead of log(0) (FastSSL takes log|lambda|,
    which fits round-off). A range running past the spectrum is clipped to
    its length, m = min(n, D). With fewer than 2 usable eigenvalues every
    field is NaN, and a collapsed spectrum shows up as a low R^2. The input
    is never modified (the reference's ``trange += 1`` mutated the caller's
    array).

    R^2 = 1 - sum (y - yhat)^2 / sum (y - mean y)^2, unweighted, over the
    usable eigenvalues in ``r2_range`` (default: the fit range). This is
    sklearn's ``r2_score`` on log values as FastSSL computes it; it equals
    linregress's r^2 for 'none'. FastSSL's own R^2 uses ranks
    (first+1)..500 (``r2_range=(first + 1, 500)``).

    Args:
        features_or_eigenvalues: (n, ...) features, or a 1-D spectrum (any
            order; it is sorted descending).
        fit_range: (first, last) 1-based ranks, inclusive.
        weighting: 'inverse_rank' (w_j = 1/j) or 'none'.
        normalize: fit lambda / sum(lambda) (sklearn's explained variance
            ratio) rather than lambda; changes only the intercept.
        rcond: relative numerical-zero threshold (see above).
        r2_range: ranks for R^2, default ``fit_range``.
        method: eigendecomposition route when features are given.

    Returns:
        ``PowerLawFit(alpha, intercept, r2, num_points, normalizer,
        first_rank, last_rank)``.
    """
    check_choice("weighting", weighting, _WEIGHTINGS)
    lam = _spectrum(features_or_eigenvalues, method=method)
    m = lam.shape[0]
    first, last = _check_range("fit_range", fit_range, m)
    r2_first, r2_last = _check_range("r2_range", fit_range if r2_range is None
                                     else r2_range, m)
    if rcond is None:
        rcond = _RCOND_EPS_MULTIPLE * float(jnp.finfo(lam.dtype).eps)
    return _power_law_fit(lam, first, last, r2_first, r2_last, weighting,
                          bool(normalize), float(rcond))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _power_law_fit(lam: jax.Array, first: int, last: int, r2_first: int,
                   r2_last: int, weighting: str, normalize: bool,
                   rcond: float) -> PowerLawFit:
    """Weighted least squares of log lambda on log rank; lam sorted descending."""
    m, dt = lam.shape[0], lam.dtype
    normalizer = jnp.sum(lam) if normalize else jnp.ones((), dt)
    usable = lam > rcond * lam[0]
    # log of a placeholder 1 where unusable: keeps values and gradients finite.
    log_lam = jnp.log(jnp.where(usable, lam, 1)) - jnp.log(normalizer)
    log_rank = jnp.log(jnp.arange(1, m + 1, dtype=dt))

    sl = slice(first - 1, last)
    base = (1.0 / jnp.arange(first, last + 1, dtype=dt) if weighting == "inverse_rank"
            else jnp.ones(last - first + 1, dt))
    w = jnp.where(usable[sl], base, 0)
    x, y = log_rank[sl], log_lam[sl]
    sw = jnp.sum(w)
    xbar, ybar = jnp.sum(w * x) / sw, jnp.sum(w * y) / sw
    slope = jnp.sum(w * (x - xbar) * (y - ybar)) / jnp.sum(w * (x - xbar) ** 2)
    intercept = ybar - slope * xbar
    num_points = jnp.sum(usable[sl])
    ok = num_points >= 2
    nan = jnp.full((), jnp.nan, dt)
    slope, intercept = jnp.where(ok, slope, nan), jnp.where(ok, intercept, nan)

    sl2 = slice(r2_first - 1, r2_last)
    v = usable[sl2].astype(dt)
    y2 = log_lam[sl2]
    resid = y2 - (intercept + slope * log_rank[sl2])
    y2bar = jnp.sum(v * y2) / jnp.sum(v)
    r2 = 1 - jnp.sum(v * resid ** 2) / jnp.sum(v * (y2 - y2bar) ** 2)
    return PowerLawFit(alpha=-slope, intercept=intercept, r2=r2,
                       num_points=num_points, normalizer=normalizer,
                       first_rank=jnp.asarray(first), last_rank=jnp.asarray(last))


def effective_rank(features_or_eigenvalues: ArrayLike, *,
                   convention: RankConvention = "singular_values",
                   eps: float = RANKME_EPS, method: Method = "auto") -> jax.Array:
    """RankMe: exp of the entropy of the normalised spectrum.

    RankMe(Z) = exp(-sum_k p_k log p_k),  p_k = s_k / sum_j s_j + eps
    (Garrido et al., ICML 2023; effective rank of Roy & Vetterli 2007), with
    eps = 1e-7 added and not renormalised, as in the paper (eps = 0: the
    plain entropy effective rank, with 0 log 0 = 0).

    Conventions (BARL-SSL/reptrix#16):

    * 'singular_values' (default, Garrido et al.): s_k are the singular
      values of the feature matrix. From covariance eigenvalues,
      s_k = sqrt(n lambda_k); the sqrt(n) cancels in p_k, so s_k =
      sqrt(lambda_k) here. For the paper's uncentred embedding matrix pass
      ``eigenspectrum(z, center=False)``; the default spectrum is centred.
    * 'eigenvalues' (reptrix ``get_rank``): s_k = lambda_k.

    A flat spectrum of size m gives m (up to eps), a one-hot spectrum 1.
    """
    check_choice("convention", convention, _CONVENTIONS)
    return _effective_rank(_spectrum(features_or_eigenvalues, method=method),
                           convention, float(eps))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _effective_rank(lam: jax.Array, convention: str, eps: float) -> jax.Array:
    s = jnp.sqrt(lam) if convention == "singular_values" else lam
    p = s / jnp.sum(s) + eps
    # 0 log 0 = 0, so eps = 0 gives Roy & Vetterli's effective rank exactly.
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0)))


def participation_ratio(features_or_eigenvalues: ArrayLike, *,
                        method: Method = "auto") -> jax.Array:
    """PR = (sum_j lambda_j)^2 / sum_j lambda_j^2 = tr(Sigma)^2 / tr(Sigma^2).

    The participation ratio (e.g. Gao et al. 2017, "A theory of multineuronal
    dimensionality"): m for a flat spectrum of size m, 1 for a one-hot one,
    invariant to scaling.
    """
    return _participation_ratio(_spectrum(features_or_eigenvalues, method=method))


@jax.jit
def _participation_ratio(lam: jax.Array) -> jax.Array:
    return jnp.sum(lam) ** 2 / jnp.sum(lam ** 2)


def tail_ratio(features_or_eigenvalues: ArrayLike, start_rank: Union[int, jax.Array],
               *, method: Method = "auto") -> jax.Array:
    """Tail mass r_t = sum_{i=t}^m lambda_i / sum_{i=1}^m lambda_i.

    alpha-ReQ Theorem 2.2, Eq. (2): the generalisation error after T steps
    is O(r_dhat(Sigma)), where dhat indexes the first eigenmode not yet
    learned (the proof, App. A Eqs. 22-24, sums from d + 1 where d modes have
    converged: pass ``start_rank=d + 1``). For lambda_i = c i^-alpha,
    r_t = sum_{i>=t} i^-alpha / sum_i i^-alpha, decreasing in alpha. r_1 = 1.

    Args:
        features_or_eigenvalues: features or a 1-D spectrum.
        start_rank: t, 1-based; may be traced (a mask, not a slice).
    """
    if isinstance(start_rank, (int, np.integer)) and start_rank < 1:
        raise ValueError(f"start_rank must be >= 1 (1-based rank), got {start_rank}")
    return _tail_ratio(_spectrum(features_or_eigenvalues, method=method), start_rank)


@jax.jit
def _tail_ratio(lam: jax.Array, start_rank: jax.Array) -> jax.Array:
    ranks = jnp.arange(1, lam.shape[0] + 1)
    return jnp.sum(jnp.where(ranks >= start_rank, lam, 0)) / jnp.sum(lam)


def spectrum_metrics(features_or_eigenvalues: ArrayLike, *,
                     fit_range: tuple[int, int] = DEFAULT_FIT_RANGE,
                     weighting: Weighting = "inverse_rank",
                     rcond: Optional[float] = None,
                     eps: float = RANKME_EPS,
                     tail_start: Optional[Union[int, jax.Array]] = None,
                     max_eigenvalues: Optional[int] = None,
                     method: Method = "auto",
                     return_eigenvalues: bool = False) -> dict[str, jax.Array]:
    """Every spectral metric from one eigendecomposition.

    Returns a flat dict of scalars (ready for a metrics log):
    ``alpha``, ``alpha_intercept``, ``alpha_r2``, ``alpha_num_points``
    (see ``alpha``; normalised spectrum), ``effective_rank`` (RankMe on
    singular values), ``effective_rank_eigenvalues`` (on eigenvalues),
    ``participation_ratio``, ``total_variance`` (tr Sigma, sum of the
    eigenvalues kept), ``tail_ratio`` if ``tail_start`` is given, and
    ``eigenvalues`` if ``return_eigenvalues``.

    ``max_eigenvalues`` truncates the spectrum before every metric (as
    FastSSL/reptrix keep at most 2048): the effective ranks and PR then
    describe the top eigenvalues only; alpha is unchanged while
    ``max_eigenvalues`` >= the fit range's end.
    """
    lam = _spectrum(features_or_eigenvalues, method=method)
    if max_eigenvalues is not None:
        _check_max_eigenvalues(max_eigenvalues)
        lam = lam[:max_eigenvalues]
    # Validate here, before compiling: a bad argument raises a ValueError naming it.
    check_choice("weighting", weighting, _WEIGHTINGS)
    if isinstance(tail_start, (int, np.integer)) and tail_start < 1:
        raise ValueError(f"tail_start must be >= 1 (1-based rank), got {tail_start}")
    _check_range("fit_range", fit_range, lam.shape[0])
    return _spectrum_metrics(lam, tuple(int(r) for r in fit_range), weighting,
                             None if rcond is None else float(rcond), float(eps),
                             tail_start, return_eigenvalues)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 6))
def _spectrum_metrics(lam, fit_range, weighting, rcond, eps, tail_start,
                      return_eigenvalues):
    fit = alpha(lam, fit_range, weighting=weighting, rcond=rcond)
    out = {
        "alpha": fit.alpha,
        "alpha_intercept": fit.intercept,
        "alpha_r2": fit.r2,
        "alpha_num_points": fit.num_points,
        "effective_rank": _effective_rank(lam, "singular_values", eps),
        "effective_rank_eigenvalues": _effective_rank(lam, "eigenvalues", eps),
        "participation_ratio": _participation_ratio(lam),
        "total_variance": jnp.sum(lam),
    }
    if tail_start is not None:
        out["tail_ratio"] = _tail_ratio(lam, tail_start)
    if return_eigenvalues:
        out["eigenvalues"] = lam
    return out
