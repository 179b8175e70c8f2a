"""``get_model(name, **kwargs)``: one place that turns a config name into a model.

Unknown names and bad keyword arguments raise ``ValueError`` (naming the
allowed names or the offending argument) before anything is traced.
"""
import dataclasses
from typing import Any, Type

import flax.linen as nn

from neurojax.models.cnn import SmallCNN
from neurojax.models.mlp import MLP, DeepLinear
from neurojax.models.resnet import BasicBlock, BottleneckBlock, ResNet
from neurojax.models.vgg import VGG

# name -> (module class, keyword arguments fixed by the name)
_REGISTRY: dict[str, tuple[Type[nn.Module], dict[str, Any]]] = {
    "mlp": (MLP, {}),
    "deep_linear": (DeepLinear, {}),
    "small_cnn": (SmallCNN, {}),
    "vgg": (VGG, {}),
    "vgg11": (VGG, {"depth": 11}),
    "vgg13": (VGG, {"depth": 13}),
    "vgg16": (VGG, {"depth": 16}),
    "vgg19": (VGG, {"depth": 19}),
    "resnet": (ResNet, {}),
    "resnet18": (ResNet, {"stage_sizes": (2, 2, 2, 2), "block_cls": BasicBlock}),
    "resnet34": (ResNet, {"stage_sizes": (3, 4, 6, 3), "block_cls": BasicBlock}),
    "resnet50": (ResNet, {"stage_sizes": (3, 4, 6, 3), "block_cls": BottleneckBlock}),
    "resnet101": (ResNet, {"stage_sizes": (3, 4, 23, 3),
                           "block_cls": BottleneckBlock}),
    "resnet152": (ResNet, {"stage_sizes": (3, 8, 36, 3),
                           "block_cls": BottleneckBlock}),
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def model_kwargs(name: str) -> tuple[str, ...]:
    """The keyword arguments ``get_model(name, ...)`` accepts."""
    cls, fixed = _lookup(name)
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.init and f.name not in ("parent", *fixed))


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of ``MODEL_NAMES``: 'mlp', 'deep_linear', 'small_cnn',
            'vgg' (pass ``depth``), 'vgg11', 'vgg13', 'vgg16', 'vgg19',
            'resnet' (pass ``stage_sizes`` and ``block_cls``), 'resnet18',
            'resnet34', 'resnet50', 'resnet101', 'resnet152'.
        **kwargs: fields of the model class (see ``model_kwargs(name)``).

    Returns:
        An unbound Flax Linen module; call ``init``/``apply`` on it, with
        ``__call__(x, train=False)``.

    Raises:
        ValueError: unknown name, unknown keyword, a keyword fixed by the name
            (e.g. ``depth`` for 'vgg16'), or an invalid value.
    """
    cls, fixed = _lookup(name)
    for key in kwargs:
        if key in fixed:
            generic = "vgg" if cls is VGG else "resnet"
            raise ValueError(f"{key} is fixed by the model name {name!r}; use "
                             f"get_model({generic!r}, {key}=...) to choose it")
    allowed = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for model {name!r}; "
                         f"allowed: {list(allowed)}")
    return cls(**fixed, **kwargs)


def _lookup(name: str) -> tuple[Type[nn.Module], dict[str, Any]]:
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; allowed: {list(MODEL_NAMES)}")
    return _REGISTRY[key]
