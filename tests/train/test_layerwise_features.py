"""Layer-wise programs (Oland 2024, ch. 6): forward (input) dropout decaying
per epoch, feature checkpoints recorded and replayed in order, and one
round of Random Robin in bottom-up order against DLL."""
import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import layerwise_shapes
from neurojax.losses import softmax_cross_entropy
from neurojax.models import MLP
from neurojax.models.heads import decision_head
from neurojax.train import layerwise as lw
from neurojax.train.program import DeviceData, enter_stage, run_program
from neurojax.train.state import create_train_state
from neurojax.train.step import make_mesh, replicate, takes_step, train_step_fn
from tests.models._helpers import key as rbg_key, random_variables


# ------------------------------------------------------------ forward dropout

class _Scale(nn.Module):
    """One block (``x * w``, w initialised to 1) and an identity top, so the
    "logits" are the window's input as the objective saw it."""
    num_blocks = 1

    def block_params(self, block):
        return ("w",)

    @nn.compact
    def __call__(self, x, train=False, *, start=0, stop=None):
        if start == 0 and (stop is None or stop >= 1):
            x = x * self.param("w", nn.initializers.ones, ())
        return x


def _zero_fraction(logits, batch):
    return jnp.mean(logits), {"zero_fraction": jnp.mean(logits == 0.0),
                              "kept_mean": jnp.sum(logits) / jnp.sum(logits != 0.0)}


def test_input_dropout_rate_decays_per_epoch_of_the_window():
    """p_in(e) = p0 * 0.95**e (Sec. 6.8): the empirical drop fraction over
    20,000 inputs at steps of epochs 0, 1 and 3 (2 steps an epoch, the
    window starting at step 4) is within 4 binomial standard deviations;
    kept entries are scaled by 1 / (1 - p)."""
    model, p0, n = _Scale(), 0.8, 20_000
    objective = lw.stage_objective(model, None, _zero_fraction, 0, 1, recompute_feednet=True,
                                   input_dropout=p0, steps_per_epoch=2, step_offset=4)
    assert takes_step(objective)
    x = jnp.ones((n, 1))
    batch = {"image": x}
    state = create_train_state({"w": jnp.float32(1.0)}, optax.sgd(0.0),
                               rng=jax.random.PRNGKey(0))
    step = jax.jit(train_step_fn(objective, optax.sgd(0.0)))
    for global_step, epoch in [(4, 0), (5, 0), (6, 1), (11, 3)]:
        _, metrics = step(state.replace(step=jnp.int32(global_step)), batch)
        p = p0 * 0.95 ** epoch
        assert abs(float(metrics["zero_fraction"]) - p) < 4 * np.sqrt(p * (1 - p) / n)
        np.testing.assert_allclose(metrics["kept_mean"], 1.0 / (1.0 - p), rtol=1e-5)
    np.testing.assert_allclose(lw.input_dropout_rate(0.5, 7), 0.5 * 0.95 ** 7, rtol=1e-6)
    with pytest.raises(ValueError, match="step="):
        objective({"w": jnp.float32(1.0)}, {}, batch, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lw.stage_objective(model, None, _zero_fraction, 0, 1, recompute_feednet=True,
                           input_dropout=0.5)


def test_input_dropout_off_is_the_identity_and_the_config_reaches_it():
    model = _Scale()
    objective = lw.stage_objective(model, None, _zero_fraction, 0, 1, recompute_feednet=True)
    assert not takes_step(objective)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 3))
    _, (aux, _) = jax.jit(objective)({"w": jnp.float32(1.0)}, {}, {"image": x},
                                     jax.random.PRNGKey(2))
    assert float(aux["zero_fraction"]) == 0.0
    # the config field reaches the spec and the stages' objectives
    config = layerwise_shapes.get_config()
    assert config.layerwise.input_dropout == 0.0
    config.layerwise.input_dropout = 0.5
    spec = lw.spec_from_config(config)
    assert spec.input_dropout == 0.5 and spec.input_dropout_decay == 0.95
    mlp = MLP(widths=(4, 4), num_outputs=3)
    params = jax.eval_shape(mlp.init, jax.random.PRNGKey(0), x)["params"]
    stages = lw.layerwise_stages(mlp, decision_head("layer", 3), softmax_cross_entropy, spec,
                                 4, lambda i, n: optax.sgd(0.1), params, data_on_device=True,
                                 steps_per_epoch=3)
    assert all(takes_step(s.objective) for s in stages)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lw.layerwise_stages(mlp, decision_head("layer", 3), softmax_cross_entropy, spec, 4,
                            lambda i, n: optax.sgd(0.1), params, data_on_device=True)
    with pytest.raises(ValueError, match="layerwise.input_dropout"):
        lw.LayerwiseSpec(input_dropout=1.0)


