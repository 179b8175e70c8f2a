"""Uniform per-array quantisation and the dynamic bit-width rules of the seed
thesis, chapter 3 ("Speeding Up Distributed Learning", Sections 3.2-3.5 and
Algorithms 1 and 2).

Everything here is pure and jittable; the number of bits may be a traced
integer (it is computed in-graph from the entropy estimate), so one compiled
function serves every bit width.

Quantiser (Section 3.2, QUANTIZE of Algorithm 1, inverse in Algorithm 2)::

    delta = (w_max - w_min) / 2^N
    code  = clip(floor(2^N (w - w_min) / (w_max - w_min)), 0, 2^N - 1)
    w_hat = w_min + (code + 0.5) * delta          # bin centre

Two slips in the printed listings are *not* copied:

1. The printed QUANTIZE counts bins down from ``w_max``
   (``floor(2^N (w_max - w) / (w_max - w_min))``) while the decoder of
   Algorithm 2 reconstructs upward from ``w_min``; taken literally the pair
   mirrors every weight about the centre of the range. Here both directions
   count from ``w_min``: the encoder above and :func:`dequantize` are exact
   inverses up to half a bin.
2. In the printed formula ``w = w_min`` lands in bin ``2^N``, one past the
   last valid code (and with the corrected direction ``w = w_max`` would).
   Here the bin index is clipped to ``[0, 2^N - 1]``: the closed top edge
   ``w_max`` belongs to the last bin, whose centre is ``delta / 2`` away.

Guarantees (tested): every code is in ``[0, 2^N)``; every finite weight is
reconstructed within ``delta / 2`` (plus float32 rounding of a few ulps of
``max(|w_min|, |w_max|)``); a constant array (``w_max == w_min``) gets code 0
everywhere and is reconstructed exactly (``delta = 0``). The arithmetic is
done in float32 (bfloat16/float16 inputs are upcast); ``2^N`` scaling is exact,
so the only roundings are ``w - w_min`` and one division. Inputs are assumed
finite: the host-side :func:`neurojax.compress.compress_tree` rejects NaN/Inf.

Bit-width rules:

* entropy rule (Section 3.5, Algorithm 1 lines 4-5), the one the thesis uses:
  ``H`` is the Shannon entropy (bits) of the ``2^M``-bin histogram of a
  random fraction ``F`` of the array, quantised with the array's own
  ``w_min, w_max`` to ``M`` bits (ESTIMATE ENTROPY), and ``N = H + c``.
  The subset (``max(1, round(F |W|))`` weights, without replacement) is
  stratified by default -- one uniformly drawn weight per contiguous stratum
  of ``|W| / k`` weights, ``O(k)`` work -- because a uniform ``k``-subset
  (``sampler="uniform"``) permutes the whole array (1.5 s for a 2.4M-weight
  layer on CPU); both include every weight with probability ~``F``.
  ``H`` is real, so it must be rounded; we take

      N = clip(ceil(H + c - 1e-6), min_bits, max_bits)

  ``ceil`` makes ``N >= H + c`` (the floor ``c`` is a true floor on the
  bits *above* the entropy); the ``1e-6`` slack keeps a histogram that is
  exactly uniform (``H = M`` up to float error) at ``c + M`` instead of
  ``c + M + 1``. Since ``0 <= H <= M``, ``N`` is in ``[c, c + M]`` before
  the clip (the thesis's "floor" and "ceiling", e.g. "9:5" for M=4, c=5);
  the clip to ``[1, 16]`` only acts for ``c = 0`` or ``c + M > 16`` and
  keeps codes in an unsigned 16-bit alphabet (the codec's limit; the thesis
  sees no accuracy gain past 8-10 bits, Fig. 3.1).
* RMS-gradient rule (Section 3.3), kept as an option:
  ``N = log2(G + c0) + c1`` with ``G`` the RMS of dLoss/dW, rounded the
  same way. With ``c0 = 1`` (the thesis's choice) ``N >= c1``.

Defaults follow Section 3.8: ``F = 0.03``, ``M = 4``, ``c = 5`` (the
"sweet spot" it settles on, 3.55 bits/parameter after Huffman coding);
``c = 6`` (3.78 bits/parameter, accuracy above baseline) is the other
setting the thesis recommends (Section 3.6).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice

DEFAULT_FRACTION = 0.03   # F, Section 3.8 "Estimating F"
DEFAULT_PRELIM_BITS = 4   # M, Section 3.8
DEFAULT_FLOOR = 5         # c, Section 3.8 ("we establish c = 5, M = 4")
MIN_BITS = 1
MAX_BITS = 16             # codes fit an unsigned 16-bit alphabet
ROUNDING_SLACK = 1e-6     # N = ceil(H + c - slack)


# ----------------------------------------------------------------- validation

def _check_static_bits(value, name, lo=MIN_BITS, hi=MAX_BITS):
    """Range-check a bit count when it is a Python/NumPy integer (a traced
    value is the caller's responsibility; it is clipped, never trusted)."""
    if isinstance(value, jax.Array):   # traced or device value
        return
    arr = np.asarray(value)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= int(arr) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {int(arr)}")


def _check_fraction(fraction):
    if not isinstance(fraction, numbers.Real) or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction (F) must be a float in (0, 1], got {fraction!r}")


def _as_float(w):
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"w must be a floating-point array, got dtype {w.dtype}")
    return w.astype(jnp.float32) if w.dtype != jnp.float64 else w


