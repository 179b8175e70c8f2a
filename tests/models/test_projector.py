"""Projector head against a numpy forward pass; parameter counts against
Table 5 of the paper; the beta = c / d helper."""
import chex
import jax
import numpy as np
import pytest

from neurojax.losses import barlow_twins_multiview
from neurojax.models import Projector, beta_for_dim, beta_sweep, projector_num_params
from tests.models._helpers import abstract_init, init, n_params, randn, to_np


def np_batch_norm(h, mean, var, scale, bias, eps=1e-5):
    return (h - mean) / np.sqrt(var + eps) * scale + bias


def test_forward_matches_numpy_train_and_eval():
    model = Projector(output_dim=3, hidden_dims=(5, 4))
    x = randn(6, 7, seed=0)
    variables = init(model, x, seed=1)

    @jax.jit
    def forward(v, x):
        train_out, state = model.apply(v, x, train=True, mutable=["batch_stats"])
        return train_out, state, model.apply(v, x, train=False)

    train_out, state, eval_out = forward(variables, x)
    p, h_train, h_eval = to_np(variables["params"]), np.asarray(x, np.float64), \
        np.asarray(x, np.float64)
    new_stats = {}
    for i in range(2):
        assert "bias" not in p[f"dense_{i}"]          # no bias before BatchNorm
        bn = p[f"bn_{i}"]
        h_train = h_train @ p[f"dense_{i}"]["kernel"]
        mean, var = h_train.mean(0), h_train.var(0)   # biased batch variance
        new_stats[i] = (0.9 * 0 + 0.1 * mean, 0.9 * 1 + 0.1 * var)
        h_train = np.maximum(np_batch_norm(h_train, mean, var, bn["scale"], bn["bias"]), 0)
        h_eval = h_eval @ p[f"dense_{i}"]["kernel"]   # running stats: 0 and 1
        h_eval = np.maximum(np_batch_norm(h_eval, 0.0, 1.0, bn["scale"], bn["bias"]), 0)
    head = p["head"]
    chex.assert_shape([train_out, eval_out], (6, 3))
    np.testing.assert_allclose(train_out, h_train @ head["kernel"] + head["bias"],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(eval_out, h_eval @ head["kernel"] + head["bias"],
                               rtol=1e-4, atol=1e-5)
    for i, (mean, var) in new_stats.items():   # PyTorch momentum 0.1 (Flax 0.9)
        np.testing.assert_allclose(state["batch_stats"][f"bn_{i}"]["mean"], mean, rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(state["batch_stats"][f"bn_{i}"]["var"], var, rtol=1e-4)


def test_default_is_the_papers_projector():
    """Linear(D -> d, no bias) -> BN -> ReLU -> Linear(d -> d, bias)."""
    variables = abstract_init(Projector(output_dim=16), (4, 32))
    shapes = jax.tree.map(lambda a: a.shape, variables["params"])
    assert shapes == {"dense_0": {"kernel": (32, 16)},
                      "bn_0": {"scale": (16,), "bias": (16,)},
                      "head": {"kernel": (16, 16), "bias": (16,)}}


# Table 5 of the paper (ResNet-50 features, D = 2048): "approx" parameters.
# They count the two weight matrices, 2048 d + d^2, some truncated (589,824
# -> 589k, 8,388,608 -> 8.3M), some rounded (25,165,824 -> 25.2M).
TABLE5 = {64: "135k", 128: "278k", 256: "589k", 512: "1.3M", 1024: "3.1M",
          2048: "8.3M", 4096: "25.2M", 8192: "83.9M"}


def _approx(count: int) -> set[str]:
    if count < 10 ** 6:
        return {f"{count // 1000}k", f"{round(count / 1000)}k"}
    return {f"{int(count / 10 ** 5) / 10:.1f}M", f"{count / 10 ** 6:.1f}M"}


@pytest.mark.parametrize("d", sorted(TABLE5))
def test_param_counts_match_table5(d):
    full = projector_num_params(2048, d)
    assert full == 2048 * d + d * d + 3 * d   # + BatchNorm scale/shift, output bias
    assert TABLE5[d] in _approx(full - 3 * d)


@pytest.mark.parametrize("kwargs", [
    dict(output_dim=8),
    dict(output_dim=8, hidden_dims=()),
    dict(output_dim=8, hidden_dims=(6, 5), batch_norm=False),
    dict(output_dim=8, hidden_dims=(6,), hidden_bias=True, output_bias=False),
])
def test_param_count_formula_matches_init(kwargs):
    variables = abstract_init(Projector(**kwargs), (2, 12))
    expected = projector_num_params(12, **kwargs)
    assert n_params(variables["params"]) == expected


def test_variants_single_linear_and_no_batchnorm():
    x = randn(4, 6, seed=2)
    linear = Projector(output_dim=3, hidden_dims=[])   # config lists become tuples
    assert linear.hidden_dims == ()
    v = init(linear, x)
    head = to_np(v["params"])["head"]
    k, b = head["kernel"], head["bias"]
    np.testing.assert_allclose(linear.apply(v, x), x @ k + b, rtol=1e-5, atol=1e-6)
    plain = Projector(output_dim=3, hidden_dims=(5,), batch_norm=False, activation="tanh")
    v = init(plain, x)
    assert "batch_stats" not in v and "bias" in v["params"]["dense_0"]
    p = to_np(v["params"])
    h = np.tanh(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
    np.testing.assert_allclose(plain.apply(v, x), h @ p["head"]["kernel"] + p["head"]["bias"],
                               rtol=1e-5, atol=1e-6)


def test_projector_trains_with_multiview_loss():
    """End to end: m views through one projector, Eq. 10 Barlow Twins, a
    finite gradient for every parameter, under jit."""
    model = Projector(output_dim=4, hidden_dims=(8,))
    views = randn(3, 6, 5, seed=3)
    variables = init(model, views)

    @jax.jit
    def loss_fn(params, batch_stats, views):
        z, _ = model.apply({"params": params, "batch_stats": batch_stats}, views,
                           train=True, mutable=["batch_stats"])
        return barlow_twins_multiview(z, beta_for_dim(4))[0]

    grads = jax.grad(loss_fn)(variables["params"], variables["batch_stats"], views)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads))


def test_beta_for_dim():
    assert beta_for_dim(256) == pytest.approx(0.02)   # FastSSL's lambd at d = 256
    assert beta_for_dim(128) == pytest.approx(0.04)
    assert beta_for_dim(512) == pytest.approx(0.01)
    assert beta_for_dim(8192, c=8192 * 0.0004) == pytest.approx(0.0004)
    assert beta_for_dim(64, c=1.0) == 1 / 64
    grid = beta_sweep([64, 256], multipliers=(0.5, 1.0))
    assert grid == ((64, 0.5 * 5.12 / 64), (64, 5.12 / 64), (256, 0.01), (256, 0.02))


@pytest.mark.parametrize("call, match", [
    (lambda: Projector(output_dim=0), "output_dim"),
    (lambda: Projector(output_dim=4, hidden_dims=(4, 0)), "hidden_dims"),
    (lambda: Projector(output_dim=4, activation="swishy"), "activation"),
    (lambda: Projector(output_dim=4, epsilon=0.0), "epsilon"),
    (lambda: Projector(output_dim=4, momentum=1.5), "momentum"),
    (lambda: beta_for_dim(0), "d must"),
    (lambda: beta_for_dim(64, c=-1.0), "c must"),
    (lambda: beta_sweep([]), "dims"),
    (lambda: beta_sweep([64], multipliers=(0.0,)), "multipliers"),
    (lambda: projector_num_params(0, 4), "input_dim"),
])
def test_errors_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
