"""make_optimizer builds the chain the config describes, in the documented order."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.optim import make_optimizer, make_schedule

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
GRADS = {"w": jnp.array([0.3, 0.4, -1.2]), "b": jnp.array([2.0])}


def _two_updates(tx):
    state = tx.init(PARAMS)
    u1, state = tx.update(GRADS, state, PARAMS)
    u2, _ = tx.update(GRADS, state, PARAMS)
    return u1, u2


def test_sgd_momentum_weight_decay_by_hand():
    cfg = dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)
    u1, u2 = _two_updates(make_optimizer(cfg, total_steps=10))
    g = jax.tree.map(lambda g, p: g + 0.01 * p, GRADS, PARAMS)
    chex.assert_trees_all_close(u1, jax.tree.map(lambda g: -0.1 * g, g), atol=1e-7)
    chex.assert_trees_all_close(u2, jax.tree.map(lambda g: -0.1 * (0.9 * g + g), g), atol=1e-7)


def test_clip_happens_before_the_learning_rate():
    cfg = dict(name="sgd", lr=0.5, grad_clip_norm=1.0)
    u1, _ = _two_updates(make_optimizer(cfg, total_steps=10))
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(GRADS)))
    chex.assert_trees_all_close(u1, jax.tree.map(lambda g: -0.5 * g / norm, GRADS), atol=1e-6)


def test_transforms_act_on_raw_gradient_in_order():
    scale_then_shift = (("clip", {"max_delta": 0.35}),)
    cfg = dict(name="sgd", lr=2.0, transforms=scale_then_shift)
    u1, _ = _two_updates(make_optimizer(cfg, total_steps=10))
    chex.assert_trees_all_close(u1, jax.tree.map(lambda g: -2.0 * jnp.clip(g, -0.35, 0.35), GRADS))


def test_adam_matches_optax_adam():
    cfg = dict(name="adam", lr=1e-3, b1=0.8, b2=0.99, eps=1e-6)
    ours = _two_updates(make_optimizer(cfg, total_steps=10))
    ref = _two_updates(optax.adam(1e-3, b1=0.8, b2=0.99, eps=1e-6))
    chex.assert_trees_all_close(ours, ref)


def test_warmup_cosine_schedule_values():
    sched = make_schedule(dict(lr=1.0, schedule="warmup_cosine", warmup_steps=10), total_steps=110)
    assert float(sched(0)) == 0.0
    np.testing.assert_allclose(float(sched(5)), 0.5, atol=1e-6)
    np.testing.assert_allclose(float(sched(10)), 1.0, atol=1e-6)
    np.testing.assert_allclose(float(sched(60)), 0.5 * (1 + np.cos(np.pi * 0.5)), atol=1e-6)
    np.testing.assert_allclose(float(sched(110)), 0.0, atol=1e-6)


def test_step_schedule():
    sched = make_schedule(dict(lr=1.0, schedule="step", decay_at=(0.5,)), total_steps=100)
    assert float(sched(49)) == 1.0 and np.isclose(float(sched(51)), 0.1)


@pytest.mark.parametrize("cfg, field", [
    (dict(name="sgdd", lr=0.1), "config.optim.name"),
    (dict(name="sgd", lr=0.0), "config.optim.lr"),
    (dict(name="sgd", lr=0.1, momentum=1.5), "config.optim.momentum"),
    (dict(name="sgd", lr=0.1, schedule="exp"), "config.optim.schedule"),
    (dict(name="sgd", lr=0.1, weight_decay=-1), "config.optim.weight_decay"),
    (dict(name="sgd", lr=0.1, transforms=("nope",)), r"config.optim.transforms\[0\]"),
    (dict(name="sgd", lr=0.1, accumulate_steps=0), "config.optim.accumulate_steps"),
    (dict(name="sgd", lr=0.1, accumulate_steps=2.0), "config.optim.accumulate_steps"),
])
def test_bad_fields_are_named(cfg, field):
    with pytest.raises(ValueError, match=field):
        make_optimizer(cfg, total_steps=10)


def test_accumulated_steps_apply_the_chain_once_to_the_mean_gradient():
    """k = 3 micro-batches: two zero updates, then one update of the whole chain
    (relative bias, clipping, momentum SGD with a cosine schedule over the
    ceil(7 / 3) = 3 updates) on the mean gradient, by hand."""
    b, lr, clip = 0.1, 0.5, 1.5
    cfg = dict(name="sgd", lr=lr, momentum=0.9, schedule="cosine", grad_clip_norm=clip,
               transforms=(("inject_gradient_bias", {"b": b, "relative": True}),),
               accumulate_steps=3)
    tx = make_optimizer(cfg, total_steps=7)
    rng = np.random.default_rng(0)
    micro = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32),
                          PARAMS) for _ in range(6)]
    state = tx.init(PARAMS)
    updates = []
    for g in micro:
        u, state = tx.update(g, state, PARAMS)
        updates.append(u)

    def by_hand(g):
        flat = np.concatenate([np.ravel(g["b"]), np.ravel(g["w"])])
        flat = flat * min(1.0, clip / np.linalg.norm(flat))     # clip first
        n = flat.size                                           # beta = ones, ||beta|| = sqrt(N)
        return flat - b * np.linalg.norm(flat) * np.ones(n)     # the chain negates: -g + b||g||beta
    mean = lambda gs: jax.tree.map(lambda *a: np.mean(a, axis=0), *gs)
    d1, d2 = by_hand(mean(micro[:3])), by_hand(mean(micro[3:]))
    lr_at = lambda t: lr * 0.5 * (1 + np.cos(np.pi * t / 3))
    expected = [-lr_at(0) * d1, -lr_at(1) * (0.9 * d1 + d2)]
    for i, u in enumerate(updates):
        flat = np.concatenate([np.ravel(u["b"]), np.ravel(u["w"])])
        if i % 3 != 2:
            np.testing.assert_array_equal(flat, 0.0)
        else:
            np.testing.assert_allclose(flat, expected[i // 3], rtol=1e-5, atol=1e-6)