# ----------------------------------------------------------------- quantiser

def _two_to_the(bits):
    """``2^N`` as an exact integer (XLA lowers ``exp2`` of a traced value to
    ``exp(N ln 2)``, which is not exact)."""
    return jnp.left_shift(jnp.int32(1), bits)


def value_range(w):
    """``(w_min, w_max)`` of an array (Algorithm 1 line 3), as float32 scalars.

    An empty array gives ``(0, 0)``.
    """
    w = _as_float(w)
    if w.size == 0:
        zero = jnp.zeros((), w.dtype)
        return zero, zero
    return jnp.min(w), jnp.max(w)


def quantize(w, num_bits, w_min=None, w_max=None):
    """Uniform ``num_bits``-bit quantisation of ``w`` over ``[w_min, w_max]``.

    ``code = clip(floor(2^N (w - w_min) / (w_max - w_min)), 0, 2^N - 1)``
    (QUANTIZE of Algorithm 1, counting up from ``w_min``; see the module
    docstring for the two corrected slips). ``w_min``/``w_max`` default to the
    array's own range. Values outside the range are clipped to the end bins;
    ``w_max == w_min`` gives code 0 everywhere.

    Args:
      w: floating array, any shape (including 0-size).
      num_bits: ``N`` in ``[1, 16]``; a Python int (checked) or a traced int.
      w_min, w_max: the range; default ``value_range(w)``.

    Returns:
      int32 array of ``w``'s shape with every code in ``[0, 2^N)``.
    """
    _check_static_bits(num_bits, "num_bits")
    w = _as_float(w)
    if w_min is None or w_max is None:
        lo, hi = value_range(w)
        w_min = lo if w_min is None else w_min
        w_max = hi if w_max is None else w_max
    w_min = jnp.asarray(w_min, w.dtype)
    w_max = jnp.asarray(w_max, w.dtype)
    bits = jnp.clip(jnp.asarray(num_bits, jnp.int32), MIN_BITS, MAX_BITS)
    n_bins = _two_to_the(bits).astype(w.dtype)          # exact 2^N
    span = w_max - w_min
    safe_span = jnp.where(span > 0, span, jnp.ones_like(span))
    t = ((w - w_min) * n_bins) / safe_span              # 2^N (w - w_min) / span
    code = jnp.clip(jnp.floor(t), 0, n_bins - 1)
    code = jnp.where(span > 0, code, jnp.zeros_like(code))
    return code.astype(jnp.int32)


