"""Pruning at initialisation (Tanaka et al. 2020): scores against independent
computations, exact global top-k, no layer collapse under SynFlow, the mask
transform, and the config wiring through the training loop."""
import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import supervised_digits
from neurojax.models import MLP, VGG
from neurojax.optim import pruning
from tests._x64 import float64


def _mlp(widths, d_in, d_out, seed=0, dtype=jnp.float32):
    model = MLP(widths=widths, num_outputs=d_out, use_bias=False)
    params = model.init(jax.random.PRNGKey(seed), jnp.ones((1, d_in)))["params"]
    return model, jax.tree.map(lambda x: x.astype(dtype), params)


def _apply(model):
    return lambda v, x: model.apply(v, x)


def _kernels(params):
    names = sorted(params, key=lambda n: (n == "head", n))  # dense_0, dense_1, ..., head
    return names, [np.asarray(params[n]["kernel"], np.float64) for n in names]


def test_synflow_scores_equal_the_closed_form_and_are_conserved_per_layer():
    """Without biases, S^[l] = |W^[l]| * (a_l b_l^T) with a_l = |W^[L]..W^[l+1]|^T 1 and
    b_l = |W^[l-1]..W^[1]| 1 (NumPy, float64), and sum_l S = R = 1^T prod |W| 1 for
    every layer (Theorem 2's layer-wise conservation)."""
    with float64():
        model, params = _mlp((7, 5), 4, 3, dtype=jnp.float64)
        scores = jax.jit(functools.partial(pruning.synflow_scores, _apply(model),
                                           input_shape=(4,)))(params)
        names, ws = _kernels(params)
        ws = [np.abs(w) for w in ws]  # x @ W convention: W is (in, out)
        r = np.ones(4)
        for w in ws:
            r = r @ w
        big_r = r.sum()
        for i, name in enumerate(names):
            b = np.ones(4)
            for w in ws[:i]:
                b = b @ w
            a = np.ones(3)
            for w in reversed(ws[i + 1:]):
                a = w @ a
            expected = ws[i] * np.outer(b, a)
            s = np.asarray(scores[name]["kernel"])
            np.testing.assert_allclose(s, expected, rtol=1e-12)
            np.testing.assert_allclose(s.sum(), big_r, rtol=1e-12)
        r_lib = pruning.synflow_objective(_apply(model), jax.tree.map(jnp.abs, params), (4,))
        np.testing.assert_allclose(float(r_lib), big_r, rtol=1e-13)


@pytest.mark.slow
def test_synflow_conservation_through_vgg_with_batchnorm_in_eval_mode():
    """VGG-11 with BatchNorm at initialisation (zero biases and BN shifts): each conv
    kernel, BN scale and the head kernel carries exactly R (Euler's theorem)."""
    with float64():
        model = VGG(depth=11, width_factor=1 / 32, num_classes=3)
        v = model.init(jax.random.PRNGKey(1), jnp.ones((1, 4, 4, 3)))
        params = jax.tree.map(lambda x: x.astype(jnp.float64), v["params"])
        state = {"batch_stats": v["batch_stats"]}
        fn = lambda var, x: model.apply(var, x, train=False)  # noqa: E731
        scores, big_r = jax.jit(lambda p: (
            pruning.synflow_scores(fn, p, (4, 4, 3), model_state=state),
            pruning.synflow_objective(fn, jax.tree.map(jnp.abs, p), (4, 4, 3),
                                      model_state=state)))(params)
        for path, s in jax.tree_util.tree_flatten_with_path(scores)[0]:
            name = pruning.path_name(path)
            expected = 0.0 if name.endswith("bias") else float(big_r)
            np.testing.assert_allclose(float(jnp.sum(s)), expected, rtol=1e-12, atol=1e-12,
                                       err_msg=name)


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


