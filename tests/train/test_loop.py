"""The loop: resume equals an uninterrupted run; NaN stops it; outputs exist."""
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from configs import supervised_digits
from neurojax.optim import GRADIENT_TRANSFORMS
from neurojax.train.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def small_config(data_dir, **train):
    config = supervised_digits.get_config()
    config.dataset.data_dir = data_dir
    config.dataset.batch_size = 32
    config.model.widths = (32,)
    config.optim.lr = 3e-3
    config.train.num_epochs = 0
    config.train.num_steps = 30
    config.train.log_every = 5
    config.train.eval_every = 0
    config.train.checkpoint_every = 10
    config.train.steps_per_call = 1
    config.train.update(train)
    return config


class Interrupt(Exception):
    pass


def interrupt_at(step_to_stop):
    def hook(step, state, metrics):
        if step == step_to_stop:
            raise Interrupt()
    return hook


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted_run(data_dir, tmp_path):
    config = small_config(data_dir)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)

    workdir = str(tmp_path / "interrupted")
    with pytest.raises(Interrupt):  # killed between checkpoints (saved at 10, 20)
        train_and_evaluate(config, workdir, hooks=[interrupt_at(25)], progress=False)
    resumed = train_and_evaluate(config, workdir, progress=False)

    chex.assert_trees_all_equal(jax.device_get(full.state.params),
                                jax.device_get(resumed.state.params))
    timing = ("train_seconds",)
    strip = lambda m: {k: v for k, v in m.items() if k not in timing}
    assert strip(full.eval_metrics) == strip(resumed.eval_metrics)
    # the resumed log has each train step once, and ends with the final eval
    records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps)) == [5, 10, 15, 20, 25, 30]
    assert records[-1]["split"] == "eval" and records[-1]["step"] == 30
    # the training clock continues from the last logged value before the checkpoint
    seconds = [r["train_seconds"] for r in records if r["split"] == "train"]
    assert seconds == sorted(seconds) and records[-1]["train_seconds"] >= seconds[-1]
    assert os.path.getsize(os.path.join(workdir, "curves.png")) > 1000


def _nan_after(step):
    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params=None):
        poison = jnp.where(count >= step, jnp.nan, 0.0)
        return jax.tree.map(lambda u: u + poison, updates), count + 1
    return optax.GradientTransformation(init, update)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
    GRADIENT_TRANSFORMS.setdefault("test_nan_after", _nan_after)
    config = small_config(data_dir, checkpoint_every=10)
    config.optim.transforms = (("test_nan_after", {"step": 11}),)  # update of step 12 is NaN
    workdir = str(tmp_path / "nan")
    with pytest.raises(FloatingPointError, match="at step 13"):
        train_and_evaluate(config, workdir, progress=False)
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    assert manager.all_steps() == [10]
    restored = manager.restore(10, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    leaves = jax.tree.leaves(restored["state"]["params"])
    assert all(np.all(np.isfinite(x)) for x in leaves)


def test_invalid_config_fails_before_building(tmp_path):
    config = small_config(str(tmp_path))
    config.optim.lr = -1.0
    with pytest.raises(ValueError, match="config.optim.lr"):
        train_and_evaluate(config, str(tmp_path / "w"), progress=False)
    config = small_config(str(tmp_path))
    config.dataset.batch_size = 0
    with pytest.raises(ValueError, match="config.dataset.batch_size"):
        train_and_evaluate(config, str(tmp_path / "w"), progress=False)
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


@pytest.mark.slow
def test_launch_entry_point_with_overrides(data_dir, tmp_path):
    workdir = tmp_path / "cli"
    cmd = [sys.executable, "-m", "launch.run", "--config", "configs/supervised_digits.py:runlocal",
           "--workdir", str(workdir), f"--config.dataset.data_dir={data_dir}",
           "--config.model.widths=(16,)", "--config.train.num_epochs=1"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 1437 // 64
    assert json.load(open(workdir / "config.json"))["model"]["widths"] == [16]

    bad = cmd[:-1] + ["--config.optim.lr=-0.5"]
    out = subprocess.run(bad, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "config.optim.lr" in out.stderr


TIMING = ("train_seconds", "compile_seconds")


def _records(workdir):
    """metrics.jsonl without the wall-clock fields."""
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))]


def _params(result):
    return jax.device_get(result.state.params)


