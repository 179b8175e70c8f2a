"""Huffman and ANS codecs: exact round trips (hypothesis), Huffman optimality
against a heapq reference written here, bits vs entropy, corruption."""
import heapq
import itertools
import struct
import zlib

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


# ------------------------------------------------------------------ corruption behind the CRC
# The byte format, written out here (not read from codec): header "<4sBBBBQ"
# (magic, version, method, ndim, reserved, total length), the shape as ndim
# "<Q", "<I" num_symbols, "<I" table length + table (one itemsize byte, then
# the zlib'd little-endian per-symbol table), "<I" index length + block index
# ("<IIQB" block_size, nblocks, base, width, then the block lengths minus base
# packed MSB-first at that width), "<QQ" bit count and payload length, the
# payload, and a CRC-32 of everything before it. A corrupted field is
# re-framed with a valid CRC, so the check behind the CRC has to catch it.

_HEAD = struct.Struct("<4sBBBBQ")


def _fields(blob: bytes) -> dict:
    _, _, method, ndim, _, total = _HEAD.unpack_from(blob)
    assert total == len(blob)
    pos = _HEAD.size

    def take(fmt):
        nonlocal pos
        out = struct.unpack_from(fmt, blob, pos)
        pos += struct.calcsize(fmt)
        return out

    def take_bytes(n):
        nonlocal pos
        pos += n
        return blob[pos - n:pos]

    f = {"method": method, "shape": take(f"<{ndim}Q")}
    (f["num_symbols"],) = take("<I")
    (tlen,) = take("<I")
    table = take_bytes(tlen)
    f["itemsize"] = table[0]
    f["table"] = np.frombuffer(zlib.decompress(table[1:]), f"<u{table[0]}").astype(np.int64)
    (alen,) = take("<I")
    aux = take_bytes(alen)
    if alen:
        f["block_size"], f["nblocks"], f["base"], f["width"] = struct.unpack_from("<IIQB", aux)
        f["index"] = aux[struct.calcsize("<IIQB"):]
    f["total_bits"], plen = take("<QQ")
    f["payload"] = take_bytes(plen)
    assert pos == len(blob) - 4
    assert struct.unpack("<I", blob[-4:])[0] == zlib.crc32(blob[:-4])
    return f


def _package(f: dict) -> bytes:
    """Reassemble the fields, with a valid length and CRC-32."""
    table = (f.get("raw_table")
             or bytes([f["itemsize"]]) + zlib.compress(
                 np.asarray(f["table"]).astype(f"<u{f['itemsize']}").tobytes(), 9))
    aux = (struct.pack("<IIQB", f["block_size"], f["nblocks"], f["base"], f["width"])
           + f["index"]) if "block_size" in f else b""
    plen = f.get("payload_length", len(f["payload"]))
    shape = f["shape"]
    body = b"".join([struct.pack(f"<{len(shape)}Q", *shape),
                     struct.pack("<II", f["num_symbols"], len(table)), table,
                     struct.pack("<I", len(aux)), aux,
                     struct.pack("<QQ", f["total_bits"], plen), f["payload"]])
    total = _HEAD.size + len(body) + 4
    body = _HEAD.pack(b"NJCC", 1, f["method"], len(shape), 0, total) + body
    return body + struct.pack("<I", zlib.crc32(body))


def _set(**changes):
    return lambda f: f.update(changes)


def _edit_table(edit):
    def mutate(f):
        table = f["table"].copy()
        edit(table)
        f["table"] = table
    return mutate


def _present(f):
    return np.flatnonzero(f["table"])


def _lengthen_one(table):                      # Kraft sum < 1
    table[np.flatnonzero(table)[0]] += 1


def _code_an_absent_symbol(table):             # Kraft sum > 1
    table[np.flatnonzero(table == 0)[0]] = table.max()


def _only_one_symbol(table):
    table[:] = 0
    table[5] = 1


# (mutation, the error message that the check behind the CRC raises)
HUFFMAN_CORRUPTIONS = {
    "table_itemsize": (_set(raw_table=b"\x03" + zlib.compress(b"\0" * 192)),
                       r"corrupted table dtype"),
    "table_not_zlib": (_set(raw_table=b"\x01not zlib at all"),
                       r"corrupted table \(Error .* decompressing"),
    "table_too_short": (lambda f: f.update(table=f["table"][:-1]),
                        r"corrupted table \(wrong size\)"),
    "code_length_21": (_edit_table(lambda t: t.__setitem__(np.flatnonzero(t)[0], 21)),
                       r"corrupted table \(code length too large\)"),
    "kraft_sum_below_1": (_edit_table(_lengthen_one), r"not a complete prefix code"),
    "kraft_sum_above_1": (_edit_table(_code_an_absent_symbol), r"not a complete prefix code"),
    "one_symbol_table_with_bits": (_edit_table(_only_one_symbol),
                                   r"table leaves nothing to code"),
    "block_size_0": (_set(block_size=0), r"corrupted block index$"),
    "one_block_too_many": (lambda f: f.update(nblocks=f["nblocks"] + 1),
                           r"corrupted block index$"),
    "index_wider_than_its_bytes": (_set(width=60), r"block index truncated"),
    "blocks_beyond_the_stream": (lambda f: f.update(base=f["base"] + f["total_bits"]),
                                 r"blocks longer than the stream"),
    "blocks_one_bit_short": (lambda f: f.update(base=f["base"] - 1),
                             r"block ends do not match the index"),
    # all-zero bits decode the first canonical codeword (the shortest) again
    # and again, all-one bits the last (the longest): both desynchronise
    "bitstream_all_zeros": (lambda f: f.update(payload=bytes(len(f["payload"]))),
                            r"block ends do not match the index"),
    "bitstream_all_ones": (lambda f: f.update(payload=b"\xff" * len(f["payload"])),
                           r"block ends do not match the index"),
    "bit_count_one_byte_more": (lambda f: f.update(total_bits=f["total_bits"] + 8),
                                r"bitstream length does not match its bit count"),
    "shape_with_one_more_block": (_set(shape=(17, 10)), r"corrupted block index$"),
    "shape_with_a_shorter_last_block": (_set(shape=(3, 50)),   # 150 symbols, 10 blocks
                                        r"block ends do not match the index"),
}

