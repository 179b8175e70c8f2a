"""Huffman and ANS codecs: exact round trips (hypothesis), Huffman optimality
against a heapq reference written here, bits vs entropy, corruption."""
import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurojax.compress import codec

METHODS = ["huffman", "ans"]


def reference_huffman_cost(counts):
    """Total Huffman code length sum_s count_s l_s = sum of the weights of
    all internal nodes of the merge tree (textbook heapq construction)."""
    heap = [c for c in counts if c > 0]
    if len(heap) < 2:
        return 0
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


def entropy(counts):
    p = np.asarray(counts, np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


@st.composite
def code_arrays(draw):
    bits = draw(st.integers(1, 16))
    shape = tuple(draw(st.lists(st.integers(0, 7), min_size=0, max_size=3)))
    kind = draw(st.sampled_from(["uniform", "single", "geometric", "two"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    m = 1 << bits
    size = int(np.prod(shape, dtype=np.int64))
    if kind == "uniform":
        codes = rng.integers(0, m, size)
    elif kind == "single":
        codes = np.full(size, rng.integers(0, m))
    elif kind == "geometric":
        codes = np.minimum(rng.geometric(0.3, size) - 1 + rng.integers(0, m), m - 1)
    else:
        codes = rng.choice([0, m - 1], size, p=[0.9, 0.1])
    dtype = draw(st.sampled_from([np.int32, np.int64, np.uint16]))
    return codes.reshape(shape).astype(dtype), m


@settings(max_examples=60, deadline=None)
@given(data=code_arrays(), method=st.sampled_from(METHODS),
       block_size=st.sampled_from([None, 1, 2, 3, 64]))
def test_round_trip_exact(data, method, block_size):
    codes, m = data
    blob = codec.encode(codes, m, method=method,
                        block_size=block_size if method == "huffman" else None)
    out = codec.decode(blob)
    assert out.dtype == np.int32 and out.shape == codes.shape
    np.testing.assert_array_equal(out, codes)
    meta = codec.info(blob)
    assert meta.shape == codes.shape and meta.num_symbols == m and meta.method == method
    if np.unique(codes).size <= 1:
        assert meta.payload_bits == 0          # one symbol (or none): the table says it all


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 1000), min_size=2, max_size=40).filter(
    lambda c: sum(x > 0 for x in c) >= 2))
def test_huffman_lengths_optimal_and_complete(counts):
    lengths = codec.huffman_code_lengths(np.array(counts)).astype(np.int64)
    c = np.array(counts)
    assert np.all((lengths > 0) == (c > 0))
    total = c.sum()
    # Huffman is optimal: same expected length as the reference construction.
    assert abs((c * lengths).sum() / total - reference_huffman_cost(counts) / total) < 1e-9
    # Complete prefix code (Kraft sum 1) and within [H, H + 1).
    assert sum(2.0 ** -l for l in lengths[lengths > 0]) == 1.0
    mean_len = (c * lengths).sum() / total
    assert entropy(c) - 1e-12 <= mean_len < entropy(c) + 1


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(0, 50), min_size=2, max_size=12).filter(
    lambda c: sum(x > 0 for x in c) >= 2))
def test_canonical_codewords_are_prefix_free(counts):
    lengths = codec.huffman_code_lengths(np.array(counts))
    words = codec.canonical_codewords(lengths)
    strings = [format(int(w), f"0{int(l)}b") for w, l in zip(words, lengths) if l]
    assert len(set(strings)) == len(strings)
    for a, b in itertools.permutations(strings, 2):
        assert not b.startswith(a)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), bits=st.integers(2, 10), n=st.integers(1, 3000))
def test_huffman_bits_within_entropy_plus_one(seed, bits, n):
    rng = np.random.default_rng(seed)
    codes = np.minimum(rng.geometric(rng.uniform(0.05, 0.9), n) - 1, (1 << bits) - 1)
    counts = np.bincount(codes, minlength=1 << bits)
    meta = codec.info(codec.encode(codes, 1 << bits))
    h = entropy(counts)
    if np.count_nonzero(counts) == 1:
        assert meta.payload_bits == 0
    else:
        assert h - 1e-9 <= meta.payload_bits / n < h + 1


def test_ans_approaches_entropy_where_huffman_cannot():
    rng = np.random.default_rng(0)
    codes = rng.choice(4, 200_000, p=[0.95, 0.03, 0.015, 0.005])
    h = codec.entropy_of_codes(codes)                                 # ~0.34 bits
    huff = codec.info(codec.encode(codes, 4)).payload_bits / codes.size
    ans = codec.info(codec.encode(codes, 4, method="ans")).payload_bits / codes.size
    assert huff >= 1.0                                                # >= 1 bit per symbol
    assert h <= ans < 1.01 * h + 1e-3
    np.testing.assert_array_equal(codec.decode(codec.encode(codes, 4, method="ans")), codes)


def test_length_limit_on_fibonacci_counts():
    fib = [1, 1]
    while len(fib) < 26:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib)
    assert reference_huffman_cost(fib) > 0
    unlimited = codec.huffman_code_lengths(counts, max_length=32)
    assert unlimited.max() == 25                              # Fibonacci: depth n - 1
    limited = codec.huffman_code_lengths(counts)
    assert limited.max() <= codec.MAX_CODE_LENGTH
    assert sum(2.0 ** -int(l) for l in limited) == 1.0
    codes = np.random.default_rng(0).permutation(np.repeat(np.arange(26), counts))
    np.testing.assert_array_equal(codec.decode(codec.encode(codes, 32)), codes)


def test_large_alphabet_and_long_stream():
    rng = np.random.default_rng(1)
    codes = np.clip(rng.normal(32768, 3000, 300_000), 0, 65535).astype(np.int64)
    for method in METHODS:
        np.testing.assert_array_equal(codec.decode(codec.encode(codes, 65536, method=method)),
                                      codes)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 40, (17, 9)) % 23
    return {m: codec.encode(codes, 64, method=m, block_size=16 if m == "huffman" else None)
            for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_truncated_bytes_raise(blobs, method):
    blob = blobs[method]
    for cut in range(len(blob)):
        with pytest.raises(ValueError, match="truncated|corrupt"):
            codec.decode(blob[:cut])
    with pytest.raises(ValueError, match="trailing"):
        codec.decode(blob + b"\0")


@settings(max_examples=50, deadline=None)
@given(pos=st.integers(0, 10 ** 6), flip=st.integers(1, 255), method=st.sampled_from(METHODS))
def test_corrupted_bytes_raise(blobs, pos, flip, method):
    blob = bytearray(blobs[method])
    blob[pos % len(blob)] ^= flip
    with pytest.raises(ValueError):
        codec.decode(bytes(blob))


@pytest.mark.parametrize("args,kwargs,field", [
    ((np.array([0.5]), 4), {}, "codes must be an integer"),
    ((np.array([4]), 4), {}, "codes must lie"),
    ((np.array([-1]), 4), {}, "codes must lie"),
    ((np.array([0]), 0), {}, "num_symbols"),
    ((np.array([0]), 65537), {}, "num_symbols"),
    ((np.array([0]), 4), {"method": "lzw"}, "method"),
    ((np.array([0, 1]), 4), {"block_size": 0}, "block_size"),
    ((np.array([0, 1]), 4), {"method": "ans", "block_size": 8}, "block_size"),
])
def test_bad_arguments_raise(args, kwargs, field):
    with pytest.raises(ValueError, match=field):
        codec.encode(*args, **kwargs)
    with pytest.raises(ValueError, match="bytes"):
        codec.decode("not bytes")