@pytest.mark.parametrize("method", pruning.METHODS)
def test_every_method_keeps_the_exact_count_and_nested_masks(method):
    model, params = _mlp((16, 8), 6, 4)
    batch = {"image": jax.random.normal(jax.random.PRNGKey(3), (12, 6)),
             "label": jnp.arange(12) % 4}

    def loss(out, b):
        return optax.softmax_cross_entropy_with_integer_labels(out, b["label"]).mean()

    flags = pruning.prunable_flags(params)
    n = pruning.num_prunable(params)
    assert n == 6 * 16 + 16 * 8 + 8 * 4
    kw = dict(apply_fn=_apply(model), input_shape=(6,), batch=batch, loss=loss,
              key=jax.random.PRNGKey(4), dtype="float32")
    masks = pruning.pruning_masks(method, params, compression=7.0, iterations=2, **kw)
    assert int(pruning.count_kept(masks, flags)) == round(n / 7)
    pruned = pruning.apply_masks(params, masks)
    for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(pruned)):
        assert np.all(np.asarray(p)[~np.asarray(m)] == 0)


def test_snip_and_grasp_scores_match_independent_derivatives():
    """SNIP = |d L(theta * m) / dm| at m = 1 (autodiff through the mask); GraSP's
    keep-score = theta * (H g) with H the dense Hessian of the flattened loss."""
    with float64():
        model, params = _mlp((5,), 3, 2, dtype=jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(0), (7, 3), jnp.float64)
        y = jnp.arange(7) % 2

        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(
                model.apply({"params": p}, x) / 3.0, y).mean()

        ones = jax.tree.map(jnp.ones_like, params)
        via_mask = jax.jit(jax.grad(lambda m: loss(jax.tree.map(jnp.multiply, params, m))))(
            ones)
        snip = jax.jit(functools.partial(pruning.snip_scores, loss))(params)
        for a, b in zip(jax.tree.leaves(snip), jax.tree.leaves(via_mask)):
            np.testing.assert_allclose(a, np.abs(b), rtol=1e-12)

        flat, unravel = jax.flatten_util.ravel_pytree(params)
        h, g = jax.jit(lambda f: (jax.hessian(lambda z: loss(unravel(z)))(f),
                                  jax.grad(lambda z: loss(unravel(z)))(f)))(flat)
        expected = np.asarray(flat) * (np.asarray(h) @ np.asarray(g))
        got = jax.jit(lambda p: jax.flatten_util.ravel_pytree(
            pruning.grasp_scores(loss, p))[0])(params)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-16)


def test_synflow_avoids_the_layer_collapse_of_magnitude_pruning():
    """A deep MLP whose layers have very different fan-ins: He-scaled weights of
    the wide layers are small, so global magnitude pruning empties them; SynFlow
    (100 rounds, float64) keeps every layer (Theorem 3)."""
    model, params = _mlp((64, 64, 8, 64), 8, 4, seed=1)
    flags = pruning.prunable_flags(params)
    kw = dict(apply_fn=_apply(model), input_shape=(8,))
    n = pruning.num_prunable(params)
    mag = pruning.pruning_masks("magnitude", params, compression=200.0)
    syn = pruning.pruning_masks("synflow", params, compression=200.0, **kw)
    mag_density = pruning.layer_density(mag, flags)
    syn_density = pruning.layer_density(syn, flags)
    assert min(float(d) for d in mag_density.values()) == 0.0, mag_density
    assert min(float(d) for d in syn_density.values()) > 0.0, syn_density
    assert int(pruning.count_kept(syn, flags)) == int(pruning.count_kept(mag, flags)) \
        == round(n / 200)


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
    _, params = _mlp((4,), 3, 2)
    args = dict(method="magnitude", compression=2.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pruning.pruning_masks(args.pop("method"), params, **args)


def test_prune_config_validation_names_the_field():
    good = ml_collections.ConfigDict(dict(method="synflow", compression=100, iterations=100))
    pruning.validate_prune_config(good)
    for field, value in (("method", "mag"), ("compression", 0), ("iterations", 1.5),
                         ("extra", 1)):
        bad = ml_collections.ConfigDict({**good.to_dict(), field: value})
        with pytest.raises(ValueError, match=f"config.prune.{field}"):
            pruning.validate_prune_config(bad)


@pytest.mark.slow  # ~10 s: the digits and two compiles (configs/pruning_shapes.py:runlocal
# runs the SynFlow path through the loop in tests/configs/test_configs.py)
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
