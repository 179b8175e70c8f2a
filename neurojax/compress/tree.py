"""Whole-PyTree weight compression: Algorithms 1 and 2 of the seed thesis,
chapter 3 (per-layer dynamic quantisation, then lossless entropy coding).

``compress_tree(params) -> bytes`` runs, for every floating leaf (a "layer"
in the thesis; each kernel and bias is its own array):

1. ``w_min, w_max`` of the leaf;
2. ``H``: entropy of an ``M``-bit quantisation of a random fraction ``F`` of
   the leaf (a stratified random sample, see
   :func:`neurojax.compress.quantize.sample_indices`);
3. ``N = clip(ceil(H + c), 1, 16)`` (see :mod:`neurojax.compress.quantize`);
4. the ``N``-bit codes, entropy coded with Huffman or ANS
   (:mod:`neurojax.compress.codec`),

(steps 1-3 for all leaves run in one jitted program, compiled once per
tree structure and then cached), and packs each leaf as ``[dtype, w_min, w_max, N, H, codes package]``
(thesis: ``[E_l, w_min, w_max, P_l, N]``; we send the code lengths (Huffman)
or counts (ANS) instead of the normalised histogram ``P_l``; both rebuild
the same code). Non-floating leaves (integer counters, masks) are stored
verbatim. ``decompress_tree`` reconstructs every float leaf at its bin
centres (Algorithm 2), within half a bin of the original, cast back to the
leaf's dtype.

Quantisation units: ``layer_groups`` says which leaves share one quantiser
(``"leaf"``: each array, as ``compress_tree`` does; ``"layer"``: a module's
kernel and bias together, the thesis's bias-in-W convention), and
``group_vector`` / ``split_group`` turn a group into one float32 vector and
back (with leading batch axes, e.g. the stacked workers of
``neurojax.train.worker_sync``, which quantises these vectors in-graph).

Tree structure: the leaves are flattened with
``jax.tree_util.tree_flatten_with_path``; each leaf's key path is stored
(dict keys as str/int, sequence indices, attribute names). Without a
template, ``decompress_tree`` rebuilds nested ``dict``s (dict keys) and
``list``s (sequence indices: tuples come back as lists) -- the shape of Flax
Linen ``params``. For any other container (dataclasses, namedtuples, optax
states) pass ``template=`` (any PyTree with the same structure, e.g. the
receiver's own params or ``jax.eval_shape`` of the init): its treedef is
used and the stored key paths are checked against it.
"""
from __future__ import annotations

import json
import struct
from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np

from neurojax._checks import check_choice
from neurojax.compress import codec
from neurojax.compress import quantize as qz

TREE_MAGIC = b"NJQT"
ARRAY_MAGIC = b"NJQA"
_KIND_RAW, _KIND_QUANT = 0, 1


class LeafStats(NamedTuple):
    """Bits-on-the-wire account of one leaf."""
    path: str
    size: int
    num_bits: int           # N (0 for verbatim leaves)
    entropy_estimate: float  # H from the M-bit sample (nan for fixed N / verbatim)
    code_entropy: float     # exact entropy of the N-bit codes (bits/param)
    payload_bits: int       # entropy-coded bitstream only
    package_bits: int       # the leaf's whole package (header, table, index, crc)


class TreeStats(NamedTuple):
    leaves: tuple
    num_params: int
    total_bits: int                 # len(blob) * 8
    bits_per_parameter: float       # everything on the wire / params
    payload_bits_per_parameter: float
    raw_bits_per_parameter: float   # sum N |W| / params (fixed-width N-bit codes)
    code_entropy_bits_per_parameter: float
    compression_ratio: float        # 32 / bits_per_parameter


# ------------------------------------------------------------------ one array

@partial(jax.jit, static_argnames=("indices", "num_bits", "fraction", "prelim_bits", "floor",
                                   "min_bits", "max_bits", "sampler"))
