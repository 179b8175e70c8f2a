"""Layer-wise programs (Oland 2024, ch. 6): windows, the feednet, heads,
stages in the loop, resumption inside a stage."""
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import supervised_digits
from neurojax.losses import softmax_cross_entropy
from neurojax.models import MLP, SmallCNN
from neurojax.models.heads import DecisionBlock, DecisionLayer, decision_head
from neurojax.optim import make_optimizer
from neurojax.train import layerwise as lw
from neurojax.train.program import enter_stage, partition
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn
from neurojax.train.loop import train_and_evaluate


# ------------------------------------------------------------------ windows

def test_stage_windows():
    assert lw.stage_windows(4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert lw.stage_windows(5, "segment", window=2) == [(0, 2), (1, 3), (2, 4), (3, 5)]
    # a stride that does not reach the top gets a last window ending there
    assert lw.stage_windows(6, "segment", window=3, step=2) == [(0, 3), (2, 5), (3, 6)]
    assert lw.stage_windows(5, "partition", window=2) == [(0, 2), (2, 4), (4, 5)]
    assert lw.stage_windows(3, "segment", window=8) == [(0, 3)]  # end-to-end
    with pytest.raises(ValueError, match="method"):
        lw.stage_windows(3, "greedy")
    with pytest.raises(ValueError, match="step"):
        lw.stage_windows(5, "segment", window=2, step=3)  # a block would be skipped
    with pytest.raises(ValueError, match="num_blocks"):
        lw.stage_windows(0)


def test_split_steps_matches_the_total():
    assert lw.split_steps(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError, match="num_steps"):
        lw.split_steps(2, 3)


@pytest.mark.parametrize("num_steps,weights", [
    (704, [1.26 ** i for i in range(4)]), (9, [1.0, 5.0, 2.0]), (5, [1.0, 1.0, 1e6]),
    (1000, [1.08 ** i for i in range(13)])])
def test_split_steps_in_proportion_to_weights(num_steps, weights):
    """Against a brute-force largest-remainder allocation: one step each, then
    the spare steps one at a time to the stage furthest below its share."""
    steps = lw.split_steps(num_steps, len(weights), weights)
    spare = num_steps - len(weights)
    share = [1 + spare * w / sum(weights) for w in weights]
    expected = [1] * len(weights)
    for _ in range(spare):
        gaps = [s - e for s, e in zip(share, expected)]
        expected[gaps.index(max(gaps))] += 1
    assert steps == expected and sum(steps) == num_steps
    assert max(abs(n - s) for n, s in zip(steps, share)) < 1


def test_steps_factor_sets_each_window_share():
    mlp = MLP(widths=(4, 4, 4), num_outputs=3)
    x = jnp.zeros((2, 5))
    params = jax.eval_shape(mlp.init, jax.random.PRNGKey(0), x)["params"]
    spec = lw.LayerwiseSpec(steps_factor=2.0)
    stages = lw.layerwise_stages(mlp, decision_head("layer", 3), softmax_cross_entropy, spec,
                                 64, lambda i, n: optax.sgd(0.1), params, data_on_device=True)
    # 3 windows (the top in the last): one step each, then the 61 spare
    # steps 1:2:4 = 8.71, 17.43, 34.86, the two leftovers to .86 and .71
    assert [s.num_steps for s in stages] == [10, 18, 36]
    with pytest.raises(ValueError, match="layerwise.steps_factor"):
        lw.LayerwiseSpec(steps_factor=0.0)


# ---------------------------------------------------------- model protocol

def _mlp():
    return MLP(widths=(16, 12, 8), num_outputs=5)


def _data(n=24, d=10, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, classes, n), jnp.int32)}


def test_block_slices_compose_to_the_model():
    model = _mlp()
    batch = _data()
    variables = model.init(jax.random.PRNGKey(0), batch["image"])
    assert model.num_blocks == 3
    full = model.apply(variables, batch["image"])
    z = batch["image"]
    for b in range(model.num_blocks):
        z = model.apply(variables, z, start=b, stop=b + 1)
    np.testing.assert_allclose(model.apply(variables, z, start=model.num_blocks), full,
                               rtol=1e-6, atol=1e-6)