@pytest.mark.parametrize("on_device", ["on", pytest.param("off", marks=pytest.mark.slow)])
def test_k_steps_per_call_match_single_steps_and_resume_exactly(data_dir, tmp_path, on_device):
    single_config = small_config(data_dir, steps_per_call=1)
    single_config.dataset.on_device = on_device
    single = train_and_evaluate(single_config, str(tmp_path / "k1"), progress=False)
    config = small_config(data_dir, steps_per_call=5)
    config.dataset.on_device = on_device
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    chex.assert_trees_all_close(_params(full), _params(single), rtol=1e-4, atol=1e-5)
    if on_device == "on":  # (resuming on the device path: the tests above and below)
        return

    workdir = str(tmp_path / "killed")
    with pytest.raises(Interrupt):  # after the call ending at 25; checkpoint at 20
        train_and_evaluate(config, workdir, hooks=[interrupt_at(25)], progress=False)
    resumed = train_and_evaluate(config, workdir, progress=False)
    chex.assert_trees_all_equal(_params(full), _params(resumed))
    assert _records(workdir) == _records(str(tmp_path / "full"))
    assert [r["step"] for r in _records(workdir) if r["split"] == "train"] == [5, 10, 15, 20, 25, 30]


@pytest.mark.parametrize("kill_at", [7, pytest.param(17, marks=pytest.mark.slow)])  # before and after the first checkpoint (10)
def test_restart_records_equal_an_uninterrupted_run(data_dir, tmp_path, kill_at):
    config = small_config(data_dir)
    train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    workdir = str(tmp_path / "killed")
    with pytest.raises(Interrupt):
        train_and_evaluate(config, workdir, hooks=[interrupt_at(kill_at)], progress=False)
    dead = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert dead and dead[-1]["step"] == kill_at - 2  # it had logged past its checkpoint
    train_and_evaluate(config, workdir, progress=False)
    assert _records(workdir) == _records(str(tmp_path / "full"))
    # the clock restarts from the checkpoint's time (zero without one), so the
    # first record after it is no later than the dead run's record at kill_at
    records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    seconds = [r["train_seconds"] for r in records if r["split"] == "train"]
    assert seconds == sorted(seconds)
    if kill_at == 7:
        assert records[0]["train_seconds"] < dead[-1]["train_seconds"] + 5.0


def _slow_steps(seconds):
    """A hook that makes every call take at least ``seconds`` of training time."""
    def hook(step, state, metrics):
        time.sleep(seconds)
    return hook


def test_time_budget_ends_the_run_as_a_prefix_and_a_rerun_goes_on_only_when_lifted(
        data_dir, tmp_path):
    seen = {}

    def keep(step, state, metrics):
        seen[step] = jax.device_get(state.params)
    full = train_and_evaluate(small_config(data_dir), str(tmp_path / "full"),
                              hooks=[keep], progress=False)
    # 0.3 s a step against a 1 s budget: the first check (the train record at
    # step 5) finds it spent, so the run ends there, before its checkpoint at 10
    config = small_config(data_dir, max_train_seconds=1.0)
    workdir = str(tmp_path / "budget")
    stopped = train_and_evaluate(config, workdir, hooks=[_slow_steps(0.3)], progress=False)
    assert stopped.num_steps == 5
    chex.assert_trees_all_equal(_params(stopped), seen[5])
    records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [(r["step"], r["split"]) for r in records] == [(5, "train"), (5, "eval")]
    assert records[-1]["train_seconds"] >= 1.0
    assert set(stopped.eval_metrics) >= {"accuracy", "loss"}
    checkpoints = os.listdir(os.path.join(workdir, "checkpoints"))
    assert "5" in checkpoints and "10" not in checkpoints

    # run again as it was: it has finished and reports its last evaluation
    before = _records(workdir)
    again = train_and_evaluate(config, workdir, progress=False)
    assert again.num_steps == 5 and _records(workdir) == before
    assert again.eval_metrics["accuracy"] == stopped.eval_metrics["accuracy"]
    # budget lifted: it goes on to the program's end, as the unbudgeted run did
    config.train.max_train_seconds = 0.0
    resumed = train_and_evaluate(config, workdir, progress=False)
    assert resumed.num_steps == 30
    chex.assert_trees_all_equal(_params(resumed), _params(full))


@pytest.mark.slow
def test_seed_replicas_equal_separate_runs(data_dir, tmp_path):
    config = small_config(data_dir, steps_per_call=10, num_replicas=2, num_steps=20)
    together = train_and_evaluate(config, str(tmp_path / "r2"), progress=False)
    assert len(together.replica_eval_metrics) == 2
    for r in range(2):
        alone_config = small_config(data_dir, steps_per_call=10, num_steps=20)
        alone_config.seed = config.seed + r
        alone = train_and_evaluate(alone_config, str(tmp_path / f"seed{r}"), progress=False)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[r], _params(together)),
                                    _params(alone), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(together.replica_eval_metrics[r]["loss"],
                                   alone.eval_metrics["loss"], rtol=1e-4)
    losses = [m["loss"] for m in together.replica_eval_metrics]
    assert losses[0] != losses[1]
    np.testing.assert_allclose(together.eval_metrics["loss"], np.mean(losses), rtol=1e-6)
    np.testing.assert_allclose(together.eval_metrics["loss_std"], np.std(losses), rtol=1e-6)
    train = [r for r in map(json.loads, open(tmp_path / "r2" / "metrics.jsonl"))
             if r["split"] == "train"]
    assert len(train[-1]["loss_replicas"]) == 2 and "loss_std" in train[-1]