def _quantize_leaves(leaves, key, *, indices, num_bits, fraction, prelim_bits, floor, min_bits,
                     max_bits, sampler):
    """Lines 3-6 of Algorithm 1 for all float leaves in one compiled program
    (one compilation per tree structure instead of one per leaf shape).
    The stratified samples of all leaves come from one ``uniform(key)`` draw
    (leaf after leaf, in flattening order); the ``"uniform"`` sampler uses
    ``fold_in(key, indices[j])`` for leaf ``indices[j]``. Returns per leaf
    ``(Quantized, all_finite)``; ``H`` is NaN for fixed N."""
    out = []
    sizes = [qz.sample_size(int(np.prod(w.shape, dtype=np.int64)), fraction) for w in leaves]
    u_all = jax.random.uniform(key, (sum(sizes),))
    starts = np.cumsum([0] + sizes)
    for j, (i, w) in enumerate(zip(indices, leaves)):
        if num_bits is None:
            q = qz.dynamic_quantize(w, jax.random.fold_in(key, i), fraction=fraction,
                                    prelim_bits=prelim_bits, floor=floor, min_bits=min_bits,
                                    max_bits=max_bits, sampler=sampler,
                                    uniforms=u_all[starts[j]:starts[j + 1]])
        else:
            w_min, w_max = qz.value_range(w)
            q = qz.Quantized(qz.quantize(w, num_bits, w_min, w_max),
                             jax.numpy.asarray(num_bits, jax.numpy.int32), w_min, w_max,
                             jax.numpy.asarray(float("nan"), jax.numpy.float32))
        out.append((q, jax.numpy.isfinite(w).all()))
    return out


def _dtype_bytes(dtype: np.dtype) -> bytes:
    name = np.dtype(dtype).name.encode()
    return struct.pack("<B", len(name)) + name


def _read_dtype(r: codec._Reader) -> np.dtype:
    (n,) = r.unpack("<B", "dtype length")
    name = bytes(r.take(n, "dtype")).decode("ascii", "replace")
    try:
        if name == "bfloat16":
            import ml_dtypes  # noqa: PLC0415 (ships with jax)
            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(name)
    except TypeError as err:
        raise ValueError(f"array package: corrupted dtype {name!r}") from err


def _is_float(dtype) -> bool:
    return jax.numpy.issubdtype(dtype, jax.numpy.floating)


def _package_raw(arr, name):
    host = np.ascontiguousarray(np.asarray(arr))
    body = (struct.pack("<B", _KIND_RAW) + _dtype_bytes(host.dtype)
            + struct.pack(f"<B{host.ndim}Q", host.ndim, *host.shape) + host.tobytes())
    blob = codec.frame(ARRAY_MAGIC, _KIND_RAW, host.ndim, body)
    bits = 8 * len(blob)
    return blob, LeafStats(name, int(host.size), 0, float("nan"), float("nan"), bits, bits)


def _package_quantized(q: qz.Quantized, finite, dtype, method, block_size, name):
    if not bool(finite):
        raise ValueError(f"{name}: cannot quantise non-finite values (NaN/Inf)")
    codes = np.asarray(q.codes)
    n_bits, h = int(q.num_bits), float(q.entropy)
    inner = codec.encode(codes, 1 << n_bits, method=method, block_size=block_size)
    body = (struct.pack("<B", _KIND_QUANT) + _dtype_bytes(dtype)
            + struct.pack("<ddBf", float(q.w_min), float(q.w_max), n_bits, h) + inner)
    blob = codec.frame(ARRAY_MAGIC, _KIND_QUANT, codes.ndim, body)
    stats = LeafStats(name, int(codes.size), n_bits, h,
                      codec.entropy_of_codes(codes, 1 << n_bits),
                      codec.info(inner).payload_bits, 8 * len(blob))
    return blob, stats


