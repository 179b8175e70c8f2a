"""Tests for neurojax.train.checkpoints: a run's checkpoint read back for analysis."""
import json
import os

import chex
import jax
import numpy as np
import pytest

from configs import supervised_digits
from neurojax.train import checkpoints
from neurojax.train.loop import train_and_evaluate


def _config():
    config = supervised_digits.get_config("runlocal")
    config.train.num_epochs = 0
    config.train.num_steps = 4
    config.train.checkpoint_every = 2
    config.train.steps_per_call = 2
    config.train.keep_checkpoints = 3
    config.model.widths = (16,)
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-step digits run with checkpoints at steps 2 and 4 and a config.json."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = _config()
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE), "w") as f:
        f.write(config.to_json_best_effort(indent=2))  # as launch.run writes it
    result = train_and_evaluate(config, workdir, progress=False)
    return workdir, config, result


def test_restores_the_final_state_and_config(run):
    workdir, config, result = run
    assert checkpoints.checkpoint_steps(workdir) == [2, 4]
    params, model_state, loaded = checkpoints.restore_params(workdir)
    chex.assert_trees_all_close(params, jax.device_get(result.state.params))
    assert model_state == {}
    # JSON lists come back as the tuples the config file wrote.
    assert loaded.model.widths == (16,)
    assert loaded.to_dict() == config.to_dict()


def test_restored_params_drive_the_rebuilt_model(run):
    workdir, _, result = run
    params, model_state, config = checkpoints.restore_params(workdir)
    model = checkpoints.model_from_config(config)
    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    out = model.apply({"params": params, **model_state}, x, train=False)
    chex.assert_shape(out, (5, 10))
    expected = model.apply({"params": result.state.params}, x, train=False)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_earlier_step_differs_and_explicit_config_is_used(run):
    workdir, config, result = run
    early = checkpoints.restore_params(workdir, step=2, config=config)
    assert early.config is config
    final = jax.device_get(result.state.params)
    diff = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), early.params, final)
    assert max(jax.tree.leaves(diff)) > 0  # two more Adam steps moved every layer


def test_bad_inputs_name_the_argument(run, tmp_path):
    workdir, config, _ = run
    with pytest.raises(ValueError, match="step"):
        checkpoints.restore_params(workdir, step=3)
    with pytest.raises(ValueError, match="step"):
        checkpoints.restore_params(workdir, step="4")
    with pytest.raises(ValueError, match="workdir"):
        checkpoints.restore_params(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="checkpoints"):
        checkpoints.restore_params(str(tmp_path))
    with pytest.raises(ValueError, match="config"):
        checkpoints.load_config(str(tmp_path))
    with pytest.raises(ValueError, match="config"):
        checkpoints.restore_params(workdir, config={"model": 1})
    bad = config.copy_and_resolve_references()
    bad.task = "rl"
    with pytest.raises(ValueError, match="config.task"):
        checkpoints.model_from_config(bad)


def test_load_config_turns_lists_into_tuples(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model": {"widths": [4, [5, 6]]}, "seed": 1}))
    config = checkpoints.load_config(str(tmp_path))
    assert config.model.widths == (4, (5, 6))
    assert config.seed == 1


def test_model_from_ssl_config_is_encoder_plus_projector():
    from configs import ssl_digits
    from neurojax.models.ssl import SSLNetwork
    config = ssl_digits.get_config("runlocal")
    model = checkpoints.model_from_config(config)
    assert isinstance(model, SSLNetwork)
    x = np.zeros((2, 8, 8, 1), np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert set(shapes["params"]) == {"encoder", "projector"}
