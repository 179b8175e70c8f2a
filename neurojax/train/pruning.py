"""Pruning at initialisation by name (Tanaka et al. 2020, Sec. 7): a score
of ``neurojax.metrics.saliency`` iterated into global masks by
``neurojax.optim.pruning.iterative_masks``.

SynFlow runs in float64 by default: ``pruning_masks`` switches 64-bit types
on only inside its own computation (``jax.enable_x64``), so it runs under a
float32 program.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from neurojax._checks import check_choice, check_int, check_real
from neurojax.metrics.saliency import (GRASP_TEMPERATURE, batch_loss_fn, grasp_scores,
                                       magnitude_scores, random_scores, snip_scores,
                                       synflow_scores)
from neurojax.optim.pruning import (DEFAULT_ITERATIONS, DEFAULT_PRUNABLE, METHODS,
                                    iterative_masks, num_prunable, schedule_counts)

PyTree = Any


def pruning_masks(method: str, params: PyTree, *, compression: Optional[float] = None,
                  counts=None,
                  apply_fn: Optional[Callable] = None, model_state: Optional[dict] = None,
                  input_shape=None, batch: Optional[dict] = None,
                  loss: Optional[Callable[[jax.Array, dict], jax.Array]] = None,
                  key: Optional[jax.Array] = None, iterations: Optional[int] = None,
                  schedule: str = "exponential", prunable: str = DEFAULT_PRUNABLE,
                  temperature: float = GRASP_TEMPERATURE, dtype: str = "float64") -> PyTree:
    """Masks of one pruning method at initialisation (Tanaka et al. 2020, Sec. 7).

    Args:
        method: one of ``METHODS``.
        params: the initial parameters.
        compression: ``prunable / kept`` (>= 1); or
        counts: the kept count after each round (``schedule_counts``; may be
            traced, e.g. to compile once for several compressions). Exactly
            one of the two.
        apply_fn: ``(variables, x) -> outputs`` in evaluation mode (synflow,
            snip, grasp).
        model_state: other variable collections (BatchNorm's ``batch_stats``).
        input_shape: one input's shape, without the batch axis (synflow).
        batch: ``{'image', 'label'}`` arrays (snip, grasp; the paper: 10
            examples per class).
        loss: ``(outputs, batch) -> scalar`` (snip, grasp).
        key: PRNG key (random).
        iterations: pruning rounds (default ``DEFAULT_ITERATIONS[method]``;
            with ``counts``, ``len(counts)``: ``iterations`` and ``schedule``
            are then not used).
        schedule, prunable: see ``neurojax.optim.pruning``'s module docstring.
        temperature: GraSP's logit temperature.
        dtype: 'float64' (SynFlow's computation, with 64-bit types switched
            on inside this call only) or 'float32'; for synflow only.
    """
    check_choice("method", method, METHODS)
    check_choice("dtype", dtype, ("float64", "float32"))
    if (compression is None) == (counts is None):
        raise ValueError("give exactly one of compression and counts")
    if counts is None:
        iterations = check_int("iterations", DEFAULT_ITERATIONS[method] if iterations is None
                               else iterations)
        counts = schedule_counts(num_prunable(params, prunable), compression, iterations,
                                 schedule)
    if method in ("synflow", "snip", "grasp") and not callable(apply_fn):
        raise ValueError(f"apply_fn must be a callable (variables, x) -> outputs for "
                         f"method={method!r}, got {apply_fn!r}")
    if method == "synflow" and input_shape is None:
        raise ValueError("input_shape (one input's shape, no batch axis) is required for "
                         "method='synflow'")
    if method in ("snip", "grasp"):
        if not isinstance(batch, dict) or "image" not in batch:
            raise ValueError(f"batch must be a dict with an 'image' array for "
                             f"method={method!r}, got {type(batch).__name__}")
        if not callable(loss):
            raise ValueError(f"loss must be a callable (outputs, batch) -> scalar for "
                             f"method={method!r}, got {loss!r}")
    if method == "random" and key is None:
        raise ValueError("key is required for method='random'")
    check_real("temperature", temperature, low=0.0, low_open=True)
    rest = dict(model_state or {})
    kwargs = dict(counts=counts, prunable=prunable, key=key)

    if method == "magnitude":
        return iterative_masks(lambda p, k: magnitude_scores(p), params, **kwargs)
    if method == "random":
        return iterative_masks(lambda p, k: random_scores(k, p), params, **kwargs)
    if method == "snip":
        return iterative_masks(lambda p, k: snip_scores(
            batch_loss_fn(apply_fn, loss, rest, batch), p), params, **kwargs)
    if method == "grasp":
        return iterative_masks(lambda p, k: grasp_scores(
            batch_loss_fn(apply_fn, loss, rest, batch, temperature=temperature), p),
            params, **kwargs)
    if dtype == "float32":
        return iterative_masks(lambda p, k: synflow_scores(
            apply_fn, p, input_shape, model_state=rest), params, **kwargs)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        wide_state = jax.tree.map(
            lambda s: jnp.asarray(s, jnp.float64)
            if jnp.issubdtype(jnp.asarray(s).dtype, jnp.floating) else s, rest)
        masks = iterative_masks(lambda p, k: synflow_scores(
            apply_fn, p, input_shape, model_state=wide_state), wide, **kwargs)
    return masks