def _check_config(fraction, prelim_bits, floor, num_bits, min_bits, max_bits, sampler):
    qz._check_fraction(fraction)
    qz._check_static_bits(prelim_bits, "prelim_bits")
    qz._check_bounds(min_bits, max_bits)
    if num_bits is not None:
        qz._check_static_bits(num_bits, "num_bits")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or floor < 0:
        raise ValueError(f"floor (c) must be a number >= 0, got {floor!r}")
    check_choice("sampler", sampler, qz.SAMPLERS)


def _quantize_arrays(leaves, key, *, fraction, prelim_bits, floor, num_bits, min_bits,
                     max_bits, sampler):
    """Validate the config and quantise the floating arrays among ``leaves``:
    returns ``(arrays, {index: (Quantized, all_finite)})``."""
    _check_config(fraction, prelim_bits, floor, num_bits, min_bits, max_bits, sampler)
    arrays = [x if isinstance(x, jax.Array) else np.asarray(x) for x in leaves]
    floats = [i for i, x in enumerate(arrays) if _is_float(x.dtype)]
    if not floats:
        return arrays, {}
    if num_bits is None and key is None:
        raise ValueError("key is required for the dynamic bit width (or pass num_bits)")
    out = _quantize_leaves(
        [arrays[i] for i in floats], key if key is not None else jax.random.key(0),
        indices=tuple(floats), num_bits=None if num_bits is None else int(num_bits),
        fraction=float(fraction), prelim_bits=int(prelim_bits), floor=float(floor),
        min_bits=int(min_bits), max_bits=int(max_bits), sampler=sampler)
    return arrays, dict(zip(floats, out))


def _leaves_to_packages(leaves, names, key, *, method, block_size, **config):
    check_choice("method", method, tuple(codec.METHODS))
    arrays, by_index = _quantize_arrays(leaves, key, **config)
    out = []
    for i, arr in enumerate(arrays):
        if i in by_index:
            q, finite = by_index[i]
            out.append(_package_quantized(q, finite, np.dtype(arr.dtype), method, block_size,
                                          names[i]))
        else:
            out.append(_package_raw(arr, names[i]))
    return out


def quantize_tree(params, *, fraction: float = qz.DEFAULT_FRACTION,
                  prelim_bits: int = qz.DEFAULT_PRELIM_BITS, floor: float = qz.DEFAULT_FLOOR,
                  num_bits: int | None = None, key=None, seed: int = 0,
                  min_bits: int = qz.MIN_BITS, max_bits: int = qz.MAX_BITS,
                  sampler: str = "stratified") -> dict:
    """Algorithm 1 lines 3-6 only (no entropy coding): ``{keystr(path):
    Quantized}`` with host (NumPy) fields for every floating leaf, exactly
    the quantisation :func:`compress_tree` codes with the same arguments."""
    if key is None:
        key = jax.random.key(int(seed))
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    _, by_index = _quantize_arrays(
        [x for _, x in flat], key, fraction=fraction, prelim_bits=prelim_bits, floor=floor,
        num_bits=num_bits, min_bits=min_bits, max_bits=max_bits, sampler=sampler)
    result = {}
    for i, (q, finite) in by_index.items():
        name = jax.tree_util.keystr(flat[i][0])
        if not bool(finite):
            raise ValueError(f"params{name}: cannot quantise non-finite values (NaN/Inf)")
        result[name] = qz.Quantized(*(np.asarray(x) for x in q))
    return result


