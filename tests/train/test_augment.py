"""The supervised task's optional augmentation (config.augment): no recipe is
the plain objective bit for bit; with one, the step trains on make_views'
single view under the step's key, evaluation sees the normalised
un-augmented images, resumption is exact, bad fields are named."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import supervised_digits
from neurojax import data as nj_data
from neurojax.data.augment import cifar_recipe
from neurojax.data.views import make_views
from neurojax.train import validate_config
from neurojax.train.augmentation import VIEW_STREAM, augmented_objective, config_recipe
from neurojax.train.step import make_eval_step, make_mesh, model_objective
from neurojax.train.task import build_model, config_loss, get_task
from tests.train.test_loop import Interrupt, interrupt_at

DIGIT_STATS = dict(mean=(0.3,), std=(0.4,))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, recipe=None):
    config = supervised_digits.get_config()
    config.dataset.data_dir = data_dir
    config.dataset.batch_size = 16
    config.model.widths = (16,)
    if recipe is not None:
        config.augment = ml_collections.ConfigDict()
        config.augment.recipe = recipe
        config.augment.size = 0
        config.augment.overrides = ml_collections.ConfigDict(
            dict(crop_scale=(0.5, 1.0), jitter_p=0.0, grayscale_p=0.0, **DIGIT_STATS)
            if recipe else {})
    return config


def _task_and_state(config, data_dir):
    info = nj_data.dataset_info(config.dataset.name, data_dir=data_dir)
    task = get_task("supervised").build(config, info, make_mesh(), data_dir)
    variables = task.model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1), np.float32),
                                train=False)
    batch = next(iter(nj_data.load(config.dataset.name, "train", batch_size=16,
                                   data_dir=data_dir, shuffle=False, num_epochs=1)))
    batch = {k: jnp.asarray(batch[k]) for k in ("image", "label")}
    return task, variables, batch


def _value_and_grad(objective, variables, batch, rng):
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    fn = lambda p, b, r: objective(p, rest, b, r)
    return jax.jit(jax.value_and_grad(fn, has_aux=True))(params, batch, rng)


@pytest.mark.parametrize("recipe", [None, ""])
def test_no_recipe_is_the_plain_objective_bit_for_bit(data_dir, recipe):
    config = _config(data_dir, recipe)
    validate_config(config)
    assert config_recipe(config, 8) is None
    task, variables, batch = _task_and_state(config, data_dir)
    loss_fn, hyper = config_loss(config)
    plain = model_objective(build_model(config, 10), loss_fn, **hyper)
    rng = jax.random.PRNGKey(3)
    chex.assert_trees_all_equal(_value_and_grad(task.objective, variables, batch, rng),
                                _value_and_grad(plain, variables, batch, rng))


def test_recipe_trains_on_make_views_single_view(data_dir):
    config = _config(data_dir, "cifar")
    validate_config(config)
    recipe = config_recipe(config, 8)
    assert (recipe.out_size, recipe.crop_scale, recipe.mean) == (8, (0.5, 1.0), (0.3,))
    task, variables, batch = _task_and_state(config, data_dir)
    rng = jax.random.PRNGKey(5)
    view = jax.jit(lambda k, x: make_views(k, x, 1, recipe))(
        jax.random.fold_in(rng, 0), batch["image"])[0][0]
    assert view.shape == batch["image"].shape
    assert not np.allclose(view, batch["image"])
    loss_fn, hyper = config_loss(config)
    plain = model_objective(build_model(config, 10), loss_fn, **hyper)
    chex.assert_trees_all_equal(
        _value_and_grad(task.objective, variables, batch, rng),
        _value_and_grad(plain, variables, {**batch, "image": view}, rng))


@pytest.mark.slow
def test_wrapper_passes_rng_and_step_through():
    def objective(params, model_state, batch, rng, step):
        seen = dict(image=batch["image"], rng=jax.random.key_data(rng), step=step,
                    label=batch["label"])
        return jnp.sum(batch["image"]), (seen, model_state)
    objective.takes_step = True
    recipe = dataclasses.replace(cifar_recipe(8), jitter_p=0.0)  # crop, flip, grey, normalise
    wrapped = augmented_objective(objective, recipe)
    assert wrapped.takes_step is True
    images = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3))
    rng = jax.random.PRNGKey(2)
    _, (seen, _) = jax.jit(lambda b, r: wrapped({}, {}, b, r, step=7))(
        {"image": images, "label": jnp.arange(4)}, rng)
    expected = jax.jit(lambda k, x: make_views(k, x, 1, recipe))(
        jax.random.fold_in(rng, VIEW_STREAM), images)[0][0]
    np.testing.assert_array_equal(seen["image"], expected)
    assert not np.allclose(expected, images)
    np.testing.assert_array_equal(seen["rng"], jax.random.key_data(rng))
    np.testing.assert_array_equal(seen["label"], np.arange(4))
    assert seen["step"] == 7


def test_evaluation_sees_the_normalised_unaugmented_images(data_dir):
    config = _config(data_dir, "cifar")
    config.dataset.eval_batch_size = 360
    task, variables, _ = _task_and_state(config, data_dir)
    from neurojax.train.state import create_train_state
    import optax
    state = create_train_state(variables["params"], optax.identity(), model_state={},
                               rng=jax.random.PRNGKey(0))
    metrics = task.evaluate(state)
    test = next(iter(nj_data.load("digits", "test", batch_size=360, data_dir=data_dir,
                                  shuffle=False, num_epochs=1, drop_remainder=False)))
    x = (np.asarray(test["image"], np.float64) - 0.3) / 0.4  # independent normalisation
    logits = np.asarray(task.model.apply(variables, jnp.asarray(x, jnp.float32),
                                         train=False))
    accuracy = np.mean(np.argmax(logits, -1) == np.asarray(test["label"]))
    np.testing.assert_allclose(metrics["accuracy"], accuracy, atol=1e-6)


@pytest.mark.parametrize("field, value, match", [
    ("recipe", "cifar10", "config.augment.recipe must be"),
    ("size", -1, "config.augment.size"),
    ("flips", 1, "config.augment.flips is not a field"),
    ("overrides", {"flip_p": 2.0}, "config.augment.overrides: flip_p"),
    ("overrides", {"no_such": 1}, "config.augment.overrides"),
])
def test_bad_augment_fields_are_named(data_dir, field, value, match):
    config = _config(data_dir, "cifar")
    config.augment[field] = value
    with pytest.raises(ValueError, match=match):
        validate_config(config)


def test_overrides_without_a_recipe_are_refused(data_dir):
    config = _config(data_dir, "")
    config.augment.overrides = ml_collections.ConfigDict(dict(flip_p=0.0))
    with pytest.raises(ValueError, match="config.augment.overrides needs"):
        validate_config(config)


@pytest.mark.slow  # three short loop runs (~1 min on 2 shared cores)
def test_augmented_run_resumes_exactly(data_dir, tmp_path):
    """Killed at step 5 (checkpoint at 4), restarted: the same parameters,
    as the views are drawn from the step's rng inside the compiled step."""
    from neurojax.train.loop import train_and_evaluate
    config = _config(data_dir, "cifar")
    config.train.update(num_epochs=0, num_steps=6, log_every=2, eval_every=0,
                        checkpoint_every=2, steps_per_call=1)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    plain = _config(data_dir)
    plain.train.update(config.train.to_dict())
    unaugmented = train_and_evaluate(plain, str(tmp_path / "plain"), progress=False)
    workdir = str(tmp_path / "cut")
    with pytest.raises(Interrupt):
        train_and_evaluate(config, workdir, hooks=[interrupt_at(5)], progress=False)
    resumed = train_and_evaluate(config, workdir, progress=False)
    chex.assert_trees_all_equal(jax.device_get(full.state.params),
                                jax.device_get(resumed.state.params))
    leaves = lambda r: jax.tree.leaves(jax.device_get(r.state.params))
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(full), leaves(unaugmented)))


