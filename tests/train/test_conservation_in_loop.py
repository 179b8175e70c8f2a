"""Conservation laws tracked through the training loop ('record_conservation')."""
import json

import numpy as np
import pytest

from configs import supervised_digits
from neurojax.metrics.conservation import sgd_charge
from neurojax.train.conservation import record_conservation
from neurojax.train.loop import train_and_evaluate

LR, WD = 0.05, 0.01


def _series(records, symmetry, field):
    keys = sorted((k for k in records[0] if k.startswith(f"cons/{symmetry}/{field}/")),
                  key=lambda k: int(k.rsplit("/", 1)[1]))
    return np.array([[r[k] for k in keys] for r in records])


@pytest.mark.slow  # ~20 s; the config route without the loop: the test below
def test_charges_logged_by_the_loop_follow_the_sgd_laws(tmp_path):
    """SGD with weight decay through launch's loop, one record per step: the
    rescale charges ||w_in||^2 - ||w_out||^2 per hidden unit obey
    Q' = (1 - lr wd)^2 Q + lr^2 G (G: the raw gradient's charge, logged with
    them) and the softmax head's translation charges Q' = (1 - lr wd) Q."""
    config = supervised_digits.get_config()
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.model.widths = (16, 16)
    config.optim.name, config.optim.lr, config.optim.schedule = "sgd", LR, "constant"
    config.optim.weight_decay = WD
    config.optim.transforms = (("record_conservation",
                                {"layers": ("dense_0", "dense_1", "head")}),)
    config.train.num_epochs, config.train.num_steps, config.train.log_every = 0, 8, 1
    config.train.eval_every = config.train.checkpoint_every = 0
    config.train.steps_per_call = 8
    train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    records = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 9))
    for name in ("dense_0_to_dense_1", "dense_1_to_head"):
        q, g = _series(records, name, "charge"), _series(records, name, "step")
        assert q.shape == (8, 16)
        law = np.asarray(sgd_charge(q[0], g[:-1], kind="rescale", lr=LR, weight_decay=WD))
        np.testing.assert_allclose(q, law, rtol=1e-4, atol=1e-6)
        assert np.max(np.abs(q[-1] - q[0])) > 1e-5  # the charges did move
    q = _series(records, "head_rows", "charge")
    law = np.asarray(sgd_charge(q[0], np.zeros_like(q[:-1]), kind="translation", lr=LR,
                                weight_decay=WD))
    np.testing.assert_allclose(q, law, rtol=1e-4, atol=1e-6)


def test_config_transform_records_charges_that_follow_the_sgd_law():
    """'record_conservation' from config.optim.transforms, through
    make_optimizer and the library's step: two steps of SGD with weight
    decay move each rescale charge as the law says."""
    import jax
    import jax.numpy as jnp
    from neurojax.losses import softmax_cross_entropy
    from neurojax.models import get_model
    from neurojax.optim import make_optimizer
    from neurojax.train import create_train_state, model_objective, train_step_fn

    model = get_model("mlp", widths=(8, 8), num_outputs=4)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 6))
    batch = {"image": x, "label": jnp.arange(16) % 4}
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    tx = make_optimizer({"name": "sgd", "lr": LR, "schedule": "constant", "momentum": 0.0,
                         "weight_decay": WD, "transforms": (
                             ("record_conservation", {"layers": ("dense_0", "dense_1", "head")}),)},
                        10)
    step = jax.jit(train_step_fn(model_objective(model, softmax_cross_entropy), tx))
    state = create_train_state(params, tx)
    records = []
    for _ in range(3):
        state, metrics = step(state, batch)
        records.append({k: float(v) for k, v in metrics.items()})
    q, g = _series(records, "dense_0_to_dense_1", "charge"), _series(records, "dense_0_to_dense_1",
                                                                      "step")
    law = np.asarray(sgd_charge(q[0], g[:-1], kind="rescale", lr=LR, weight_decay=WD))
    np.testing.assert_allclose(q, law, rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(q[-1] - q[0])) > 1e-6


def test_record_conservation_checks_its_layers():
    with pytest.raises(ValueError, match="layers"):
        record_conservation("dense_0")
    with pytest.raises(ValueError, match="layers"):
        record_conservation(())
