"""The supervised task: its evaluation uses the loss the config trains with."""
import jax
import numpy as np
import optax
import pytest

from configs import supervised_digits
from neurojax import data as nj_data
from neurojax.data.on_device import load_split_arrays
from neurojax.train.state import create_train_state
from neurojax.train.step import make_mesh
from neurojax.train.task import get_task, supervised_task


@pytest.mark.slow
def test_eval_loss_uses_the_configs_loss_hyperparameters(tmp_path):
    config = supervised_digits.get_config()
    config.dataset.data_dir = str(tmp_path)
    config.model.widths = (16,)
    config.loss.label_smoothing = 0.3
    info = nj_data.dataset_info("digits", data_dir=str(tmp_path))
    task = supervised_task(config, info, make_mesh(), str(tmp_path))
    params = task.model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1), np.float32),
                             train=False)["params"]
    state = create_train_state(params, optax.identity())
    test = load_split_arrays("digits", "test", data_dir=str(tmp_path))
    # the MLP has no dropout or BatchNorm: training mode computes the eval function
    train_loss, _ = task.objective(params, {}, test, jax.random.PRNGKey(1))
    evaluated = task.evaluate(state)
    np.testing.assert_allclose(evaluated["loss"], float(train_loss), rtol=1e-5)
    config.loss.label_smoothing = 0.0  # the check can fail: smoothing changes the loss
    plain = supervised_task(config, info, make_mesh(), str(tmp_path)).evaluate(state)
    assert abs(plain["loss"] - evaluated["loss"]) > 1e-3


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="config.task"):
        get_task("reinforcement")
