"""Pruning at initialisation by name (Tanaka et al. 2020): every method's exact
count and nested masks, no layer collapse under SynFlow, argument errors, and
the config wiring through the training loop."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import supervised_digits
from neurojax.optim import pruning
from neurojax.train.pruning import pruning_masks
from tests._pruning import apply_of, mlp


@pytest.mark.parametrize("method", pruning.METHODS)
def test_every_method_keeps_the_exact_count_and_nested_masks(method):
    model, params = mlp((16, 8), 6, 4)
    batch = {"image": jax.random.normal(jax.random.PRNGKey(3), (12, 6)),
             "label": jnp.arange(12) % 4}

    def loss(out, b):
        return optax.softmax_cross_entropy_with_integer_labels(out, b["label"]).mean()

    flags = pruning.prunable_flags(params)
    n = pruning.num_prunable(params)
    assert n == 6 * 16 + 16 * 8 + 8 * 4
    kw = dict(apply_fn=apply_of(model), input_shape=(6,), batch=batch, loss=loss,
              key=jax.random.PRNGKey(4), dtype="float32")
    masks = pruning_masks(method, params, compression=7.0, iterations=2, **kw)
    assert int(pruning.count_kept(masks, flags)) == round(n / 7)
    pruned = pruning.apply_masks(params, masks)
    for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(pruned)):
        assert np.all(np.asarray(p)[~np.asarray(m)] == 0)


@pytest.mark.slow
def test_synflow_avoids_the_layer_collapse_of_magnitude_pruning():
    """A deep MLP whose layers have very different fan-ins: He-scaled weights of
    the wide layers are small, so global magnitude pruning empties them; SynFlow
    (100 rounds, float64) keeps every layer (Theorem 3)."""
    model, params = mlp((64, 64, 8, 64), 8, 4, seed=1)
    flags = pruning.prunable_flags(params)
    kw = dict(apply_fn=apply_of(model), input_shape=(8,))
    n = pruning.num_prunable(params)
    mag = pruning_masks("magnitude", params, compression=200.0)
    syn = pruning_masks("synflow", params, compression=200.0, **kw)
    mag_density = pruning.layer_density(mag, flags)
    syn_density = pruning.layer_density(syn, flags)
    assert min(float(d) for d in mag_density.values()) == 0.0, mag_density
    assert min(float(d) for d in syn_density.values()) > 0.0, syn_density
    assert int(pruning.count_kept(syn, flags)) == int(pruning.count_kept(mag, flags)) \
        == round(n / 200)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="nope"), "method"),
    (dict(compression=0.5), "compression"),
    (dict(compression=1e6), "keeps no parameter"),
    (dict(prunable="nothing_matches"), "matches no"),
    (dict(prunable="(["), "regular expression"),
    (dict(iterations=0), "iterations"),
    (dict(schedule="cubic"), "schedule"),
    (dict(method="snip", apply_fn=lambda v, x: x), "batch"),
    (dict(method="random"), "key"),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match):
    _, params = mlp((4,), 3, 2)
    args = dict(method="magnitude", compression=2.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pruning_masks(args.pop("method"), params, **args)


# (~10 s: the digits and two compiles; configs/pruning_shapes.py:runlocal, the
# SynFlow path through the loop, is in the slow set of tests/configs)
@pytest.mark.slow
def test_loop_prunes_at_init_and_keeps_masks_per_replica(tmp_path):
    """config.prune through the training loop: two seed replicas pruned with
    SNIP (10 examples per class from the data) keep round(N / 10) kernel
    entries each, different ones, still zero after training."""
    from neurojax.train.loop import train_and_evaluate
    config = supervised_digits.get_config()
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.dataset.on_device = "on"
    config.dataset.batch_size = 32
    config.model.widths = (16,)
    config.train.num_epochs = 0
    config.train.num_steps = 4
    config.train.steps_per_call = 2
    config.train.num_replicas = 2
    config.train.eval_every = 0
    config.train.checkpoint_every = 0
    config.optim.weight_decay = 1e-3
    config.prune = ml_collections.ConfigDict(dict(method="snip", compression=10.0))
    result = train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    kernels = [np.asarray(result.state.params[n]["kernel"]) for n in ("dense_0", "head")]
    n = sum(k[0].size for k in kernels)
    nonzero = [sum(int(np.count_nonzero(k[r])) for k in kernels) for r in range(2)]
    assert nonzero == [round(n / 10)] * 2
    assert not np.array_equal(kernels[0][0] != 0, kernels[0][1] != 0)
    assert np.count_nonzero(np.asarray(result.state.params["head"]["bias"])) > 0
