"""config.rule in the supervised task: validation, the rule's optimiser in the
loop (FA's B fixed, Kolen-Pollack's W - B shrinking by (1 - lr wd) per
update, MultiSteps around the multi_transform) and the alignment metrics
against a hand-written feedback-alignment gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import credit_digits
from neurojax import rules
from neurojax.train import validate_config
from neurojax.train.credit import alignment_fn
from neurojax.train.loop import seed_keys, train_and_evaluate
from neurojax.train.step import model_objective
from neurojax.train.task import build_model
from neurojax import losses


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(rule, data_dir, steps=10, **optim):
    config = credit_digits.get_config(f"{rule},runlocal")
    config.dataset.data_dir = data_dir
    config.model.widths = (32,)
    config.train.num_epochs, config.train.num_steps = 0, steps
    config.train.steps_per_call = 5
    config.train.checkpoint_every = 0
    config.rule.align_examples = 32
    for key, value in optim.items():
        config.optim[key] = value
    return config


def _initial_params(config):
    init_rng = seed_keys(config.seed, 1)[0]
    model = build_model(config, 10)
    return model.init(init_rng, np.zeros((1, 8, 8, 1), np.float32), train=False)["params"]


@pytest.mark.parametrize("edit, field", [
    (lambda c: setattr(c.rule, "name", "hebbian"), "config.rule.name"),
    (lambda c: setattr(c.rule, "alpha", 0.1), "config.rule.alpha"),  # FA has no alpha
    (lambda c: setattr(c.rule, "foo", 1), "config.rule.foo"),
    (lambda c: setattr(c.rule, "align_examples", -1), "config.rule.align_examples"),
    (lambda c: setattr(c.model, "rule", "feedback_alignment"), "config.model.rule"),
])
def test_rule_validation_names_the_field(edit, field):
    config = credit_digits.get_config("feedback_alignment")
    edit(config)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        validate_config(config)


def test_weight_mirror_metaparameter_range_is_named():
    config = credit_digits.get_config("weight_mirror")
    config.rule.noise_std = 0.0
    with pytest.raises(ValueError, match=r"config\.rule\.noise_std"):
        validate_config(config)


@pytest.mark.slow
def test_feedback_alignment_in_the_loop_keeps_b_and_moves_w(data_dir, tmp_path):
    config = _config("feedback_alignment", data_dir)
    before = _initial_params(config)
    result = train_and_evaluate(config, str(tmp_path), progress=False)
    after = result.state.params
    for layer in ("dense_0", "head"):
        np.testing.assert_array_equal(after[layer]["feedback_kernel"],
                                      before[layer]["feedback_kernel"])
        assert float(jnp.max(jnp.abs(after[layer]["kernel"] - before[layer]["kernel"]))) > 1e-4
    metrics = result.eval_metrics
    for key in ("align/dense_0/grad_angle", "align/head/grad_angle", "align/all/grad_angle",
                "align/dense_0/weight_angle", "align/head/weight_angle"):
        assert np.isfinite(metrics[key])
    # the head's weight gradient reads only the output error: exact under FA
    assert metrics["align/head/grad_angle"] == pytest.approx(0.0, abs=0.05)
    assert metrics["align/dense_0/grad_angle"] > 1.0


@pytest.mark.parametrize("accumulate", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_kolen_pollack_in_the_loop_shrinks_w_minus_b(data_dir, tmp_path, accumulate):
    lr, wd, steps = 0.1, 0.05, 10
    config = _config("kolen_pollack", data_dir, steps=steps, momentum=0.0, nesterov=False,
                     schedule="constant", lr=lr, weight_decay=wd,
                     accumulate_steps=accumulate)
    before = _initial_params(config)
    result = train_and_evaluate(config, str(tmp_path), progress=False)
    after = result.state.params
    factor = (1 - lr * wd) ** (steps // accumulate)
    for layer in ("dense_0", "head"):
        gap0 = before[layer]["kernel"] - before[layer]["feedback_kernel"]
        gap = after[layer]["kernel"] - after[layer]["feedback_kernel"]
        np.testing.assert_allclose(gap, factor * gap0, rtol=2e-4, atol=1e-6)
        assert float(jnp.max(jnp.abs(after[layer]["kernel"] - before[layer]["kernel"]))) > 1e-3
    if accumulate > 1:  # MultiSteps wraps the whole multi_transform
        assert isinstance(result.state.opt_state, optax.MultiStepsState)
        assert isinstance(result.state.opt_state.inner_opt_state,
                          optax.MultiTransformState)


@pytest.mark.slow
def test_kolen_pollack_with_active_clipping_still_shrinks_w_minus_b(data_dir, tmp_path):
    """A clip norm far below the gradient's: W's update is clipped, and B,
    clipped by the same factor, keeps W - B shrinking by (1 - lr wd) per step."""
    lr, wd, steps, clip = 0.1, 0.05, 10, 1e-3
    config = _config("kolen_pollack", data_dir, steps=steps, momentum=0.0, nesterov=False,
                     schedule="constant", lr=lr, weight_decay=wd, grad_clip_norm=clip)
    validate_config(config)
    before = _initial_params(config)
    after = train_and_evaluate(config, str(tmp_path), progress=False).state.params
    moved = 0.0
    for layer in ("dense_0", "head"):
        gap0 = before[layer]["kernel"] - before[layer]["feedback_kernel"]
        gap = after[layer]["kernel"] - after[layer]["feedback_kernel"]
        np.testing.assert_allclose(gap, (1 - lr * wd) ** steps * gap0, rtol=2e-4, atol=1e-6)
        step = after[layer]["kernel"] - (1 - lr * wd) ** steps * before[layer]["kernel"]
        moved += float(jnp.sum(step ** 2))
    # the clipped gradient's norm is at most `clip` per step
    assert 0 < np.sqrt(moved) <= lr * clip * steps * 1.01


def test_alignment_fn_matches_a_hand_written_fa_gradient():
    """One hidden ReLU layer, softmax cross-entropy: the FA error at the hidden
    layer is ((p - y)/N) B_head^T * relu'(h) (Lillicrap et al. 2016)."""
    rule = rules.get_rule("feedback_alignment")
    model = build_model(credit_digits.get_config("feedback_alignment"), 10)
    model = model.clone(widths=(16,))
    twin = model.clone(rule="backprop")
    x = jax.random.uniform(jax.random.PRNGKey(0), (24, 8, 8, 1))
    y = jnp.arange(24) % 10
    params = model.init(jax.random.PRNGKey(1), x, train=False)["params"]
    loss = losses.get_loss("softmax_cross_entropy")
    out = jax.jit(alignment_fn(rule, model_objective(model, loss), model_objective(twin, loss)))(
        params, {}, {"image": x, "label": y}, jax.random.PRNGKey(2))

    p = {k: {kk: np.asarray(vv, np.float64) for kk, vv in v.items()} for k, v in params.items()}
    xf = np.asarray(x, np.float64).reshape(24, -1)
    h = xf @ p["dense_0"]["kernel"] + p["dense_0"]["bias"]
    a = np.maximum(h, 0)
    logits = a @ p["head"]["kernel"] + p["head"]["bias"]
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    e = (prob - np.eye(10)[np.asarray(y)]) / 24

    def hidden_grad(back):
        delta = (e @ back.T) * (h > 0)
        return np.concatenate([(xf.T @ delta).ravel(), delta.sum(0)])

    expected = np.degrees(np.arccos(
        np.dot(hidden_grad(p["head"]["feedback_kernel"]), hidden_grad(p["head"]["kernel"]))
        / np.linalg.norm(hidden_grad(p["head"]["feedback_kernel"]))
        / np.linalg.norm(hidden_grad(p["head"]["kernel"]))))
    np.testing.assert_allclose(out["align/dense_0/grad_angle"], expected, rtol=1e-3)
    assert float(out["align/head/grad_angle"]) == pytest.approx(0.0, abs=0.05)
    w, b = p["head"]["kernel"].ravel(), p["head"]["feedback_kernel"].ravel()
    np.testing.assert_allclose(
        out["align/head/weight_angle"],
        np.degrees(np.arccos(w @ b / np.linalg.norm(w) / np.linalg.norm(b))), rtol=1e-4)
