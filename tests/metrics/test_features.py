"""gather_features / collect_features / streaming_covariance on a tiny MLP,
against the direct forward pass and numpy's covariance; gather_features also
data-parallel over a mesh of 4 CPU devices (in a subprocess)."""
import itertools
import subprocess
import sys

import jax
import numpy as np
import pytest

from neurojax.metrics import (collect_features, covariance_init, covariance_matrix,
                              covariance_update, eigenspectrum, gather_features,
                              make_features_step, streaming_covariance)
from neurojax.metrics.features import padded_batches
from neurojax.models import MLP, intermediate_features
from tests._devices import run_with_forced_devices


@pytest.fixture(autouse=True)
def full_precision_matmuls():
    # GPUs multiply float32 in TF32 by default, differently in the jitted and
    # the eager path; compare the two at full precision.
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def setup():
    model = MLP(widths=(16, 12), num_outputs=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((23, 2, 2, 2)).astype(np.float32)   # flattened by the MLP
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x[:1])
    return model, variables, x


def batches(x, size=5):
    """Dict batches with 'image'; the last one is smaller (23 = 4 * 5 + 3)."""
    return [{"image": x[i:i + size], "label": np.zeros(len(x[i:i + size]))}
            for i in range(0, len(x), size)]


def test_collect_features_equals_direct_forward_pass(setup):
    model, variables, x = setup
    direct = intermediate_features(model, variables, x, filter="act_0")["act_0"]
    got = collect_features(model, variables, batches(x), layer="act_0")
    assert got.shape == (23, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)
    out = collect_features(model, variables, batches(x), layer=None)
    np.testing.assert_allclose(out, model.apply(variables, x), rtol=1e-5, atol=1e-6)


def test_collect_features_max_examples_stops_pulling(setup):
    model, variables, x = setup
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield {"image": x[(5 * i) % 20:(5 * i) % 20 + 5]}
    got = collect_features(model, variables, endless(), layer="act_0", max_examples=12)
    assert got.shape == (12, 16)
    assert len(pulled) == 3                       # 5 + 5 + 2 of the third batch
    direct = intermediate_features(model, variables, x[:12], filter="act_0")["act_0"]
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)


