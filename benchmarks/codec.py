"""Weight codec: neurojax's Huffman vs dahuffman (pure Python) vs ANS
(constriction), and bits per parameter vs the entropy limit and zstd.

On the parameters of a freshly initialised ResNet-18 (``get_model('resnet18',
num_classes=10)``, 11.2M parameters in 62 arrays; ``--small``: the small CNN)
quantised as in the seed thesis's Algorithm 1 (per array, N = ceil(H + c)
with F = 0.03, M = 4, c = 5 by default), prints in one run:

- encode and decode throughput in MB/s of float32 weights (4 bytes per
  parameter) of the entropy coders alone on the integer codes, and of the
  whole ``compress_tree`` / ``decompress_tree`` pipeline; dahuffman is timed
  on the first ``--dahuffman_symbols`` codes only (it runs at ~1 us/symbol),
  its rate is per parameter like the others;
- bits per parameter of each coder (payload only, and everything on the
  wire: headers, tables, block index, checksums) as ratios to the Shannon
  entropy of the codes (the order-0 limit of a per-array coder: sum over
  arrays of size x entropy) and to zstd on the same codes (uint8/uint16
  bytes per array, levels ``--zstd_levels``); plus zstd on the raw float32
  weights (the "lossless on floats" baseline the thesis found ineffective).

    python benchmarks/codec.py            # ResNet-18 (~4 min on 2 busy shared cores)
    python benchmarks/codec.py --small    # small CNN, seconds

Measured (ResNet-18 init, 2 shared CPU cores under load, one run): N = 9 for
every kernel, 5 for the constant BN/bias arrays; entropy 8.808 bits/param;
Huffman 8.847 bits/param payload (1.0044 x H), ANS 8.808 (1.0000 x H), both
0.81 x zstd-3 on the same codes; 3.61x / 3.63x fewer bits than float32 on the
wire. Huffman encodes at ~100 MB/s and decodes at ~57 MB/s, 12x and 42x
dahuffman; ANS encodes 1.6x faster than our Huffman, decodes at the same rate.

Needs the ``bench`` extra (``pip install -e .[bench]``: dahuffman, zstandard).
Medians of ``--repeats`` runs after one warm-up; compare numbers within one
run only (shared machines are noisy). Freshly initialised weights are close to
uniform per array, so H is near M and N = 9 for most arrays; trained weights
have lower entropy (the thesis: 3.55 bits/parameter after coding).
"""
import statistics
import time

import jax
import numpy as np
from absl import app, flags

import neurojax.compress as nc
from neurojax.compress import codec
from neurojax.models import get_model

_SMALL = flags.DEFINE_bool("small", False, "Use the small CNN instead of ResNet-18.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per measurement (median).")
_DAH = flags.DEFINE_integer("dahuffman_symbols", 300_000,
                            "Codes timed with dahuffman (pure Python, slow).")
_ZSTD = flags.DEFINE_list("zstd_levels", ["3", "19"], "zstd levels to compare.")
_FLOOR = flags.DEFINE_float("floor", 5.0, "c in N = ceil(H + c).")
_SEED = flags.DEFINE_integer("seed", 0, "Init and sampling seed.")


def _median(fn, repeats):
    fn()                                   # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _init_params(small: bool, seed: int):
    if small:
        model = get_model("small_cnn", num_classes=10)
    else:
        model = get_model("resnet18", num_classes=10)
    x = np.zeros((1, 32, 32, 3), np.float32)
    variables = jax.jit(model.init)(jax.random.key(seed), x)
    return jax.tree_util.tree_map(np.asarray, variables["params"])


