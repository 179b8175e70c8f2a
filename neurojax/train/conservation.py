"""Conservation laws tracked through the training loop (issue 21).

Registers the gradient transform ``'record_conservation'`` so that a config
can record, per channel and per step, the charges of a network's symmetries
(``neurojax.metrics.conservation``: Kunin et al. 2021, "Neural mechanics";
Tanaka & Kunin 2021) into ``metrics.jsonl``::

    config.optim.transforms = (("record_conservation",
                                {"layers": ("dense_0", "dense_1", "head")}),)
    config.train.log_every = 1   # records average over their window

Each record then holds ``cons/<symmetry>/<charge|inner|step>/<channel>``:
the charge Q(theta) before the step, the inner product of the recorded
updates with the symmetry's generator and Q of the updates (first in the
chain: the raw gradient, so under SGD with learning rate lr and weight decay
wd the charge obeys ``Q' = (1 - lr wd)^2 Q + lr^2 step`` exactly for the
scale and rescale symmetries; ``metrics.conservation.sgd_charge``). The
transform lives here, not in ``neurojax.optim``, because it needs the
metrics (the leaf folders do not import each other).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import optax

from neurojax.metrics.conservation import conservation_record, sequential_symmetries
from neurojax.optim import record_metrics, register_gradient_transform


def record_conservation(layers: Sequence[str], norms: Optional[Mapping[str, str]] = None,
                        head: Optional[str] = "head",
                        name: str = "cons") -> optax.GradientTransformation:
    """An identity transform recording ``conservation_record`` of the
    symmetries ``sequential_symmetries(params, layers, norms, head)`` finds
    (a chain of layers with homogeneous activations between them, BatchNorm
    layers named in ``norms``, a softmax head)."""
    if isinstance(layers, str) or not layers or not all(isinstance(l, str) for l in layers):
        raise ValueError(f"layers must be a non-empty sequence of layer names, got {layers!r}")
    layers, norms = tuple(layers), dict(norms or {})

    def record(updates, params):
        return conservation_record(updates, params,
                                   sequential_symmetries(params, layers, norms=norms, head=head))
    return record_metrics(record, name)


register_gradient_transform("record_conservation", record_conservation)
