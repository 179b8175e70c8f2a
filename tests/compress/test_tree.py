"""compress_tree / decompress_tree (Algorithms 1 and 2 over a PyTree)."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurojax.compress as nc
from neurojax.models import MLP


@pytest.fixture(scope="module")
def params():
    model = MLP(widths=(24, 12), num_outputs=5)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 8)))
    return jax.tree_util.tree_map(np.asarray, variables["params"])


def flat(tree):
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("method", ["huffman", "ans"])
def test_round_trip_within_half_a_bin(params, method):
    blob, stats = nc.compress_tree(params, method=method, seed=3, return_stats=True)
    out = nc.decompress_tree(blob)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(params)
    by_name = {s.path: s for s in stats.leaves}
    for name, w in flat(params).items():
        got = flat(out)[name]
        st = by_name[f"params{name}"]
        assert got.dtype == w.dtype and got.shape == w.shape
        assert 1 <= st.num_bits <= 16
        delta = (float(w.max()) - float(w.min())) / 2 ** st.num_bits
        tol = 4 * np.finfo(np.float32).eps * float(np.abs(w).max())
        assert np.abs(got.astype(np.float64) - w).max() <= delta / 2 + tol
    # The bits-on-the-wire account.
    n = sum(w.size for w in flat(params).values())
    assert stats.num_params == n and stats.total_bits == 8 * len(blob)
    assert stats.bits_per_parameter == pytest.approx(8 * len(blob) / n)
    assert stats.compression_ratio == pytest.approx(32 / stats.bits_per_parameter)
    assert stats.code_entropy_bits_per_parameter <= stats.payload_bits_per_parameter + 1e-9
    assert stats.payload_bits_per_parameter < stats.raw_bits_per_parameter


def test_methods_share_the_quantisation_and_seed_is_deterministic(params):
    a = nc.decompress_tree(nc.compress_tree(params, method="huffman", seed=1))
    b = nc.decompress_tree(nc.compress_tree(params, method="ans", seed=1))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert nc.compress_tree(params, seed=1) == nc.compress_tree(params, key=jax.random.key(1))


def test_quantize_tree_is_what_compress_tree_codes(params):
    quantized = nc.quantize_tree(params, seed=2)
    _, stats = nc.compress_tree(params, seed=2, return_stats=True)
    for st in stats.leaves:
        q = quantized[st.path[len("params"):]]
        assert int(q.num_bits) == st.num_bits and q.codes.dtype == np.int32
        assert nc.entropy_of_codes(q.codes) == pytest.approx(st.code_entropy)


def test_fixed_bits_and_floor(params):
    _, stats = nc.compress_tree(params, num_bits=3, return_stats=True)
    assert {s.num_bits for s in stats.leaves} == {3}
    assert stats.raw_bits_per_parameter == 3.0
    _, stats = nc.compress_tree(params, floor=6, prelim_bits=4, return_stats=True)
    for s in stats.leaves:   # N = ceil(H + c) lies in [c, c + M]
        assert 6 <= s.num_bits <= 10 and s.num_bits >= s.entropy_estimate + 6 - 1e-6


def test_structure_dtypes_and_templates():
    Pair = collections.namedtuple("Pair", "a b")
    tree = {"w": [np.linspace(-1, 1, 7, dtype=np.float32), (np.arange(3, dtype=np.int32),)],
            "h": jnp.ones((2, 2), jnp.bfloat16) * 3, "s": np.float32(2.5),
            "empty": np.zeros((0, 3), np.float32)}
    out = nc.decompress_tree(nc.compress_tree(tree))
    assert isinstance(out["w"], list) and isinstance(out["w"][1], list)  # tuples -> lists
    np.testing.assert_array_equal(out["w"][1][0], tree["w"][1][0])     # ints verbatim
    assert out["h"].dtype == jnp.bfloat16 and np.all(np.asarray(out["h"], np.float32) == 3)
    assert out["s"].shape == () and out["s"] == 2.5 and out["empty"].shape == (0, 3)
    with_tuples = nc.decompress_tree(nc.compress_tree(tree), template=tree)
    assert jax.tree_util.tree_structure(with_tuples) == jax.tree_util.tree_structure(tree)

    nt = Pair(np.ones(3, np.float32), {"x": np.zeros(2, np.float32)})
    blob = nc.compress_tree(nt)
    with pytest.raises(ValueError, match="template"):
        nc.decompress_tree(blob)
    assert isinstance(nc.decompress_tree(blob, template=nt), Pair)
    with pytest.raises(ValueError, match="template"):
        nc.decompress_tree(blob, template={"a": 1, "b": {"x": 2}})
    assert nc.decompress_tree(nc.compress_tree({})) == {}
    root = nc.decompress_tree(nc.compress_tree(np.full(4, 7.0, np.float32)))
    np.testing.assert_array_equal(root, np.full(4, 7.0, np.float32))


def test_single_array_package():
    w = np.random.default_rng(0).standard_normal((33, 7)).astype(np.float32)
    blob, st = nc.compress_array(w, jax.random.key(0), num_bits=8)
    rec = nc.decompress_array(blob)
    assert st.num_bits == 8 and np.abs(rec - w).max() <= (w.max() - w.min()) / 2 ** 9 + 1e-6


def test_corrupted_and_truncated_tree_bytes_raise(params):
    blob = nc.compress_tree(params)
    for cut in (0, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(ValueError, match="truncated"):
            nc.decompress_tree(blob[:cut])
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(blob), 20):
        bad = bytearray(blob)
        bad[pos] ^= 0x5A
        with pytest.raises(ValueError):
            nc.decompress_tree(bytes(bad))


def test_bad_inputs_raise(params):
    with pytest.raises(ValueError, match=r"params\['b'\].*non-finite"):
        nc.compress_tree({"a": np.ones(3, np.float32), "b": np.array([1.0, np.nan], np.float32)})
    for kwargs, field in [({"method": "lzw"}, "method"), ({"fraction": 0.0}, "fraction"),
                          ({"prelim_bits": 17}, "prelim_bits"), ({"floor": -1}, "floor"),
                          ({"num_bits": 0}, "num_bits"), ({"sampler": "x"}, "sampler")]:
        with pytest.raises(ValueError, match=field):
            nc.compress_tree(params, **kwargs)


# ------------------------------------------------------------------ groups


def test_layer_groups_put_a_bias_with_its_kernel(params):
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    groups = nc.layer_groups(params)
    # every leaf in exactly one group, in flattening order, grouped by parent path
    assert [i for _, idx in groups for i in idx] == list(range(len(names)))
    for name, idx in groups:
        assert {names[i].rsplit("[", 1)[0] for i in idx} == {name}
        assert len(idx) == 2                               # kernel and bias of a Dense
    leaf = nc.layer_groups(params, "leaf")
    assert [name for name, _ in leaf] == names and all(len(idx) == 1 for _, idx in leaf)
    assert nc.layer_groups(np.zeros(3)) == (("params", (0,)),)
    with pytest.raises(ValueError, match="must be floating point"):
        nc.layer_groups({"w": np.zeros(3, np.int32)})
    with pytest.raises(ValueError, match="grouping"):
        nc.layer_groups(params, "module")
    with pytest.raises(ValueError, match="at least one array"):
        nc.layer_groups({})


def test_group_vector_and_split_group_against_numpy():
    rng = np.random.default_rng(0)
    leaves = [rng.standard_normal((3, 4, 2)).astype(np.float32),
              jnp.asarray(rng.standard_normal((3, 5)), jnp.bfloat16),
              rng.standard_normal((3, 1)).astype(np.float32)]
    idx = (1, 0)
    vec = nc.group_vector(leaves, idx, batch_dims=1)        # leading worker axis of 3
    ref = np.concatenate([np.asarray(leaves[1], np.float32).reshape(3, -1),
                          leaves[0].reshape(3, -1)], axis=1)
    assert vec.dtype == jnp.float32
    np.testing.assert_array_equal(vec, ref)
    back = nc.split_group(vec * 2, leaves, idx, batch_dims=1)
    assert back[0].dtype == jnp.bfloat16 and back[0].shape == (3, 5)
    np.testing.assert_array_equal(np.asarray(back[0], np.float32),
                                  np.asarray(leaves[1], np.float32) * 2)
    np.testing.assert_array_equal(back[1], leaves[0] * 2)
    # no batch axis: one vector for the whole group
    whole = nc.group_vector(leaves, (0, 2))
    np.testing.assert_array_equal(whole, np.concatenate([leaves[0].ravel(), leaves[2].ravel()]))
    with pytest.raises(ValueError, match="entries"):
        nc.split_group(whole[:-1], leaves, (0, 2))