ANS_CORRUPTIONS = {
    "counts_sum_to_more": (_edit_table(lambda t: t.__setitem__(np.flatnonzero(t)[0],
                                                               t[np.flatnonzero(t)[0]] + 1)),
                           r"counts do not sum to the size"),
    "one_count_moved": (_edit_table(lambda t: t.__setitem__(
        [np.flatnonzero(t)[0], np.flatnonzero(t == 0)[0]], [t[np.flatnonzero(t)[0]] - 1, 1])),
        r"corrupted ANS payload \((words left over|decoded symbols do not match)"),
    "one_symbol_table_with_words": (
        lambda f: f.update(table=np.eye(1, 64, 5, dtype=np.int64)[0] * 153),
        r"words where the table leaves nothing to code"),
    "no_words": (_set(payload=b"", total_bits=0),
                 r"decoded symbols do not match the counts in the table"),
    "not_whole_words": (lambda f: f.update(payload=f["payload"][:-1],
                                           total_bits=8 * len(f["payload"]) - 8),
                        r"not whole 32-bit words"),
    "a_word_dropped": (lambda f: f.update(payload=f["payload"][:-4],
                                          total_bits=8 * len(f["payload"]) - 32),
                       r"corrupted ANS payload"),
    "bit_count": (_set(total_bits=8), r"bit count does not match its length"),
    "shape": (_set(shape=(17, 8)), r"counts do not sum to the size"),
}

COMMON_CORRUPTIONS = {
    "num_symbols_0": (_set(num_symbols=0), r"corrupted num_symbols 0"),
    "num_symbols_above_max": (_set(num_symbols=codec.MAX_NUM_SYMBOLS + 1),
                              r"corrupted num_symbols"),
    "num_symbols_not_the_table_size": (_set(num_symbols=32), r"corrupted table \(wrong size\)"),
    "unknown_method": (_set(method=7), r"unknown method id 7"),
    "payload_length_short": (lambda f: f.update(payload_length=len(f["payload"]) - 1),
                             r"unexpected bytes after the bitstream"),
}


def _corruption_cases():
    for method, table in (("huffman", HUFFMAN_CORRUPTIONS), ("ans", ANS_CORRUPTIONS),
                          ("huffman", COMMON_CORRUPTIONS), ("ans", COMMON_CORRUPTIONS)):
        for name, (mutate, message) in table.items():
            yield pytest.param(method, mutate, message, id=f"{method}-{name}")


def test_package_fields_reassemble_to_the_same_bytes(blobs):
    for method in METHODS:
        f = _fields(blobs[method])
        assert _package(f) == blobs[method]
        assert ("block_size" in f) == (method == "huffman")
        assert f["shape"] == (17, 9) and f["num_symbols"] == 64


@pytest.mark.parametrize("method, mutate, message", list(_corruption_cases()))
def test_corrupted_payload_with_a_valid_crc_raises_the_specific_error(
        blobs, method, mutate, message):
    f = _fields(blobs[method])
    mutate(f)
    forged = _package(f)
    assert forged != blobs[method]
    with pytest.raises(ValueError, match=message):
        codec.decode(forged)


def test_every_ans_bit_flip_behind_a_valid_crc_raises(blobs):
    f = _fields(blobs["ans"])
    payload = np.frombuffer(f["payload"], np.uint8)
    for bit in range(8 * payload.size):
        flipped = payload.copy()
        flipped[bit // 8] ^= 1 << (bit % 8)
        f["payload"] = flipped.tobytes()
        with pytest.raises(ValueError, match=r"corrupted ANS payload"):
            codec.decode(_package(f))


@pytest.mark.parametrize("method", METHODS)
def test_single_symbol_package_decodes_and_rejects_stray_bits(method):
    blob = codec.encode(np.full((3, 4), 5), 8, method=method)
    f = _fields(blob)
    assert f["payload"] == b"" and f["total_bits"] == 0 and "block_size" not in f
    np.testing.assert_array_equal(codec.decode(_package(f)), np.full((3, 4), 5))
    f.update(payload=b"\0\0\0\x01", total_bits=32)
    with pytest.raises(ValueError, match="leaves nothing to code"):
        codec.decode(_package(f))