def dequantize(codes, num_bits, w_min, w_max, dtype=jnp.float32):
    """Bin centres: ``w_hat = w_min + (code + 0.5) (w_max - w_min) / 2^N``
    (Algorithm 2 line 4), in float32. ``w_max == w_min`` gives ``w_min``
    exactly. XLA may contract the final multiply-add into one FMA, so this
    in-graph value can differ from the host decoder's
    (:func:`dequantize_numpy`) by one float32 ulp; both are within half a bin.
    The *codes* of :func:`quantize` have no such ambiguity (subtract,
    multiply by 2^N, divide) and equal the NumPy computation exactly."""
    _check_static_bits(num_bits, "num_bits")
    bits = jnp.clip(jnp.asarray(num_bits, jnp.int32), MIN_BITS, MAX_BITS)
    w_min = jnp.asarray(w_min, jnp.float32)
    w_max = jnp.asarray(w_max, jnp.float32)
    delta = (w_max - w_min) / _two_to_the(bits).astype(jnp.float32)
    codes = jnp.asarray(codes).astype(jnp.float32)
    return (w_min + (codes + 0.5) * delta).astype(dtype)


def dequantize_numpy(codes, num_bits, w_min, w_max):
    """Host (NumPy) twin of :func:`dequantize` (float32, same operation
    order, no FMA); used by the decoder so that decompression needs no
    device."""
    n_bins = np.float32(2.0 ** int(num_bits))
    w_min = np.float32(w_min)
    delta = (np.float32(w_max) - w_min) / n_bins
    with np.errstate(over="ignore", invalid="ignore"):
        return w_min + (np.asarray(codes, np.float32) + np.float32(0.5)) * delta


def bin_width(num_bits, w_min, w_max):
    """``delta = (w_max - w_min) / 2^N``; reconstruction error <= delta / 2."""
    return (jnp.asarray(w_max, jnp.float32) - jnp.asarray(w_min, jnp.float32)) / _two_to_the(
        jnp.asarray(num_bits, jnp.int32)).astype(jnp.float32)


# ----------------------------------------------------------------- entropy

def histogram(codes, num_symbols: int):
    """Counts of each code in ``[0, num_symbols)`` (ESTIMATE DISTRIBUTION
    before normalisation). ``num_symbols`` must be static."""
    codes = jnp.asarray(codes).reshape(-1)
    return jnp.bincount(codes, length=int(num_symbols))


def entropy_bits(counts):
    """Shannon entropy in bits of a histogram: ``H = -sum p log2 p`` with
    ``p = h / sum h`` and ``0 log 0 = 0``. An all-zero histogram gives 0."""
    counts = jnp.asarray(counts, jnp.float32)
    total = jnp.sum(counts)
    p = counts / jnp.where(total > 0, total, 1.0)
    logp = jnp.log2(jnp.where(p > 0, p, 1.0))
    return jnp.maximum(-jnp.sum(p * logp), 0.0)


def sample_size(size: int, fraction: float) -> int:
    """Static size of the random subset: ``max(1, round(F |W|))`` (0 for an
    empty array), never more than ``|W|``."""
    if size == 0:
        return 0
    return int(min(size, max(1, round(fraction * size))))


SAMPLERS = ("stratified", "uniform")


def stratified_indices(uniforms, size: int):
    """Stratified sample from uniforms ``u`` in [0, 1) of length ``k``:
    index ``j`` is ``lo_j + floor(u_j (hi_j - lo_j))`` in stratum
    ``[lo_j, hi_j) = [floor(j size / k), floor((j + 1) size / k))``. The
    strata are disjoint, so the ``k`` indices are distinct."""
    k = uniforms.shape[0]
    j = jnp.arange(k)
    lo = (j * size) // k
    width = ((j + 1) * size) // k - lo                    # >= 1 since k <= size
    off = jnp.floor(uniforms * width.astype(jnp.float32)).astype(j.dtype)
    return lo + jnp.clip(off, 0, width - 1)


