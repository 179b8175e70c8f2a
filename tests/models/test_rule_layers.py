"""The models' ``rule`` and ``rule_head`` fields.

* ``rule='backprop'`` (the default) builds nn.Dense / Conv as the models
  did (the hand-written references in the other model tests pin those down);
  ``Rule('backprop')`` gives the same parameters and gradients.
* Any rule keeps the forward pass and the backprop parameters (same init
  key, same values) and adds ``feedback_kernel`` where it stores B.
* With B = W in every layer, every gradient (conv, dense, BatchNorm,
  residual and projection paths) equals backprop's: the rule is wired into
  each layer, and nothing else changes.
* ``rule_head=False`` gives the last hidden layer backprop's exact gradient.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from neurojax.models import MLP, VGG, DeepLinear, ResNet, SmallCNN, get_model
from neurojax.rules import FEEDBACK_PARAM, Rule, get_rule
from neurojax.train import model_objective
from tests.models._helpers import key, randn

IMAGES = randn(2, 16, 16, 3, seed=1)
MODELS = {
    "mlp": (functools.partial(MLP, widths=(8, 6), num_outputs=3), randn(4, 5)),
    "deep_linear": (functools.partial(DeepLinear, widths=(6, 6), num_outputs=3), randn(4, 5)),
    "small_cnn": (functools.partial(SmallCNN, widths=(4, 6), hidden=8, num_classes=3,
                                    batch_norm=True), IMAGES),
    "vgg": (functools.partial(VGG, depth=11, width_factor=1 / 16, num_classes=3,
                              classifier_widths=(8,)), IMAGES),
    "resnet_basic": (functools.partial(ResNet, stage_sizes=(1, 1), width=1 / 16,
                                       num_classes=3), IMAGES),
    "resnet_bottleneck_imagenet": (functools.partial(
        ResNet, stage_sizes=(1, 1), block_cls="bottleneck", stem="imagenet", width=1 / 16,
        num_classes=3), IMAGES),
}


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


def _apply(model, variables, x):
    out = model.apply(variables, x, train=True, mutable=["batch_stats"],
                      rngs={"dropout": jax.random.key(5)})
    return out[0]


def _loss(model, x):
    def loss(params, state):
        return jnp.sum(jnp.sin(_apply(model, {"params": params, **state}, x)))
    return loss


def _tie(flat_params, feedback):
    """The parameters with every B set to its layer's W."""
    return traverse_util.unflatten_dict(
        {k: flat_params[k.replace("/" + FEEDBACK_PARAM, "/kernel")] if k in feedback else v
         for k, v in flat_params.items()}, sep="/")


# the large families' cases (6-10 s each) run under `-m slow`
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("vgg", "resnet_basic", "resnet_bottleneck_imagenet")
                                  else n for n in sorted(MODELS)])
def test_a_rule_keeps_the_backprop_parameters_and_outputs(name):
    ctor, x = MODELS[name]
    default, fa = ctor(), ctor(rule=get_rule("feedback_alignment"))
    v_bp, v_fa = jax.jit(default.init)(key(0), x), jax.jit(fa.init)(key(0), x)
    flat_bp, flat_fa = _flat(v_bp["params"]), _flat(v_fa["params"])
    # the same backprop parameters (same key, same values) plus one B per layer
    feedback = {k for k in flat_fa if k.endswith("/" + FEEDBACK_PARAM)}
    assert set(flat_fa) - feedback == set(flat_bp)
    assert feedback == {k.replace("/kernel", "/" + FEEDBACK_PARAM)
                        for k in flat_bp if k.endswith("/kernel")}
    chex.assert_trees_all_equal({k: flat_fa[k] for k in flat_bp}, flat_bp)
    apply = jax.jit(_apply, static_argnums=0)
    np.testing.assert_allclose(apply(fa, v_fa, x), apply(default, v_bp, x), rtol=1e-6)


# conv, dense, BatchNorm, max-pooling, residual and projection paths
@pytest.mark.parametrize("name", ["mlp", "deep_linear", "small_cnn",
                                  pytest.param("resnet_basic", marks=pytest.mark.slow)])
