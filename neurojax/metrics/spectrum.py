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

The eigenvalues come from ``neurojax.metrics.covariance_spectrum``
(``eigenspectrum``: full, or the top k by block Krylov or randomized
subspace iteration with the exact trace); ``alpha``'s default ('auto') uses
the top-k route for large spectra, and its docstring gives the accuracy
against the full spectrum.

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
from neurojax.metrics._probe_inputs import Seed
from neurojax.metrics.covariance_spectrum import (DEFAULT_ITERATIONS, DEFAULT_TOP_K,
                                                  as_array, default_krylov_block,
                                                  TRUNCATED_METHODS, ArrayLike, Method,
                                                  _check_full_method, _check_max_eigenvalues,
                                                  _METHODS, _spectrum)

Weighting = Literal["inverse_rank", "none"]
RankConvention = Literal["singular_values", "eigenvalues"]

DEFAULT_FIT_RANGE = (4, 100)          # FastSSL train_model.py, trange=np.arange(3, 100)
REPTRIX_FIT_RANGE = (11, 100)         # reptrix get_alpha, np.arange(10, 100)
FASTSSL_PLOT_FIT_RANGE = (6, 50)      # FastSSL plot scripts, np.arange(5, 50)
RANKME_EPS = 1e-7                     # Garrido et al. 2023 (float32)
_RCOND_EPS_MULTIPLE = 100             # numerical-zero threshold, in units of eps * lambda_1
# alpha's 'auto' uses block Krylov when min(n, D) is at least this (measured
# crossover with the full eigh on CPU: see ``alpha``).
AUTO_TRUNCATED_MIN_DIM = 1024
_WEIGHTINGS = ("inverse_rank", "none")
_CONVENTIONS = ("singular_values", "eigenvalues")


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
          method: Method = "auto", max_eigenvalues: Optional[int] = None,
          oversampling: Optional[int] = None, iterations: Optional[int] = None,
          seed: Seed = 0) -> PowerLawFit:
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

    Cost and accuracy ('auto'). The fit needs only the top ~128 eigenvalues
    (``alpha_top_k``), so for min(n, D) >= ``AUTO_TRUNCATED_MIN_DIM`` (1024)
    'auto' computes them by block Krylov (``eigenspectrum``, 'block_krylov':
    21 blocks of 16 columns, seed 0) with the exact trace as normaliser;
    below, by the full ``eigh`` ('covariance' / 'gram'). Measured on CPU (2
    cores, loaded; minima over interleaved rounds) for n = 10000 float32
    features on device: D = 2048, block Krylov 0.34-0.37 s against the full
    ``eigh`` 1.1-1.3 s (three quarters of the Krylov time are the 42
    products with X and X^T, a tenth the one transposed copy of X that
    XLA:CPU needs for fast products with X^T); D = 1536, 0.33 vs 0.71 s;
    D = 1024, 0.24 vs 0.31 s; D = 768, 0.22 vs 0.18 s (the crossover).
    Errors of alpha against the full-spectrum alpha (float32, n = 10000,
    D = 2048, planted lambda_j = j^-a, 3 seeds): +6e-5 to +1.6e-4 at
    a = 0.5 (the hardest: a flat spectrum converges slowest), <= 5e-7 at
    a = 0.75, 1 and 1.5 (the earlier default, 7 blocks of 64: +5e-4 to
    +6e-4 at a = 0.5 for more products); randomized subspace iteration at its
    defaults: +1.5e-3 to +2e-3 at a = 0.5. The fit's own noise is larger:
    the spread of the full-spectrum alpha over 6 seeds of the planted
    features is 0.0026 (a = 0.5) / 0.0028 (a = 1), over 6 bootstrap
    resamples of the rows 0.0015 / 0.0013. On real features (a random 1024-unit
    ReLU layer on the digits, tested; a random-init SmallCNN's 2048-d
    features of shapes_small, ``benchmarks/alpha_vs_probe.py
    --source=shapes_small``: 1.6118 on the 2000 test images) the Krylov alpha
    is within 1e-3 / 5e-5 of the full one, where the bootstrap spread is 0.002 (10000 images) and
    0.009 (2000). The error is one-sided (Ritz values are lower bounds,
    largest near rank 100: alpha comes out slightly steeper).
    ``method='covariance'`` (or 'gram') keeps the full ``eigh``.

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
        method: eigendecomposition route when features are given (see
            ``eigenspectrum``); 'auto' as described above.
        max_eigenvalues, oversampling, iterations, seed: the top-k methods'
            options (``eigenspectrum``); k defaults to ``alpha_top_k``.

    Returns:
        ``PowerLawFit(alpha, intercept, r2, num_points, normalizer,
        first_rank, last_rank)``.
    """
    check_choice("weighting", weighting, _WEIGHTINGS)
    check_choice("method", method, _METHODS)
    r2_range = fit_range if r2_range is None else r2_range
    a = as_array(features_or_eigenvalues)
    if a.ndim >= 2:
        # Check the ranges against min(n, D) (a top-k spectrum is shorter).
        m = min(a.shape[0], int(np.prod(a.shape[1:])))
        needed = max(_check_range("fit_range", fit_range, m)[1],
                     _check_range("r2_range", r2_range, m)[1])
        if method == "auto" and _prefer_top_k(m, needed, max_eigenvalues):
            method = "block_krylov"
        if method in TRUNCATED_METHODS:
            if max_eigenvalues is None:
                max_eigenvalues = min(alpha_top_k(needed), m)
            elif check_int("max_eigenvalues", max_eigenvalues) < needed:
                raise ValueError(f"max_eigenvalues must cover the fit and R^2 ranges "
                                 f"(>= {needed}), got {max_eigenvalues}")
    lam, total, _ = _spectrum(a, method, max_eigenvalues, oversampling=oversampling,
                              iterations=iterations, seed=seed)
    m = lam.shape[0]
    first, last = _check_range("fit_range", fit_range, m)
    r2_first, r2_last = _check_range("r2_range", r2_range, m)
    if rcond is None:
        rcond = _RCOND_EPS_MULTIPLE * float(jnp.finfo(lam.dtype).eps)
    return _power_law_fit(lam, total, first, last, r2_first, r2_last, weighting,
                          bool(normalize), float(rcond))


def alpha_top_k(last_rank: int) -> int:
    """Eigenvalues a top-k method computes for a fit ending at ``last_rank``:
    1.25 x ``last_rank`` rounded up to a multiple of 32, at least
    ``DEFAULT_TOP_K`` (128 for ranks up to 100): the Ritz values near k
    converge last, so k stays above the fit range."""
    check_int("last_rank", last_rank)
    return max(DEFAULT_TOP_K, 32 * -(-(5 * last_rank) // (4 * 32)))


def _prefer_top_k(m: int, needed: int, max_eigenvalues: Optional[int]) -> bool:
    """alpha's 'auto': block Krylov where it is cheaper (m >= the measured
    crossover) and its default subspace (21 k / 8) fits in the spectrum."""
    k = alpha_top_k(needed) if max_eigenvalues is None else max_eigenvalues
    span = default_krylov_block(k) * (DEFAULT_ITERATIONS["block_krylov"] + 1)
    return m >= AUTO_TRUNCATED_MIN_DIM and span <= m


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6, 7, 8))
def _power_law_fit(lam: jax.Array, total: jax.Array, first: int, last: int,
                   r2_first: int, r2_last: int, weighting: str, normalize: bool,
                   rcond: float) -> PowerLawFit:
    """Weighted least squares of log lambda on log rank; lam sorted descending,
    total = sum of the whole spectrum (lam may be its top k)."""
    m, dt = lam.shape[0], lam.dtype
    normalizer = total.astype(dt) if normalize else jnp.ones((), dt)
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
    _check_full_method(method)
    lam, total, _ = _spectrum(features_or_eigenvalues, method)
    return _effective_rank(lam, total, convention, float(eps))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _effective_rank(lam: jax.Array, total: jax.Array, convention: str,
                    eps: float) -> jax.Array:
    """total: sum of the whole spectrum, for the eigenvalue convention (on a
    top-k spectrum the singular values are normalised over the top k)."""
    s = jnp.sqrt(lam) if convention == "singular_values" else lam
    p = s / (jnp.sum(s) if convention == "singular_values" else total) + eps
    # 0 log 0 = 0, so eps = 0 gives Roy & Vetterli's effective rank exactly.
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0)))


def participation_ratio(features_or_eigenvalues: ArrayLike, *,
                        method: Method = "auto") -> jax.Array:
    """PR = (sum_j lambda_j)^2 / sum_j lambda_j^2 = tr(Sigma)^2 / tr(Sigma^2).

    The participation ratio (e.g. Gao et al. 2017, "A theory of multineuronal
    dimensionality"): m for a flat spectrum of size m, 1 for a one-hot one,
    invariant to scaling.
    """
    _check_full_method(method)
    lam, total, _ = _spectrum(features_or_eigenvalues, method)
    return _participation_ratio(lam, total)


@jax.jit
def _participation_ratio(lam: jax.Array, total: jax.Array) -> jax.Array:
    return total ** 2 / jnp.sum(lam ** 2)


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
    _check_full_method(method)
    lam, total, _ = _spectrum(features_or_eigenvalues, method)
    return _tail_ratio(lam, total, start_rank, False)


@functools.partial(jax.jit, static_argnums=3)
def _tail_ratio(lam: jax.Array, total: jax.Array, start_rank: jax.Array,
                top_k: bool) -> jax.Array:
    ranks = jnp.arange(1, lam.shape[0] + 1)
    if not top_k:   # sum the tail itself: 1 - head / total would cancel for small tails
        return jnp.sum(jnp.where(ranks >= start_rank, lam, 0)) / total
    # lam is the top k: the tail is total - head, exact while start_rank <= k + 1.
    head = jnp.sum(jnp.where(ranks < start_rank, lam, 0))
    return jnp.where(start_rank <= lam.shape[0] + 1,
                     jnp.maximum(total - head, 0) / total, jnp.nan)


def spectrum_metrics(features_or_eigenvalues: ArrayLike, *,
                     fit_range: tuple[int, int] = DEFAULT_FIT_RANGE,
                     weighting: Weighting = "inverse_rank",
                     rcond: Optional[float] = None,
                     eps: float = RANKME_EPS,
                     tail_start: Optional[Union[int, jax.Array]] = None,
                     max_eigenvalues: Optional[int] = None,
                     method: Method = "auto",
                     return_eigenvalues: bool = False,
                     oversampling: Optional[int] = None,
                     iterations: Optional[int] = None,
                     seed: Seed = 0) -> dict[str, jax.Array]:
    """Every spectral metric from one eigendecomposition.

    Returns a flat dict of scalars (ready for a metrics log):
    ``alpha``, ``alpha_intercept``, ``alpha_r2``, ``alpha_num_points``
    (see ``alpha``; normalised spectrum), ``effective_rank`` (RankMe on
    singular values), ``effective_rank_eigenvalues`` (on eigenvalues),
    ``participation_ratio``, ``total_variance`` (tr Sigma), ``tail_ratio``
    if ``tail_start`` is given, and ``eigenvalues`` if ``return_eigenvalues``.

    Full methods ('auto' = the full ``eigh``, as before): ``max_eigenvalues``
    truncates the spectrum before every metric (as FastSSL/reptrix keep at
    most 2048): the effective ranks, PR and total variance then describe the
    top eigenvalues only; alpha is unchanged while ``max_eigenvalues`` >= the
    fit range's end.

    Top-k methods ('block_krylov', 'randomized'; k = ``max_eigenvalues``,
    default ``alpha_top_k`` of the fit range, 128 for ranks 4..100): alpha
    as in ``alpha``, and the others from the top k eigenvalues with the
    exact trace T = tr Sigma = ||X_c||_F^2 / n:

    * ``total_variance`` = T and ``tail_ratio`` = (T - sum_{j<t} lambda_j) / T
      are exact (for t <= k + 1; an int ``tail_start`` above raises, a
      traced one gives NaN);
    * ``effective_rank_eigenvalues``: p_j = lambda_j / T + eps over j <= k,
      the tail's entropy left out: a lower bound of the full value;
    * ``participation_ratio`` = T^2 / sum_{j<=k} lambda_j^2: an upper bound
      (the tail's sum of squares, at most lambda_k (T - sum_{j<=k} lambda_j),
      is left out);
    * ``effective_rank`` (singular values): sum_j sqrt(lambda_j) needs the
      whole spectrum, so it is RankMe of the top k alone (<= k).
    """
    check_choice("method", method, _METHODS)
    top_k = method in TRUNCATED_METHODS
    a = as_array(features_or_eigenvalues)
    if top_k and a.ndim >= 2 and max_eigenvalues is None:
        m = min(a.shape[0], int(np.prod(a.shape[1:])))
        max_eigenvalues = min(alpha_top_k(_check_range("fit_range", fit_range, m)[1]), m)
    lam, total, top_k = _spectrum(a, method, max_eigenvalues if top_k else None,
                                  oversampling=oversampling, iterations=iterations,
                                  seed=seed)
    if max_eigenvalues is not None and not top_k:
        _check_max_eigenvalues(max_eigenvalues)
        lam = lam[:max_eigenvalues]
        total = jnp.sum(lam)
    # Validate here, before compiling: a bad argument raises a ValueError naming it.
    check_choice("weighting", weighting, _WEIGHTINGS)
    if isinstance(tail_start, (int, np.integer)):
        if tail_start < 1:
            raise ValueError(f"tail_start must be >= 1 (1-based rank), got {tail_start}")
        if top_k and tail_start > lam.shape[0] + 1:
            raise ValueError(f"tail_start must be <= max_eigenvalues + 1 = "
                             f"{lam.shape[0] + 1} with method={method!r}, got {tail_start}")
    fit_range = _check_range("fit_range", fit_range, lam.shape[0])
    if rcond is None:
        rcond = _RCOND_EPS_MULTIPLE * float(jnp.finfo(lam.dtype).eps)
    return _spectrum_metrics(lam, total, fit_range, weighting, float(rcond), float(eps),
                             tail_start, return_eigenvalues, top_k)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 7, 8))
def _spectrum_metrics(lam, total, fit_range, weighting, rcond, eps, tail_start,
                      return_eigenvalues, top_k):
    fit = _power_law_fit(lam, total, *fit_range, *fit_range, weighting, True, rcond)
    out = {
        "alpha": fit.alpha,
        "alpha_intercept": fit.intercept,
        "alpha_r2": fit.r2,
        "alpha_num_points": fit.num_points,
        "effective_rank": _effective_rank(lam, total, "singular_values", eps),
        "effective_rank_eigenvalues": _effective_rank(lam, total, "eigenvalues", eps),
        "participation_ratio": _participation_ratio(lam, total),
        "total_variance": total,
    }
    if tail_start is not None:
        out["tail_ratio"] = _tail_ratio(lam, total, tail_start, top_k)
    if return_eigenvalues:
        out["eigenvalues"] = lam
    return out
