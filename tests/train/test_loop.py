"""The loop: resume equals an uninterrupted run; NaN stops it; outputs exist."""
import json
import os
import subprocess
import sys

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