def sample_indices(key, size: int, fraction: float, sampler: str = "stratified"):
    """Indices of the random subset of ``sample_size(size, F)`` weights for
    the entropy estimate, drawn without replacement.

    * ``"stratified"`` (default): split ``[0, size)`` into ``k`` contiguous
      strata of (almost) equal size and draw one index uniformly from each
      (:func:`stratified_indices`): distinct indices, every weight included
      with probability ~``F``, ``O(k)`` work.
    * ``"uniform"``: a uniformly random ``k``-subset
      (``jax.random.choice(replace=False)``), which permutes the whole array
      (about 1.5 s for a 2.4M-weight layer on CPU).
    """
    check_choice("sampler", sampler, SAMPLERS)
    k = sample_size(size, fraction)
    if k == size:
        return jnp.arange(size)
    if sampler == "uniform":
        return jax.random.choice(key, size, shape=(k,), replace=False)
    return stratified_indices(jax.random.uniform(key, (k,)), size)


def estimate_entropy(w, key, *, fraction: float = DEFAULT_FRACTION,
                     prelim_bits: int = DEFAULT_PRELIM_BITS, w_min=None, w_max=None,
                     sampler: str = "stratified", uniforms=None):
    """ESTIMATE ENTROPY of Algorithm 1 (Section 3.5): entropy in bits of the
    ``2^M``-bin histogram of a random subset of ``sample_size(|W|, F)``
    weights (without replacement, see :func:`sample_indices`), quantised to
    ``M`` bits over the *whole* array's ``[w_min, w_max]``.

    ``0 <= H <= M``. With ``fraction=1`` it is the exact entropy of the M-bit
    quantisation of the array. An empty array gives 0.

    Args:
      w: floating array.
      key: a JAX PRNG key (typed or raw uint32).
      fraction: ``F`` in (0, 1]; thesis default 0.03.
      prelim_bits: ``M`` in [1, 16]; thesis default 4.
      w_min, w_max: the range; default the array's own.
      sampler: ``"stratified"`` or ``"uniform"`` (see :func:`sample_indices`).
      uniforms: optional pre-drawn ``U[0, 1)`` array of length
        ``sample_size(|W|, F)`` for the stratified sampler (``key`` is then
        unused); lets a caller draw the randomness of many arrays at once.
    """
    _check_fraction(fraction)
    _check_static_bits(prelim_bits, "prelim_bits")
    w = _as_float(w).reshape(-1)
    if w.size == 0:
        return jnp.zeros((), jnp.float32)
    if w_min is None or w_max is None:
        lo, hi = value_range(w)
        w_min = lo if w_min is None else w_min
        w_max = hi if w_max is None else w_max
    k = sample_size(w.size, fraction)
    if k < w.size:
        if uniforms is not None and sampler == "stratified":
            if uniforms.shape != (k,):
                raise ValueError(f"uniforms must have shape ({k},), got {uniforms.shape}")
            w = w[stratified_indices(uniforms, w.size)]
        else:
            w = w[sample_indices(key, w.size, fraction, sampler)]
    codes = quantize(w, prelim_bits, w_min, w_max)
    return entropy_bits(histogram(codes, 2 ** int(prelim_bits)))


# ----------------------------------------------------------------- bit widths

def _round_bits(x, min_bits, max_bits):
    return jnp.clip(jnp.ceil(x - ROUNDING_SLACK), min_bits, max_bits).astype(jnp.int32)


def bits_from_entropy(entropy, floor: float = DEFAULT_FLOOR, *,
                      min_bits: int = MIN_BITS, max_bits: int = MAX_BITS):
    """Dynamic bit width ``N = H + c`` (Section 3.5, Algorithm 1 line 5),
    rounded up: ``N = clip(ceil(H + c - 1e-6), min_bits, max_bits)`` (int32).
    See the module docstring for why ``ceil`` and the clip."""
    _check_bounds(min_bits, max_bits)
    if not isinstance(floor, (numbers.Real, jax.Array)) or (
            isinstance(floor, numbers.Real) and floor < 0):
        raise ValueError(f"floor (c) must be a number >= 0, got {floor!r}")
    return _round_bits(jnp.asarray(entropy, jnp.float32) + floor, min_bits, max_bits)


