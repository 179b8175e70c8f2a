"""Label-free monitoring during training: alpha-ReQ and effective rank of chosen layers.

Agrawal et al., "alpha-ReQ" (NeurIPS 2022; thesis Part II): the eigenspectrum
of a layer's feature covariance decays as lambda_j ~ j^-alpha, and alpha
tracks how well the representation generalises without any label. With
``config.train.spectrum_every = k > 0`` the loop computes, every k steps, the
spectrum metrics (``neurojax.metrics.spectrum_metrics``: alpha with its fit
R^2, effective rank, participation ratio) of each layer in
``config.train.spectrum_layers`` on a fixed held-out set of
``config.train.spectrum_examples`` eval-split images, and logs them as
``split='spectrum'`` records with keys ``'{layer}/alpha'``, ... At the end it
draws each layer's log-log eigenspectrum with the fitted line to
``eigenspectrum_{layer}.png`` in the workdir.

Cost: one forward pass on the held-out images and one eigendecomposition
per layer, of the D x D covariance or the n x n Gram matrix, whichever is
smaller (``spectrum_examples`` bounds it): at the defaults (1024 examples)
small next to an epoch of training.

Layer names are the paths ``neurojax.models.layer_names`` lists
(``'act_1'``, ``'stage4_block2'``, ``'encoder'`` for an SSL network's
representation); ``''`` is the model's output.
"""
import os
import re
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from neurojax import data as nj_data
from neurojax import plots
from neurojax.metrics import DEFAULT_FIT_RANGE, spectrum_metrics
from neurojax.metrics.features import FeaturesStep, make_features_step
from neurojax.models import intermediate_features
from neurojax.train.state import TrainState
from neurojax.train.step import DATA_AXIS, shard_batch

_SCALARS = ("alpha", "alpha_r2", "effective_rank", "participation_ratio")


def _file_safe(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", layer) or "output"


def make_layer_features(model, layers: Sequence[str], mesh: Mesh) -> FeaturesStep:
    """``step(variables, {'image': x})["features"] -> {layer: (n, D) features}``
    (``neurojax.metrics.make_features_step``): the batch is sharded over
    ``mesh`` and the features replicated."""
    layers = tuple(layers)

    def features(variables, x):
        feats = intermediate_features(model, variables, x,
                                      filter=[re.escape(name) for name in layers])
        missing = [name for name in layers if name not in feats]
        if missing:
            raise ValueError(f"config.train.spectrum_layers: no layer(s) {missing} in "
                             f"the model; see neurojax.models.layer_names")
        return {name: feats[name] for name in layers}

    return make_features_step(features, mesh, data_axis=DATA_AXIS)


class SpectrumMonitor:
    """Computes and plots the spectrum metrics of ``layers`` on held-out images."""

    def __init__(self, model, layers: Sequence[str], images, mesh: Mesh):
        if not layers:
            raise ValueError("config.train.spectrum_layers must name at least one layer")
        self.layers = tuple(layers)
        self._features = make_layer_features(model, self.layers, mesh)
        self._images = images
        self._last: dict = {}

    @classmethod
    def from_config(cls, config, model, mesh: Mesh, data_dir) -> "SpectrumMonitor":
        """The held-out images are the first ``spectrum_examples`` of the eval
        split (each process loads its shard's share)."""
        tr, ds = config.train, config.dataset
        n = tr.get("spectrum_examples", 1024)
        if n <= 0 or n % mesh.devices.size:
            raise ValueError(f"config.train.spectrum_examples ({n}) must be a positive "
                             f"multiple of the number of devices ({mesh.devices.size})")
        loader = nj_data.load(ds.name, ds.get("eval_split", "test"),
                              batch_size=n // jax.process_count(), data_dir=data_dir,
                              shuffle=False, num_epochs=1, drop_remainder=True)
        batch = next(iter(loader), None)
        if batch is None:
            raise ValueError(f"config.train.spectrum_examples ({n}) exceeds the eval split")
        images = shard_batch({"image": batch["image"]}, mesh)["image"]
        return cls(model, tr.spectrum_layers, images, mesh)

    def __call__(self, state: TrainState) -> dict:
        """``{'{layer}/alpha': ..., '{layer}/effective_rank': ..., ...}``."""
        variables = {"params": state.params, **state.model_state}
        feats = jax.device_get(self._features(variables, {"image": self._images})["features"])
        out = {}
        for layer in self.layers:
            metrics = spectrum_metrics(feats[layer], return_eigenvalues=True)
            self._last[layer] = jax.device_get(metrics)
            name = layer or "output"
            out.update({f"{name}/{k}": float(metrics[k]) for k in _SCALARS})
        return out

    def plot(self, workdir: str, step: int) -> list[str]:
        """Eigenspectrum PNGs of the last computed spectra; returns the paths."""
        paths = []
        for layer, metrics in self._last.items():
            path = os.path.join(workdir, f"eigenspectrum_{_file_safe(layer)}.png")
            lam = np.asarray(metrics["eigenvalues"])
            first, last = DEFAULT_FIT_RANGE
            fit = {**metrics, "first_rank": first, "last_rank": min(last, lam.size)}
            plots.plot_eigenspectrum(lam, path, fit=fit,
                                     title=f"{layer or 'output'} at step {step}")
            paths.append(path)
        return paths
