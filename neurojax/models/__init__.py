"""Flax Linen models: MLP, deep linear nets, a small CNN, VGG and ResNets.

Every model is called as ``model.apply(variables, x, train=False)`` and
returns logits, or features when its ``num_classes`` / ``num_outputs`` is
``None``. Every convolution goes through ``neurojax.models.conv.Conv``.
Build models by name with ``get_model``; read intermediate features with
``intermediate_features`` / ``layer_names``. Each model's ``dtype`` is its
compute dtype (``COMPUTE_DTYPES``; parameters, BatchNorm statistics and
outputs stay float32).
"""
from neurojax.models._common import COMPUTE_DTYPES, resolve_dtype
from neurojax.models.cnn import SmallCNN
from neurojax.models.conv import Conv
from neurojax.models.intermediates import intermediate_features, layer_names
from neurojax.models.mlp import MLP, DeepLinear
from neurojax.models.registry import MODEL_NAMES, get_model, model_kwargs
from neurojax.models.resnet import (BasicBlock, BottleneckBlock, ResNet, ResNet18,
                                    ResNet34, ResNet50, ResNet101, ResNet152)
from neurojax.models.vgg import VGG

__all__ = [
    "BasicBlock", "BottleneckBlock", "COMPUTE_DTYPES", "Conv", "DeepLinear", "MLP",
    "MODEL_NAMES", "ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152",
    "SmallCNN", "VGG", "get_model", "intermediate_features", "layer_names",
    "model_kwargs", "resolve_dtype",
]

from neurojax.models.projector import (Projector, beta_for_dim, beta_sweep,
                                       projector_num_params)

__all__ += ["Projector", "beta_for_dim", "beta_sweep", "projector_num_params"]

from neurojax.models.ssl import SSLNetwork, build_ssl_network

__all__ += ["SSLNetwork", "build_ssl_network"]