def bits_from_gradient_rms(grad_rms, *, c0: float = 1.0, c1: float = 6.0,
                           min_bits: int = MIN_BITS, max_bits: int = MAX_BITS):
    """Section 3.3's first rule: ``N = log2(G + c0) + c1`` with ``G`` the RMS
    of the loss gradient w.r.t. the layer's weights, rounded as in
    :func:`bits_from_entropy`. ``c0 = 1`` (the thesis) keeps ``N >= c1``;
    the thesis gives no value for ``c1`` (a floor on the bits) -- the default
    6 matches the entropy rule's recommended floor ``c = 6``."""
    _check_bounds(min_bits, max_bits)
    if isinstance(c0, numbers.Real) and c0 <= 0:
        raise ValueError(f"c0 must be > 0 so that log2(G + c0) is finite, got {c0!r}")
    g = jnp.asarray(grad_rms, jnp.float32)
    return _round_bits(jnp.log2(jnp.maximum(g, 0.0) + c0) + c1, min_bits, max_bits)


def rms(x):
    """Root mean square ``sqrt(mean(x^2))`` of an array (``G`` for
    :func:`bits_from_gradient_rms`); 0 for an empty array."""
    x = jnp.asarray(x, jnp.float32)
    if x.size == 0:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def _check_bounds(min_bits, max_bits):
    _check_static_bits(min_bits, "min_bits")
    _check_static_bits(max_bits, "max_bits")
    if int(min_bits) > int(max_bits):
        raise ValueError(f"min_bits ({min_bits}) must be <= max_bits ({max_bits})")


class Quantized(NamedTuple):
    """One array after Algorithm 1 lines 3-6 (before entropy coding)."""
    codes: jax.Array       # int32, w's shape, in [0, 2^num_bits)
    num_bits: jax.Array    # int32 scalar N
    w_min: jax.Array       # float32 scalar
    w_max: jax.Array       # float32 scalar
    entropy: jax.Array     # float32 scalar H (M-bit estimate from a fraction F)


def dynamic_quantize(w, key, *, fraction: float = DEFAULT_FRACTION,
                     prelim_bits: int = DEFAULT_PRELIM_BITS, floor: float = DEFAULT_FLOOR,
                     min_bits: int = MIN_BITS, max_bits: int = MAX_BITS,
                     sampler: str = "stratified", uniforms=None) -> Quantized:
    """Algorithm 1 lines 3-6 for one array: range, entropy estimate ``H``
    from a fraction ``F`` at ``M`` bits, ``N = ceil(H + c)`` (clipped), and
    the ``N``-bit codes. Jittable (``N`` is traced; the codes are int32)."""
    w = _as_float(w)
    w_min, w_max = value_range(w)
    h = estimate_entropy(w, key, fraction=fraction, prelim_bits=prelim_bits,
                         w_min=w_min, w_max=w_max, sampler=sampler, uniforms=uniforms)
    n = bits_from_entropy(h, floor, min_bits=min_bits, max_bits=max_bits)
    return Quantized(quantize(w, n, w_min, w_max), n, w_min, w_max, h)


def compression_ratio(bits_per_parameter, original_bits: int = 32) -> float:
    """``32 / bits`` (Section 3.8: 6.8 -> 4.70, 3.55 -> 9.01, 3.78 -> 8.47)."""
    if bits_per_parameter <= 0:
        raise ValueError(f"bits_per_parameter must be > 0, got {bits_per_parameter!r}")
    return original_bits / float(bits_per_parameter)


__all__ = [
    "DEFAULT_FRACTION", "DEFAULT_PRELIM_BITS", "DEFAULT_FLOOR", "MIN_BITS", "MAX_BITS",
    "value_range", "quantize", "dequantize", "dequantize_numpy", "bin_width", "histogram",
    "entropy_bits", "sample_size", "SAMPLERS", "sample_indices", "stratified_indices", "estimate_entropy", "bits_from_entropy",
    "bits_from_gradient_rms", "rms", "Quantized", "dynamic_quantize", "compression_ratio",
]
