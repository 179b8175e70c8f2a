"""B's optimiser beside the forward one, through make_train_step unchanged.

* Kolen-Pollack: ``||W - B||`` after k steps is ``(1 - lr wd)^k ||W_0 - B_0||``
  in every layer under SGD and AdamW, whatever the data; without decay on B
  it stays constant.
* ``optax.multi_transform`` keeps weight decay, LARS/LAMB trust ratios,
  clipping and gradient-noise injection off B (B's update is its own
  optimiser's, and W's update does not depend on B's gradient).
* Feedback alignment's B never moves, even under weight decay.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.losses import softmax_cross_entropy
from neurojax.models import MLP
from neurojax.optim import make_optimizer
from neurojax.rules import (FEEDBACK_PARAM, feedback_labels, feedback_mask, get_rule,
                            rule_optimizer)
from neurojax.train import (create_train_state, make_mesh, make_train_step, model_objective,
                            shard_batch)


def _batch(seed, n=16):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((n, 6)).astype(np.float32),
            "label": rng.integers(0, 3, n).astype(np.int32)}


def _train(rule, tx, steps, data_seed, model=None):
    model = model or MLP(widths=(8, 8), num_outputs=3, rule=rule)
    params = model.init(jax.random.key(0), _batch(0)["image"])["params"]
    state = create_train_state(params, tx, rng=jax.random.PRNGKey(1))
    step = make_train_step(model_objective(model, softmax_cross_entropy), tx, donate=False)
    history = [state.params]
    for t in range(steps):
        state, _ = step(state, shard_batch(_batch(data_seed + t), make_mesh()))
        history.append(state.params)
    return history


def _gap(params, layer):
    return float(jnp.linalg.norm(params[layer]["kernel"] - params[layer][FEEDBACK_PARAM]))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
@pytest.mark.parametrize("data_seed", [0, 100])
def test_kolen_pollack_gap_decays_geometrically(name, data_seed):
    lr, wd, steps = 0.05, 0.5, 12
    cfg = dict(name=name, lr=lr, weight_decay=wd)
    rule = get_rule("kolen_pollack")
    tx = rule_optimizer(rule, make_optimizer(cfg, steps), make_optimizer(cfg, steps))
    history = _train(rule, tx, steps, data_seed)
    for layer in ("dense_0", "dense_1", "head"):
        gap0 = _gap(history[0], layer)
        assert gap0 > 1.0
        for k in (1, 5, steps):
            np.testing.assert_allclose(_gap(history[k], layer), (1 - lr * wd) ** k * gap0,
                                       rtol=2e-5)
        # W itself moved (the data's gradient is not zero)
        assert float(jnp.linalg.norm(history[steps][layer]["kernel"]
                                     - history[0][layer]["kernel"])) > 1e-3


def test_kolen_pollack_gap_is_constant_without_decay_on_b():
    """The control: B without weight decay (SGD) keeps ``W - B`` only if W has
    none either; with decay on W only, the gap changes by lr wd W per step."""
    lr, steps = 0.05, 6
    rule = get_rule("kolen_pollack")
    plain = optax.sgd(lr)
    history = _train(rule, rule_optimizer(rule, plain, plain), steps, 0)
    np.testing.assert_allclose(_gap(history[steps], "dense_0"), _gap(history[0], "dense_0"),
                               rtol=1e-5)
    decayed = make_optimizer(dict(name="sgd", lr=lr, weight_decay=0.5), steps)
    history = _train(rule, rule_optimizer(rule, decayed, plain), steps, 0)
    assert abs(_gap(history[steps], "dense_0") / _gap(history[0], "dense_0")
               - (1 - lr * 0.5) ** steps) > 1e-2


def test_labels_mark_exactly_the_feedback_weights():
    model = MLP(widths=(4,), num_outputs=2, rule=get_rule("weight_mirror"))
    params = model.init(jax.random.key(0), np.zeros((1, 3), np.float32))["params"]
    labels = feedback_labels(params)
    assert labels == {"dense_0": {"kernel": "forward", "bias": "forward",
                                  FEEDBACK_PARAM: "feedback"},
                      "head": {"kernel": "forward", "bias": "forward",
                               FEEDBACK_PARAM: "feedback"}}
    assert sum(jax.tree.leaves(feedback_mask(params))) == 2


PARAMS = {"layer": {"kernel": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]),
                    "bias": jnp.asarray([0.2, -0.1]),
                    FEEDBACK_PARAM: jnp.asarray([[-1.0, 4.0], [2.0, 0.5]])}}


def _grads(feedback_grad):
    return {"layer": {"kernel": jnp.asarray([[0.3, -0.4], [1.2, 0.1]]),
                      "bias": jnp.asarray([0.5, -0.2]),
                      FEEDBACK_PARAM: jnp.asarray(feedback_grad, jnp.float32)}}


@pytest.mark.parametrize("cfg", [
    dict(name="lars", lr=0.3, weight_decay=0.1, momentum=0.9),
    dict(name="lamb", lr=0.3, weight_decay=0.1),
    dict(name="adamw", lr=0.3, weight_decay=0.1, grad_clip_norm=0.5),
    dict(name="sgd", lr=0.3, weight_decay=0.1,
         transforms=(("inject_gradient_noise", {"sigma": 0.5, "seed": 0, "relative": True}),
                     ("inject_gradient_bias", {"b": 0.2, "relative": True}))),
])
def test_forward_optimizer_never_touches_b(cfg):
    rule = get_rule("weight_mirror")
    lr_b = 0.7
    tx = rule_optimizer(rule, make_optimizer(cfg, 10), optax.sgd(lr_b))
    state = tx.init(PARAMS)
    g1, g2 = _grads([[1.0, 2.0], [3.0, 4.0]]), _grads([[-50.0, 0.0], [7.0, 9.0]])
    u1, _ = jax.jit(tx.update)(g1, state, PARAMS)
    u2, _ = jax.jit(tx.update)(g2, state, PARAMS)
    # B: exactly B's own optimiser (no decay, trust ratio, clip or noise)
    for g, u in ((g1, u1), (g2, u2)):
        np.testing.assert_allclose(u["layer"][FEEDBACK_PARAM],
                                   -lr_b * g["layer"][FEEDBACK_PARAM], rtol=1e-6)
    # W: its update does not see B's gradient (global norms, noise scale)
    chex.assert_trees_all_close({k: v for k, v in u1["layer"].items() if k != FEEDBACK_PARAM},
                                {k: v for k, v in u2["layer"].items() if k != FEEDBACK_PARAM},
                                rtol=0, atol=0)
    # and the forward optimiser did act on W (e.g. its decay): not plain SGD
    assert not np.allclose(u1["layer"]["kernel"], -0.3 * g1["layer"]["kernel"])


def test_the_same_chain_on_the_whole_tree_would_touch_b():
    """The control for the test above: without multi_transform, weight decay
    moves B too."""
    tx = make_optimizer(dict(name="sgd", lr=0.3, weight_decay=0.1), 10)
    g = _grads(np.zeros((2, 2)))
    u, _ = tx.update(g, tx.init(PARAMS), PARAMS)
    assert not np.allclose(u["layer"][FEEDBACK_PARAM], 0.0)


def test_feedback_alignment_b_stays_fixed_under_weight_decay():
    rule = get_rule("feedback_alignment")
    tx = rule_optimizer(rule, make_optimizer(dict(name="adamw", lr=0.1, weight_decay=0.5), 5))
    history = _train(rule, tx, 5, 0)
    for layer in ("dense_0", "dense_1", "head"):
        np.testing.assert_array_equal(history[-1][layer][FEEDBACK_PARAM],
                                      history[0][layer][FEEDBACK_PARAM])
        assert not np.allclose(history[-1][layer]["kernel"], history[0][layer]["kernel"])


def test_rule_optimizer_arguments():
    sgd = optax.sgd(0.1)
    assert rule_optimizer(get_rule("backprop"), sgd) is sgd
    assert rule_optimizer(get_rule("sign_symmetry"), sgd) is sgd
    with pytest.raises(ValueError, match="feedback_tx must be None"):
        rule_optimizer(get_rule("feedback_alignment"), sgd, sgd)
    with pytest.raises(ValueError, match="feedback_tx is required"):
        rule_optimizer(get_rule("kolen_pollack"), sgd)


def test_clip_by_forward_norm_scales_b_by_the_forward_factor():
    """Forward leaves as optax.clip_by_global_norm of the forward part alone;
    B's leaves scaled by the same factor min(1, c / ||g_forward||)."""
    from neurojax.rules import clip_by_forward_norm
    rng = np.random.default_rng(0)
    grads = {"dense": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=4),
                       "feedback_kernel": 100 * rng.normal(size=(3, 4))}}
    grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads)
    forward = {"dense": {k: v for k, v in grads["dense"].items() if k != "feedback_kernel"}}
    norm = np.sqrt(sum(float(np.sum(np.asarray(v) ** 2)) for v in forward["dense"].values()))
    for c in (0.5 * norm, 2 * norm):
        out, _ = clip_by_forward_norm(c).update(grads, optax.EmptyState())
        expected, _ = optax.clip_by_global_norm(c).update(forward, optax.EmptyState())
        for k in ("kernel", "bias"):
            np.testing.assert_allclose(out["dense"][k], expected["dense"][k], rtol=1e-6)
        np.testing.assert_allclose(out["dense"]["feedback_kernel"],
                                   min(1.0, c / norm) * grads["dense"]["feedback_kernel"],
                                   rtol=1e-5)
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        clip_by_forward_norm(0.0)
