"""The SSL task: objective = loss of the embedded views; loop integration."""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.losses import barlow_twins, barlow_twins_multiview
from neurojax.models.ssl import build_ssl_network
from neurojax.train import validate_config
from neurojax.train.ssl import ssl_loss_fn, ssl_objective, time_to_thresholds
from tests.train.test_loop import Interrupt, interrupt_at


def _net_and_variables(x):
    net = build_ssl_network("mlp", {"output_dim": 6}, widths=(12,))
    variables = net.init(jax.random.PRNGKey(0), x)
    return net, variables


def _fake_views(key, images):
    """Two groups: 3 noisy copies, 1 mirrored copy (independent of the
    library's augmentations, so the objective is tested on its own; the MLP
    encoder needs one resolution)."""
    noise = jax.random.normal(key, (3,) + images.shape)
    large = images[None] + 0.1 * noise
    mirrored = images[:, :, ::-1][None]
    return large, mirrored


@pytest.mark.slow
def test_objective_is_the_loss_of_the_embedded_views():
    x = np.random.default_rng(0).uniform(size=(16, 4, 4, 1)).astype(np.float32)
    net, variables = _net_and_variables(x)
    params = variables.pop("params")
    loss_fn = ssl_loss_fn("barlow_twins_multiview", 4, lambd=0.05)
    objective = ssl_objective(net, loss_fn, _fake_views)

    rng = jax.random.PRNGKey(3)
    loss, (aux, new_state) = objective(params, variables, {"image": x}, rng)

    # independent: embed each view on its own group, by hand
    large, small = _fake_views(jax.random.fold_in(rng, 0), x)
    state = variables
    zs = []
    for group in (large, small):
        flat = group.reshape((-1,) + group.shape[2:])
        z, state = net.apply({"params": params, **state}, flat, train=True,
                             mutable=["batch_stats"])
        zs.append(np.asarray(z).reshape(group.shape[0], 16, -1))
    z = np.concatenate(zs)
    expected, expected_aux = barlow_twins_multiview(jnp.asarray(z), 0.05)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert set(aux) == set(expected_aux)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), new_state, state)

    # with m = 2 the two-view loss gives the multi-view loss's value
    z2 = jnp.asarray(z[:2])
    two = ssl_loss_fn("barlow_twins", 2, lambd=0.05)(z2)[0]
    np.testing.assert_allclose(two, barlow_twins(z2[0], z2[1], 0.05)[0], rtol=1e-6)


@pytest.mark.slow
def test_objective_gradient_matches_finite_differences():
    jax.config.update("jax_enable_x64", True)
    try:
        x = np.random.default_rng(1).uniform(size=(8, 4, 4, 1))
        net, variables = _net_and_variables(x)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), variables.pop("params"))
        objective = ssl_objective(net, ssl_loss_fn("vicreg_multiview", 4), _fake_views)
        f = jax.jit(lambda p: objective(p, variables, {"image": x}, jax.random.PRNGKey(0))[0])
        grads = jax.jit(jax.grad(f))(params)
        leaf = params["projector"]["head"]["kernel"]
        g = grads["projector"]["head"]["kernel"]
        eps = 1e-6
        for idx in [(0, 0), (3, 2), (5, 5)]:
            bump = lambda s: jax.tree.map(lambda p: p, {**params, "projector": {
                **params["projector"], "head": {**params["projector"]["head"],
                                                "kernel": leaf.at[idx].add(s)}}})
            fd = (f(bump(eps)) - f(bump(-eps))) / (2 * eps)
            np.testing.assert_allclose(g[idx], fd, rtol=1e-5, atol=1e-8)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_loss_names_and_view_counts_are_checked():
    with pytest.raises(ValueError, match="config.loss.name"):
        ssl_loss_fn("barlow", 2)
    with pytest.raises(ValueError, match="two-view loss"):
        ssl_loss_fn("simclr", 4, temperature=0.5)


def test_time_to_thresholds_reads_the_first_crossing():
    records = [{"train_seconds": 10.0, "knn_accuracy": 0.3, "ridge_accuracy": 0.5},
               {"train_seconds": 20.0, "knn_accuracy": 0.6, "ridge_accuracy": 0.4},
               {"train_seconds": 30.0, "knn_accuracy": 0.7, "ridge_accuracy": 0.7}]
    out = time_to_thresholds(records, (0.5, 0.65, 0.9))
    assert out["knn_seconds_to_0.5"] == 20.0 and out["knn_seconds_to_0.65"] == 30.0
    assert out["ridge_seconds_to_0.5"] == 10.0 and math.isnan(out["ridge_seconds_to_0.9"])


# ---------------------------------------------------------------------------
# through the loop
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _ssl_shapes_config(data_dir):
    from configs import ssl_shapes
    config = ssl_shapes.get_config("runlocal")
    config.dataset.data_dir = data_dir
    config.model.widths = (8, 16)  # small: the test is about the loop, not the model
    config.projector.output_dim = 16
    config.train.checkpoint_every = 2
    config.probe.accuracy_thresholds = (0.05, 0.99)
    return config


