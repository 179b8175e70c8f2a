"""Data-parallel training with compressed weight synchronisation: the seed
thesis, chapter 3 ("Speeding Up Distributed Learning", Sections 3.1-3.6,
Algorithms 1 and 2), as local SGD with periodic averaging.

The scheme (what the thesis does, and the choices it leaves open)
-----------------------------------------------------------------
* Workers keep a *complete copy* of the model and update it locally on their
  own part of the data (Section 3 intro: "each worker locally updates its own
  model, and the updated model parameters must periodically be
  synchronized"). Here worker ``i`` has its own parameters ``w_i``, its own
  optimiser state (momentum) and its own disjoint shard of the training set.
* What is sent are the **weights**, not gradients or weight deltas
  (Section 3.1: "the model parameters to be transmitted"; Algorithm 1's input
  is the layer weights ``W_l``), quantised per layer (Algorithm 1) and
  decoded by the receiver to bin centres (Algorithm 2: "real numbers that can
  be used by the receiving node").
* How the received copies are combined is not stated. We average the
  **dequantised** copies of all ``P`` workers, the sender's own included::

      w <- (1/P) sum_{i=1..P} D(Q(w_i)),
      Q(w)_j = clip(floor(2^N (w_j - w_min) / (w_max - w_min)), 0, 2^N - 1),
      D(q)_j = w_min + (q_j + 1/2) (w_max - w_min) / 2^N,

  with ``w_min, w_max, N`` chosen per layer by each sender. Every worker then
  continues from the same averaged weights ("replace", not a full-precision
  shadow copy). With one worker this is the thesis's experiment: the
  weights are replaced by their quantise-dequantise image once per epoch
  (Section 3.7, which trains one network and compresses it every epoch).
* Bit width ``N`` per layer and sync (Section 3.5, Algorithm 1 lines 3-5):
  ``mode="dynamic"``: ``N = clip(ceil(H + c - 1e-6), min_bits, max_bits)``
  with ``H`` the entropy of an ``M``-bit quantisation of a random fraction
  ``F`` of the layer (:func:`neurojax.compress.quantize.estimate_entropy`);
  ``mode="fixed"``: one ``N`` for every layer (Section 3.2, Fig. 3.1);
  ``mode="none"``: no quantisation, plain synchronous averaging of the
  float32 weights.
* A "layer" is one dense layer's kernel *and* bias: the thesis folds the bias
  into ``W`` as an extra input of 1 (Chapter 2), so both share one
  ``w_min, w_max, N`` and one code table (``grouping="layer"``, the parent
  module of the leaves). ``grouping="leaf"`` quantises every array on its own
  (as :func:`neurojax.compress.compress_tree` does). The groups and their
  vectors come from :mod:`neurojax.compress.tree` (``layer_groups``,
  ``group_vector``, ``split_group``; ``layer_groups`` is re-exported here).
* Non-parameter collections (``model_state``, e.g. BatchNorm statistics) and
  the optimiser states stay local and are not synchronised.

Where the parts run (GRACE's split: quantiser, memory, collective)
------------------------------------------------------------------
One compiled program per round does ``K`` local steps on every worker
(``jax.lax.scan``) and the synchronisation, written with ``jax.shard_map``
over the ``'data'`` axis of a mesh: each device holds ``P / D`` workers
(vmapped; ``P`` must be a multiple of the ``D`` devices). In-graph: the
per-layer range, ``H``, ``N``, the fixed-width ``uint16`` codes, and the
exact Shannon entropy of every worker's ``N``-bit codes (the lower bound on
the coded size). The collective is an ``all_gather`` of the fixed-width codes
and the per-layer ``(w_min, w_max, N)`` -- variable-length codes cannot pass
through an XLA collective (static shapes). Every device then dequantises all
``P`` copies and sums them in one fixed order (worker 0, 1, ..., P-1), so the
average is bit-identical on every worker. On the host
(:func:`account_bytes`): each worker's codes are entropy coded with the real
codec (:func:`neurojax.compress.codec.encode`, Huffman or ANS), decoded again
and checked bit-exact, and the exact bytes each worker sends are the sum over
layers of ``len(codec package) + 9`` (``w_min``, ``w_max`` as float32 and
``N`` as one byte). The logged bytes come from the host codec, not from an
in-graph estimate.

Equivalences (tested)
---------------------
* ``mode="none"`` equals plain synchronous averaging: each worker runs ``K``
  optimiser steps on its own batches from the common weights, then the
  weights are averaged (bit-exact against a reference that runs the workers
  one by one and averages in NumPy in the same order).
* With ``K = 1``, ``mode="none"`` and a *linear* optimiser (SGD, with or
  without momentum and coupled weight decay) this is synchronous
  data-parallel SGD on the global batch: after a sync all workers hold
  ``w``; ``w_i' = w - lr m_i`` with ``m_i = beta m_i + g_i``, so
  ``mean_i w_i' = w - lr mean_i m_i`` and ``mean_i m_i`` obeys the momentum
  recursion of ``mean_i g_i``, the gradient of the global batch (equal
  worker batch sizes). It holds in real arithmetic, so the test compares
  with :func:`neurojax.train.step.make_train_step` to float32 rounding. It
  does not hold for Adam (its update is nonlinear in the gradient).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, Iterator, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neurojax._checks import check_choice, check_int
from neurojax.compress import codec
from neurojax.compress import quantize as qz
from neurojax.compress.tree import GROUPINGS, group_vector, layer_groups, split_group
from neurojax.train.state import PyTree
from neurojax.train.step import DATA_AXIS, Objective, make_mesh

MODES = ("none", "fixed", "dynamic")
# Bytes of the per-layer quantiser header each sender adds to its codec
# package: w_min and w_max (float32) and N (uint8).
QUANTIZER_HEADER_BYTES = 9


@dataclasses.dataclass(frozen=True)
class SyncConfig:
    """How the copies are synchronised every ``K`` local steps.

    Attributes:
      mode: ``"dynamic"`` (``N = ceil(H + c)``, Algorithm 1), ``"fixed"``
        (``N = num_bits``, Fig. 3.1) or ``"none"`` (float32 averaging).
      num_bits: ``N`` for ``mode="fixed"`` (1..16).
      fraction: ``F``, fraction of a layer sampled for ``H`` (thesis 0.03).
      prelim_bits: ``M``, bits of the preliminary quantiser (thesis 4).
      floor: ``c`` in ``N = H + c`` (thesis 5 or 6).
      min_bits, max_bits: clip of the dynamic ``N`` (1..16).
      grouping: ``"layer"`` (kernel and bias of a module share one
        quantiser, the thesis's bias-in-W convention) or ``"leaf"``.
      method: host entropy coder for the byte account, ``"huffman"`` (the
        thesis) or ``"ans"``.
    """
    mode: str = "dynamic"
    num_bits: int = 8
    fraction: float = qz.DEFAULT_FRACTION
    prelim_bits: int = qz.DEFAULT_PRELIM_BITS
    floor: float = qz.DEFAULT_FLOOR
    min_bits: int = qz.MIN_BITS
    max_bits: int = qz.MAX_BITS
    grouping: str = "layer"
    method: str = "huffman"

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        check_choice("grouping", self.grouping, GROUPINGS)
        check_choice("method", self.method, tuple(codec.METHODS))
        qz._check_static_bits(self.num_bits, "num_bits")
        qz._check_static_bits(self.prelim_bits, "prelim_bits")
        qz._check_fraction(self.fraction)
        qz._check_bounds(self.min_bits, self.max_bits)
        if (isinstance(self.floor, bool) or not isinstance(self.floor, numbers.Real)
                or not 0 <= self.floor <= qz.MAX_BITS):
            raise ValueError(f"floor (c) must be a number in [0, {qz.MAX_BITS}], "
                             f"got {self.floor!r}")

    @property
    def quantized(self) -> bool:
        return self.mode != "none"


class WorkerState(flax.struct.PyTreeNode):
    """The stacked state of ``P`` workers: every leaf has a leading worker
    axis of size ``P``, sharded over the mesh's ``'data'`` axis.

    ``step`` counts local steps (the same on every worker), ``rounds`` the
    synchronisations, ``rng`` holds one raw ``uint32[2]`` key per worker.
    """
    step: jax.Array
    rounds: jax.Array
    params: PyTree
    model_state: PyTree
    opt_state: optax.OptState
    rng: jax.Array

    @property
    def num_workers(self) -> int:
        return int(self.rng.shape[0])


# ------------------------------------------------------------------ groups

# ------------------------------------------------------------------ state

def init_workers(params: PyTree, tx: optax.GradientTransformation, num_workers: int, *,
                 mesh: Mesh | None = None, model_state: PyTree | None = None,
                 rng: jax.Array | None = None) -> WorkerState:
    """``num_workers`` identical copies of ``params`` (the common starting
    point), each with its own ``tx.init`` state and PRNG key
    ``fold_in(rng, i)``, placed on ``mesh`` with the worker axis sharded over
    ``'data'``. ``num_workers`` must be a multiple of the mesh size."""
    mesh = make_mesh() if mesh is None else mesh
    _check_workers(num_workers, mesh)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    stack = lambda x: jnp.broadcast_to(jnp.asarray(x), (num_workers,) + jnp.shape(x))
    params = jax.tree.map(stack, params)
    state = WorkerState(
        step=jnp.zeros((), jnp.int32), rounds=jnp.zeros((), jnp.int32), params=params,
        model_state=jax.tree.map(stack, dict(model_state or {})),
        opt_state=jax.vmap(tx.init)(params),
        rng=jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(num_workers)))
    return place_workers(state, mesh)


def place_workers(state: WorkerState, mesh: Mesh) -> WorkerState:
    """Put the worker axis of every stacked leaf on the mesh's ``'data'``
    axis (scalars replicated)."""
    sharded, replicated = NamedSharding(mesh, P(DATA_AXIS)), NamedSharding(mesh, P())
    return jax.device_put(state, jax.tree.map(
        lambda x: replicated if jnp.ndim(x) == 0 else sharded, state))


def _check_workers(num_workers, mesh):
    check_int("num_workers", num_workers)
    d = mesh.devices.size
    if num_workers % d:
        raise ValueError(f"num_workers ({num_workers}) must be a multiple of the number of "
                         f"devices on the mesh's 'data' axis ({d})")


# ------------------------------------------------------------------ the round

def _average_in_order(x):
    """``(1/P) sum_i x[i]`` summed left to right over the leading axis (a
    fixed order, so every device computes the same bits)."""
    acc = x[0]
    for i in range(1, x.shape[0]):
        acc = acc + x[i]
    return acc / jnp.float32(x.shape[0])


def _code_entropy(codes, num_symbols):
    """Exact Shannon entropy (bits/parameter) of one worker's codes."""
    return qz.entropy_bits(jnp.bincount(codes.reshape(-1), length=num_symbols))


def code_alphabet(sync: SyncConfig) -> int:
    """Size of the in-graph code histogram (a fixed N may be overridden at run time)."""
    return 1 << (qz.MAX_BITS if sync.mode == "fixed" else sync.max_bits)


def sync_workers(params: PyTree, rng: jax.Array, rounds: jax.Array, sync: SyncConfig, groups,
                 num_bits, floor, *, return_codes: bool = True):
    """The synchronisation of the workers on this device, inside a
    ``shard_map`` over the ``'data'`` axis: every leaf of ``params`` and
    ``rng`` has a leading axis of this device's workers.

    Per group (:func:`layer_groups`): the range, the sampled entropy ``H``,
    ``N`` (``sync.mode``), the fixed-width codes, an ``all_gather`` of codes
    and headers over the axis, and the average of all ``P`` dequantised
    copies in worker order (``mode='none'``: of the float32 copies). Returns
    ``(averaged params (every local worker the same), stats, codes)`` with
    ``stats[k][group]`` of shape ``[workers here]`` for ``k`` in ``entropy,
    num_bits, w_min, w_max, code_entropy`` and ``codes[group]`` ``uint16
    [workers here, n_g]`` (empty without ``return_codes`` or quantisation).
    """
    num_symbols = code_alphabet(sync)
    w_local = rng.shape[0]
    leaves, treedef = jax.tree.flatten(params)
    out_leaves = list(leaves)
    stats = {k: {} for k in ("entropy", "num_bits", "w_min", "w_max", "code_entropy")}
    codes_out = {}
    for gi, (name, idx) in enumerate(groups):
        vec = group_vector(leaves, idx, batch_dims=1)          # [w, n] float32
        keys = jax.vmap(lambda r: jax.random.fold_in(      # per worker, group, round
            jax.random.fold_in(r, gi), rounds))(rng)
        w_min, w_max = jnp.min(vec, axis=1), jnp.max(vec, axis=1)
        h = jax.vmap(lambda v, k, lo, hi: qz.estimate_entropy(
            v, k, fraction=sync.fraction, prelim_bits=sync.prelim_bits, w_min=lo,
            w_max=hi))(vec, keys, w_min, w_max)
        stats["entropy"][name], stats["w_min"][name], stats["w_max"][name] = h, w_min, w_max
        if not sync.quantized:
            avg = _average_in_order(jax.lax.all_gather(vec, DATA_AXIS, axis=0, tiled=True))
            stats["num_bits"][name] = jnp.full((w_local,), 32, jnp.int32)
            stats["code_entropy"][name] = jnp.full((w_local,), jnp.nan, jnp.float32)
        else:
            if sync.mode == "fixed":
                n = jnp.broadcast_to(jnp.clip(num_bits, qz.MIN_BITS, qz.MAX_BITS), (w_local,))
            else:
                n = qz.bits_from_entropy(h, floor, min_bits=sync.min_bits,
                                         max_bits=sync.max_bits)
            codes = jax.vmap(qz.quantize)(vec, n, w_min, w_max).astype(jnp.uint16)
            stats["num_bits"][name] = n
            stats["code_entropy"][name] = jax.vmap(
                lambda c: _code_entropy(c.astype(jnp.int32), num_symbols))(codes)
            # the collective: fixed-width codes and the per-layer header
            all_codes = jax.lax.all_gather(codes, DATA_AXIS, axis=0, tiled=True)
            all_n = jax.lax.all_gather(n, DATA_AXIS, axis=0, tiled=True)
            all_lo = jax.lax.all_gather(w_min, DATA_AXIS, axis=0, tiled=True)
            all_hi = jax.lax.all_gather(w_max, DATA_AXIS, axis=0, tiled=True)
            deq = jax.vmap(qz.dequantize)(all_codes.astype(jnp.int32), all_n, all_lo, all_hi)
            avg = _average_in_order(deq)
            if return_codes:
                codes_out[name] = codes
        pieces = split_group(jnp.broadcast_to(avg, (w_local,) + avg.shape), leaves, idx,
                             batch_dims=1)
        for i, piece in zip(idx, pieces):
            out_leaves[i] = piece
    return jax.tree.unflatten(treedef, out_leaves), stats, codes_out


def make_sync_round(objective: Objective, tx: optax.GradientTransformation, sync: SyncConfig,
                    params_template: PyTree, *, mesh: Mesh | None = None,
                    return_codes: bool = True, donate: bool = True) -> Callable:
    """Compile one round: ``K`` local steps on every worker, then the
    compressed synchronisation.

    Returns ``round_fn(state, batches, *, num_bits=None, floor=None) ->
    (state, out)``. ``batches`` is a PyTree whose leaves are
    ``[P, K, B, ...]`` (worker, local step, example); ``K`` is the sync
    period (one compilation per ``K``). ``num_bits`` / ``floor`` override
    ``sync.num_bits`` / ``sync.floor`` at run time (traced, no
    recompilation). ``out["metrics"]`` holds, per worker, ``loss [P, K]``
    (and the objective's other scalars); ``out`` holds, per group ``g`` (see
    :func:`layer_groups`), ``entropy[g]`` (``H`` from the ``M``-bit sample;
    also for ``mode="none"``, as a monitor), ``num_bits[g]``, ``w_min[g]``,
    ``w_max[g]``, ``code_entropy[g]`` (exact entropy of the ``N``-bit codes,
    bits/parameter), all ``[P]``, and with ``return_codes`` ``codes[g]``
    ``uint16 [P, n_g]`` for :func:`account_bytes`.
    """
    mesh = make_mesh() if mesh is None else mesh
    groups = layer_groups(params_template, sync.grouping)

    def local_steps(params, model_state, opt_state, rng, step0, batches):
        def one(carry, batch):
            params, model_state, opt_state, step = carry
            key = jax.random.fold_in(rng, step)
            (loss, (aux, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
                params, model_state, batch, key)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, model_state, opt_state, step + 1), {"loss": loss, **aux}
        (params, model_state, opt_state, _), metrics = jax.lax.scan(
            one, (params, model_state, opt_state, step0), batches)
        return params, model_state, opt_state, metrics

    def per_device(state: WorkerState, batches, num_bits, floor):
        params, model_state, opt_state, metrics = jax.vmap(
            local_steps, in_axes=(0, 0, 0, 0, None, 0))(
            state.params, state.model_state, state.opt_state, state.rng, state.step, batches)
        params, stats, codes_out = sync_workers(params, state.rng, state.rounds, sync, groups,
                                                num_bits, floor, return_codes=return_codes)
        new_state = state.replace(
            step=state.step + jax.tree.leaves(batches)[0].shape[1], rounds=state.rounds + 1,
            params=params, model_state=model_state, opt_state=opt_state)
        out = {"metrics": metrics, **stats}
        if codes_out:
            out["codes"] = codes_out
        return new_state, out

    def spec_of(tree):
        return jax.tree.map(lambda x: P() if jnp.ndim(x) == 0 else P(DATA_AXIS), tree)

    cache: dict = {}

    def compiled(state, batches):
        key = (jax.tree.structure(state), jax.tree.structure(batches))
        if key not in cache:
            state_spec = spec_of(state)
            fn = jax.shard_map(per_device, mesh=mesh,
                               in_specs=(state_spec, P(DATA_AXIS), P(), P()),
                               out_specs=(state_spec, P(DATA_AXIS)), check_vma=False)
            cache[key] = jax.jit(fn, donate_argnums=(0,) if donate else ())
        return cache[key]

    def round_fn(state: WorkerState, batches, *, num_bits=None, floor=None):
        _check_batches(batches, state.num_workers)
        nb = sync.num_bits if num_bits is None else num_bits
        fl = sync.floor if floor is None else floor
        if num_bits is not None:
            qz._check_static_bits(num_bits, "num_bits")
        if floor is not None and (not isinstance(floor, numbers.Real) or floor < 0):
            raise ValueError(f"floor (c) must be a number >= 0, got {floor!r}")
        batches = jax.device_put(batches, NamedSharding(mesh, P(DATA_AXIS)))
        return compiled(state, batches)(state, batches, jnp.int32(nb), jnp.float32(fl))

    round_fn.groups = groups
    round_fn.sync = sync
    return round_fn


def _check_batches(batches, num_workers):
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError("batches must contain at least one array")
    lead = {tuple(np.shape(x)[:2]) for x in leaves}
    if len(lead) != 1 or len(next(iter(lead))) != 2:
        raise ValueError(f"batches leaves must all be [num_workers, K, batch, ...] with the "
                         f"same two leading dimensions, got {sorted(lead)}")
    p, k = next(iter(lead))
    if p != num_workers:
        raise ValueError(f"batches leading dimension ({p}) must equal num_workers "
                         f"({num_workers})")
    if k < 1:
        raise ValueError("batches must hold K >= 1 local steps per worker")


# ------------------------------------------------------------------ host side

def account_bytes(out: dict, groups, method: str = "huffman", *, verify: bool = True) -> dict:
    """Exact bytes on the wire for one sync, from the real host codec.

    For worker ``i`` and group ``g``: ``package = codec.encode(codes_ig,
    2^N_ig, method)``; with ``verify`` it is decoded and checked bit-exact
    (``ValueError`` otherwise). The worker sends ``sum_g (len(package) + 9)``
    bytes (the codec package is self-describing: shape, table, bitstream,
    CRC; the 9 bytes are ``w_min``, ``w_max`` in float32 and ``N``).

    Returns ``{"bytes_per_worker": [P], "payload_bits": {g: [P]},
    "package_bytes": {g: [P]}, "num_params": {g: n_g}}`` (payload bits: the
    entropy-coded bitstream alone).
    """
    if "codes" not in out:
        raise ValueError("out has no codes (mode='none' or return_codes=False)")
    codes = jax.device_get(out["codes"])
    bits = jax.device_get(out["num_bits"])
    num_workers = next(iter(codes.values())).shape[0]
    total = np.zeros(num_workers, np.int64)
    payload, package, sizes = {}, {}, {}
    for name, _ in groups:
        c, n = np.asarray(codes[name]), np.asarray(bits[name])
        sizes[name] = int(c.shape[1])
        payload[name] = np.zeros(num_workers, np.int64)
        package[name] = np.zeros(num_workers, np.int64)
        for i in range(num_workers):
            blob = codec.encode(c[i], 1 << int(n[i]), method=method)
            if verify and not np.array_equal(codec.decode(blob), c[i]):
                raise ValueError(f"codec round trip of {name} (worker {i}) is not bit-exact")
            payload[name][i] = codec.info(blob).payload_bits
            package[name][i] = len(blob) + QUANTIZER_HEADER_BYTES
            total[i] += package[name][i]
    return {"bytes_per_worker": total, "payload_bits": payload, "package_bytes": package,
            "num_params": sizes}


def sync_record(out: dict, sizes: dict, byte_account: Optional[dict] = None) -> dict:
    """Scalars of one sync for logging (means over workers; ``sizes`` from
    :func:`group_sizes`): per group
    ``H``, ``N``, code entropy; overall ``raw_bits_per_parameter``
    (``sum_g N_g n_g / sum_g n_g``), ``entropy_bits_per_parameter`` and,
    with a byte account, ``coded_bits_per_parameter`` (payload only),
    ``wire_bits_per_parameter`` (everything sent) and ``bytes_per_worker``."""
    stats = jax.device_get({k: out[k] for k in ("entropy", "num_bits", "code_entropy")})
    metrics = jax.device_get(out["metrics"])
    rec: dict[str, Any] = {k: float(np.mean(v)) for k, v in metrics.items()}
    for name in sizes:
        rec[f"entropy/{name}"] = float(np.mean(stats["entropy"][name]))
        rec[f"num_bits/{name}"] = float(np.mean(stats["num_bits"][name]))
        rec[f"code_entropy/{name}"] = float(np.mean(stats["code_entropy"][name]))
    n_tot = sum(sizes.values())
    rec["raw_bits_per_parameter"] = sum(
        float(np.mean(stats["num_bits"][g])) * sizes[g] for g in sizes) / n_tot
    rec["entropy_bits_per_parameter"] = sum(
        float(np.mean(stats["code_entropy"][g])) * sizes[g] for g in sizes) / n_tot
    if byte_account is not None:
        rec["coded_bits_per_parameter"] = float(np.mean(
            sum(byte_account["payload_bits"][g] for g in sizes))) / n_tot
        rec["wire_bits_per_parameter"] = 8.0 * float(
            np.mean(byte_account["bytes_per_worker"])) / n_tot
        rec["bytes_per_worker"] = [int(b) for b in byte_account["bytes_per_worker"]]
        for g in sizes:
            rec[f"coded_bits/{g}"] = float(np.mean(byte_account["payload_bits"][g])) / sizes[g]
    return rec


def group_sizes(params: PyTree, groups) -> dict:
    """Number of parameters in each group (one worker's copy)."""
    leaves = jax.tree.leaves(params)
    return {name: int(sum(np.size(leaves[i]) for i in idx)) for name, idx in groups}


# ------------------------------------------------------------------ data

def worker_batches(arrays: dict, num_workers: int, batch_size: int, local_steps: int, *,
                   seed: int = 0) -> Iterator[dict]:
    """Per-round batches ``{k: [P, K, B, ...]}`` for data-parallel workers.

    The examples are permuted once (``seed``) and split into ``P`` disjoint,
    equal shards of ``floor(n / P)`` examples (the remainder is dropped);
    each worker reshuffles its own shard every epoch and takes consecutive
    batches of ``B`` (an epoch is ``floor(shard / B)`` steps, the incomplete
    last batch is dropped). Rounds of ``K`` steps run across epoch boundaries.
    Infinite iterator.
    """
    n = len(next(iter(arrays.values())))
    for name, value in (("num_workers", num_workers), ("batch_size", batch_size),
                        ("local_steps", local_steps)):
        check_int(name, value)
    if any(len(v) != n for v in arrays.values()):
        raise ValueError("arrays must all have the same length")
    shard = n // num_workers
    if shard < batch_size:
        raise ValueError(f"batch_size ({batch_size}) must be <= the examples per worker "
                         f"({shard} = {n} // {num_workers})")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)[:shard * num_workers].reshape(num_workers, shard)
    steps_per_epoch = shard // batch_size
    worker_rngs = [np.random.default_rng([seed, i]) for i in range(num_workers)]

    def epoch_order():
        return np.stack([perm[i][r.permutation(shard)][:steps_per_epoch * batch_size]
                         .reshape(steps_per_epoch, batch_size)
                         for i, r in enumerate(worker_rngs)])   # [P, S, B]

    buffer = np.zeros((num_workers, 0, batch_size), np.int64)
    while True:
        while buffer.shape[1] < local_steps:
            buffer = np.concatenate([buffer, epoch_order()], axis=1)
        idx, buffer = buffer[:, :local_steps], buffer[:, local_steps:]
        yield {k: np.asarray(v)[idx] for k, v in arrays.items()}


def steps_per_epoch(num_examples: int, num_workers: int, batch_size: int) -> int:
    """Local steps in one pass of a worker over its shard (see
    :func:`worker_batches`)."""
    return (num_examples // num_workers) // batch_size


__all__ = ["MODES", "GROUPINGS", "QUANTIZER_HEADER_BYTES", "SyncConfig", "WorkerState",
           "layer_groups", "init_workers", "place_workers", "make_sync_round",
           "account_bytes", "sync_record", "group_sizes", "worker_batches",
           "steps_per_epoch"]
