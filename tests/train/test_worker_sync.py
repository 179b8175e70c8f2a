"""Compressed weight sync (thesis ch. 3, Algorithms 1-2 in data-parallel
training): against independent NumPy references, the host codec, and plain
data-parallel SGD on 8 forced CPU devices."""
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.compress import codec
from neurojax.losses import mean_squared_error
from neurojax.train import worker_sync as cs
from neurojax.train.step import model_objective
from tests._devices import run_with_forced_devices


class TanhMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.tanh(nn.Dense(24, name="dense_0")(x))
        return jnp.tanh(nn.Dense(3, name="head")(x))


def _problem(num_workers=2, local_steps=3, batch=4, seed=0):
    model = TanhMLP()
    rng = np.random.default_rng(seed)
    n = num_workers * local_steps * batch
    data = {"image": rng.normal(size=(n, 5)).astype(np.float32),
            "target": np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]}
    params = model.init(jax.random.PRNGKey(seed), data["image"][:1])["params"]
    objective = model_objective(model, mean_squared_error)
    batches = next(cs.worker_batches(data, num_workers, batch, local_steps, seed=seed))
    return objective, params, batches


_STEPS = {}


def _reference_local(objective, tx, params, rng, batches_w, step0=0):
    """Worker-by-worker K steps (an independent loop over plain optax)."""
    if (id(objective), id(tx)) not in _STEPS:   # one compilation per problem, not per worker
        @jax.jit
        def one(p, opt, batch, key):
            grads = jax.grad(lambda q: objective(q, {}, batch, key)[0])(p)
            updates, opt = tx.update(grads, opt, p)
            return optax.apply_updates(p, updates), opt
        _STEPS[(id(objective), id(tx))] = (objective, tx, one)
    one = _STEPS[(id(objective), id(tx))][2]
    opt = tx.init(params)
    k = jax.tree.leaves(batches_w)[0].shape[0]
    for s in range(k):
        batch = jax.tree.map(lambda x: x[s], batches_w)
        params, opt = one(params, opt, batch, jax.random.fold_in(rng, step0 + s))
    return params


def _np_quantize(vec, n):
    lo, hi = np.float32(vec.min()), np.float32(vec.max())
    t = (vec - lo) * np.float32(2.0 ** n) / (hi - lo)
    codes = np.clip(np.floor(t), 0, 2 ** n - 1).astype(np.int64)
    return codes, lo, hi


def _np_entropy(codes, num_symbols):
    p = np.bincount(codes, minlength=num_symbols) / codes.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def test_config_and_inputs_are_validated():
    for kwargs, name in [({"mode": "lossy"}, "mode"), ({"grouping": "tensor"}, "grouping"),
                         ({"method": "lzw"}, "method"), ({"num_bits": 17}, "num_bits"),
                         ({"fraction": 0.0}, "fraction"), ({"floor": -1}, "floor"),
                         ({"prelim_bits": 0}, "prelim_bits")]:
        with pytest.raises(ValueError, match=name):
            cs.SyncConfig(**kwargs)
    objective, params, batches = _problem()
    tx = optax.sgd(0.1)
    with pytest.raises(ValueError, match="num_workers"):
        cs.init_workers(params, tx, 0)
    with pytest.raises(ValueError, match="batch_size"):
        next(cs.worker_batches({"x": np.zeros(10)}, 4, 3, 1))
    with pytest.raises(ValueError, match="local_steps"):
        next(cs.worker_batches({"x": np.zeros(10)}, 2, 1, 0))
    state = cs.init_workers(params, tx, 3)
    round_fn = cs.make_sync_round(objective, tx, cs.SyncConfig(), params)
    with pytest.raises(ValueError, match="num_workers"):
        round_fn(state, batches)  # 2 workers' batches for 3 workers


def test_layer_groups_put_bias_with_its_kernel():
    _, params, _ = _problem()
    groups = cs.layer_groups(params)
    assert [name for name, _ in groups] == ["['dense_0']", "['head']"]
    assert [len(ix) for _, ix in groups] == [2, 2]
    assert len(cs.layer_groups(params, "leaf")) == 4
    assert cs.group_sizes(params, groups) == {"['dense_0']": 5 * 24 + 24, "['head']": 24 * 3 + 3}
    with pytest.raises(ValueError, match="floating"):
        cs.layer_groups({"w": jnp.zeros(3, jnp.int32)})