def test_cnn_block_slices_compose_with_batch_norm():
    model = SmallCNN(widths=(4, 6), hidden=8, num_classes=3, batch_norm=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 8, 8, 1))
    variables = model.init(jax.random.PRNGKey(0), x)
    assert model.num_blocks == 3
    full = model.apply(variables, x)
    z = model.apply(variables, x, stop=1)
    z = model.apply(variables, z, start=1, stop=3)
    np.testing.assert_allclose(model.apply(variables, z, start=3), full, rtol=1e-5, atol=1e-5)
    assert model.block_params(0) == ("conv_0", "bn_0")


@pytest.mark.slow
def test_vgg_block_slices_compose():
    from neurojax.models import get_model
    model = get_model("vgg11", num_classes=4, width_factor=0.125, classifier_widths=(8,))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    assert model.num_blocks == 9  # 8 convs (pools merged into them) + 1 hidden dense
    assert model.block_params(8) == ("fc_0",) and model.block_params(9) == ("head",)
    z = model.apply(variables, x, stop=3)
    z = model.apply(variables, z, start=3, stop=9)
    np.testing.assert_allclose(model.apply(variables, z, start=9), model.apply(variables, x),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="stop"):
        model.apply(variables, x, start=3, stop=2)


# ---------------------------------------------------------- backward dropout

def test_backward_dropout_changes_only_the_gradient():
    x = jnp.linspace(-1.0, 1.0, 4000)
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(lw.backward_dropout(x, key, 0.5), x)
    g0 = jax.grad(lambda v: jnp.sum(lw.backward_dropout(v, key, 0.0) * 3.0))(x)
    np.testing.assert_array_equal(g0, jnp.full_like(x, 3.0))  # p = 0: the identity
    g = jax.grad(lambda v: jnp.sum(lw.backward_dropout(v, key, 0.3) * 3.0))(x)
    kept = np.asarray(g) != 0
    np.testing.assert_allclose(np.asarray(g)[kept], 3.0 / 0.7, rtol=1e-6)
    # dropped fraction within 4 binomial standard deviations of 0.3
    assert abs((~kept).mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / x.size)


# --------------------------------------------------------- stage objectives

def _state(model, head, windows, batch, tx=None):
    variables = model.init(jax.random.PRNGKey(0), batch["image"])
    heads = lw.init_heads(model, head, jax.random.PRNGKey(1), variables, batch["image"],
                          windows)
    params = {**variables["params"], lw.HEADS: heads} if heads else variables["params"]
    return create_train_state(params, tx or optax.identity(), rng=jax.random.PRNGKey(2))


def test_window_over_the_whole_network_is_end_to_end_training():
    model, batch = _mlp(), _data()
    tx = optax.sgd(0.1, momentum=0.9)
    stage = lw.layerwise_stages(
        model, None, softmax_cross_entropy, lw.LayerwiseSpec("segment", window=3), 6,
        lambda i, n: tx, model.init(jax.random.PRNGKey(0), batch["image"])["params"],
        data_on_device=False)
    assert len(stage) == 1 and stage[0].trainable == ("dense_0", "dense_1", "dense_2", "head")
    state = _state(model, None, [(0, 3)], batch)
    a = enter_stage(state, stage[0])
    b = state.replace(opt_state=tx.init(state.params))
    step_a = jax.jit(train_step_fn(stage[0].objective, tx, trainable=stage[0].trainable))
    step_b = jax.jit(train_step_fn(model_objective(model, softmax_cross_entropy), tx))
    for _ in range(6):
        a, ma = step_a(a, batch)
        b, mb = step_b(b, batch)
        np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-6)
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-7)


