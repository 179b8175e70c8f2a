"""configs/bias_variance_cifar10.py: one cell of the paper's Fig. 1 grid per run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bias_variance_cifar10 as cfg
from configs.bias_variance_digits import PAPER_BIASES, PAPER_NOISES
from neurojax.optim import make_optimizer
from neurojax.train import validate_config
from neurojax.train.task import build_model


def _transform(config, name):
    return dict(next(e for e in config.optim.transforms if e[0] == name)[1])


def test_cell_argument_sets_the_transforms_and_seed():
    config = cfg.get_config("bias=1e-5,noise=0.1,seed=1")
    validate_config(config)
    assert _transform(config, "inject_gradient_bias") == {"b": 1e-5, "relative": True}
    noise = _transform(config, "inject_gradient_noise")
    assert noise["sigma"] == 0.1 and noise["relative"] and noise["zero_sum_set"] == 50
    assert config.seed == 1 and config.grid_cell.to_dict() == {"bias": 1e-5, "noise": 0.1,
                                                               "seed": 1}
    # App. B.1: full batch (one update per epoch, accumulated over 10 batches of
    # 5,000), 50 epochs, SGD 0.02 momentum 0.9, LS 0.1
    assert (config.dataset.name, config.dataset.batch_size) == ("cifar10", 5_000)
    assert config.optim.accumulate_steps == 10 and config.train.log_every == 10
    assert config.train.num_epochs == 50
    assert (config.optim.name, config.optim.lr, config.optim.momentum) == ("sgd", 0.02, 0.9)
    assert config.optim.weight_decay == 0 and config.optim.schedule == "constant"
    assert config.loss.label_smoothing == 0.1
    clean = cfg.get_config()
    assert clean.grid_cell.to_dict() == {"bias": 0.0, "noise": 0.0, "seed": 0}


@pytest.mark.parametrize("arg, name", [
    ("bias=2e-5", "bias"), ("noise=0.5", "noise"), ("noise=abc", "noise"), ("seed=3", "seed"),
    ("seed=1.5", "seed"), ("lr=0.1", "config argument"), ("bias", "config argument"),
    ("runlocal,momentum=1", "config argument"),
])
def test_bad_cell_raises_naming_the_argument(arg, name):
    pattern = "config argument" + ("" if name == "config argument" else f" {name} ")
    with pytest.raises(ValueError, match=pattern):
        cfg.get_config(arg)


def test_every_grid_cell_parses_once():
    args = cfg.cell_args()
    assert len(args) == len(PAPER_BIASES) * len(PAPER_NOISES) * 3
    cells = {tuple(cfg.parse_arg(a)[0].values()) for a in args}
    assert len(cells) == len(args)
    assert {c[0] for c in cells} == set(PAPER_BIASES) and {c[1] for c in cells} == set(PAPER_NOISES)
    assert cfg.parse_arg(cfg.cell_args(runlocal=True)[5])[1] is True


def test_builders_accept_vgg16_and_cifar10():
    config = cfg.get_config("bias=1e-3,noise=1,seed=2")
    model = build_model(config, 10)
    assert (model.depth, model.use_batchnorm, tuple(model.classifier_widths)) == (16, False,
                                                                                  (4096, 4096))
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    n = sum(x.size for x in jax.tree.leaves(params))
    assert 33.6e6 < n < 33.7e6  # 14.7M conv + 512*4096 + 4096^2 + 4096*10 (+ biases)
    local = cfg.get_config("runlocal,bias=1e-3")
    validate_config(local)
    assert local.dataset.name == "digits" and local.model.name == "vgg16"
    assert local.train.num_epochs == 3 and _transform(local, "inject_gradient_noise")[
        "zero_sum_set"] == 3


@pytest.mark.slow
def test_optimizer_applies_the_relative_bias_update():
    # noise 0: the first SGD-momentum step is -lr (g - b ||g|| 1), i.e. -lr g + lr b ||g|| 1
    config = cfg.get_config("bias=1e-3,noise=0,seed=0")
    # after accumulating the 10 batch gradients of an epoch (mean g)
    tx = make_optimizer(config.optim, 500)
    params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    g = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, 0.0], [-1.0, 2.0]])}
    state = tx.init(params)
    for i in range(10):
        scale = 1.0 + (i - 4.5) / 10  # batch gradients whose mean is g
        updates, state = tx.update(jax.tree.map(lambda x: scale * x, g), state, params)
        if i < 9:
            assert all(not np.any(u) for u in jax.tree.leaves(updates))
    gnorm = np.sqrt(sum(float(jnp.sum(x ** 2)) for x in jax.tree.leaves(g)))
    for k in g:
        np.testing.assert_allclose(updates[k], -0.02 * (np.asarray(g[k]) - 1e-3 * gnorm),
                                   rtol=1e-6)