def test_collect_features_features_fn_and_errors(setup):
    model, variables, x = setup

    def features_fn(v, images):                   # any extraction, e.g. a sum of layers
        f = intermediate_features(model, v, images, filter=["act_0", "act_1"])
        return f["act_1"].sum(-1, keepdims=True) + f["act_0"]
    got = collect_features(None, variables, [x[:10], x[10:]], layer=None,
                           features_fn=features_fn)
    np.testing.assert_allclose(got, features_fn(variables, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not recorded"):
        collect_features(model, variables, batches(x), layer="dense_9")
    with pytest.raises(ValueError, match="either layer or features_fn"):
        collect_features(model, variables, batches(x), layer="act_0", features_fn=features_fn)
    with pytest.raises(ValueError, match="no examples"):
        collect_features(model, variables, [], layer=None)
    with pytest.raises(ValueError, match="max_examples"):
        collect_features(model, variables, batches(x), layer=None, max_examples=0)


def test_streaming_covariance_equals_batch_covariance(setup):
    model, variables, x = setup
    feats = collect_features(model, variables, batches(x), layer="act_0")
    res = streaming_covariance(model, variables, batches(x, size=7), layer="act_0")
    ref = np.cov(feats.astype(np.float64).T, bias=True)   # the 1/n covariance
    assert res.count == 23
    np.testing.assert_allclose(res.covariance, ref, atol=1e-5)
    np.testing.assert_allclose(res.mean, feats.mean(0), atol=1e-6)
    np.testing.assert_allclose(res.eigenvalues, eigenspectrum(feats), atol=1e-5)
    assert res.eigenvalues.shape == (16,)
    truncated = streaming_covariance(model, variables, batches(x), layer="act_0",
                                     max_examples=9, max_eigenvalues=4)
    assert truncated.count == 9 and truncated.eigenvalues.shape == (4,)
    np.testing.assert_allclose(truncated.eigenvalues, eigenspectrum(feats[:9])[:4], atol=1e-5)


def test_covariance_update_stable_with_large_mean():
    # float32 features with mean 1e3 x their spread: the pairwise update keeps
    # the small eigenvalues that sum ff^T / n - mu mu^T would cancel away.
    rng = np.random.default_rng(1)
    f = (1000.0 + rng.standard_normal((600, 8)) * np.geomspace(1, 0.01, 8)).astype(np.float32)
    update = jax.jit(covariance_update)
    state = covariance_init(8)
    for i in range(0, 600, 64):
        state = update(state, f[i:i + 64])
    ref = np.cov(f.astype(np.float64).T, bias=True)
    np.testing.assert_allclose(np.linalg.eigvalsh(covariance_matrix(state)),
                               np.linalg.eigvalsh(ref), rtol=1e-3)


def test_metrics_does_not_import_models_or_train_at_import_time():
    code = ("import sys, neurojax.metrics; sys.exit(any(m.startswith(('neurojax.models', "
            "'neurojax.train', 'neurojax.data')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _two_layers(model):
    def features_fn(v, images):
        f = intermediate_features(model, v, images, filter=["act_0", "act_1"])
        return {"act_0": f["act_0"], "act_1": f["act_1"]}
    return features_fn


def test_gather_features_layers_and_labels_equal_the_direct_forward_pass(setup):
    model, variables, x = setup
    labels = np.arange(23, dtype=np.int32) % 3
    data = [{"image": x[i:i + 5], "label": labels[i:i + 5], "id": np.array(["s"] * 5)[:len(
        x[i:i + 5])]} for i in range(0, 23, 5)]        # string ids are never transferred
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    for m in (None, mesh):
        step = make_features_step(_two_layers(model), m, keep=("label",))
        out = gather_features(step, variables, data)
        direct = intermediate_features(model, variables, x, filter=["act_0", "act_1"])
        assert set(out) == {"features", "label"}
        for layer in ("act_0", "act_1"):
            assert out["features"][layer].dtype == np.float32
            np.testing.assert_allclose(out["features"][layer], direct[layer], rtol=1e-5,
                                       atol=1e-6)
        np.testing.assert_array_equal(out["label"], labels)
        assert out["label"].dtype == np.int32
    # a dataset held as arrays, cut into batches of 7 (23 = 3 * 7 + 2, padded)
    step = make_features_step(lambda v, im: model.apply(v, im, train=False), keep=("label",))
    out = gather_features(step, variables, {"image": x, "label": labels}, batch_size=7)
    np.testing.assert_allclose(out["features"], model.apply(variables, x), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(out["label"], labels)
    one = gather_features(step, variables, {"image": x, "label": labels})  # one batch
    np.testing.assert_allclose(one["features"], out["features"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="no \\['label'\\]"):
        gather_features(step, variables, [x])
    with pytest.raises(ValueError, match="exceeds batch_size=4"):
        gather_features(step, variables, data, batch_size=4)


def test_padded_batches_pad_mask_and_run_a_fixed_number_of_steps():
    data = [{"image": np.ones((3, 2)), "label": np.arange(3)},
            {"image": np.ones((1, 2)), "label": np.arange(1)}]
    out = list(padded_batches(iter(data), 4, num_batches=4, multiple_of=1))
    assert len(out) == 4                           # 2 real + 2 fully masked
    assert [b["mask"].tolist() for b in out] == [[1, 1, 1, 0], [1, 0, 0, 0], [0] * 4, [0] * 4]
    assert all(b["image"].shape == (4, 2) for b in out)
    np.testing.assert_array_equal(out[0]["label"], [0, 1, 2, 0])
    # default size: the largest batch so far, rounded up to the devices
    sizes = [len(b["mask"]) for b in padded_batches(data, multiple_of=4)]
    assert sizes == [4, 4]
    assert list(padded_batches([], 4, num_batches=3)) == []   # nothing to shape a pad on


def test_gather_features_on_a_mesh_of_four_devices():
    """Batches of 6 padded to 8 (a multiple of the 4 devices), split over the
    'data' axis; the replicated features equal one device's forward pass."""
    script = """
import jax, numpy as np
import neurojax
from neurojax.metrics import gather_features, make_features_step
from neurojax.models import MLP
assert len(jax.devices()) == 4
model = MLP(widths=(8,), num_outputs=3)
x = np.random.default_rng(0).standard_normal((23, 5)).astype(np.float32)
y = np.arange(23) % 3
v = model.init(jax.random.key(0), x[:1])
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
step = make_features_step(lambda v, im: model.apply(v, im, train=False), mesh, keep=("label",))
out = gather_features(step, v, {"image": x, "label": y}, batch_size=6, num_batches=5)
with jax.default_matmul_precision("highest"):
    ref = np.asarray(model.apply(v, x))
np.testing.assert_allclose(out["features"], ref, rtol=1e-5, atol=1e-6)
np.testing.assert_array_equal(out["label"], y)
print("GATHER_OK")
"""
    run_with_forced_devices(script, "GATHER_OK", num_devices=4)