def test_feedback_weights_equal_to_w_give_backprop_gradients(name):
    ctor, x = MODELS[name]
    default, explicit, kp = ctor(), ctor(rule=Rule("backprop")), ctor(
        rule=get_rule("kolen_pollack"))
    v_bp = jax.jit(default.init)(key(0), x)
    state = {k: v for k, v in v_bp.items() if k != "params"}
    flat_kp = _flat(jax.jit(kp.init)(key(0), x)["params"])
    feedback = {k for k in flat_kp if k.endswith("/" + FEEDBACK_PARAM)}
    g_bp = _flat(jax.jit(jax.grad(_loss(default, x)))(v_bp["params"], state))
    # Rule('backprop') builds the rule's layers in exact mode: same as the default
    g_exact = _flat(jax.jit(jax.grad(_loss(explicit, x)))(v_bp["params"], state))
    chex.assert_trees_all_close(g_exact, g_bp, rtol=1e-5, atol=1e-6)
    # B := W everywhere: every gradient is backprop's, B's (tied) equals W's
    g_kp = _flat(jax.jit(jax.grad(_loss(kp, x)))(_tie(flat_kp, feedback), state))
    chex.assert_trees_all_close({k: g_kp[k] for k in g_bp}, g_bp, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close({k: g_kp[k] for k in feedback},
                                {k: g_bp[k.replace("/" + FEEDBACK_PARAM, "/kernel")]
                                 for k in feedback}, rtol=1e-4, atol=1e-5)


def test_random_feedback_changes_the_hidden_gradients_only():
    """FA with random B: the head's own gradient is exact, the hidden layers'
    are not; with ``rule_head=False`` the last hidden layer's is exact too."""
    x = randn(4, 5)
    default = MLP(widths=(8, 6), num_outputs=3)
    params = jax.jit(default.init)(key(0), x)["params"]
    g_bp = jax.grad(_loss(default, x))(params, {})
    for rule_head, exact in ((True, ("head",)), (False, ("head", "dense_1"))):
        fa = MLP(widths=(8, 6), num_outputs=3, rule=get_rule("feedback_alignment"),
                 rule_head=rule_head)
        p_fa = jax.jit(fa.init)(key(0), x)["params"]
        assert (FEEDBACK_PARAM in p_fa["head"]) == rule_head
        g_fa = jax.grad(_loss(fa, x))(p_fa, {})
        for layer in ("dense_0", "dense_1", "head"):
            same = np.allclose(g_fa[layer]["kernel"], g_bp[layer]["kernel"], rtol=1e-5,
                               atol=1e-7)
            assert same == (layer in exact), (rule_head, layer)


def test_sign_symmetry_stores_no_feedback_weights():
    ctor, x = MODELS["small_cnn"]
    v = jax.eval_shape(ctor(rule=get_rule("sign_symmetry")).init, key(0), x)
    assert not any(k.endswith(FEEDBACK_PARAM) for k in _flat(v["params"]))
    v = jax.eval_shape(ctor(rule=get_rule("sign_symmetry", magnitude="random")).init,
                       key(0), x)
    assert sum(k.endswith(FEEDBACK_PARAM) for k in _flat(v["params"])) == 4


def test_weight_mirror_model_draws_noise_from_the_training_rng():
    model = MLP(widths=(6,), num_outputs=3, rule=get_rule("weight_mirror"))
    x = randn(4, 5)
    params = jax.jit(model.init)(key(0), x)["params"]
    with pytest.raises(ValueError, match="rngs"):
        jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x)))(params)
    objective = model_objective(model, lambda out, batch: (jnp.sum(out ** 2), {}))
    grad = lambda rng: jax.grad(lambda p: objective(p, {}, {"image": x}, rng)[0])(params)
    g1, g2 = grad(jax.random.PRNGKey(1)), grad(jax.random.PRNGKey(2))
    # B's gradient is the noise-driven mirror update: it differs between steps
    assert not np.allclose(g1["dense_0"][FEEDBACK_PARAM], g2["dense_0"][FEEDBACK_PARAM])
    np.testing.assert_allclose(g1["dense_0"]["kernel"], g2["dense_0"]["kernel"])


def test_registry_passes_the_rule():
    rule = get_rule("feedback_alignment")
    model = get_model("resnet18", rule=rule, num_classes=10)
    shapes = jax.eval_shape(model.init, key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    flat = _flat(shapes)
    n = lambda keys: sum(int(np.prod(flat[k].shape)) for k in keys)
    forward = [k for k in flat if not k.endswith(FEEDBACK_PARAM)]
    assert n(forward) == 11_173_962  # ResNet-18 (CIFAR) as without a rule
    assert n(set(flat) - set(forward)) == n([k for k in forward if k.endswith("/kernel")])


@pytest.mark.parametrize("ctor", [MLP, DeepLinear, SmallCNN, VGG, ResNet])
def test_bad_rule_fields_are_named(ctor):
    with pytest.raises(ValueError, match="rule must be 'backprop'"):
        ctor(rule="feedback_alignment")
    with pytest.raises(ValueError, match="rule_head"):
        ctor(rule_head=1)