@pytest.mark.slow  # ~20 s on 2 shared cores (the alignment evaluator compiles)
def test_alignment_angles_are_measured_on_the_unaugmented_normalised_images(data_dir):
    """With config.rule the alignment evaluator sees the first training
    images only normalised (no random crop or flip): its angles equal
    credit.alignment_fn's on the plain objectives and a numpy-normalised batch."""
    from configs import credit_digits
    from neurojax.train import credit
    config = credit_digits.get_config("feedback_alignment,runlocal")
    config.dataset.data_dir = data_dir
    config.model.widths = (16,)
    config.rule.align_examples = 32
    config.augment = _config(data_dir, "cifar").augment
    info = nj_data.dataset_info("digits", data_dir=data_dir)
    task = get_task("supervised").build(config, info, make_mesh(), data_dir)
    variables = task.model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1), np.float32),
                                train=False)
    import optax
    from neurojax.train.state import create_train_state
    state = create_train_state(variables["params"], optax.identity(), model_state={},
                               rng=jax.random.PRNGKey(0))
    got = {k: v for k, v in task.evaluate(state).items() if k.startswith("align/")}
    batch = next(iter(nj_data.load("digits", "train", batch_size=32, data_dir=data_dir,
                                   shuffle=False, num_epochs=1, drop_remainder=False)))
    batch = {"image": jnp.asarray((np.asarray(batch["image"], np.float64) - 0.3) / 0.4,
                                  jnp.float32), "label": jnp.asarray(batch["label"])}
    loss_fn, hyper = config_loss(config)
    rule = credit.config_rule(config)
    fn = credit.alignment_fn(rule, model_objective(build_model(config, 10), loss_fn, **hyper),
                             model_objective(build_model(config, 10, backprop=True), loss_fn,
                                             **hyper))
    want = jax.jit(fn)(state.params, {}, batch, jax.random.PRNGKey(0))
    assert got and set(got) == set(want)
    for key in got:
        np.testing.assert_allclose(got[key], float(want[key]), rtol=1e-4, atol=1e-3)
