"""Local steps with a compressed weight sync as a mode of the training loop."""
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import compressed_sync_digits
from neurojax.data import on_device
from neurojax.losses import label_mean_squared_error
from neurojax.models import get_model
from neurojax.optim import make_optimizer
from neurojax.train import worker_sync as cs
from neurojax.train import program
from neurojax.train.loop import DATA_KEY_SALT, train_and_evaluate
from neurojax.train.step import make_mesh, model_objective


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def sync_config(data_dir, **sync):
    config = compressed_sync_digits.get_config("runlocal")
    config.dataset.data_dir = data_dir
    config.model.widths = (24,)
    config.train.num_epochs = 0
    config.train.num_steps = 12
    config.train.log_every = 4
    config.train.checkpoint_every = 4
    config.sync.num_workers = 2
    config.sync.local_steps = 4
    config.sync.update(sync)
    return config


# the default run keeps the dynamic schedule, the one with every moving part
@pytest.mark.parametrize("mode", [pytest.param("none", marks=pytest.mark.slow),
                                  pytest.param("fixed", marks=pytest.mark.slow), "dynamic"])
def test_loop_rounds_equal_the_tested_sync_round(data_dir, tmp_path, mode):
    """The loop's rounds against ``compressed_sync.make_sync_round`` (tested
    against a NumPy reference) fed the same per-worker batches."""
    config = sync_config(data_dir, mode=mode, num_bits=6)
    result = train_and_evaluate(config, str(tmp_path / "run"), progress=False)

    arrays = on_device.load_split_arrays("digits", "train", data_dir=data_dir)
    model = get_model("mlp", widths=(24,), num_outputs=10, activation="tanh")
    seed_key = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(seed_key)
    params = model.init(init_rng, jnp.zeros((1, 8, 8, 1)), train=False)["params"]
    tx = make_optimizer(config.optim, 12)
    objective = model_objective(model, label_mean_squared_error, output="tanh",
                                targets=(0.0, 1.0))
    sync = cs.SyncConfig(mode=mode, num_bits=6, floor=5.0, fraction=0.03, prelim_bits=4)
    mesh = make_mesh()
    round_fn = cs.make_sync_round(objective, tx, sync, params, mesh=mesh)
    state = cs.init_workers(params, tx, 2, mesh=mesh, rng=state_rng)
    data_key = jax.random.fold_in(seed_key, DATA_KEY_SALT)
    shards = program.worker_shards(jax.random.fold_in(data_key, 0), 1437, 2)
    for r in range(3):
        steps = jnp.arange(4 * r, 4 * r + 4)
        idx = np.stack([np.asarray(shards[i])[np.asarray(on_device.batch_indices(
            jax.random.fold_in(data_key, i + 1), steps, shards.shape[1], 32))]
            for i in range(2)])                                    # [P, K, B]
        state, out = round_fn(state, {k: v[idx] for k, v in arrays.items()})
    for w in range(2):
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[w], jax.device_get(
            result.state.params)), jax.tree.map(lambda x: x[0], jax.device_get(state.params)),
            rtol=1e-5, atol=1e-6)

    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    syncs = [r for r in records if r["split"] == "sync"]
    assert [r["step"] for r in syncs] == [4, 8, 12]
    last = syncs[-1]
    if mode == "none":
        assert last["float32_ratio"] == 1.0 and last["wire_bits_per_parameter"] == 32.0
    else:
        n_params = 64 * 24 + 24 + 24 * 10 + 10
        # bytes on the wire are the host codec's packages plus 9-byte headers
        account = cs.account_bytes(out, round_fn.groups)
        assert last["bytes_per_worker"] == [int(b) for b in account["bytes_per_worker"]]
        assert last["wire_bits_per_parameter"] == pytest.approx(
            8 * np.mean(account["bytes_per_worker"]) / n_params)
        assert last["float32_ratio"] == pytest.approx(32 / last["wire_bits_per_parameter"])
        assert last["float32_ratio"] > 2.0
        if mode == "fixed":
            assert last["raw_bits_per_parameter"] == 6.0


@pytest.mark.slow
def test_sync_run_resumes_exactly(data_dir, tmp_path):
    config = sync_config(data_dir)
    full = train_and_evaluate(config, str(tmp_path / "full"), progress=False)

    class Stop(Exception):
        pass

    def stop(step, state, metrics):
        if step == 12 - 2 * 2:  # after the round ending at 8 (checkpointed)
            raise Stop()
    workdir = str(tmp_path / "killed")
    with pytest.raises(Stop):
        train_and_evaluate(config, workdir, hooks=[stop], progress=False)
    resumed = train_and_evaluate(config, workdir, progress=False)
    chex.assert_trees_all_equal(jax.device_get(full.state.params),
                                jax.device_get(resumed.state.params))
    strip = lambda path: [{k: v for k, v in json.loads(l).items()
                           if k not in ("train_seconds", "compile_seconds")}
                          for l in open(os.path.join(path, "metrics.jsonl"))]
    assert strip(workdir) == strip(str(tmp_path / "full"))


@pytest.mark.parametrize("field,value,match", [
    ("mode", "zip", "config.sync.mode"),
    ("num_workers", 0, "config.sync.num_workers"),
    ("num_bits", 40, "config.sync"),
])
def test_bad_sync_fields_are_named(data_dir, tmp_path, field, value, match):
    config = sync_config(data_dir)
    config.sync[field] = value
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, str(tmp_path / "w"), progress=False)
