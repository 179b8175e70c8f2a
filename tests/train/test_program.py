"""Training programs: partition, call plans, k steps in one call, two stages by hand."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from neurojax.data import on_device
from neurojax.train import program
from neurojax.train.state import create_train_state
from neurojax.train.step import make_mesh, make_train_step, shard_batch


def test_partition_and_combine_roundtrip_and_name_bad_prefixes():
    params = {"block1": {"conv": {"kernel": 1.0, "bias": 2.0}}, "block10": {"w": 3.0},
              "head": {"w": 4.0}}
    train, frozen = program.partition(params, ("block1",))
    assert train == {"block1": {"conv": {"kernel": 1.0, "bias": 2.0}}}  # not block10
    assert frozen == {"block10": {"w": 3.0}, "head": {"w": 4.0}}
    assert program.combine(train, frozen) == params
    assert program.partition(params, ("block1/conv/bias",))[0] == {"block1": {"conv": {"bias": 2.0}}}
    assert program.partition(params, None) == (params, {})
    with pytest.raises(ValueError, match="'block2' matches no parameter"):
        program.partition(params, ("block2",))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_stage_checks_its_fields(bad):
    with pytest.raises(ValueError, match="num_steps"):
        program.Stage("s", bad, None, optax.sgd(1.0))
    with pytest.raises(ValueError, match="trainable"):
        program.Stage("s", 1, None, optax.sgd(1.0), trainable="head")


def _stages(*steps):
    return [program.Stage(f"s{i}", n, None, optax.sgd(1.0)) for i, n in enumerate(steps)]


def test_plan_calls_aligns_to_stage_starts_and_resumes_anywhere():
    stages = _stages(7, 5)
    plan = program.plan_calls(stages, 0, 3)
    assert plan == [(0, 0, 3, True), (0, 3, 3, False), (0, 6, 1, False),
                    (1, 7, 3, True), (1, 10, 2, False)]
    # a run resumed at any step makes the same calls from there on, after
    # one call back to the alignment
    assert program.plan_calls(stages, 6, 3) == plan[2:]
    assert program.plan_calls(stages, 4, 3) == [(0, 4, 2, False)] + plan[2:]
    assert program.plan_calls(stages, 12, 3) == []
    assert program.stage_at(stages, 6) == 0 and program.stage_at(stages, 7) == 1
    assert program.stage_at(stages, 12) == 2
    with pytest.raises(ValueError, match="steps_per_call"):
        program.plan_calls(stages, 0, 0)


def _regression(key, n=96, d=5):
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (n, d))
    return {"x": x, "y": x @ jax.random.normal(kw, (d,)) + 0.1}


def _linear_objective(params, model_state, batch, rng):
    pred = batch["x"] @ params["w"] + params["b"]
    noise = 0.01 * jax.random.normal(rng, ())  # the step rng reaches the objective
    loss = jnp.mean((pred - batch["y"]) ** 2) + noise
    return loss, ({"mean_pred": jnp.mean(pred)}, model_state)


@pytest.mark.slow
def test_k_steps_in_one_call_equal_k_single_steps():
    data = _regression(jax.random.PRNGKey(0))
    mesh = make_mesh()
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    tx = optax.adam(optax.cosine_decay_schedule(0.05, 12))
    stage = program.Stage("train", 12, _linear_objective, tx)
    state0 = create_train_state(params, tx, rng=jax.random.PRNGKey(3))
    device_data = program.DeviceData(data, batch_size=16)
    data_key = jax.random.PRNGKey(7)

    call = program.make_call(stage, 12, mesh, device_data=device_data, donate=False)
    scanned, metrics = call(state0, data, data_key)
    chex.assert_shape(metrics["loss"], (12,))

    single = make_train_step(_linear_objective, tx, mesh=mesh, donate=False)
    state, losses = state0, []
    indices = on_device.batch_indices(data_key, jnp.arange(12), 96, 16)
    for t in range(12):
        batch = {k: np.asarray(v)[np.asarray(indices[t])] for k, v in data.items()}
        state, m = single(state, shard_batch(batch, mesh))
        losses.append(float(m["loss"]))
    chex.assert_trees_all_close(scanned.params, state.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-5)
    assert int(scanned.step) == 12

    # one step per call is the step alone: no loop (XLA:CPU runs convolutions
    # in loop bodies far slower), and it equals the first single step
    # (host batches: the device path's permutation has loops of its own)
    first_batch = {k: np.asarray(v)[np.asarray(indices[:1])] for k, v in data.items()}
    first_batch = shard_batch(first_batch, mesh, axis=1)
    one = program.make_call(stage, 1, mesh, donate=False)
    loops = lambda lowered: lowered.as_text().count("stablehlo.while")  # noqa: E731
    bare = loops(single.lower(state0, jax.tree.map(lambda x: x[0], first_batch)))
    assert loops(one.lower(state0, first_batch)) == bare  # the rng's loops only
    two = {k: np.asarray(v)[np.asarray(indices[:2])] for k, v in data.items()}
    assert loops(program.make_call(stage, 2, mesh, donate=False).lower(
        state0, shard_batch(two, mesh, axis=1))) > bare
    first, m1 = one(state0, first_batch)
    chex.assert_shape(m1["loss"], (1,))
    np.testing.assert_allclose(m1["loss"][0], losses[0], rtol=1e-6)

    # the same with host batches stacked along a leading axis
    host = program.make_call(stage, 12, mesh, donate=False)
    stacked = {k: np.asarray(v)[np.asarray(indices)] for k, v in data.items()}
    hosted, _ = host(state0, shard_batch(stacked, mesh, axis=1))
    chex.assert_trees_all_close(hosted.params, state.params, rtol=1e-5, atol=1e-6)


def _toy_objective(params, model_state, batch, rng):
    a, b = params["a"]["v"], params["b"]["v"]
    loss = (a - 1.0) ** 2 + (b - 2.0 * a) ** 2
    return loss, ({}, model_state)


def test_two_stage_program_matches_a_hand_computation():
    """Stage 1 trains a (SGD 0.1, 3 steps) with b frozen; stage 2 trains b
    (momentum SGD from a fresh state, 4 steps) with a frozen."""
    mesh = make_mesh()
    stages = [program.Stage("a", 3, _toy_objective, optax.sgd(0.1), trainable=("a",)),
              program.Stage("b", 4, _toy_objective, optax.sgd(0.05, momentum=0.9),
                            trainable=("b",))]
    params = {"a": {"v": jnp.float32(0.0)}, "b": {"v": jnp.float32(0.5)}}
    state = create_train_state(params, optax.identity(), rng=jax.random.PRNGKey(0))
    state = program.enter_stage(state, stages[0])
    data = program.DeviceData({"x": jnp.zeros((4, 1))}, batch_size=2)
    final, history = program.run_program(stages, state, mesh, device_data=data,
                                         data_key=jax.random.PRNGKey(1), steps_per_call=2)

    a, b = 0.0, 0.5  # the same by hand: dL/da = 2(a-1) - 4(b-2a), dL/db = 2(b-2a)
    for _ in range(3):
        a -= 0.1 * (2 * (a - 1) - 4 * (b - 2 * a))
    velocity = 0.0
    for _ in range(4):
        velocity = 0.9 * velocity + 2 * (b - 2 * a)
        b -= 0.05 * velocity
    np.testing.assert_allclose(float(final.params["a"]["v"]), a, rtol=1e-6)
    np.testing.assert_allclose(float(final.params["b"]["v"]), b, rtol=1e-6)
    assert int(final.step) == 7
    assert [(h["stage"], h["start"]) for h in history] == [(0, 0), (0, 2), (1, 3), (1, 5)]
    # the optimiser state is stage 2's, over b alone
    trace = jax.tree.leaves(final.opt_state)
    assert len(trace) == 1 and np.isclose(float(trace[0]), velocity)

    # resumed inside stage 2 from the state after step 5: same result
    mid, _ = program.run_program(stages[:1] + [program.Stage(
        "b", 2, _toy_objective, optax.sgd(0.05, momentum=0.9), trainable=("b",))],
        state, mesh, device_data=data, data_key=jax.random.PRNGKey(1), steps_per_call=2)
    resumed, _ = program.run_program(stages, mid, mesh, device_data=data,
                                     data_key=jax.random.PRNGKey(1), steps_per_call=2)
    chex.assert_trees_all_close(resumed.params, final.params, rtol=1e-6)


def test_optimiser_slots_persist_between_visits_as_by_hand():
    """Random Robin's persistent states (Oland, Algorithm 4): a (momentum
    SGD, slot 'a') for 2 steps, b (slot 'b') for 2, a again for 3 steps
    continuing its velocity, not restarting it."""
    mesh = make_mesh()
    tx_a, tx_b = optax.sgd(0.1, momentum=0.9), optax.sgd(0.05, momentum=0.5)
    stages = [program.Stage("a0", 2, _toy_objective, tx_a, trainable=("a",), opt_slot="a"),
              program.Stage("b0", 2, _toy_objective, tx_b, trainable=("b",), opt_slot="b"),
              program.Stage("a1", 3, _toy_objective, tx_a, trainable=("a",), opt_slot="a")]
    params = {"a": {"v": jnp.float32(0.0)}, "b": {"v": jnp.float32(0.5)}}
    state = create_train_state(params, optax.identity(), rng=jax.random.PRNGKey(0))
    data = program.DeviceData({"x": jnp.zeros((4, 1))}, batch_size=2)
    final, _ = program.run_program(stages, state, mesh, device_data=data,
                                   data_key=jax.random.PRNGKey(1), steps_per_call=2)

    a, b, va, vb = 0.0, 0.5, 0.0, 0.0  # by hand; the slots' velocities persist
    for steps, which in ((2, "a"), (2, "b"), (3, "a")):
        for _ in range(steps):
            if which == "a":
                va = 0.9 * va + 2 * (a - 1) - 4 * (b - 2 * a)
                a -= 0.1 * va
            else:
                vb = 0.5 * vb + 2 * (b - 2 * a)
                b -= 0.05 * vb
    np.testing.assert_allclose(float(final.params["a"]["v"]), a, rtol=1e-6)
    np.testing.assert_allclose(float(final.params["b"]["v"]), b, rtol=1e-6)
    assert set(final.opt_state) == {"a", "b"}
    np.testing.assert_allclose(float(jax.tree.leaves(final.opt_state["a"])[0]), va, rtol=1e-6)
    np.testing.assert_allclose(float(jax.tree.leaves(final.opt_state["b"])[0]), vb, rtol=1e-6)

    # a fresh state per stage (no slots) restarts a's velocity: a differs
    fresh, _ = program.run_program([dataclasses.replace(s, opt_slot=None) for s in stages],
                                   program.enter_stage(state, dataclasses.replace(
                                       stages[0], opt_slot=None)),
                                   mesh, device_data=data, data_key=jax.random.PRNGKey(1),
                                   steps_per_call=2)
    assert abs(float(fresh.params["a"]["v"]) - a) > 1e-3

    with pytest.raises(ValueError, match="every stage or to none"):
        program.initial_opt_state([stages[0], dataclasses.replace(stages[1], opt_slot=None)],
                                  params)
    with pytest.raises(ValueError, match="share the optimiser slot 'a'"):
        program.initial_opt_state([stages[0], dataclasses.replace(stages[1], opt_slot="a")],
                                  params)
    with pytest.raises(ValueError, match="opt_slot"):
        program.Stage("s", 1, None, optax.sgd(1.0), opt_slot="")


def test_replica_axis_equals_separate_runs():
    data = _regression(jax.random.PRNGKey(0))
    mesh = make_mesh()
    tx = optax.sgd(0.05)
    stage = program.Stage("train", 6, _linear_objective, tx)
    device_data = program.DeviceData(data, batch_size=16)

    def init(seed):
        w = jax.random.normal(jax.random.PRNGKey(seed), (5,))
        return create_train_state({"w": w, "b": jnp.zeros(())}, tx,
                                  rng=jax.random.PRNGKey(100 + seed))

    seeds = jnp.arange(3)
    states = jax.vmap(init)(seeds)
    keys = jax.vmap(jax.random.PRNGKey)(seeds + 50)
    call = program.make_call(stage, 6, mesh, device_data=device_data, replicas=True,
                             donate=False)
    together, metrics = call(states, data, keys)
    chex.assert_shape(metrics["loss"], (6, 3))
    one = program.make_call(stage, 6, mesh, device_data=device_data, donate=False)
    for r in range(3):
        alone, m = one(init(r), data, jax.random.PRNGKey(50 + r))
        chex.assert_trees_all_close(program.replica_slice(together.params, r), alone.params,
                                    rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"][:, r], m["loss"], rtol=1e-5)
    assert not np.allclose(together.params["w"][0], together.params["w"][1])
    with pytest.raises(ValueError, match="on the device"):
        program.make_call(stage, 6, mesh, replicas=True)
