"""Quantiser and bit-width rules (seed thesis ch. 3, Algorithms 1-2) against
NumPy references written here."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurojax.compress import quantize as q

PAD = 64   # hypothesis arrays are padded to one length: one jit compilation


def np_quantize(w, n, w_min, w_max):
    """Reference: float32, code = clip(floor(2^N (w - w_min) / span), 0, 2^N - 1)."""
    w = np.asarray(w, np.float32)
    w_min, w_max = np.float32(w_min), np.float32(w_max)
    span = w_max - w_min
    if span <= 0:
        return np.zeros(w.shape, np.int32)
    t = ((w - w_min) * np.float32(2.0 ** n)) / span
    return np.clip(np.floor(t), 0, 2 ** n - 1).astype(np.int32)


def np_entropy(counts):
    p = np.asarray(counts, np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


_quantize_jit = jax.jit(q.quantize)
_dequantize_jit = jax.jit(q.dequantize)

finite = st.floats(-1e3, 1e3, width=32, allow_subnormal=False).map(
    lambda x: 0.0 if abs(x) < 1e-30 else x)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=PAD), n=st.integers(1, 16))
def test_quantize_properties_and_jit_matches_numpy(values, n):
    w = np.asarray(values, np.float32)
    w_min, w_max = w.min(), w.max()
    padded = np.concatenate([w, np.full(PAD - w.size, w_min, np.float32)])
    codes = np.asarray(_quantize_jit(padded, n, w_min, w_max))[:w.size]
    np.testing.assert_array_equal(codes, np_quantize(w, n, w_min, w_max))
    assert codes.min() >= 0 and codes.max() < 2 ** n
    rec = q.dequantize_numpy(codes, n, w_min, w_max)
    delta = (float(w_max) - float(w_min)) / 2 ** n
    tol = 4 * np.finfo(np.float32).eps * max(abs(float(w_min)), abs(float(w_max)))
    # In-graph reconstruction: equal up to the final rounding (XLA may fuse an FMA).
    np.testing.assert_allclose(np.asarray(_dequantize_jit(codes, n, w_min, w_max)), rec,
                               rtol=0, atol=tol)
    err = np.abs(rec.astype(np.float64) - w.astype(np.float64))
    assert err.max() <= delta / 2 + tol
    if w_max > w_min:   # counting up from w_min; the top edge is in the last bin
        assert codes[w.argmin()] == 0 and codes[w.argmax()] == 2 ** n - 1
        order = np.argsort(w, kind="stable")
        assert np.all(np.diff(codes[order]) >= 0)


@pytest.mark.parametrize("n", [1, 9, 16])
def test_constant_array_is_exact(n):
    w = jnp.full((3, 4), -2.5)
    codes = q.quantize(w, n)
    assert codes.dtype == jnp.int32 and not np.any(np.asarray(codes))
    np.testing.assert_array_equal(q.dequantize(codes, n, -2.5, -2.5), np.full((3, 4), -2.5))


@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), (), (2, 3, 4)])
def test_shapes_preserved(shape):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    codes = q.quantize(w, 5)
    assert codes.shape == shape
    assert q.dequantize(codes, 5, -1.0, 1.0).shape == shape


def test_range_and_traced_bits():
    w = jnp.linspace(-1.0, 3.0, 101)
    lo, hi = q.value_range(w)
    assert float(lo) == -1.0 and float(hi) == 3.0
    per_n = [np.asarray(_quantize_jit(w, n, lo, hi)) for n in (2, 7)]
    np.testing.assert_array_equal(per_n[0], np_quantize(w, 2, -1.0, 3.0))
    np.testing.assert_array_equal(per_n[1], np_quantize(w, 7, -1.0, 3.0))
    assert float(q.bin_width(3, -1.0, 3.0)) == 0.5


@pytest.mark.parametrize("dist,m", [("normal", 4), ("laplace", 6), ("uniform", 3), ("two", 4)])
def test_entropy_estimate_full_sample_equals_numpy_histogram(dist, m):
    rng = np.random.default_rng(1)
    w = {"normal": rng.standard_normal(5000), "laplace": rng.laplace(size=5000),
         "uniform": rng.uniform(size=5000), "two": rng.choice([-1.0, 2.0], 5000)}[dist]
    w = w.astype(np.float32)
    h = float(q.estimate_entropy(w, jax.random.key(0), fraction=1.0, prelim_bits=m))
    ref = np_entropy(np.bincount(np_quantize(w, m, w.min(), w.max()), minlength=2 ** m))
    assert abs(h - ref) < 1e-5 and 0.0 <= h <= m


def test_entropy_estimate_from_a_fraction_is_close():
    @jax.jit
    def estimates(w, key):
        return [q.estimate_entropy(w, key, fraction=1.0)] + [
            q.estimate_entropy(w, key, sampler=s) for s in q.SAMPLERS]

    full, *sampled = estimates(jax.random.normal(jax.random.key(3), (200_000,)),
                               jax.random.key(4))
    for est in sampled:                   # 3% of 200k: 6000 weights
        assert abs(float(est) - float(full)) < 0.05


def test_stratified_sample_is_without_replacement():
    size, frac = 1003, 0.1
    idx = np.asarray(q.sample_indices(jax.random.key(0), size, frac))
    k = q.sample_size(size, frac)
    assert idx.size == k == 100 and np.unique(idx).size == k
    strata = (np.arange(k) * size) // k
    assert np.all(idx >= strata) and np.all(idx < np.append(strata[1:], size))
    assert q.sample_size(0, 0.03) == 0 and q.sample_size(10, 0.03) == 1


def test_entropy_of_empty_and_constant():
    assert float(q.estimate_entropy(jnp.zeros((0,)), jax.random.key(0))) == 0.0
    assert float(q.estimate_entropy(jnp.ones(100), jax.random.key(0), fraction=1.0)) == 0.0
    assert float(q.entropy_bits(jnp.zeros(4))) == 0.0


def test_bits_from_entropy_rounds_up():
    assert int(q.bits_from_entropy(0.0, 5)) == 5
    assert int(q.bits_from_entropy(3.2, 5)) == 9          # ceil(8.2)
    assert int(q.bits_from_entropy(3.0, 5)) == 8          # integers stay
    uniform = q.entropy_bits(jnp.ones(16))                # H = M = 4 up to float error
    assert int(q.bits_from_entropy(uniform, 5)) == 9      # the "9:5" ceiling
    assert int(q.bits_from_entropy(3.5, 0)) == 4
    assert int(q.bits_from_entropy(0.0, 0)) == 1          # clip to >= 1 bit
    assert int(q.bits_from_entropy(15.0, 6)) == 16        # clip to <= 16 bits
    hs = jnp.linspace(0.0, 4.0, 41)
    n = jax.jit(jax.vmap(lambda h: q.bits_from_entropy(h, 6)))(hs)
    assert np.all(np.asarray(n) >= np.asarray(hs) + 6 - 1e-6)
    assert np.all(np.asarray(n) < np.asarray(hs) + 7)


def test_bits_from_gradient_rms():
    assert int(q.bits_from_gradient_rms(0.0, c1=6)) == 6  # c0 = 1 keeps N >= c1
    assert int(q.bits_from_gradient_rms(3.0, c1=6)) == 8  # log2(4) + 6
    assert int(q.bits_from_gradient_rms(2.0, c1=5)) == math.ceil(math.log2(3) + 5)
    g = float(q.rms(jnp.array([3.0, -4.0])))
    assert abs(g - math.sqrt(12.5)) < 1e-6


def test_dynamic_quantize_matches_numpy_algorithm_1():
    w = np.asarray(jax.random.normal(jax.random.key(0), (40, 30)))
    key = jax.random.key(1)
    got = jax.jit(q.dynamic_quantize)(w, key)
    w_min, w_max = w.min(), w.max()
    assert float(got.w_min) == w_min and float(got.w_max) == w_max
    idx = np.asarray(q.sample_indices(key, w.size, q.DEFAULT_FRACTION))
    assert idx.size == 36                                     # round(0.03 * 1200)
    h = np_entropy(np.bincount(np_quantize(w.reshape(-1)[idx], 4, w_min, w_max),
                               minlength=16))
    assert abs(float(got.entropy) - h) < 1e-5
    assert int(got.num_bits) == math.ceil(h + 5)
    np.testing.assert_array_equal(got.codes, np_quantize(w, math.ceil(h + 5), w_min, w_max))
    assert (q.DEFAULT_FRACTION, q.DEFAULT_PRELIM_BITS, q.DEFAULT_FLOOR) == (0.03, 4, 5)


def test_thesis_compression_ratios():
    for bits, ratio in [(6.8, 4.70), (3.55, 9.01), (3.78, 8.47)]:
        assert abs(q.compression_ratio(bits) - ratio) < 0.01   # 32/6.8 = 4.706


@pytest.mark.parametrize("call,field", [
    (lambda: q.quantize(jnp.ones(3), 0), "num_bits"),
    (lambda: q.quantize(jnp.ones(3), 17), "num_bits"),
    (lambda: q.quantize(jnp.ones(3, jnp.int32), 4), "w must"),
    (lambda: q.estimate_entropy(jnp.ones(3), None, fraction=0.0), "fraction"),
    (lambda: q.estimate_entropy(jnp.ones(3), None, fraction=1.5), "fraction"),
    (lambda: q.estimate_entropy(jnp.ones(3), None, prelim_bits=0), "prelim_bits"),
    (lambda: q.bits_from_entropy(1.0, -1), "floor"),
    (lambda: q.bits_from_entropy(1.0, 5, min_bits=8, max_bits=4), "min_bits"),
    (lambda: q.bits_from_gradient_rms(1.0, c0=0.0), "c0"),
    (lambda: q.sample_indices(None, 10, 0.5, "bad"), "sampler"),
    (lambda: q.compression_ratio(0.0), "bits_per_parameter"),
])
def test_bad_arguments_raise(call, field):
    with pytest.raises(ValueError, match=field):
        call()
