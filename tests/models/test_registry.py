"""get_model: every registered name builds and follows the model contract."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurojax.models import MODEL_NAMES, VGG, ResNet, get_model, model_kwargs
from tests.models._helpers import abstract_init

# small settings so the abstract traces stay cheap
SMALL = {
    "mlp": dict(widths=(8,)),
    "deep_linear": dict(widths=(8, 8)),
    "small_cnn": dict(widths=(4,), hidden=8),
    "vgg": dict(depth=11, width_factor=1 / 16),
    "resnet": dict(stage_sizes=(1, 1), block_cls="basic", width=0.125),
}
for _name in MODEL_NAMES:
    if _name.startswith("vgg") and _name != "vgg":
        SMALL[_name] = dict(width_factor=1 / 16)
    elif _name.startswith("resnet") and _name != "resnet":
        SMALL[_name] = dict(width=0.125)


# the two deepest ResNets (4-5 s each) run under `-m slow`
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("resnet101", "resnet152") else n
                                  for n in MODEL_NAMES])
def test_every_model_contract(name):
    """Same call for every model: apply(v, x, train=..., mutable=[...])."""
    head = "num_classes" if "num_classes" in model_kwargs(name) else "num_outputs"
    model = get_model(name, **{head: 4}, **SMALL[name])
    shape = (2, 16, 16, 3)
    variables = abstract_init(model, shape)

    def forward(v, x):
        train_out, state = model.apply(v, x, train=True, mutable=["batch_stats"])
        return train_out, state, model.apply(v, x, train=False)

    train_out, state, eval_out = jax.eval_shape(forward, variables, jnp.zeros(shape))
    chex.assert_shape([train_out, eval_out], (2, 4))
    assert jax.tree.structure(state.get("batch_stats", {})) == \
        jax.tree.structure(variables.get("batch_stats", {}))


def test_names_map_to_architectures():
    assert get_model("vgg16").depth == 16
    assert tuple(get_model("resnet50").stage_sizes) == (3, 4, 6, 3)
    assert isinstance(get_model("ResNet18"), ResNet)
    assert isinstance(get_model("vgg", depth=19), VGG)
    for name in ("mlp", "small_cnn", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18",
                 "resnet50", "deep_linear"):
        assert name in MODEL_NAMES


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match="allowed") as err:
        get_model("vgg12")
    assert "resnet18" in str(err.value) and "deep_linear" in str(err.value)


@pytest.mark.parametrize("name, kwargs, field", [
    ("vgg", dict(depth=12), "depth"),
    ("vgg16", dict(depth=19), "depth"),            # fixed by the name
    ("resnet18", dict(stage_sizes=(1,)), "stage_sizes"),
    ("mlp", dict(widths=(4, 0)), "widths"),
    ("deep_linear", dict(widths=(-1,)), "widths"),
    ("small_cnn", dict(widths=(0,)), "widths"),
    ("mlp", dict(activation="swishy"), "activation"),
    ("resnet50", dict(stem="big"), "stem"),
    ("resnet18", dict(width=-0.5), "width"),
    ("vgg11", dict(width_factor=0.0), "width_factor"),
    ("mlp", dict(num_classes=10), "num_classes"),  # MLP uses num_outputs
    ("resnet18", dict(foo=1), "foo"),
])
def test_bad_kwargs_name_the_argument(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        get_model(name, **kwargs)


def test_config_style_values_are_accepted_and_models_hashable():
    """Configs hand over lists and numpy scalars; models must stay hashable
    (a jitted step may take the model as a static argument)."""
    models = [
        get_model("mlp", widths=[np.int64(4), 4]),
        get_model("deep_linear", widths=[3]),
        get_model("small_cnn", widths=[2, 3]),
        get_model("vgg", depth=np.int64(11), width_factor=np.float32(0.5),
                  classifier_widths=[8]),
        get_model("resnet", stage_sizes=[1, 1], block_cls="bottleneck"),
    ]
    for model in models:
        hash(model)
    assert models[0].widths == (4, 4)
    assert models[4].stage_sizes == (1, 1)
