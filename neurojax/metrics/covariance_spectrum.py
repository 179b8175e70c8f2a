"""The eigenvalues of a representation's centred feature covariance.

``eigenspectrum`` computes them once (one ``eigh`` of the D x D covariance
or the n x n Gram matrix, or the SVD of the features), for every metric of
``neurojax.metrics.spectrum`` to read (one eigendecomposition, many
metrics, as big_vision's few-shot ridge).

Top-k eigenvalues without the D x D covariance (``method='block_krylov'`` or
``'randomized'``): alpha's fit uses ranks 4..100 only, so it needs the top
~128 eigenvalues, which a randomized block Krylov (block Lanczos) iteration
(Musco & Musco 2015) or randomized subspace iteration (Halko, Martinsson &
Tropp 2011, Alg. 4.4) on the centred features finds for a fraction of a full
``eigh``'s cost; the trace, and so the normalisation, stays exact
(tr Sigma = ||X_c||_F^2 / n). The accuracy against the full spectrum is in
``neurojax.metrics.spectrum.alpha``'s docstring.
"""
import functools
from typing import Callable, Literal, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_int
from neurojax.metrics._probe_inputs import Seed, prng_key

ArrayLike = Union[jax.Array, np.ndarray]
Method = Literal["auto", "covariance", "gram", "svd", "block_krylov", "randomized"]

_FULL_METHODS = ("auto", "covariance", "gram", "svd")
TRUNCATED_METHODS = ("block_krylov", "randomized")   # top-k eigenvalues only
_METHODS = _FULL_METHODS + TRUNCATED_METHODS
DEFAULT_TOP_K = 128                   # eigenvalues kept by a truncated method: ranks <= 100
# Defaults of the truncated methods, chosen by measurement (see ``alpha``):
# block Krylov: 21 blocks of k/8 (subspace 21k/8); subspace iteration: block 2k.
DEFAULT_ITERATIONS = {"block_krylov": 20, "randomized": 4}
KRYLOV_BLOCK_DIVISOR = 8              # default block Krylov block: ceil(k / 8)