def test_worker_batches_are_disjoint_shards_covered_once_per_epoch():
    n, workers, batch, k = 50, 3, 4, 2
    stream = cs.worker_batches({"i": np.arange(n)}, workers, batch, k, seed=1)
    epoch = cs.steps_per_epoch(n, workers, batch)                       # 16 // 4 = 4
    idx = np.concatenate([next(stream)["i"] for _ in range(epoch // k)], axis=1)
    assert idx.shape == (workers, epoch, batch)
    flat = idx.reshape(workers, -1)
    for w in range(workers):
        assert len(np.unique(flat[w])) == flat.shape[1]                 # no repeats in an epoch
    assert len(np.intersect1d(flat[0], flat[1])) == 0                   # disjoint shards
    nxt = np.concatenate([next(stream)["i"] for _ in range(epoch // k)], axis=1)
    assert set(nxt[0].ravel()) == set(flat[0].ravel())                  # same shard, reshuffled
    assert not np.array_equal(nxt[0], idx[0])


def test_dynamic_sync_equals_numpy_algorithms_1_and_2(grouping="layer"):
    """Two workers on one device (vmapped): K local steps, then per group
    N = ceil(H + c) from the exact (F = 1) 4-bit entropy, N-bit codes, and the
    mean of the bin centres -- all recomputed in NumPy; the host codec's bytes
    and exact round trip recomputed with the codec directly."""
    objective, params, batches = _problem(num_workers=2)
    tx = optax.sgd(0.3, momentum=0.9)
    sync = cs.SyncConfig(mode="dynamic", fraction=1.0, prelim_bits=4, floor=3,
                         grouping=grouping)
    rng = jax.random.PRNGKey(7)
    state = cs.init_workers(params, tx, 2, rng=rng)
    round_fn = cs.make_sync_round(objective, tx, sync, params, donate=False)
    new, out = round_fn(state, batches)

    groups = cs.layer_groups(params, grouping)
    local = [jax.tree.leaves(_reference_local(objective, tx, params, jax.random.fold_in(rng, w),
                                              jax.tree.map(lambda x: x[w], batches)))
             for w in range(2)]
    got = jax.tree.leaves(new.params)
    account = cs.account_bytes(out, groups)
    for name, idx in groups:
        deq, expected_bytes = [], []
        for w in range(2):
            vec = np.concatenate([np.asarray(local[w][i]).ravel() for i in idx])
            c4, _, _ = _np_quantize(vec, 4)
            h = _np_entropy(c4, 16)
            n = int(np.ceil(h + 3 - 1e-6))
            codes, lo, hi = _np_quantize(vec, n)
            assert out["num_bits"][name][w] == n
            np.testing.assert_allclose(out["entropy"][name][w], h, atol=1e-5)
            np.testing.assert_array_equal(out["codes"][name][w], codes)
            np.testing.assert_allclose(out["code_entropy"][name][w], _np_entropy(codes, 2 ** n),
                                       atol=1e-5)
            assert codes.max() < 2 ** n
            deq.append(lo + (codes + 0.5) * (hi - lo) / 2.0 ** n)
            blob = codec.encode(codes, 2 ** n)
            np.testing.assert_array_equal(codec.decode(blob), codes)
            expected_bytes.append(len(blob) + 9)
            assert account["package_bytes"][name][w] == len(blob) + 9
        avg = (deq[0] + deq[1]) / 2
        start = 0
        for i in idx:
            size = got[i][0].size
            for w in range(2):   # every worker holds the same average
                np.testing.assert_allclose(np.asarray(got[i][w]).ravel(), avg[start:start + size],
                                           rtol=0, atol=2e-7)
            start += size
    total = sum(account["package_bytes"][g] for g, _ in groups)
    np.testing.assert_array_equal(account["bytes_per_worker"], total)
    sizes = cs.group_sizes(params, groups)
    rec = cs.sync_record(out, sizes, account)
    n_tot = sum(sizes.values())
    assert rec["wire_bits_per_parameter"] == pytest.approx(8 * total.mean() / n_tot)
    assert rec["raw_bits_per_parameter"] == pytest.approx(
        sum(out["num_bits"][g].mean() * sizes[g] for g in sizes) / n_tot)
    # Huffman is within one bit of the entropy and below the fixed width N
    assert rec["entropy_bits_per_parameter"] <= rec["coded_bits_per_parameter"] + 1e-9
    assert rec["coded_bits_per_parameter"] < rec["entropy_bits_per_parameter"] + 1
    assert rec["coded_bits_per_parameter"] <= rec["raw_bits_per_parameter"]


def test_fixed_bits_override_and_one_worker_is_quantize_in_the_loop():
    """P = 1: the sync replaces the weights by their N-bit bin centres (the
    thesis's single-network experiment); num_bits is a run-time argument."""
    objective, params, batches = _problem(num_workers=1)
    tx = optax.sgd(0.2)
    round_fn = cs.make_sync_round(objective, tx, cs.SyncConfig(mode="fixed", num_bits=8),
                                  params, donate=False)
    state = cs.init_workers(params, tx, 1)
    local = jax.tree.leaves(_reference_local(objective, tx, params,
                                             jax.random.fold_in(jax.random.PRNGKey(0), 0),
                                             jax.tree.map(lambda x: x[0], batches)))
    for n in (2, 5):
        new, out = round_fn(state, batches, num_bits=n)
        for name, idx in round_fn.groups:
            assert int(out["num_bits"][name][0]) == n
            vec = np.concatenate([np.asarray(local[i]).ravel() for i in idx])
            codes, lo, hi = _np_quantize(vec, n)
            got = np.concatenate([np.asarray(jax.tree.leaves(new.params)[i][0]).ravel()
                                  for i in idx])
            np.testing.assert_allclose(got, lo + (codes + 0.5) * (hi - lo) / 2.0 ** n, atol=2e-7)
            assert len(np.unique(got)) <= 2 ** n


_EIGHT_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, numpy as np, optax
    from neurojax.train import worker_sync as cs
    from neurojax.train.step import make_mesh, make_train_step, shard_batch
    from neurojax.train.state import create_train_state
    from tests.train.test_worker_sync import _problem, _reference_local
    assert jax.device_count() == 8
    mesh = make_mesh()

    # (a) no quantisation, K = 3: exactly plain synchronous averaging
    objective, params, batches = _problem(num_workers=8, local_steps=3)
    tx = optax.sgd(0.3, momentum=0.9)
    rng = jax.random.PRNGKey(1)
    state = cs.init_workers(params, tx, 8, mesh=mesh, rng=rng)
    assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == 8
    round_fn = cs.make_sync_round(objective, tx, cs.SyncConfig(mode="none"), params, mesh=mesh)
    new, out = round_fn(state, batches)
    local = [jax.tree.leaves(_reference_local(objective, tx, params, jax.random.fold_in(rng, w),
                                              jax.tree.map(lambda x: x[w], batches)))
             for w in range(8)]
    for i, leaf in enumerate(jax.tree.leaves(new.params)):
        acc = np.asarray(local[0][i], np.float32)
        for w in range(1, 8):
            acc = acc + np.asarray(local[w][i], np.float32)
        expected = acc / np.float32(8)
        for w in range(8):
            np.testing.assert_array_equal(np.asarray(leaf[w]), expected)
    assert "codes" not in out

    # (b) K = 1, no quantisation, SGD with momentum: data-parallel SGD on the global batch
    objective, params, batches = _problem(num_workers=8, local_steps=4, batch=2, seed=3)
    tx = optax.sgd(0.2, momentum=0.9)
    state = cs.init_workers(params, tx, 8, mesh=mesh)
    round_fn = cs.make_sync_round(objective, tx, cs.SyncConfig(mode="none"), params, mesh=mesh)
    ref = create_train_state(jax.tree.map(np.array, params), tx)
    step = make_train_step(objective, tx, mesh=mesh, donate=False)
    for s in range(4):
        one = jax.tree.map(lambda x: x[:, s:s + 1], batches)
        state, _ = round_fn(state, one)
        ref, _ = step(ref, shard_batch(jax.tree.map(lambda x: x[:, s].reshape(
            (-1,) + x.shape[3:]), batches), mesh))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(np.asarray(a[3]), np.asarray(b), rtol=0, atol=2e-6)
    moved = max(float(np.abs(np.asarray(a[0]) - np.asarray(p)).max())
                for a, p in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 1e-2, moved

    # (c) dynamic compression, 16 workers on 8 devices: identical copies, bytes logged
    objective, params, batches = _problem(num_workers=16, local_steps=2)
    state = cs.init_workers(params, tx, 16, mesh=mesh)
    round_fn = cs.make_sync_round(objective, tx, cs.SyncConfig(floor=5, grouping="leaf"),
                                  params, mesh=mesh)
    new, out = round_fn(state, batches)
    assert len(round_fn.groups) == 4
    for leaf in jax.tree.leaves(new.params):
        leaf = np.asarray(leaf)
        assert (leaf == leaf[0]).all()
    account = cs.account_bytes(out, round_fn.groups)
    assert account["bytes_per_worker"].shape == (16,) and (account["bytes_per_worker"] > 0).all()
    print("EIGHT_OK")
""")


@pytest.mark.slow
def test_eight_devices_equal_plain_averaging_and_data_parallel_sgd():
    """8 forced CPU devices (shard_map over 'data'): (a) no quantisation is
    bit-exact synchronous averaging of independently trained copies; (b)
    K = 1 with SGD+momentum equals the sharded data-parallel step on the
    global batch (mean of the workers' momenta = momentum of the mean
    gradient), to float32 rounding; (c) 16 workers on 8 devices."""
    run_with_forced_devices(_EIGHT_DEVICES, "EIGHT_OK")
