"""Pruning at initialisation (Tanaka et al. 2020), the mask side: exact global
top-k, the schedules, the mask transform and the prune config's validation."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from neurojax.optim import pruning


def test_topk_keeps_exact_counts_and_breaks_ties_by_position():
    rng = np.random.default_rng(0)
    scores = {"a": {"kernel": jnp.asarray(rng.integers(0, 4, (5, 6)).astype(np.float32))},
              "b": {"bias": jnp.asarray(rng.normal(size=6).astype(np.float32)),
                    "kernel": jnp.asarray(rng.integers(0, 4, (6, 3)).astype(np.float32))}}
    flags = pruning.prunable_flags(scores)
    flat = np.concatenate([np.ravel(scores["a"]["kernel"]), np.ravel(scores["b"]["kernel"])])
    for k in (1, 7, 20, 48):
        masks = pruning.topk_masks(scores, k, flags)
        keep = np.concatenate([np.ravel(masks["a"]["kernel"]), np.ravel(masks["b"]["kernel"])])
        expected = np.zeros(flat.size, bool)
        expected[np.argsort(-flat, kind="stable")[:k]] = True  # brute force, NumPy
        np.testing.assert_array_equal(keep, expected)
        assert keep.sum() == k
        assert bool(jnp.all(masks["b"]["bias"]))  # not prunable: kept
    # a current mask excludes entries even with the highest scores
    current = jax.tree.map(lambda x: jnp.ones(x.shape, bool), scores)
    current["a"]["kernel"] = current["a"]["kernel"].at[0].set(False)
    masks = pruning.topk_masks(scores, 10, flags, current=current)
    assert not bool(jnp.any(masks["a"]["kernel"][0]))
    assert int(pruning.count_kept(masks, flags)) == 10


def test_schedule_counts_follow_the_exponential_and_linear_schedules():
    n, c, it = 10_000, 1000.0, 5
    counts = pruning.schedule_counts(n, c, it)
    np.testing.assert_array_equal(counts, np.round(n * (1 / c) ** (np.arange(1, 6) / 5)))
    assert counts[-1] == 10 and np.all(np.diff(counts) < 0)
    lin = pruning.schedule_counts(n, c, it, "linear")
    np.testing.assert_array_equal(lin, np.round(n * (1 - (1 - 1 / c) * np.arange(1, 6) / 5)))


@pytest.mark.parametrize("opt", ["sgd_momentum_wd", "adam_wd"])
def test_masked_entries_stay_zero_under_momentum_and_weight_decay(opt):
    rng = np.random.default_rng(1)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=3), jnp.float32)}}
    mask = {"dense": {"kernel": jnp.asarray(rng.random((4, 3)) < 0.5),
                      "bias": jnp.ones(3, bool)}}
    base = (optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.1, momentum=0.9))
            if opt == "sgd_momentum_wd"
            else optax.chain(optax.add_decayed_weights(1e-2), optax.adam(0.1)))
    # masks read from the pruned parameters (None) or given explicitly
    for masks in (None, mask):
        tx = optax.chain(base, pruning.mask_updates(masks))
        p = pruning.apply_masks(params, mask) if masks is None else params
        ref = pruning.apply_masks(params, mask)
        state, ref_state = tx.init(p), base.init(ref)
        for i in range(5):
            g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), p)
            u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
            k = p["dense"]["kernel"]
            assert np.all(np.asarray(k)[~np.asarray(mask["dense"]["kernel"])] == 0.0)
            # unmasked entries follow the unmasked optimiser fed the masked gradient
            g_ref = jax.tree.map(lambda x, m: jnp.where(m, x, 0), g, mask)
            ru, ref_state = base.update(g_ref, ref_state, ref)
            ref = optax.apply_updates(ref, ru)
            np.testing.assert_allclose(np.asarray(k)[np.asarray(mask["dense"]["kernel"])],
                                       np.asarray(ref["dense"]["kernel"])[
                                           np.asarray(mask["dense"]["kernel"])], rtol=1e-5)
        assert not np.allclose(p["dense"]["bias"], params["dense"]["bias"])


def test_prune_config_validation_names_the_field():
    good = ml_collections.ConfigDict(dict(method="synflow", compression=100, iterations=100))
    pruning.validate_prune_config(good)
    for field, value in (("method", "mag"), ("compression", 0), ("iterations", 1.5),
                         ("extra", 1)):
        bad = ml_collections.ConfigDict({**good.to_dict(), field: value})
        with pytest.raises(ValueError, match=f"config.prune.{field}"):
            pruning.validate_prune_config(bad)