def compress_array(w, key=None, *, method: str = "huffman",
                   fraction: float = qz.DEFAULT_FRACTION,
                   prelim_bits: int = qz.DEFAULT_PRELIM_BITS,
                   floor: float = qz.DEFAULT_FLOOR, num_bits: int | None = None,
                   min_bits: int = qz.MIN_BITS, max_bits: int = qz.MAX_BITS,
                   block_size=None, sampler: str = "stratified", name: str = "w"):
    """Algorithm 1 for one array -> ``(package bytes, LeafStats)``.

    Floating arrays are quantised (dynamic ``N`` from the entropy rule with
    ``key`` for the sample, or ``num_bits`` fixed) and entropy coded; other
    dtypes are stored verbatim. Non-finite values raise ``ValueError``
    naming ``name``. Arguments as in :func:`compress_tree`.
    """
    return _leaves_to_packages(
        [w], [name], key, method=method, fraction=fraction, prelim_bits=prelim_bits,
        floor=floor, num_bits=num_bits, min_bits=min_bits, max_bits=max_bits,
        block_size=block_size, sampler=sampler)[0]


def decompress_array(blob) -> np.ndarray:
    """Algorithm 2 for one array package: decode the codes and reconstruct
    the bin centres ``w_min + (code + 0.5)(w_max - w_min) / 2^N`` (float32,
    then cast to the stored dtype)."""
    body = codec.check_frame(blob, ARRAY_MAGIC, "array package")
    r = codec._Reader(body, "array package")
    r.take(codec._HEAD.size, "header")
    (kind,) = r.unpack("<B", "kind")
    dtype = _read_dtype(r)
    if kind == _KIND_RAW:
        (ndim,) = r.unpack("<B", "ndim")
        shape = r.unpack(f"<{ndim}Q", "shape")
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        data = r.take(n, "raw data")
        if r.pos != len(body):
            raise ValueError("array package: corrupted (trailing bytes)")
        return np.frombuffer(bytes(data), dtype).reshape(shape).copy()
    if kind != _KIND_QUANT:
        raise ValueError(f"array package: corrupted kind {kind}")
    w_min, w_max, n_bits, _ = r.unpack("<ddBf", "quantiser header")
    if not qz.MIN_BITS <= n_bits <= qz.MAX_BITS or not w_min <= w_max:
        raise ValueError("array package: corrupted quantiser header")
    codes = codec.decode(bytes(r.take(len(body) - r.pos, "codes package")))
    if codes.size and codes.max() >= (1 << n_bits):
        raise ValueError("array package: codes exceed 2^N")
    return qz.dequantize_numpy(codes, n_bits, w_min, w_max).astype(dtype)


# ------------------------------------------------------------------ groups

GROUPINGS = ("layer", "leaf")


