"""A config's learning rule (``config.rule``) in the supervised task.

``config.rule`` names a rule of ``neurojax.rules.RULE_NAMES`` and holds its
metaparameters (``neurojax.rules.METAPARAMETER_FIELDS``: alpha, beta,
gamma, noise_std, noise_distribution, magnitude, sign_scale;
``neurojax.rules.rule_metaparameters`` lists each rule's), plus one field of
the run:

* ``align_examples`` (default 256; 0 = off): at every evaluation, the
  per-layer angles between the rule's gradient and backprop's and between
  W and B (``neurojax.metrics.credit_assignment.alignment_metrics``) on the
  first ``align_examples`` training examples, logged as ``align/<layer>/...``
  in the eval records.

Without a ``rule`` block the task is unchanged. With one, the model is built
with ``rule=get_rule(config.rule)`` (``config.model.rule_head`` says whether
its last layer uses the rule) and the optimiser is
``neurojax.rules.rule_optimizer``: the forward weights get ``config.optim``'s
chain, B its own chain built by the same ``make_optimizer`` from
:func:`feedback_optim_block`, combined by ``optax.multi_transform``; with
``config.optim.accumulate_steps > 1`` MultiSteps wraps the combination.
Gradient clipping acts on the forward gradient, except for Kolen-Pollack,
whose B receives W's gradient: there ``rules.clip_by_forward_norm`` scales
W's and B's gradients by the forward norm's factor before the split.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
import optax

from neurojax import data as nj_data
from neurojax import rules
from neurojax._checks import check_int
from neurojax.metrics.credit_assignment import alignment_metrics, layer_paths
from neurojax.train.program import Stage

RUN_FIELDS = {"align_examples": 256}
RULE_FIELDS = ("name", *rules.METAPARAMETER_FIELDS)


def _rule_fields(block: Mapping[str, Any]) -> dict:
    return {k: v for k, v in block.items() if k in RULE_FIELDS}


def validate_rule_config(config) -> None:
    """Raises ``ValueError`` naming the bad field of ``config.rule`` (absent: fine)."""
    model_rule = config.model.get("rule", "backprop")
    if not (isinstance(model_rule, str) and model_rule == "backprop"):
        raise ValueError(f"config.model.rule must be left out (got {model_rule!r}): set the "
                         "learning rule in config.rule (config.rule.name)")
    block = config.get("rule")
    if block is None:
        return
    if not callable(getattr(block, "items", None)):  # a ConfigDict or a dict
        raise ValueError(f"config.rule must be a block with a 'name' (one of "
                         f"{rules.RULE_NAMES}), got {block!r}")
    for field in block.keys():
        if field not in RULE_FIELDS and field not in RUN_FIELDS:
            raise ValueError(f"config.rule.{field} is not a field of config.rule; allowed: "
                             f"{[*RULE_FIELDS, *RUN_FIELDS]}")
    if "name" not in block:
        raise ValueError(f"config.rule.name is missing (one of {rules.RULE_NAMES})")
    check_int("config.rule.align_examples", block.get("align_examples", 256), 0)
    try:
        rules.get_rule(_rule_fields(block))
    except ValueError as e:
        message = str(e)
        raise ValueError(f"config.{message}" if message.startswith("rule.")
                         else f"config.rule: {message}") from e
    sync = config.get("sync")
    if sync and sync.get("mode", "off") != "off":
        raise ValueError("config.sync.mode must be 'off' with config.rule (the compressed "
                         "sync has no feedback-weight optimiser)")


def config_rule(config) -> Optional[rules.Rule]:
    """The :class:`neurojax.rules.Rule` of ``config.rule``; ``None`` without one."""
    block = config.get("rule")
    return None if block is None else rules.get_rule(_rule_fields(block))


def model_rule(rule: Optional[rules.Rule]) -> Any:
    """The models' ``rule`` field: 'backprop' (today's layers) or the Rule."""
    return "backprop" if rule is None or rule.name == "backprop" else rule


def feedback_optim_block(optim: Mapping[str, Any], rule: rules.Rule) -> dict:
    """B's optim block: ``optim``'s optimiser and schedule without its gradient
    transforms and clipping (they act on the forward gradient; Kolen-Pollack's
    B is clipped with W before the split, in :func:`rule_stages`), with
    ``optim``'s weight decay for Kolen-Pollack (the same decay on W and B makes
    ``W - B`` shrink, Akrout et al. 2019) and none for the local-loss rules
    (their decay primitive, alpha, is B's decay; Kunin et al. 2020)."""
    block = dict(optim)
    block.update(transforms=(), grad_clip_norm=0.0, accumulate_steps=1)
    if rule.name != "kolen_pollack":
        block["weight_decay"] = 0.0
    return block


def rule_stages(config, rule: rules.Rule, objective) -> Callable:
    """The task's ``stages``: one stage training every parameter, whose
    optimiser is ``rule_optimizer(rule, forward chain, B's chain)``."""
    clip = float(config.optim.get("grad_clip_norm", 0) or 0)
    joint_clip = rule.name == "kolen_pollack" and clip > 0

    def combine(build):
        if not rule.stores_feedback or rule.frozen_feedback:
            return rules.rule_optimizer(rule, build(config.optim))
        if not joint_clip:
            return rules.rule_optimizer(rule, build(config.optim),
                                        build(feedback_optim_block(config.optim, rule)))
        # B receives W's gradient: clip both by the forward norm's factor
        # before the split, so that their updates stay equal
        forward = build({**config.optim, "grad_clip_norm": 0.0})
        return optax.chain(rules.clip_by_forward_norm(clip), rules.rule_optimizer(
            rule, forward, build(feedback_optim_block(config.optim, rule))))

    def stages(num_steps: int, make_optimizer, *, data_on_device: bool) -> list[Stage]:
        del data_on_device  # one stage on the split itself
        return [Stage("train", num_steps, objective, make_optimizer(num_steps, combine=combine))]

    return stages


def alignment_fn(rule: rules.Rule, rule_objective, twin_objective, *,
                 rule_head: bool = True) -> Callable:
    """``fn(params, model_state, batch, rng) -> {'align/...': degrees}``: the
    rule's gradient (``rule_objective``'s, over ``params``) against backprop's
    (``twin_objective``'s over ``forward_params(params)``, the same model with
    rule='backprop'), and W against B, for ``alignment_metrics``. Sign
    symmetry with a fixed scale stores no B; its ``s sign(W)`` is reported
    for every layer when ``rule_head`` (the head then uses the rule too)."""
    def fn(params, model_state, batch, rng):
        def loss(objective, p):
            return objective(p, model_state, batch, rng)[0]
        rule_grads = jax.grad(lambda p: loss(rule_objective, p))(params)
        true_grads = jax.grad(lambda p: loss(twin_objective, p))(rules.forward_params(params))
        layers = None
        if rule.name == "sign_symmetry" and not rule.stores_feedback:
            layers = layer_paths(true_grads) if rule_head else ()
        return alignment_metrics(rule_grads, true_grads, params, layers=layers,
                                 feedback_weights=(rule.feedback_weights
                                                   if rule.name == "sign_symmetry" else None),
                                 feedback_name=rules.FEEDBACK_PARAM)
    return fn


def alignment_evaluator(config, rule: rules.Rule, rule_objective, twin_objective,
                        data_dir) -> Optional[Callable]:
    """``evaluate(state) -> {'align/...': float}`` on the first
    ``config.rule.align_examples`` training examples (None when 0)."""
    count = config.rule.get("align_examples", RUN_FIELDS["align_examples"])
    if not count:
        return None
    ds = config.dataset
    loader = nj_data.load(ds.name, ds.get("train_split", "train"), batch_size=count,
                          data_dir=data_dir, shuffle=False, num_epochs=1,
                          drop_remainder=False)
    batch = {k: np.asarray(v) for k, v in next(iter(loader)).items()}
    batch = {k: v for k, v in batch.items()  # e.g. a string 'id' cannot enter jit
             if np.issubdtype(v.dtype, np.number) or v.dtype == np.bool_}
    rule_head = config.model.get("rule_head", True)
    fn = jax.jit(alignment_fn(rule, rule_objective, twin_objective, rule_head=rule_head))
    rng = jax.random.PRNGKey(0)  # weight-mirror noise moves B's gradient only

    def evaluate(state) -> dict:
        values = jax.device_get(fn(state.params, state.model_state, batch, rng))
        return {k: float(v) for k, v in values.items()}

    return evaluate
