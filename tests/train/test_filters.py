"""Online data filters (neurojax.train.filters; Oland 2024, Sec 5.4, 6.8.2),
each against an independent NumPy / brute-force computation."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from neurojax import losses
from neurojax.train import filters
from neurojax.train.step import model_objective


KEY = jax.random.PRNGKey(0)


def _brute_counts(x, y):
    """c_i by a plain loop: same-label neighbours before the first other label
    (neighbours by squared distance, then index; the example itself excluded)."""
    x = np.asarray(x, np.float64).reshape(len(y), -1)
    out = []
    for i in range(len(y)):
        d = ((x - x[i]) ** 2).sum(1)
        order = sorted((j for j in range(len(y)) if j != i), key=lambda j: (d[j], j))
        c = 0
        for j in order:
            if y[j] != y[i]:
                break
            c += 1
        out.append(c)
    return np.array(out)


def _brute_capped_keep(x, y, k, max_removed):
    c = _brute_counts(x, y)
    cap = math.floor(max_removed * len(y))
    redundant = sorted((i for i in range(len(y)) if c[i] >= k), key=lambda i: (-c[i], i))
    keep = np.ones(len(y), bool)
    keep[redundant[:cap]] = False
    return keep


def _clusters(seed=0, n=40):
    """Two labels, clustered, with some overlap: many redundant, some not."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 3)) * 0.8 + y[:, None] * 1.5
    return x.astype(np.float32), y.astype(np.int32)


def test_loss_filter_mask_equals_numpy_argsort():
    rng = np.random.default_rng(1)
    l = rng.normal(size=37).astype(np.float32)
    l[5] = l[9]                                          # a tie: the lower index goes first
    for fraction in (0.0, 0.25, 0.5):
        keep = np.asarray(filters.loss_filter_mask(l, fraction))
        expected = np.ones(37, bool)
        expected[np.argsort(l, kind="stable")[:math.floor(fraction * 37)]] = False
        np.testing.assert_array_equal(keep, expected)
    assert (~keep).sum() == 18


def test_capped_k_filter_equals_brute_force_and_respects_the_cap():
    x, y = _clusters()
    c = _brute_counts(x, y)
    for k, max_removed in ((3, 1.0), (3, 0.6), (3, 0.2), (1, 0.5)):
        keep = np.asarray(filters.k_filter_mask_capped(x, y, k, max_removed))
        np.testing.assert_array_equal(keep, _brute_capped_keep(x, y, k, max_removed))
        assert (~keep).sum() <= math.floor(max_removed * len(y))
        assert np.all(c[~keep] >= k)                     # only redundant ones go
    # the cap binds here (the check can fail): more are redundant than removed
    assert (c >= 3).sum() > math.floor(0.2 * len(y))


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))


def _mlp_setup(n=16):
    model = _MLP()
    rng = np.random.default_rng(2)
    batch = {"image": rng.normal(size=(n, 5)).astype(np.float32),
             "label": rng.integers(0, 3, n).astype(np.int32)}
    return model, model.init(jax.random.PRNGKey(0), batch["image"])["params"], batch


def _np_cross_entropies(model, params, batch):
    z = np.asarray(model.apply({"params": params}, batch["image"]), np.float64)
    zmax = z.max(1, keepdims=True)
    return (np.log(np.exp(z - zmax).sum(1)) + zmax[:, 0]) - z[np.arange(len(z)), batch["label"]]


def test_loss_filtered_gradient_equals_grad_of_mean_over_kept_subset():
    model, params, batch = _mlp_setup()
    flt = filters.DataFilter(kind="loss", fraction=0.25, start_step=0)
    objective = filters.filtered_model_objective(model, losses.softmax_cross_entropy, flt)
    assert objective.takes_step
    (loss, (aux, _)), g = jax.jit(jax.value_and_grad(
        lambda p: objective(p, {}, batch, jax.random.PRNGKey(0), step=jnp.int32(3)),
        has_aux=True))(params)
    # brute force: per-example cross-entropies in NumPy, the kept set by its argsort
    per = _np_cross_entropies(model, params, batch)
    kept = np.sort(np.argsort(per, kind="stable")[4:])
    subset = {k: v[kept] for k, v in batch.items()}
    plain = model_objective(model, losses.softmax_cross_entropy)
    ref_loss, ref_g = jax.jit(jax.value_and_grad(lambda p: plain(p, {}, subset, KEY)[0]))(params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g, ref_g)
    assert float(aux["kept_fraction"]) == 0.75
    assert abs(float(loss) - per.mean()) > 1e-2     # unfiltered differs: the check can fail