def layer_groups(params, grouping: str = "layer") -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The quantisation units of a parameter tree: ``((name, leaf_indices),
    ...)`` in flattening order (indices into ``jax.tree.leaves(params)``).

    ``"layer"`` groups the leaves that share their parent path (a Dense
    module's ``kernel`` and ``bias``: the thesis folds the bias into ``W`` as
    an extra input of 1, chapter 2, so both share one ``w_min, w_max, N``);
    ``"leaf"`` makes each leaf its own group (as :func:`compress_tree` does).
    A group's name is the ``keystr`` of its path (``"params"`` for a bare
    array). Non-floating leaves raise ``ValueError``.
    """
    check_choice("grouping", grouping, GROUPINGS)
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    if not flat:
        raise ValueError("params must contain at least one array")
    groups: dict[str, list[int]] = {}
    for i, (path, leaf) in enumerate(flat):
        if not _is_float(jax.numpy.asarray(leaf).dtype):
            raise ValueError(f"params{jax.tree_util.keystr(path)} must be floating point, "
                             f"got {jax.numpy.asarray(leaf).dtype}")
        key = path[:-1] if grouping == "layer" and len(path) > 1 else path
        groups.setdefault(jax.tree_util.keystr(key) or "params", []).append(i)
    return tuple((name, tuple(ix)) for name, ix in groups.items())


def group_vector(leaves, idx, *, batch_dims: int = 0):
    """The leaves ``idx`` (of a flattened tree) as one float32 vector: each
    flattened and concatenated in order, over ``batch_dims`` leading axes
    that all of them share (e.g. a stacked worker axis: ``[P, n_g]``)."""
    lead = tuple(leaves[idx[0]].shape[:batch_dims])
    return jax.numpy.concatenate(
        [jax.numpy.reshape(leaves[i], lead + (-1,)).astype(jax.numpy.float32) for i in idx],
        axis=-1)


def split_group(vec, leaves, idx, *, batch_dims: int = 0) -> list:
    """The inverse of :func:`group_vector`: ``vec`` cut back into arrays of
    the shapes and dtypes of ``leaves[i]`` for ``i`` in ``idx`` (in order)."""
    sizes = [int(np.prod(leaves[i].shape[batch_dims:], dtype=np.int64)) for i in idx]
    if sum(sizes) != vec.shape[-1]:
        raise ValueError(f"the group vector has {vec.shape[-1]} entries, its leaves "
                         f"{sum(sizes)}")
    out, start = [], 0
    for i, size in zip(idx, sizes):
        out.append(vec[..., start:start + size].reshape(leaves[i].shape).astype(leaves[i].dtype))
        start += size
    return out


# ------------------------------------------------------------------ trees

def _key_entry(k) -> list:
    tu = jax.tree_util
    if isinstance(k, tu.DictKey):
        key = k.key
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int, np.integer)):
            return ["d", str(key)]
        return ["d", key if isinstance(key, str) else int(key)]
    if isinstance(k, tu.SequenceKey):
        return ["s", int(k.idx)]
    if isinstance(k, tu.GetAttrKey):
        return ["a", k.name]
    if isinstance(k, tu.FlattenedIndexKey):
        return ["f", int(k.key)]
    return ["?", str(k)]


def _rebuild(entries: list, leaves: list):
    """Nested dicts/lists from key paths (dict keys -> dict, sequence
    indices -> list)."""
    if len(entries) == 1 and not entries[0]:
        return leaves[0]
    root: dict = {}
    for path, leaf in zip(entries, leaves):
        node = root
        for i, (kind, key) in enumerate(path):
            if kind not in ("d", "s"):
                raise ValueError(f"decompress_tree: leaf path has a {kind!r} key "
                                 "(not a dict key or list index); pass template=")
            k = (kind, key)
            if i == len(path) - 1:
                node[k] = leaf
            else:
                node = node.setdefault(k, {})

    def convert(node):
        if not isinstance(node, dict):
            return node
        kinds = {k[0] for k in node}
        if kinds == {"s"}:
            idx = sorted(k[1] for k in node)
            if idx != list(range(len(idx))):
                raise ValueError("decompress_tree: list indices are not contiguous; "
                                 "pass template=")
            return [convert(node[("s", i)]) for i in idx]
        if len(kinds) > 1:
            raise ValueError("decompress_tree: a node mixes dict keys and list indices; "
                             "pass template=")
        return {k[1]: convert(v) for k, v in node.items()}

    return convert(root)


def compress_tree(params, *, method: str = "huffman", fraction: float = qz.DEFAULT_FRACTION,
                  prelim_bits: int = qz.DEFAULT_PRELIM_BITS, floor: float = qz.DEFAULT_FLOOR,
                  num_bits: int | None = None, key=None, seed: int = 0,
                  min_bits: int = qz.MIN_BITS, max_bits: int = qz.MAX_BITS, block_size=None,
                  sampler: str = "stratified", return_stats: bool = False):
    """Algorithm 1 over a parameter PyTree -> bytes (and, with
    ``return_stats=True``, a :class:`TreeStats` bits-per-parameter account).

    Args:
      params: any PyTree of arrays.
      method: ``"huffman"`` (the thesis) or ``"ans"``.
      fraction: ``F``, the sampled fraction for the entropy estimate (0.03).
      prelim_bits: ``M``, bits of the preliminary quantiser (4).
      floor: ``c``, the bit floor in ``N = ceil(H + c)`` (5; 6 is the
        thesis's other recommended setting).
      num_bits: if given, a fixed ``N`` for every float leaf (Fig. 3.1)
        instead of the entropy rule.
      key / seed: PRNG key for the entropy samples (one uniform draw split
        over the leaves, see ``_quantize_leaves``); ``key=None`` uses
        ``jax.random.key(seed)``.
      min_bits, max_bits: clip for ``N`` ([1, 16]).
      block_size: Huffman decode block size (see the codec).
      sampler: how the fraction ``F`` is drawn (``"stratified"``/``"uniform"``,
        see :func:`neurojax.compress.quantize.sample_indices`).
    """
    if key is None:
        key = jax.random.key(int(seed))
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(path) for path, _ in flat]
    paths = [[_key_entry(k) for k in path] for path, _ in flat]
    results = _leaves_to_packages(
        [leaf for _, leaf in flat], [f"params{n}" for n in names], key, method=method,
        fraction=fraction, prelim_bits=prelim_bits, floor=floor, num_bits=num_bits,
        min_bits=min_bits, max_bits=max_bits, block_size=block_size, sampler=sampler)
    packages = [blob for blob, _ in results]
    stats = [st for _, st in results]
    header = json.dumps({"keystr": names, "paths": paths}, separators=(",", ":")).encode()
    body = [struct.pack("<I", len(header)), header]
    for blob in packages:
        body += [struct.pack("<Q", len(blob)), blob]
    out = codec.frame(TREE_MAGIC, 0, 0, b"".join(body))
    if not return_stats:
        return out
    n = sum(s.size for s in stats)
    denom = max(n, 1)
    bpp = 8 * len(out) / denom
    quant = [s for s in stats if s.num_bits]
    tree_stats = TreeStats(
        leaves=tuple(stats), num_params=n, total_bits=8 * len(out), bits_per_parameter=bpp,
        payload_bits_per_parameter=sum(s.payload_bits for s in stats) / denom,
        raw_bits_per_parameter=sum(s.num_bits * s.size for s in quant) / denom,
        code_entropy_bits_per_parameter=sum(s.code_entropy * s.size for s in quant) / denom,
        compression_ratio=32.0 / bpp if bpp > 0 else float("inf"))
    return out, tree_stats


def decompress_tree(blob, template: Any = None):
    """Algorithm 2 over a blob from :func:`compress_tree` -> the PyTree of
    reconstructed NumPy arrays (nested dicts/lists, or ``template``'s
    structure when given). Raises ``ValueError`` on truncated or corrupted
    bytes, and when ``template``'s key paths differ from the stored ones."""
    body = codec.check_frame(blob, TREE_MAGIC, "tree package")
    r = codec._Reader(body, "tree package")
    r.take(codec._HEAD.size, "header")
    (hlen,) = r.unpack("<I", "header length")
    try:
        header = json.loads(bytes(r.take(hlen, "header")).decode())
        names, paths = header["keystr"], header["paths"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"tree package: corrupted header ({err})") from err
    leaves = []
    for name in names:
        (n,) = r.unpack("<Q", f"length of leaf {name}")
        leaves.append(decompress_array(bytes(r.take(n, f"leaf {name}"))))
    if r.pos != len(body):
        raise ValueError("tree package: corrupted (trailing bytes)")
    if template is None:
        if not leaves:
            return {}
        return _rebuild(paths, leaves)
    t_flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    t_names = [jax.tree_util.keystr(p) for p, _ in t_flat]
    if t_names != names:
        raise ValueError(f"template: leaf paths differ from the stored ones "
                         f"(template {t_names[:3]}..., stored {names[:3]}...)")
    return jax.tree_util.tree_unflatten(treedef, leaves)


__all__ = ["quantize_tree", "compress_array", "decompress_array", "compress_tree",
           "decompress_tree", "GROUPINGS", "layer_groups", "group_vector", "split_group",
           "LeafStats", "TreeStats"]