def test_replicas_without_device_data_fail_before_training(data_dir, tmp_path):
    config = small_config(data_dir, num_replicas=2)
    config.dataset.on_device = "off"
    with pytest.raises(ValueError, match="config.train.num_replicas"):
        train_and_evaluate(config, str(tmp_path / "w"), progress=False)
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


def _two_stage_task(config, info, mesh, data_dir):
    """The supervised MLP, trained first in its hidden layer, then in its head."""
    from neurojax.train.program import Stage
    from neurojax.train.task import supervised_task

    task = supervised_task(config, info, mesh, data_dir)

    def stages(num_steps, make_tx, **_):
        first = num_steps // 2
        return [Stage("hidden", first, task.objective, make_tx(first), trainable=("dense_0",)),
                Stage("head", num_steps - first, task.objective,
                      optax.sgd(0.05, momentum=0.9), trainable=("head",))]
    return dataclasses.replace(task, stages=stages)


@pytest.mark.slow
def test_two_stage_program_in_the_loop_resumes_inside_stage_two(data_dir, tmp_path):
    from neurojax.train import task as task_registry

    spec = task_registry.get_task("supervised")
    task_registry.register_task("test_two_stage", build=_two_stage_task,
                                validate=spec.validate, model=spec.model)
    config = small_config(data_dir, steps_per_call=5)
    config.task = "test_two_stage"
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)
    with pytest.raises(Interrupt):  # stage 2 runs steps 16-30; checkpoint at 20
        train_and_evaluate(config, str(tmp_path / "killed"), hooks=[interrupt_at(25)],
                           progress=False)
    manager = ocp.CheckpointManager(str(tmp_path / "killed" / "checkpoints"))
    position = manager.restore(20, args=ocp.args.Composite(
        position=ocp.args.JsonRestore()))["position"]
    manager.close()
    assert position["stage"] == 1 and position["stage_name"] == "head"
    resumed = train_and_evaluate(config, str(tmp_path / "killed"), progress=False)
    chex.assert_trees_all_equal(_params(full), _params(resumed))

    # stage 1 leaves the head alone, stage 2 the hidden layer
    seen = {}

    def keep(step, state, metrics):
        seen[step] = jax.device_get(state.params)
    train_and_evaluate(config, str(tmp_path / "watched"), hooks=[keep], progress=False)
    chex.assert_trees_all_equal(seen[5]["head"], seen[15]["head"])
    assert not np.allclose(seen[5]["dense_0"]["kernel"], seen[15]["dense_0"]["kernel"])
    chex.assert_trees_all_equal(seen[15]["dense_0"], _params(full)["dense_0"])
    assert not np.allclose(seen[15]["head"]["kernel"], _params(full)["head"]["kernel"])


@pytest.mark.parametrize("field,value,match", [
    ("optim.lr", float("nan"), "config.optim.lr"),
    ("optim.lr", float("inf"), "config.optim.lr"),
    ("optim.weight_decay", float("nan"), "config.optim.weight_decay"),
    ("model.name", "mlpp", "config.model.name"),
    ("model.depth", 3, "config.model.depth"),
    ("optim.transforms", (("inject_gradient_noise", {"sigmaa": 1.0}),),
     r"config.optim.transforms\[0\]"),
    ("train.steps_per_call", 0, "config.train.steps_per_call"),
    ("train.num_replicas", 0, "config.train.num_replicas"),
    ("train.max_train_seconds", -1.0, "config.train.max_train_seconds"),
    ("train.max_train_seconds", "15 min", "config.train.max_train_seconds"),
    ("dataset.on_device", "yes", "config.dataset.on_device"),
    ("task", "rl", "config.task"),
])
def test_bad_fields_fail_before_any_data_is_opened(tmp_path, field, value, match):
    data_dir = tmp_path / "tfds"  # stays empty: nothing may be prepared
    config = small_config(str(data_dir))
    block, _, name = field.rpartition(".")
    target = config[block] if block else config
    with target.unlocked() if hasattr(target, "unlocked") else contextlib.nullcontext():
        target[name] = value
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, str(tmp_path / "w"), progress=False)
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_object_store_workdir_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(ValueError, match="workdir must be a filesystem path"):
        train_and_evaluate(small_config(str(tmp_path / "tfds")), "gs://bucket/run",
                           progress=False)
    assert not (tmp_path / "tfds").exists()