def main(argv):
    del argv
    import dahuffman     # noqa: PLC0415  (bench extra)
    import zstandard     # noqa: PLC0415

    params = _init_params(_SMALL.value, _SEED.value)
    leaves = jax.tree_util.tree_leaves(params)
    n = sum(x.size for x in leaves)
    mb = 4 * n / 1e6
    reps = _REPEATS.value
    cfg = dict(seed=_SEED.value, floor=_FLOOR.value)
    quantized = nc.quantize_tree(params, **cfg)
    codes = [(q.codes, 1 << int(q.num_bits)) for q in quantized.values()]
    bits_n = sorted({int(q.num_bits) for q in quantized.values()})
    entropy = sum(c.size * nc.entropy_of_codes(c, m) for c, m in codes) / n
    raw_n = sum(c.size * np.log2(m) for c, m in codes) / n
    name = "small_cnn" if _SMALL.value else "resnet18"
    print(f"model {name}: {n:,} float32 parameters in {len(leaves)} arrays "
          f"({mb:.1f} MB); N per array in {bits_n}; F=0.03 M=4 c={_FLOOR.value:g}")
    print(f"raw quantised {raw_n:.3f} bits/param, Shannon entropy of the codes "
          f"{entropy:.3f} bits/param\n")

    rows = []   # (coder, enc MB/s, dec MB/s, payload bits, wire bits, entropy, zstd bits)
    for method in ("huffman", "ans"):
        t_enc, blobs = _median(lambda m=method: [codec.encode(c, k, method=m)
                                                 for c, k in codes], reps)
        t_dec, dec = _median(lambda b=blobs: [codec.decode(x) for x in b], reps)
        assert all(np.array_equal(a, c) for a, (c, _) in zip(dec, codes))
        payload = sum(codec.info(b).payload_bits for b in blobs) / n
        wire = sum(8 * len(b) for b in blobs) / n
        rows.append([f"neurojax {method}", mb / t_enc, mb / t_dec, payload, wire, entropy])

    # dahuffman on a prefix of the codes (one codec per array, as ours).
    budget, dah_syms, t_enc_d, t_dec_d, dah_bits, dah_h = _DAH.value, 0, 0.0, 0.0, 0, 0.0
    for c, k in codes:
        if budget <= 0:
            break
        sub = c.reshape(-1)[:budget].tolist()
        budget -= len(sub)
        dah_syms += len(sub)
        hc = dahuffman.HuffmanCodec.from_data(sub)
        start = time.perf_counter()
        enc = hc.encode(sub)
        t_enc_d += time.perf_counter() - start
        start = time.perf_counter()
        dec = hc.decode(enc)
        t_dec_d += time.perf_counter() - start
        assert dec == sub
        dah_bits += 8 * len(enc)
        dah_h += len(sub) * nc.entropy_of_codes(np.asarray(sub), k)
    dah_mb = 4 * dah_syms / 1e6
    rows.append([f"dahuffman ({dah_syms:,} codes)", dah_mb / t_enc_d, dah_mb / t_dec_d,
                 dah_bits / dah_syms, float("nan"), dah_h / dah_syms])

    zstd_bits = {}
    for level in (int(x) for x in _ZSTD.value):
        cctx, dctx = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
        raw = [np.ascontiguousarray(c.astype(np.uint8 if k <= 256 else np.uint16))
               for c, k in codes]
        t_enc, frames = _median(lambda r=raw, z=cctx: [z.compress(x.tobytes()) for x in r],
                                1 if level > 9 else reps)
        t_dec, _ = _median(lambda f=frames, z=dctx: [z.decompress(x) for x in f],
                           1 if level > 9 else reps)
        zstd_bits[level] = sum(8 * len(f) for f in frames) / n
        rows.append([f"zstd-{level} on the codes", mb / t_enc, mb / t_dec, zstd_bits[level],
                     zstd_bits[level], entropy])
    float_bytes = sum(len(zstandard.ZstdCompressor(level=3).compress(
        np.ascontiguousarray(x).tobytes())) for x in leaves)

    for method in ("huffman", "ans"):
        t_enc, blob = _median(lambda m=method: nc.compress_tree(params, method=m, **cfg), reps)
        t_dec, _ = _median(lambda b=blob: nc.decompress_tree(b), reps)
        rows.append([f"compress_tree {method} (all)", mb / t_enc, mb / t_dec, float("nan"),
                     8 * len(blob) / n, entropy])

    ref_level = min(zstd_bits)
    huff_enc, huff_dec = rows[0][1], rows[0][2]
    print(f"{'coder':34s} {'enc MB/s':>9s} {'dec MB/s':>9s} {'enc x':>7s} {'dec x':>7s} "
          f"{'bits/p':>7s} {'wire b/p':>8s} {'/H':>6s} {f'/zstd{ref_level}':>8s}")
    for label, enc, dec, payload, wire, h in rows:
        bits = payload if payload == payload else wire
        vs_zstd = bits / zstd_bits[ref_level] if h == entropy else float("nan")
        print(f"{label:34s} {enc:9.2f} {dec:9.2f} {enc / huff_enc:7.3f} {dec / huff_dec:7.3f} "
              f"{payload:7.3f} {wire:8.3f} {bits / h:6.3f} {vs_zstd:8.3f}")
    dah = rows[2]
    print(f"\nneurojax Huffman vs dahuffman: encode {huff_enc / dah[1]:.0f}x, "
          f"decode {huff_dec / dah[2]:.0f}x faster")
    print(f"bits over entropy: Huffman {rows[0][3] / entropy:.4f}, ANS {rows[1][3] / entropy:.4f}"
          f" (payload); on the wire {rows[0][4] / entropy:.4f}, {rows[1][4] / entropy:.4f}")
    print(f"compression vs float32: Huffman {32 / rows[0][4]:.2f}x, ANS {32 / rows[1][4]:.2f}x"
          f" on the wire; zstd-3 on the raw floats {4 * n / float_bytes:.3f}x "
          f"({8 * float_bytes / n:.2f} bits/param)")
    print("columns: enc x / dec x = throughput relative to neurojax Huffman; bits/p = payload "
          "bits per parameter; wire b/p = whole packages; /H and /zstd = bits/p (wire b/p "
          "where no payload figure) over the codes' entropy (dahuffman: of its subset) and "
          "over zstd")


if __name__ == "__main__":
    app.run(main)
