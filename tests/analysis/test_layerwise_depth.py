"""E2's deep-MLP DLL (neurojax.analysis.layerwise_depth): the vmapped,
scanned stage against a plain per-seed loop of the library's step."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from neurojax import losses
from neurojax.analysis import layerwise_depth as ld
from neurojax.data import on_device
from neurojax.models import MLP
from neurojax.optim import make_optimizer
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn


def _splits(seed=0):
    rng = np.random.default_rng(seed)
    make = lambda n: {"image": rng.random((n, 4, 4, 1)).astype(np.float32),  # noqa: E731
                      "label": rng.integers(0, 3, n).astype(np.int32)}
    return {"train": make(40), "validation": make(12), "test": make(16)}


@pytest.mark.slow
def test_stages_match_a_plain_loop_of_the_library_step():
    splits, width, steps, batch, lr = _splits(), 5, 3, 8, 0.05
    out = ld.dll_mlp(splits, depth=2, width=width, steps=steps, replicas=2, batch=batch,
                     lr=lr, num_classes=3)
    assert np.shape(out["test"]) == (2, 2) and np.shape(out["validation"]) == (2, 2)
    model = MLP(widths=(width,), num_outputs=3)
    tx = make_optimizer(ml_collections.ConfigDict(dict(
        name="adam", lr=lr, schedule="cosine", warmup_steps=0, weight_decay=0.0,
        grad_clip_norm=0.0, transforms=())), steps)
    step = jax.jit(train_step_fn(model_objective(model, losses.get_loss(
        "softmax_cross_entropy")), tx))
    flat = {k: v["image"].reshape(len(v["label"]), -1) for k, v in splits.items()}
    for r in range(2):
        z = dict(flat)
        for block in range(2):
            key = jax.random.fold_in(jax.random.PRNGKey(r), block)
            init_key, data_key, rng = jax.random.split(key, 3)
            state = create_train_state(model.init(init_key, z["train"][:1])["params"], tx,
                                       rng=rng)
            idx = np.asarray(on_device.batch_indices(data_key, jnp.arange(steps), 40, batch))
            for i in range(steps):
                state, _ = step(state, {"image": z["train"][idx[i]],
                                        "label": splits["train"]["label"][idx[i]]})
            for split in ("validation", "test"):
                logits = model.apply({"params": state.params}, z[split])
                acc = np.mean(np.argmax(logits, -1) == splits[split]["label"])
                assert out[split][block][r] == pytest.approx(acc, abs=1e-6), (r, block)
            z = {k: np.asarray(model.apply({"params": state.params}, v, stop=1))
                 for k, v in z.items()}


def test_bad_splits():
    with pytest.raises(ValueError, match="splits"):
        ld.dll_mlp({"train": {}}, depth=1, width=2, steps=1, replicas=1)