@pytest.mark.slow
def test_ssl_run_logs_probes_spectrum_and_time(data_dir, tmp_path):
    from neurojax.train.loop import train_and_evaluate
    config = _ssl_shapes_config(data_dir)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    final = full.eval_metrics
    for key in ("knn_accuracy", "ridge_accuracy", "alpha", "effective_rank",
                "train_seconds", "epoch", "knn_seconds_to_0.05"):
        assert key in final, key
    assert 0.0 <= final["knn_accuracy"] <= 1.0
    assert final["knn_seconds_to_0.05"] <= final["train_seconds"]
    assert math.isnan(final["knn_seconds_to_0.99"])
    with open(os.path.join(tmp_path, "full", "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[0]["train_seconds"] <= evals[1]["train_seconds"]
    assert all("invariance" in r and "redundancy" in r
               for r in records if r["split"] == "train")



@pytest.mark.slow  # three SSL runs (~1-2 min); the supervised loop test covers resumption
def test_ssl_resume_matches_uninterrupted_run(data_dir, tmp_path):
    """Killed at step 3 (checkpoint at 2), restarted: the same parameters, as
    the views are drawn from the step's rng inside the compiled step."""
    from neurojax.train.loop import train_and_evaluate
    config = _ssl_shapes_config(data_dir)
    config.probe.probes = ("knn",)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    workdir = str(tmp_path / "cut")
    with pytest.raises(Interrupt):
        train_and_evaluate(config, workdir, hooks=[interrupt_at(3)], progress=False)
    resumed = train_and_evaluate(config, workdir, progress=False)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(full.state.params),
                 jax.device_get(resumed.state.params))


@pytest.mark.parametrize("field, value, name", [
    ("views.num_views", 1, "config.views"),
    ("views.small_views", 2, "config.views.small_size"),
    ("loss.lambd", -1.0, "config.loss"),
    ("loss.name", "simclr", "config.loss.name"),
    ("probe.probes", ("knn", "svm"), "config.probe.probes"),
    ("probe.knn_k", 0, "config.probe.knn_k"),
    ("projector.output_dim", 0, "config.projector"),
    ("dataset.fraction", 1.5, "config.dataset.fraction"),
])
def test_ssl_validation_names_the_field(field, value, name):
    from configs import ssl_shapes
    config = ssl_shapes.get_config()
    block, key = field.split(".")
    config[block][key] = value
    if field == "loss.name":
        config.views.num_views = 4
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        validate_config(config)


@pytest.mark.slow
def test_mixed_resolution_views_train_a_globally_pooled_encoder():
    """Multi-crop (E6): two large and two small views per image in one loss;
    each resolution group is embedded on its own, the loss sees all four."""
    from neurojax.data.augment import cifar_recipe
    from neurojax.data.views import make_views
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 3)).astype(np.float32)
    net = build_ssl_network("small_cnn", {"output_dim": 6}, widths=(4, 8), hidden=None,
                            global_pool=True)
    variables = net.init(jax.random.PRNGKey(0), x)
    params = variables.pop("params")
    views = lambda key, images: make_views(key, images, 2, cifar_recipe(8), small_views=2,
                                           small_size=4)
    seen = []
    loss_fn = ssl_loss_fn("barlow_twins_multiview", 4, lambd=0.1)
    objective = ssl_objective(net, lambda z: (seen.append(z.shape), loss_fn(z))[1], views)
    (loss, _), grads = jax.value_and_grad(objective, has_aux=True)(
        params, variables, {"image": x}, jax.random.PRNGKey(1))
    assert seen == [(4, 8, 6)]
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_multicrop_with_a_flattening_encoder_fails_before_training(data_dir, tmp_path):
    from neurojax.train.loop import train_and_evaluate
    config = _ssl_shapes_config(data_dir)  # small_cnn flattens its last stage
    config.views.small_views = 2
    config.views.small_size = 8
    with pytest.raises(ValueError, match="global_pool"):
        train_and_evaluate(config, str(tmp_path), progress=False)


def test_view_size_unlike_the_images_with_a_flattening_encoder_fails_before_training(
        data_dir, tmp_path):
    from neurojax.train.loop import train_and_evaluate
    config = _ssl_shapes_config(data_dir)  # small_cnn flattens its last stage
    config.views.size = 8
    with pytest.raises(ValueError, match="config.views.size needs"):
        train_and_evaluate(config, str(tmp_path), progress=False)


def test_resolution_check_accepts_pooled_encoders_and_refuses_flattening_ones():
    from neurojax.train.ssl import _check_resolution_independent
    pooled = build_ssl_network("small_cnn", {"output_dim": 8}, widths=(4, 8), hidden=None,
                               global_pool=True)
    _check_resolution_independent(pooled, 16, 8, 3)  # no error
    flat = build_ssl_network("small_cnn", {"output_dim": 8}, widths=(4, 8), hidden=None)
    with pytest.raises(ValueError, match="config.views.small_views"):
        _check_resolution_independent(flat, 16, 8, 3)