# -------------------------------------------------------- feature checkpoints

def _setup():
    model = MLP(widths=(8, 8, 8), num_outputs=3)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(24, 5)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 24), jnp.int32)
    return model, images, labels, random_variables(model, images.shape)["params"]


def _augmented_batches(images, labels, num, seed=3):
    """Mini-batches of 6 drawn at random with random sign flips (an
    augmentation): each is seen once, in this order, as an augmenting stage
    would see them."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(num):
        idx = rng.choice(images.shape[0], 6, replace=False)
        flip = jnp.asarray(rng.choice([-1.0, 1.0], size=(6, 1)), jnp.float32)
        batches.append({"image": images[idx] * flip, "label": labels[idx]})
    return batches


def test_replayed_features_are_the_feednet_output_in_the_recorded_order():
    model, images, labels, params = _setup()
    batches = _augmented_batches(images, labels, 4)
    direct = jax.jit(lambda p, x: model.apply({"params": p}, x, stop=1))
    for where in ("device", "host"):
        ckpt = lw.record_features(model, params, {}, batches, 1, where=where)
        assert len(ckpt) == 4 and ckpt.block == 1
        replayed = list(ckpt.replay())
        for batch, rec in zip(batches, replayed):  # bit for bit, batch by batch, in order
            assert isinstance(rec["image"], np.ndarray) == (where == "host")
            np.testing.assert_array_equal(np.asarray(rec["image"]),
                                          np.asarray(direct(params, batch["image"])))
            np.testing.assert_array_equal(np.asarray(rec["label"]), np.asarray(batch["label"]))
        assert [np.asarray(b["label"]).tolist() for b in ckpt.replay(2)] == [
            np.asarray(b["label"]).tolist() for b in batches[2:]]
        stacked = ckpt.stacked(3, 2)  # wraps around: batches 3, 0
        assert stacked["image"].shape == (2, 6, 8)
        np.testing.assert_array_equal(np.asarray(stacked["image"][1]),
                                      np.asarray(replayed[0]["image"]))
    half = lw.record_features(model, params, {}, batches[:1], 1, dtype="bfloat16")
    assert half.batches[0]["image"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(half.batches[0]["image"].astype(jnp.float32)),
        np.asarray(direct(params, batches[0]["image"]).astype(jnp.bfloat16).astype(jnp.float32)))
    with pytest.raises(ValueError, match="where"):
        lw.record_features(model, params, {}, batches, 1, where="disk")


def test_a_stage_on_replayed_features_trains_as_on_raw_inputs():
    """Window [2, 3) on Z_1 replayed through the cropped feednet [1, 2)
    takes the same step as on raw inputs through the feednet [0, 2); and in
    a program with ``checkpoint_block = 1`` the stage above it holds Z_1 and
    takes the same step as the stage on its cached input."""
    model, images, labels, params = _setup()
    head = decision_head("layer", 3)
    params = {**params, lw.HEADS: jax.jit(lambda k: lw.init_heads(
        model, head, k, {"params": params}, images, [(0, 1), (1, 2)]))(rbg_key(1))}
    batch = _augmented_batches(images, labels, 1)[0]
    ckpt = lw.record_features(model, params, {}, [batch], 1)
    tx = optax.sgd(0.1)
    spec = lw.LayerwiseSpec(checkpoint_block=1)
    stages = lw.layerwise_stages(model, head, softmax_cross_entropy, spec, 3,
                                 lambda i, n: tx, params, data_on_device=True)
    plain = lw.layerwise_stages(model, head, softmax_cross_entropy, lw.LayerwiseSpec(), 3,
                                lambda i, n: tx, params, data_on_device=True)
    assert stages[0].inputs is None and stages[1].inputs is not None  # as without it
    raw = lw.stage_objective(model, head, softmax_cross_entropy, 2, 3, recompute_feednet=True)
    state = enter_stage(create_train_state(params, optax.identity(), rng=jax.random.PRNGKey(4)),
                        stages[2])
    step = lambda objective, b: jax.jit(train_step_fn(objective, tx,
                                                      trainable=stages[2].trainable))(state, b)
    a, ma = step(raw, batch)
    b, mb = step(stages[2].objective, next(ckpt.replay()))
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-6)
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-5, atol=1e-7)
    arrays = {"image": images, "label": labels}
    z1 = stages[2].inputs(params, {}, arrays)["image"]
    np.testing.assert_array_equal(np.asarray(z1), np.asarray(
        lw.cached_features(model, params, {}, images, 1)))
    c, _ = step(plain[2].objective, plain[2].inputs(params, {}, batch))
    chex.assert_trees_all_close(a.params, c.params, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="feed_from"):
        lw.stage_objective(model, head, softmax_cross_entropy, 1, 2, recompute_feednet=True,
                           feed_from=2)
    with pytest.raises(ValueError, match="on the device"):
        lw.layerwise_stages(model, head, softmax_cross_entropy, spec, 3, lambda i, n: tx,
                            params, data_on_device=False)
    with pytest.raises(ValueError, match="checkpoint_block"):
        lw.layerwise_stages(model, head, softmax_cross_entropy,
                            lw.LayerwiseSpec(checkpoint_block=3), 3, lambda i, n: tx, params,
                            data_on_device=True)


# ------------------------------------------------------------- Random Robin

def test_one_round_of_random_robin_bottom_up_is_dll():
    """Algorithm 4 with one round in bottom-up order, each window's
    optimiser state in its own slot (the Random Robin path), ends where
    Algorithm 3 (a fresh state per stage) ends."""
    model = MLP(widths=(8, 8), num_outputs=3)
    rng = np.random.default_rng(0)
    arrays = {"image": jnp.asarray(rng.normal(size=(32, 5)), jnp.float32),
              "label": jnp.asarray(rng.integers(0, 3, 32), jnp.int32)}
    head = decision_head("layer", 3)
    windows = lw.stage_windows(model.num_blocks)
    variables = random_variables(model, arrays["image"].shape)
    params = {**variables["params"], lw.HEADS: jax.jit(lambda k: lw.init_heads(
        model, head, k, variables, arrays["image"], windows))(rbg_key(1))}
    make_tx = lambda i, n: optax.sgd(0.05, momentum=0.9)
    dll = lw.layerwise_stages(model, head, softmax_cross_entropy,
                              lw.LayerwiseSpec(cache_features=False), 6,
                              make_tx, params, data_on_device=True)
    robin = [dataclasses.replace(s, opt_slot=f"window_{i}") for i, s in enumerate(dll)]
    assert [s.opt_slot for s in dll] == [None] * 2
    mesh = make_mesh()
    state = replicate(create_train_state(params, optax.identity(), rng=rbg_key(2)), mesh)
    data = DeviceData(replicate(arrays, mesh), 8)
    key = rbg_key(3)
    a, _ = run_program(dll, state, mesh, device_data=data, data_key=key, steps_per_call=1)
    b, _ = run_program(robin, state, mesh, device_data=data, data_key=key, steps_per_call=1)
    assert set(b.opt_state) == {"window_0", "window_1"}
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-7)
    assert not np.allclose(a.params["dense_0"]["kernel"], params["dense_0"]["kernel"])


# -------------------------------------------------------------- in the loop

class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resumption_inside_a_stage_with_input_dropout_is_exact(tmp_path):
    """DLL on the digits with input dropout (its rate read from the step)
    and backward dropout, 3 stages of 10 steps: a run killed at step 20
    resumes from its checkpoint at step 15, inside stage 1, and ends
    bit-identical to the uninterrupted run."""
    from configs import supervised_digits
    from neurojax.train.loop import train_and_evaluate
    config = supervised_digits.get_config()
    config.task = "layerwise"
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.dataset.batch_size = 256  # a few steps an epoch: stage 1 spans two epochs
    config.model.widths = (16, 16, 16)
    config.optim.lr = 3e-3
    config.train.num_epochs = 0
    config.train.num_steps = 30
    config.train.log_every = 5
    config.train.eval_every = 30
    config.train.checkpoint_every = 5
    config.train.steps_per_call = 5
    config.layerwise = {"input_dropout": 0.5, "grad_dropout": 0.3}
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)

    def hook(step, state, metrics):
        if step == 20:
            raise _Interrupt()
    with pytest.raises(_Interrupt):
        train_and_evaluate(config, str(tmp_path / "killed"), hooks=[hook], progress=False)
    resumed = train_and_evaluate(config, str(tmp_path / "killed"), progress=False)
    chex.assert_trees_all_equal(jax.device_get(full.state.params),
                                jax.device_get(resumed.state.params))
    # and input dropout changed the run (the step reached the objective)
    config.layerwise = {"grad_dropout": 0.3}
    plain = train_and_evaluate(config, str(tmp_path / "plain"), progress=False)
    assert not np.allclose(jax.device_get(plain.state.params["dense_0"]["kernel"]),
                           jax.device_get(full.state.params["dense_0"]["kernel"]))