def test_stage_gradient_with_the_real_upper_network_equals_backprop():
    """Window [1, top): the stage's gradient for block 1 is the end-to-end
    gradient for block 1 (the feednet's stop_gradient cuts nothing needed)."""
    model, batch = _mlp(), _data()
    state = _state(model, None, [(1, 3)], batch)
    objective = lw.stage_objective(model, None, softmax_cross_entropy, 1, 3,
                                   recompute_feednet=True)
    trainable = ("dense_1",)
    train, frozen = partition(state.params, trainable)
    from neurojax.train.program import combine
    g_stage = jax.grad(lambda t: objective(combine(t, frozen), {}, batch, state.rng)[0])(train)
    end_to_end = model_objective(model, softmax_cross_entropy)
    g_full = jax.grad(lambda p: end_to_end(p, {}, batch, state.rng)[0])(state.params)
    chex.assert_trees_all_close(g_stage["dense_1"], g_full["dense_1"], rtol=1e-6, atol=1e-8)
    # and the feednet gets nothing: no gradient is even computed for it
    g_all = jax.grad(lambda p: objective(p, {}, batch, state.rng)[0])(state.params)
    assert float(jnp.abs(g_all["dense_0"]["kernel"]).max()) == 0.0


@pytest.mark.parametrize("head_kind", ["layer", "block"])
def test_cached_features_equal_the_feednet_and_train_the_same(head_kind):
    model = SmallCNN(widths=(4, 6), hidden=8, num_classes=3, batch_norm=True)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(20, 8, 8, 1)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, 3, 20), jnp.int32)}
    head = decision_head(head_kind, 3, channels=(5,))
    variables = model.init(jax.random.PRNGKey(0), batch["image"])
    params, model_state = variables["params"], {"batch_stats": variables["batch_stats"]}
    cached = lw.cached_features(model, params, model_state, batch["image"], 1, chunk=7)
    direct = lw.feednet(model, params, model_state, batch["image"], 1)
    np.testing.assert_allclose(cached, direct, rtol=1e-6, atol=1e-6)
    # one step on cached features equals one step recomputing the feednet
    heads = lw.init_heads(model, head, jax.random.PRNGKey(1), variables, batch["image"],
                          [(1, 2)])
    full = {**params, lw.HEADS: heads}
    obj_cached = lw.stage_objective(model, head, softmax_cross_entropy, 1, 2,
                                    recompute_feednet=False)
    obj_raw = lw.stage_objective(model, head, softmax_cross_entropy, 1, 2,
                                 recompute_feednet=True)
    key = jax.random.PRNGKey(5)
    la, (_, sa) = obj_cached(full, model_state, {**batch, "image": cached}, key)
    lb, (_, sb) = obj_raw(full, model_state, batch, key)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    chex.assert_trees_all_close(sa, sb, rtol=1e-6, atol=1e-7)
    # the feednet's BatchNorm statistics are not touched, the trained block's are
    chex.assert_trees_all_equal(sa["batch_stats"]["bn_0"], model_state["batch_stats"]["bn_0"])
    assert not np.allclose(sa["batch_stats"]["bn_1"]["mean"],
                           model_state["batch_stats"]["bn_1"]["mean"])


@pytest.mark.slow
def test_decision_heads():
    x = jnp.ones((2, 8, 8, 3))
    assert DecisionLayer(4).init_with_output(jax.random.PRNGKey(0), x)[0].shape == (2, 4)
    out, v = DecisionBlock(4, channels=(6, 7)).init_with_output(jax.random.PRNGKey(0), x)
    assert out.shape == (2, 4) and v["params"]["down_1"]["kernel"].shape == (3, 3, 6, 7)
    with pytest.raises(ValueError, match="head"):
        decision_head("mlp", 4)


def test_flat_decision_layer_is_an_affine_map_of_the_flattened_features():
    """Kind 'flat' (the thesis's fully connected decision layer) against a
    hand-written x.reshape(N, -1) @ W + b; 'layer' against the spatial mean."""
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 5))
    for kind, features in (("flat", np.asarray(x).reshape(3, -1)),
                           ("layer", np.asarray(x).mean(axis=(1, 2)))):
        head = decision_head(kind, 7)
        out, v = head.init_with_output(jax.random.PRNGKey(1), x)
        w, b = np.asarray(v["params"]["dense"]["kernel"]), np.asarray(v["params"]["dense"]["bias"])
        assert w.shape == (features.shape[1], 7)
        np.testing.assert_allclose(out, features @ w + b, rtol=1e-5, atol=1e-5)
    assert lw.LayerwiseSpec(head="flat").head == "flat"
    with pytest.raises(ValueError, match="layerwise.head"):
        lw.LayerwiseSpec(head="dense")


