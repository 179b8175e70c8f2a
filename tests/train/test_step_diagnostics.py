"""The per-array gradient RMS recorded by ``record_gradient_rms`` reaches the
step's scalars, a training program's per-step metrics and ``metrics.jsonl``,
equal to the RMS of ``jax.grad`` on the same batch (Oland 2024, Efficient
Deep Learning, Fig 4.3)."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import supervised_digits
from neurojax.data import on_device
from neurojax.losses import negative_correlation
from neurojax.optim import record_gradient_rms
from neurojax.train import program
from neurojax.train.loop import train_and_evaluate
from neurojax.train.state import create_train_state
from neurojax.train.step import make_mesh, model_objective, train_step_fn


class TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3, name="head")(nn.relu(nn.Dense(8, name="hidden")(x)))


def _paths(tree):
    return {"/".join(k.key for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _rms(tree):
    return {k: float(np.sqrt(np.mean(v.astype(np.float64) ** 2))) for k, v in _paths(tree).items()}


def _setup(n=32):
    rng = np.random.default_rng(0)
    data = {"image": rng.normal(size=(n, 5)).astype(np.float32),
            "label": rng.integers(0, 3, n).astype(np.int32)}
    model = TwoLayer()
    params = model.init(jax.random.PRNGKey(0), data["image"][:1])["params"]
    objective = model_objective(model, negative_correlation)
    return model, params, objective, data


@pytest.mark.slow
def test_step_scalars_hold_the_rms_of_the_batch_gradient():
    model, params, objective, data = _setup()
    tx = optax.chain(record_gradient_rms(), optax.sgd(0.1))
    state = create_train_state(params, tx)
    _, metrics = jax.jit(train_step_fn(objective, tx))(state, data)
    grads = jax.grad(lambda p: negative_correlation(model.apply({"params": p}, data["image"]),
                                                    data)[0])(params)
    want = _rms(grads)
    assert set(want) == {"hidden/kernel", "hidden/bias", "head/kernel", "head/bias"}
    for key, value in want.items():
        np.testing.assert_allclose(float(metrics[f"grad_rms/{key}"]), value, rtol=1e-5)
    # no recorder, no extra scalars
    _, plain = train_step_fn(objective, optax.sgd(0.1))(create_train_state(params,
                                                                           optax.sgd(0.1)), data)
    assert set(plain) == {"loss", "accuracy"}


@pytest.mark.slow
def test_program_metrics_equal_an_independent_sgd_run():
    """Three steps of run_program (data on the device) against SGD by hand on
    the batches ``on_device.batch_indices`` gives."""
    model, params, objective, data = _setup()
    lr, batch_size, steps = 0.5, 8, 3
    tx = optax.chain(record_gradient_rms(), optax.sgd(lr))
    stage = program.Stage("train", steps, objective, tx)
    device_data = program.DeviceData({k: jnp.asarray(v) for k, v in data.items()}, batch_size)
    data_key = jax.random.PRNGKey(5)
    state = create_train_state(params, tx, rng=jax.random.PRNGKey(1))
    _, history = program.run_program([stage], state, make_mesh(), device_data=device_data,
                                     data_key=data_key, steps_per_call=2)
    got = {}
    for call in history:
        for key, values in call["metrics"].items():
            got.setdefault(key, []).extend(np.asarray(values).tolist())

    indices = np.asarray(on_device.batch_indices(data_key, jnp.arange(steps), 32, batch_size))
    grad_fn = jax.jit(jax.grad(lambda p, x, y: negative_correlation(
        model.apply({"params": p}, x), {"label": y})[0]))
    p = params
    for t in range(steps):
        g = grad_fn(p, data["image"][indices[t]], data["label"][indices[t]])
        for key, value in _rms(g).items():
            np.testing.assert_allclose(got[f"grad_rms/{key}"][t], value, rtol=1e-4)
        p = jax.tree.map(lambda w, d: w - lr * d, p, g)


@pytest.mark.slow
def test_loop_writes_grad_rms_to_metrics_jsonl(tmp_path):
    """With SGD at a constant rate, step k's gradient is (p_{k-1} - p_k) / lr:
    its RMS must be the grad_rms the train record of step k holds (here with
    exp-GA's manual delta as the loss, evaluated at the end)."""
    config = supervised_digits.get_config()
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.dataset.batch_size = 32
    config.model.widths = (16,)
    # the manual-delta exp-GA through the config, the scan and the evaluation
    config.loss = ml_collections.ConfigDict(dict(name="amplified_delta", output="exp",
                                                 alpha=0.1, targets=(0.0, 16.0)))
    config.optim.update(name="sgd", lr=0.05, schedule="constant",
                        transforms=(("record_gradient_rms", {}),))
    config.train.update(num_epochs=0, num_steps=3, log_every=1, eval_every=0,
                        checkpoint_every=3, steps_per_call=1)
    params_after = {}

    def keep(step, state, metrics):
        params_after[step] = jax.device_get(state.params)

    workdir = tmp_path / "run"
    train_and_evaluate(config, str(workdir), hooks=[keep], progress=False)
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train = {r["step"]: r for r in records if r["split"] == "train"}
    assert sorted(train) == [1, 2, 3]
    final = [r for r in records if r["split"] == "eval"][-1]
    assert np.isfinite(final["loss"]) and 0.0 <= final["accuracy"] <= 1.0
    names = set(_paths(params_after[1]))
    assert {k for k in train[1] if k.startswith("grad_rms/")} == {f"grad_rms/{n}" for n in names}
    for step in (2, 3):
        grads = jax.tree.map(lambda a, b: (a - b) / 0.05, params_after[step - 1],
                             params_after[step])
        for key, value in _rms(grads).items():
            np.testing.assert_allclose(train[step][f"grad_rms/{key}"], value, rtol=2e-3)