def default_krylov_block(k: int) -> int:
    """Block size of the default block Krylov subspace for k eigenvalues."""
    return -(-k // KRYLOV_BLOCK_DIVISOR)

def accumulation_dtype(dtype=None) -> jnp.dtype:
    """float64 when ``jax_enable_x64`` is on, else float32 (at least ``dtype``).

    Low-precision inputs (bfloat16, float16) are always promoted: their
    covariance would lose most of the spectrum's tail.
    """
    wide = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64
    if dtype is None:
        return jnp.dtype(wide)
    return jnp.promote_types(wide, jnp.dtype(dtype))


def as_array(values: ArrayLike) -> jax.Array:
    """A jax.Array (or tracer) as is; anything else by one ``device_put``.

    For host (NumPy) features this is the one host-to-device copy; it is
    ~1.4x faster than ``jnp.asarray``'s path for 10000 x 2048 float32 on
    XLA:CPU. Dtypes are canonicalised as by ``jnp.asarray`` (float64 ->
    float32 unless x64 is on).
    """
    if isinstance(values, jax.Array):
        return values
    return jax.device_put(np.asarray(values))


def _as_matrix(features: ArrayLike) -> jax.Array:
    """(n, ...) -> (n, D): one row per example, every unit a column."""
    features = as_array(features)
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
                  dtype=None, oversampling: Optional[int] = None,
                  iterations: Optional[int] = None, seed: Seed = 0) -> jax.Array:
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

    Top-k methods (``TRUNCATED_METHODS``) never form the m x m matrix: they
    apply C = A^T A / n, A the centred features X_c = X - 1 mu^T (or X_c^T,
    so that C is m x m with m = min(n, D)), as two matrix products with X
    and X^T (the centring applied as a rank-1 correction, X_c never stored),
    and return the k = ``max_eigenvalues`` (default ``DEFAULT_TOP_K`` = 128)
    largest Ritz values of C on a subspace of dimension s >= k + ``oversampling``:

    * 'block_krylov' (block Lanczos with full reorthogonalisation; Musco &
      Musco, NeurIPS 2015; Halko, Martinsson & Tropp 2011, Sec. 4.6):
      Q_0 = orth(Omega) for a Gaussian m x b Omega, then q = ``iterations``
      times Q_i = orth((I - K K^T) C Q_{i-1}), K = [Q_0 ... Q_{i-1}]: the
      block Krylov space span{Omega, C Omega, ..., C^q Omega}, s = b (q + 1)
      columns, b = ceil((k + p) / (q + 1)). Defaults: q = 20, b = ceil(k / 8)
      (s = 336 for k = 128): narrow blocks and many of them give a higher
      polynomial degree for the same number of products with single columns
      (measured on 10000 x 2048 float32 features with planted j^-0.5: alpha
      within 1e-4 of the full one, against 5e-4 for 7 blocks of k / 2, and
      25% faster).
    * 'randomized' (randomized subspace iteration, Halko, Martinsson & Tropp
      2011, Alg. 4.4 on C, with Alg. 5.3's Rayleigh-Ritz step): Q =
      orth(Omega), then q times Q = orth(C Q), Omega m x s, s = k + p.
      Defaults: q = 4, s = 2k.

    Every block is re-orthonormalised after each product with C
    (CholeskyQR2, falling back to Householder QR where it fails), and Krylov
    blocks twice against the earlier ones (block Gram-Schmidt, "twice is
    enough"), as float32 needs, a third time where the space is exhausted.
    The Ritz values are
    the eigenvalues of K^T (C K), with C K kept from the iteration plus one
    last product: lower bounds of the top eigenvalues (Cauchy interlacing),
    converging fastest at the top. Cost: q + 1 products with C of b (or s)
    columns, i.e. 2 (q + 1) passes over X, and one transposed copy of X,
    against the m x m product and the ``eigh`` of the full methods. The
    centring as a correction costs accuracy only when the mean is much
    larger than the spread (relative error ~ eps |mu| / sigma per product;
    use x64 or a full method then). Accuracy for alpha: see ``alpha``. The
    draw of Omega is fixed by ``seed`` (deterministic default 0).

    Args:
        features: (n, ...) array, one row per example.
        max_eigenvalues: keep only the largest ones. Full methods still
            compute all of them (``eigh`` has no cheaper partial mode); the
            top-k methods compute only these (k <= min(n, D)).
        center: subtract the mean over examples. ``False`` gives the
            uncentred second moment X^T X / n, whose eigenvalues are
            s_k^2 / n for the singular values s_k of the embedding matrix
            itself (what RankMe's paper uses).
        method: 'covariance' (eigh of the D x D matrix X^T X / n, cost
            n D^2 + D^3), 'gram' (eigh of the n x n matrix X X^T / n, same
            nonzero eigenvalues, cost n^2 D + n^3), 'svd' (singular values of
            X, lambda = s^2 / n: more accurate for the smallest eigenvalues,
            slower), 'auto': 'covariance' if D <= n else 'gram', or a top-k
            method, 'block_krylov' / 'randomized' (above). Shapes are static,
            so under ``jax.jit`` the choice is made at trace time.
        dtype: accumulation dtype (see above).
        oversampling: top-k methods: p >= 0, subspace dimension s = k + p
            (<= min(n, D)); default as above.
        iterations: top-k methods: q >= 0 (Krylov blocks after the first,
            or power steps); default as above.
        seed: top-k methods: an int or a PRNG key for Omega.

    Returns:
        (min(n, D, max_eigenvalues),) eigenvalues, descending, >= 0; (k,)
        for a top-k method.
    """
    x, acc, method, options = _check_spectrum_args(
        features, max_eigenvalues, center, method, dtype, oversampling, iterations, seed)
    if method in TRUNCATED_METHODS:
        return _top_eigenvalues(x, acc, center, method, *options)[0]
    return _eigenspectrum(x, acc, center, method, max_eigenvalues)


def _check_spectrum_args(features, max_eigenvalues, center, method, dtype,
                         oversampling=None, iterations=None, seed=0):
    """Validate before compiling; resolve 'auto' and the top-k options.

    Returns (x, accumulation dtype, method, options) with options
    (key, k, block, iterations) for a top-k method, else None.
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
    if method not in TRUNCATED_METHODS:
        return x, acc, method, None
    m = min(n, d)
    k = DEFAULT_TOP_K if max_eigenvalues is None else max_eigenvalues
    if k > m:
        raise ValueError(f"max_eigenvalues must be <= min(n, D) = {m} for method="
                         f"{method!r}, got {k}")
    q = DEFAULT_ITERATIONS[method] if iterations is None else iterations
    check_int("iterations", q, 0)
    krylov = method == "block_krylov"
    if oversampling is None:                        # the defaults, shrunk to fit m
        block = min(default_krylov_block(k), m // (q + 1)) if krylov else min(2 * k, m)
    else:
        dim = k + check_int("oversampling", oversampling, 0)
        block = -(-dim // (q + 1)) if krylov else dim
    span = block * (q + 1) if krylov else block
    if not k <= span <= m:
        raise ValueError(
            f"oversampling: the subspace of method={method!r} has {span} dimensions "
            f"(max_eigenvalues {k} + oversampling, in blocks of {block}), more than "
            f"min(n, D) = {m}; lower oversampling, or use a full method")
    return x, acc, method, (prng_key(seed), k, block, q)


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


def _orthonormal_columns(v: jax.Array) -> jax.Array:
    """Orthonormal columns spanning those of v (m x b, m >= b).

    CholeskyQR2 (Fukaya et al. 2014; Yamamoto et al. 2015): twice
    Q <- Q R^-1 with R^T R = Q^T Q, a b x b Cholesky and two products, about
    4x cheaper than LAPACK's Householder QR (geqrf + orgqr) on XLA:CPU for
    2048 x 64. The second factor R_2 tells whether it worked: near I, the
    first pass left Q nearly orthonormal, and the second makes it
    orthonormal to round-off. CholeskyQR needs cond(v) below ~u^-1/2 (~3e3
    in float32); where it fails (||R_2 - I||_F >= 0.1 or non-finite, as for
    the round-off blocks of an exhausted Krylov space) Householder QR is
    used instead.
    """
    hi = jax.lax.Precision.HIGHEST
    eye = jnp.eye(v.shape[1], dtype=v.dtype)
    q = v
    for _ in range(2):
        r = jnp.linalg.cholesky(jnp.matmul(q.T, q, precision=hi))     # lower, R^T
        q = jnp.matmul(q, jax.scipy.linalg.solve_triangular(r, eye, lower=True).T,
                       precision=hi)
    # A sum, not a max: XLA:CPU's max may drop NaNs, a sum propagates them.
    ok = jnp.sum(jnp.square(r - eye)) < 1e-2
    return jax.lax.cond(ok, lambda: q, lambda: jnp.linalg.qr(v)[0])


def _block_krylov(cov: Callable, orth: Callable, mm: Callable, q: jax.Array,
                  iterations: int) -> tuple[jax.Array, jax.Array]:
    """(K, C K): the orthonormal block Krylov basis K = [Q_0 ... Q_q] of
    span{Q_0, C Q_0, ..., C^q Q_0} and its image, one product with C per block.

    K is kept twice, as columns and as rows, so that both products of the
    projection K (K^T y) are plain ones (no transposed operand); blocks not yet
    found are zero and project out nothing.
    """
    m, block = q.shape
    width = block * (iterations + 1)
    zeros = jnp.zeros((m, width), q.dtype)

    def step(i, carry):
        q, basis, basis_rows, images = carry
        basis = jax.lax.dynamic_update_slice(basis, q, (0, i * block))
        basis_rows = jax.lax.dynamic_update_slice(basis_rows, q.T, (i * block, 0))
        y = cov(q)
        images = jax.lax.dynamic_update_slice(images, y, (0, i * block))

        def project_out(v):
            return v - mm(basis, mm(basis_rows, v))

        def next_block():
            # Block Gram-Schmidt twice ("twice is enough" in float32). Where
            # the Krylov space is exhausted, y is round-off, and its
            # normalised remainder is not orthogonal to K (entries of K^T q
            # far above round-off, 10 u in RMS): clean it once more.
            q = orth(project_out(project_out(y)))
            leak = jnp.sum(jnp.square(mm(basis_rows, q)))
            clean = leak < width * block * (10 * jnp.finfo(q.dtype).eps) ** 2
            return jax.lax.cond(clean, lambda: q, lambda: orth(project_out(q)))
        q = jax.lax.cond(i < iterations, next_block, lambda: q)
        return q, basis, basis_rows, images

    _, basis, _, images = jax.lax.fori_loop(
        0, iterations + 1, step, (q, zeros, zeros.T, zeros))
    return basis, images


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 5, 6, 7))
def _top_eigenvalues(x: jax.Array, acc: jnp.dtype, center: bool, method: str,
                     key: jax.Array, k: int, block: int,
                     iterations: int) -> tuple[jax.Array, jax.Array]:
    """(top-k Ritz values, descending and >= 0; exact trace ||X_c||_F^2 / n)."""
    n, d = x.shape
    x = x.astype(acc)
    hi = jax.lax.Precision.HIGHEST
    mu = jnp.mean(x, axis=0) if center else jnp.zeros((d,), acc)
    # A = X_c (n x D) or X_c^T, so that C = A^T A / n is m x m, m = min(n, D).
    # X_c = X - 1 mu^T is applied, never stored: X_c v = X v - 1 (mu^T v) and
    # X_c^T u = X^T u - mu (1^T u). Both orientations are kept in memory, as
    # XLA:CPU's product with a transposed operand copies it every time; the
    # barrier keeps XLA from folding the one transposed copy back into the
    # products (measured 2x slower per product for 10000 x 2048 features).
    xt = jax.lax.optimization_barrier(jnp.transpose(x))
    ones = jnp.ones((n,), acc)
    if d > n:
        a, at, left, right = xt, x, mu, ones        # A = X_c^T = X^T - mu 1^T
    else:
        a, at, left, right = x, xt, ones, mu        # A = X_c = X - 1 mu^T

    def mm(u, v):
        return jnp.matmul(u, v, precision=hi)

    def cov(v):                                     # n C v, C never formed
        u = mm(a, v) - left[:, None] * mm(right[None, :], v)
        return mm(at, u) - right[:, None] * mm(left[None, :], u)

    orth = _orthonormal_columns
    q = orth(jax.random.normal(key, (a.shape[1], block), acc))
    if method != "block_krylov":                    # subspace iteration: K = Q
        q = jax.lax.fori_loop(0, iterations, lambda i, q: orth(cov(q)), q)
        basis, images = q, cov(q)
    else:
        basis, images = _block_krylov(cov, orth, mm, q, iterations)
    t = mm(basis.T, images) / n                     # K^T C K (Rayleigh-Ritz)
    ritz = jnp.linalg.eigvalsh((t + t.T) / 2)
    # Exact trace ||X_c||_F^2 / n, summed over the centred entries (one fused
    # pass; ||X||_F^2 - n ||mu||^2 would cancel in float32).
    total = jnp.sum(jnp.square(x - mu)) / n
    return _descending(ritz, k), total


def _spectrum(features_or_eigenvalues: ArrayLike, method: Method = "auto",
              max_eigenvalues: Optional[int] = None, **options
              ) -> tuple[jax.Array, jax.Array, bool]:
    """(eigenvalues descending, their total tr Sigma, whether top-k only).

    A 1-D input is taken as eigenvalues (any order); anything else as
    features. Full methods return every eigenvalue (``max_eigenvalues`` is
    left to the caller) and total = their sum; the top-k methods return k
    and the exact trace ||X_c||_F^2 / n.
    """
    a = as_array(features_or_eigenvalues)
    if a.ndim == 1:
        lam = _sorted_spectrum(a)
        return lam, jnp.sum(lam), False
    x, acc, method, opts = _check_spectrum_args(a, max_eigenvalues, True, method, None,
                                                **options)
    if opts is None:
        lam = _eigenspectrum(x, acc, True, method, None)
        return lam, jnp.sum(lam), False
    return (*_top_eigenvalues(x, acc, True, method, *opts), True)


def _check_full_method(method: Method) -> None:
    check_choice("method (this metric needs the whole spectrum)", method, _FULL_METHODS)


@jax.jit
def _sorted_spectrum(lam: jax.Array) -> jax.Array:
    lam = lam.astype(jnp.promote_types(lam.dtype, jnp.float32))
    return jnp.maximum(jnp.sort(lam)[::-1], 0)