def test_per_stage_learning_rate_and_weight_decay():
    """Stage i's optimiser steps with lr * 0.8**i (SGD: update = -lr_i g)."""
    config = supervised_digits.get_config()
    config.optim.name, config.optim.lr, config.optim.schedule = "sgd", 0.1, "constant"
    config.optim.momentum, config.optim.weight_decay = 0.0, 0.01
    spec = lw.LayerwiseSpec(lr_factor=0.8, wd_factor=1.15)
    g = {"w": jnp.ones(3)}
    for i in range(3):
        scaled = lw._scaled_optim(config.optim, i, spec)
        assert scaled["weight_decay"] == pytest.approx(0.01 * 1.15 ** i)
        tx = make_optimizer({**scaled, "weight_decay": 0.0}, 10)
        update, _ = tx.update(g, tx.init(g), g)
        np.testing.assert_allclose(update["w"], -0.1 * 0.8 ** i, rtol=1e-6)


# -------------------------------------------------------------- in the loop

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, **layerwise):
    config = supervised_digits.get_config()
    config.task = "layerwise"
    config.dataset.data_dir = data_dir
    config.dataset.batch_size = 32
    config.model.widths = (32, 16, 16)
    config.optim.lr = 3e-3
    config.train.num_epochs = 0
    config.train.num_steps = 30
    config.train.log_every = 5
    config.train.eval_every = 10
    config.train.checkpoint_every = 5
    config.train.steps_per_call = 5
    config.layerwise = dict(layerwise)
    return config


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_dll_in_the_loop_reads_out_each_stage_and_assembles_the_model(data_dir, tmp_path):
    config = _config(data_dir)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    params = jax.device_get(full.state.params)
    assert set(params[lw.HEADS]) == {"head_1", "head_2"}  # the top is the model's own
    records = [json.loads(l) for l in open(tmp_path / "full" / "metrics.jsonl")]
    evals = [r for r in records if r["split"] == "eval"]
    assert [(r["step"], r["stage"], r["readout_block"]) for r in evals] == [
        (10, 0, 1), (20, 1, 2), (30, 2, 3)]
    # the last read-out is the ordinary model on the assembled tree (heads ignored)
    from neurojax.data import on_device
    from neurojax.models import get_model
    test = on_device.load_split_arrays("digits", "test", data_dir=data_dir)
    model = get_model("mlp", widths=(32, 16, 16), num_outputs=10)
    logits = model.apply({"params": lw.without_heads(params)}, test["image"])
    accuracy = np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(test["label"]))
    assert evals[-1]["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # 1 image: 2.8e-3
    # (resumption inside a stage: the Random Robin test below, in round 2)
    # (cached and recomputed feednet features train the same: tested on the
    # stage objective above, without a loop run)


@pytest.mark.slow
def test_growing_stages_are_read_out_where_each_ends(data_dir, tmp_path):
    """steps_factor 2 splits 30 steps 5:9:16 (one each, then 27 as 1:2:4);
    train.eval_at_stage_end evaluates at 5, 14 and 30 besides eval_every."""
    config = _config(data_dir, steps_factor=2.0, head="flat")
    config.train.eval_every = 0
    config.train.eval_at_stage_end = True
    train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    evals = [(r["step"], r["stage"], r["readout_block"]) for r in records
             if r["split"] == "eval"]
    assert evals == [(5, 0, 1), (14, 1, 2), (30, 2, 3)]
    with config.ignore_type():
        config.train.eval_at_stage_end = "yes"
    with pytest.raises(ValueError, match="config.train.eval_at_stage_end"):
        train_and_evaluate(config, str(tmp_path / "bad"), progress=False)


@pytest.mark.slow  # ~35 s; one round bottom-up = DLL stays in the default run
def test_random_robin_in_the_loop_keeps_each_windows_state_and_resumes(data_dir, tmp_path):
    """Algorithm 4: 2 rounds over the 3 windows in random order, 5 steps a
    visit; every window's optimiser state persists (Adam's count ends at its
    10 steps, not 5), and a run killed in round 2 resumes exactly."""
    config = _config(data_dir, rounds=2, random_order=True)
    config.train.eval_every = 5
    visits = lw.stage_visits(3, 2, True, config.seed)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    records = [json.loads(l) for l in open(tmp_path / "full" / "metrics.jsonl")]
    blocks = [r["readout_block"] for r in records if r["split"] == "eval"]
    assert blocks[:5] == [w + 1 for _, w in visits[:5]]  # read out after each visit's window
    assert visits[5][1] != 2 and blocks[5] == 3  # after the last visit: the whole network
    counts = {slot: int(np.max([np.max(leaf) for leaf in jax.tree.leaves(state)
                                if np.asarray(leaf).dtype == np.int32]))
              for slot, state in jax.device_get(full.state.opt_state).items()}
    assert counts == {"window_0": 10, "window_1": 10, "window_2": 10}

    def hook(step, state, metrics):
        if step == 20:  # round 2, one call after the checkpoint at 15
            raise Interrupt()
    with pytest.raises(Interrupt):
        train_and_evaluate(config, str(tmp_path / "killed"), hooks=[hook], progress=False)
    resumed = train_and_evaluate(config, str(tmp_path / "killed"), progress=False)
    chex.assert_trees_all_equal(jax.device_get(full.state.params),
                                jax.device_get(resumed.state.params))


def test_stage_visits():
    assert lw.stage_visits(3) == [(0, 0), (0, 1), (0, 2)]
    assert lw.stage_visits(2, 2) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    visits = lw.stage_visits(4, 3, True, seed=1)
    for r in range(3):
        assert sorted(w for rr, w in visits if rr == r) == [0, 1, 2, 3]
    assert visits == lw.stage_visits(4, 3, True, seed=1)
    assert any(lw.stage_visits(4, 3, True, seed=s) != visits for s in range(2, 6))
    assert not lw.LayerwiseSpec().persistent and lw.LayerwiseSpec(rounds=2).persistent
    with pytest.raises(ValueError, match="rounds"):
        lw.LayerwiseSpec(rounds=0)


@pytest.mark.slow
def test_stage_trains_only_its_window(data_dir, tmp_path):
    seen = {}

    def keep(step, state, metrics):
        seen[step] = jax.device_get(state.params)
    config = _config(data_dir, validation_split="train[90%:]")
    config.dataset.train_split = "train[:90%]"
    result = train_and_evaluate(config, str(tmp_path / "w"), hooks=[keep], progress=False)
    records = [json.loads(l) for l in open(tmp_path / "w" / "metrics.jsonl")]
    evals = [r for r in records if r["split"] == "eval"]
    assert all("validation_accuracy" in r for r in evals)
    best = max(evals, key=lambda r: r["validation_accuracy"])
    assert result.eval_metrics["peak_stage"] == best["stage"]
    assert result.eval_metrics["peak_accuracy"] == best["accuracy"]
    assert result.eval_metrics["peak_selected_on"] == "validation"
    # stage 1 (steps 11-20) moves dense_1 and head_2 only
    for name in ("dense_0", "head"):
        chex.assert_trees_all_equal(seen[10][name], seen[20][name])
    chex.assert_trees_all_equal(seen[10][lw.HEADS]["head_1"], seen[20][lw.HEADS]["head_1"])
    assert not np.allclose(seen[10]["dense_1"]["kernel"], seen[20]["dense_1"]["kernel"])


def test_peak_readout_picks_the_last_record_of_the_best_stage():
    records = [{"stage": 0, "readout_block": 1, "accuracy": 0.5, "validation_accuracy": 0.9},
               {"stage": 0, "readout_block": 1, "accuracy": 0.6, "validation_accuracy": 0.7},
               {"stage": 1, "readout_block": 2, "accuracy": 0.4, "validation_accuracy": 0.8}]
    assert lw.peak_readout(records) == {"peak_stage": 1, "peak_readout_block": 2,
                                        "peak_accuracy": 0.4,
                                        "peak_selected_on": "validation"}
    no_validation = [{k: v for k, v in r.items() if k != "validation_accuracy"}
                     for r in records]
    assert lw.peak_readout(no_validation)["peak_stage"] == 0
    assert lw.peak_readout(no_validation)["peak_selected_on"] == "evaluation split"


def test_bad_layerwise_fields_fail_before_training(data_dir, tmp_path):
    for field, value, match in [("method", "greedy", "layerwise.method"),
                                ("grad_dropout", 1.0, "layerwise.grad_dropout"),
                                ("windw", 2, "unknown fields")]:
        config = _config(data_dir, **{field: value})
        with pytest.raises(ValueError, match=match):
            train_and_evaluate(config, str(tmp_path / field), progress=False)
        assert not os.path.exists(tmp_path / field / "checkpoints")


def test_remat_window_of_an_mlp_gives_the_plain_gradients():
    """Two blocks, each under its own jax.checkpoint: the same loss and
    gradients as the plain window (fast check; BatchNorm and convolutions in
    the slow test below)."""
    model, batch = _mlp(), _data()
    state = _state(model, None, [(1, 3)], batch)
    for remat in ("dots", "nothing"):
        grads = [jax.jit(jax.grad(lambda p, r=r: lw.stage_objective(
            model, None, softmax_cross_entropy, 1, 3, recompute_feednet=True,
            remat=r)(p, {}, batch, state.rng)[0]))(state.params) for r in ("off", remat)]
        chex.assert_trees_all_close(grads[1], grads[0], rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_remat_stage_gives_the_plain_stage_gradients():
    """A window under jax.checkpoint (layerwise.remat) recomputes, it does not
    change: loss, gradients of the trained blocks and head and the new
    BatchNorm statistics equal the plain stage's; the whole network as one
    rematerialised window has the end-to-end gradient."""
    from neurojax.train.program import combine
    model = SmallCNN(widths=(4, 6), hidden=8, num_classes=3, batch_norm=True)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(6, 8, 8, 3)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, 3, 6), jnp.int32)}
    head = decision_head("block", 3, channels=(5,))
    variables = model.init(jax.random.PRNGKey(0), batch["image"])
    model_state = {"batch_stats": variables["batch_stats"]}
    heads = lw.init_heads(model, head, jax.random.PRNGKey(1), variables, batch["image"],
                          [(1, 3)])
    params = {**variables["params"], lw.HEADS: heads}
    trainable = lw.trainable_prefixes(model, params, 1, 3, model.block_params)
    train, frozen = partition(params, trainable)
    key = jax.random.PRNGKey(2)

    def grads(objective, train, frozen):
        return jax.jit(jax.value_and_grad(lambda t: objective(
            combine(t, frozen), model_state, batch, key), has_aux=True))(train)

    def stage(**kw):
        return lw.stage_objective(model, head, softmax_cross_entropy, 1, 3,
                                  recompute_feednet=True, **kw)
    (la, (_, sa)), ga = grads(stage(), train, frozen)
    for remat in ("dots", "nothing"):
        (lb, (_, sb)), gb = grads(stage(remat=remat), train, frozen)
        np.testing.assert_allclose(lb, la, rtol=1e-6)
        chex.assert_trees_all_close(gb, ga, rtol=1e-5, atol=1e-7)
        chex.assert_trees_all_close(sb, sa, rtol=1e-6, atol=1e-7)
    # the whole network as one rematerialised window: the end-to-end gradient
    whole = lw.stage_objective(model, None, softmax_cross_entropy, 0, model.num_blocks,
                               recompute_feednet=False, remat="dots")
    plain = {k: v for k, v in params.items() if k != lw.HEADS}
    (lc, _), gc = grads(whole, plain, {})
    (ld, _), gd = grads(model_objective(model, softmax_cross_entropy), plain, {})
    np.testing.assert_allclose(lc, ld, rtol=1e-6)
    chex.assert_trees_all_close(gc, gd, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="remat"):
        lw.LayerwiseSpec(remat="everything")
