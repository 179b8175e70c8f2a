"""Probes on frozen features: closed-form ridge, the trained linear probe, kNN.

Every probe is a pure function of arrays, ``probe(train_x, train_y, test_x,
test_y, ...)``: features of shape (n, D) (or (n, ...), flattened per example)
and integer labels of shape (n,) in [0, num_classes). Inputs are validated on
the host, raising ``ValueError`` that names the argument, before anything is
compiled; the numerical core of each probe is one jitted program, and the
public functions also run under an outer ``jax.jit`` / ``jax.vmap`` (pass
``num_classes`` there: label ranges can only be checked on concrete arrays).

* ``ridge_probe``: least squares onto one-hot (+-1) targets with an
  unpenalised intercept, the regulariser chosen on a held-out split of the
  training features, then refitted. One ``eigh`` per fit serves every
  regulariser of the grid (as big_vision's few-shot ridge: one
  eigendecomposition, many regularisers).
* ``linear_probe``: the thesis' trained probe (Part III, Appendix D,
  Table 4b; the alpha-ReQ probe of Part II uses the same code): a linear layer
  with bias on frozen encoder features, Adam 1e-3, batch 512, 200 epochs,
  weight decay 1e-6, cross-entropy with label smoothing 0.1, constant learning
  rate, no feature normalisation (FastSSL ``scripts/train_model*.py``,
  ``fastssl/models/linear.py``).
* ``knn_probe``: cosine-similarity k-nearest neighbours with votes weighted by
  exp(similarity / T) (InstDisc; the kNN monitor of lightly's benchmarks, k =
  200, T = 0.1; DINO uses the same weights with T = 0.07, k = 20); Euclidean
  distance and a plain majority vote are options (kNN on raw pixels).
* ``time_to_accuracy``: the first logged wall-clock time at which an accuracy
  reaches a threshold (thesis Part III, Table 2-3: "time to reach X%").

Accuracies are fractions in [0, 1]. This module is the probes' one import
path and holds ``time_to_accuracy``; each probe's code lives in a private
module by concern (``_probe_ridge``, ``_probe_linear``, ``_probe_knn``), with
the input checks they share in ``_probe_inputs``.
"""
import math
from typing import Optional

import numpy as np

from neurojax.metrics._probe_inputs import ArrayLike
from neurojax.metrics._probe_knn import DEFAULT_KNN_K, DEFAULT_KNN_TEMPERATURE, knn_probe
from neurojax.metrics._probe_linear import (PAPER_PROBE_BATCH_SIZE, PAPER_PROBE_EPOCHS,
                                            PAPER_PROBE_LABEL_SMOOTHING,
                                            PAPER_PROBE_LEARNING_RATE,
                                            PAPER_PROBE_WEIGHT_DECAY, LinearProbeResult,
                                            linear_probe)
from neurojax.metrics._probe_ridge import (DEFAULT_RIDGE_REGULARIZERS, RidgeProbeResult,
                                           ridge_probe)

__all__ = [
    "DEFAULT_KNN_K", "DEFAULT_KNN_TEMPERATURE", "DEFAULT_RIDGE_REGULARIZERS",
    "LinearProbeResult", "PAPER_PROBE_BATCH_SIZE", "PAPER_PROBE_EPOCHS",
    "PAPER_PROBE_LABEL_SMOOTHING", "PAPER_PROBE_LEARNING_RATE", "PAPER_PROBE_WEIGHT_DECAY",
    "RidgeProbeResult", "knn_probe", "linear_probe", "ridge_probe", "time_to_accuracy",
]


def time_to_accuracy(times: ArrayLike, accuracies: ArrayLike,
                     threshold: float) -> Optional[float]:
    """The first logged time at which ``accuracies >= threshold``, else None.

    For the "time to reach X% accuracy" of the thesis' Part III (Tables 2-3,
    minutes to reach the baseline's accuracy or 80%): ``times[i]`` is the
    wall-clock (or epoch) at which ``accuracies[i]`` was measured, in logging
    order; the threshold is in the accuracies' units (fractions here). NaN
    accuracies never count as reached. No interpolation between log points.
    """
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}")
    if a.shape != t.shape:
        raise ValueError(f"accuracies must have the shape of times {t.shape}, got {a.shape}")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a real number, got {threshold!r}") from None
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    hit = np.flatnonzero(a >= threshold)
    return float(t[hit[0]]) if hit.size else None