def test_k_filtered_objective_and_start_step():
    x, y = _clusters(n=24)
    model, _, _ = _mlp_setup()
    batch = {"image": x, "label": y % 3}
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    flt = filters.DataFilter(kind="k", k=2, max_removed=0.6, start_step=5)
    objective = jax.jit(filters.filtered_model_objective(model, losses.softmax_cross_entropy,
                                                         flt))
    per = _np_cross_entropies(model, params, batch)
    keep = _brute_capped_keep(x, batch["label"], 2, 0.6)
    assert 0 < (~keep).sum()
    for step, kept in ((4, np.arange(24)), (5, np.flatnonzero(keep))):
        loss, (aux, _) = objective(params, {}, batch, jax.random.PRNGKey(0),
                                   step=jnp.int32(step))
        np.testing.assert_allclose(loss, per[kept].mean(), rtol=1e-5)
        np.testing.assert_allclose(aux["kept_fraction"], len(kept) / 24)


def test_per_example_losses_average_to_every_registered_loss():
    rng = np.random.default_rng(3)
    out = rng.normal(size=(6, 4)).astype(np.float32)
    batch = {"label": rng.integers(0, 4, 6).astype(np.int32),
             "target": rng.normal(size=(6, 4)).astype(np.float32)}

    @jax.jit
    def both(out, batch):   # one compiled program for every loss
        return {name: (jnp.mean(filters.per_example_losses(fn, out, batch)[0]),
                       fn(out, batch)[0]) for name, fn in losses.LOSSES.items()}
    for name, (mean_of_per, batch_loss) in both(out, batch).items():
        np.testing.assert_allclose(mean_of_per, batch_loss, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("block,match", [
    (dict(kind="knn"), "config.data_filter.kind"),
    (dict(kind="k", k=0), "config.data_filter.k"),
    (dict(kind="k", max_removed=1.5), "config.data_filter.max_removed"),
    (dict(kind="loss", fraction=1.0), "config.data_filter.fraction"),
    (dict(kind="loss", start_epoch=-1), "config.data_filter.start_epoch"),
    (dict(kind="loss", k=3), "config.data_filter.k"),
])
def test_bad_config_names_the_field(block, match):
    config = ml_collections.ConfigDict({"data_filter": block})
    with pytest.raises(ValueError, match=match):
        filters.validate_config(config)


def test_config_conversion_and_other_task_rejected():
    config = ml_collections.ConfigDict({"data_filter": dict(kind="k", k=10, start_epoch=3)})
    flt = filters.from_config(config, 7)
    assert (flt.kind, flt.k, flt.max_removed, flt.start_step) == ("k", 10, 0.6, 21)
    assert filters.from_config(ml_collections.ConfigDict({"data_filter": {}}), 7) is None
    config.task = "ssl"
    with pytest.raises(ValueError, match="config.data_filter"):
        filters.validate_config(config)


def test_filtered_loss_without_the_step_is_named():
    loss = filters.filtered_loss(losses.softmax_cross_entropy, filters.DataFilter(kind="loss"))
    with pytest.raises(ValueError, match="data_filter_step"):
        loss(jnp.zeros((4, 3)), {"image": jnp.zeros((4, 5)), "label": jnp.zeros(4, jnp.int32)})


@pytest.mark.slow
def test_a_filtered_config_trains(tmp_path):
    from configs import supervised_digits
    from neurojax.train.loop import train_and_evaluate
    from neurojax.train.metrics_log import read_metrics
    config = supervised_digits.get_config("runlocal")
    config.dataset.data_dir = str(tmp_path / "data")
    config.dataset.batch_size = 128
    config.model.widths = (32,)
    config.train.num_epochs = 3
    config.optim.lr = 0.01
    config.train.steps_per_call = 11
    config.train.log_every = 11
    config.train.checkpoint_every = 0
    config.data_filter = ml_collections.ConfigDict(dict(kind="k", k=5, max_removed=0.6,
                                                        start_epoch=1))
    result = train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    train = [r for r in read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
             if r["split"] == "train"]
    kept = [r["kept_fraction"] for r in train]
    assert kept[0] == 1.0 and min(kept) < 0.9          # filter off in epoch 0, on from 1
    assert result.eval_metrics["accuracy"] > 0.5
