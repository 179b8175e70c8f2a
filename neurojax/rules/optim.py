"""B's optimiser, composed with the forward optimiser by ``optax.multi_transform``.

The parameter tree is labelled leaf by leaf: ``'feedback'`` for every
``feedback_kernel`` (B), ``'forward'`` for everything else. The forward
optimiser (``neurojax.optim.make_optimizer``'s chain: clipping, bias/noise
injection, weight decay, LARS/LAMB trust ratios, the learning rate) then
sees only the forward leaves, so none of it reaches B; B's own optimiser
sees only the feedback leaves. Norms that a transform takes over "the whole
gradient" (clipping, noise relative to the gradient norm, trust ratios) are
taken over the forward part only.

Which optimiser B gets, by rule:

* feedback alignment, sign symmetry with random magnitudes: ``optax.set_to_zero()``
  (B frozen; its gradient is zero too);
* Kolen-Pollack: the forward optimiser's update rule and the same weight
  decay (e.g. ``make_optimizer(cfg)`` of the same config without its
  gradient ``transforms``), so that ``W - B`` shrinks by ``(1 - lr wd)``
  per step (Akrout et al. 2019, the Kolen-Pollack section);
* the local-loss rules: any optimiser of the local loss (the Neural-Alignment
  code uses the forward one unless told otherwise);
* backprop and sign symmetry with a fixed scale store no B: the forward
  optimiser is returned unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from neurojax.rules.layers import FEEDBACK_PARAM

FORWARD, FEEDBACK = "forward", "feedback"


def _leaf_name(path) -> Any:
    last = path[-1] if path else None
    return getattr(last, "key", getattr(last, "name", None))


def feedback_labels(params: Any) -> Any:
    """``params`` with each leaf replaced by 'feedback' (a ``feedback_kernel``)
    or 'forward' (any other parameter)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: FEEDBACK if _leaf_name(path) == FEEDBACK_PARAM else FORWARD, params)


def feedback_mask(params: Any) -> Any:
    """``params`` with True at the feedback weights and False elsewhere."""
    return jax.tree.map(lambda label: label == FEEDBACK, feedback_labels(params))


def forward_params(params: Any) -> Any:
    """``params`` without its ``feedback_kernel`` entries: the parameter tree of
    the same model with ``rule='backprop'`` (its backprop twin)."""
    if isinstance(params, Mapping):
        return type(params)({k: forward_params(v) for k, v in params.items()
                             if k != FEEDBACK_PARAM})
    return params


def rule_optimizer(rule: Any, forward_tx: optax.GradientTransformation,
                   feedback_tx: Optional[optax.GradientTransformation] = None
                   ) -> optax.GradientTransformation:
    """``forward_tx`` on the forward weights and B's optimiser on B.

    Args:
        rule: a :class:`neurojax.rules.Rule`.
        forward_tx: the optimiser of every parameter but B.
        feedback_tx: B's optimiser; required for Kolen-Pollack and the
            local-loss rules, and must be left out for rules whose B is
            frozen (they get ``optax.set_to_zero()``) or not stored.

    Returns:
        ``optax.multi_transform({'forward': forward_tx, 'feedback': ...},
        feedback_labels)``, or ``forward_tx`` itself when the rule stores no B.
    """
    if not rule.stores_feedback or rule.frozen_feedback:
        if feedback_tx is not None:
            what = "stores no feedback weights" if not rule.stores_feedback else "freezes B"
            raise ValueError(f"feedback_tx must be None for rule {rule.name!r}, which "
                             f"{what}; got {feedback_tx!r}")
        if not rule.stores_feedback:
            return forward_tx
        feedback_tx = optax.set_to_zero()
    elif feedback_tx is None:
        raise ValueError(f"feedback_tx is required for rule {rule.name!r} (B is trained): "
                         "pass B's optimiser")
    return optax.multi_transform({FORWARD: forward_tx, FEEDBACK: feedback_tx},
                                 feedback_labels)


def clip_by_forward_norm(max_norm: float) -> optax.GradientTransformation:
    """Scale every leaf, B's included, by min(1, max_norm / ||g_forward||),
    the global norm taken over the forward leaves only: the factor by which
    ``optax.clip_by_global_norm(max_norm)`` scales the forward gradient. For
    Kolen-Pollack, whose B receives W's gradient, placing this before the
    ``multi_transform`` (in place of the forward chain's own clipping) keeps
    W's and B's updates equal, so ``W - B`` still shrinks by (1 - lr wd)."""
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")

    def update(updates, state, params=None):
        del params
        mask = feedback_mask(updates)
        forward = [u for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask)) if not m]
        norm = optax.global_norm(forward)
        factor = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda u: (u * factor).astype(u.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
