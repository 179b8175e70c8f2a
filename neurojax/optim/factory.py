"""Config to optimiser in one place.

A config's ``optim`` block names the base optimiser, its learning-rate
schedule, and an ordered list of gradient transforms that act on the *raw*
gradient. ``make_optimizer`` turns it into one ``optax.chain``:

    clip -> gradient interventions (in the listed order) -> weight decay
         -> optimiser (which scales by the learning rate last)

Interventions go before any learning-rate scaling (the ordering bug fixed in
optax#337), so "bias/noise relative to the gradient" means the gradient.
Other modules register interventions in ``GRADIENT_TRANSFORMS``.

With ``accumulate_steps = k > 1`` the whole chain is wrapped in
``optax.MultiSteps``: the mean gradient of k consecutive batches goes through
it once every k training steps (zero updates in between), so interventions,
clipping and the optimiser see the large-batch gradient (e.g. a full-batch
gradient accumulated over an epoch), and the schedule counts those updates.
"""
import inspect
import math
from typing import Any, Callable, Mapping

import optax

from neurojax.optim.diagnostics import record_gradient_rms
from neurojax.optim.injection import inject_gradient_bias, inject_gradient_noise

# name -> factory(**kwargs) -> optax.GradientTransformation
GRADIENT_TRANSFORMS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "clip_by_global_norm": optax.clip_by_global_norm,
    "clip": optax.clip,
    "add_noise": optax.add_noise,
    "centralize": optax.centralize,
    # Ghosh et al. 2023, Eq. 1: ("inject_gradient_noise", {"sigma": 0.1, "seed": 0})
    "inject_gradient_bias": inject_gradient_bias,
    "inject_gradient_noise": inject_gradient_noise,
    # identity; records per-array gradient RMS, logged as grad_rms/<path> (Oland 2024, Fig 4.3)
    "record_gradient_rms": record_gradient_rms,
}

OPTIMIZERS = ("sgd", "adam", "adamw", "lars", "lamb", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")


def register_gradient_transform(name: str, factory: Callable[..., optax.GradientTransformation]):
    """Makes ``factory`` usable by name in ``config.optim.transforms``."""
    if name in GRADIENT_TRANSFORMS:
        raise ValueError(f"gradient transform {name!r} is already registered")
    GRADIENT_TRANSFORMS[name] = factory
    return factory


def validate_optim_config(cfg: Mapping[str, Any], prefix: str = "config.optim") -> None:
    """Raises ``ValueError`` naming the offending field of an optim block."""
    name = cfg.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"{prefix}.name must be one of {OPTIMIZERS}, got {name!r}")
    lr = cfg.get("lr")
    if not _is_number(lr) or not lr > 0:
        raise ValueError(f"{prefix}.lr must be a positive number, got {lr!r}")
    schedule = cfg.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(f"{prefix}.schedule must be one of {SCHEDULES}, got {schedule!r}")
    accumulate = cfg.get("accumulate_steps", 1)
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"{prefix}.accumulate_steps must be an int >= 1, got {accumulate!r}")
    for field in ("weight_decay", "warmup_steps", "grad_clip_norm"):
        value = cfg.get(field, 0)
        if not _is_number(value) or not value >= 0:
            raise ValueError(f"{prefix}.{field} must be a number >= 0, got {value!r}")
    momentum = cfg.get("momentum", 0.0)
    if not _is_number(momentum) or not 0 <= momentum < 1:
        raise ValueError(f"{prefix}.momentum must be in [0, 1), got {momentum!r}")
    for i, entry in enumerate(cfg.get("transforms", ()) or ()):
        tname, kwargs = parse_transform_entry(entry)
        if tname not in GRADIENT_TRANSFORMS:
            raise ValueError(f"{prefix}.transforms[{i}] must be one of "
                             f"{sorted(GRADIENT_TRANSFORMS)}, got {tname!r}")
        try:
            inspect.signature(GRADIENT_TRANSFORMS[tname]).bind(**kwargs)
        except TypeError as e:
            raise ValueError(f"{prefix}.transforms[{i}] ({tname!r}): {e}") from e


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool): NaN and Inf fail every range check."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def make_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """The learning-rate schedule named by ``cfg.schedule``."""
    lr = float(cfg["lr"])
    kind = cfg.get("schedule", "constant")
    warmup = int(cfg.get("warmup_steps", 0))
    if kind == "constant":
        if warmup:
            return optax.linear_schedule(0.0, lr, warmup)
        return optax.constant_schedule(lr)
    if kind in ("cosine", "warmup_cosine"):
        return optax.warmup_cosine_decay_schedule(
            0.0 if warmup else lr, lr, warmup, max(total_steps, warmup + 1),
            end_value=lr * float(cfg.get("final_lr_fraction", 0.0)))
    # "step": decay by 10x at the listed fractions of training, after a linear
    # warm-up from 0 when warmup_steps > 0 (boundaries stay fractions of all steps)
    at = [int(f * total_steps) for f in cfg.get("decay_at", (0.5, 0.75))]
    if warmup:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup),
             optax.piecewise_constant_schedule(lr, {max(b - warmup, 0): 0.1 for b in at})],
            [warmup])
    return optax.piecewise_constant_schedule(lr, {b: 0.1 for b in at})


def parse_transform_entry(entry) -> tuple[str, dict]:
    """``(name, kwargs)`` of one ``config.optim.transforms`` entry: a name or
    a ``(name, kwargs)`` pair (a list after a JSON round trip)."""
    if isinstance(entry, (tuple, list)):
        return entry[0], dict(entry[1]) if len(entry) > 1 else {}
    return entry, {}


def _transform_from_entry(entry) -> optax.GradientTransformation:
    name, kwargs = parse_transform_entry(entry)
    return GRADIENT_TRANSFORMS[name](**kwargs)


def make_optimizer(cfg: Mapping[str, Any], total_steps: int, *,
                   combine: Callable[[Callable[[Mapping[str, Any]], optax.GradientTransformation]],
                                     optax.GradientTransformation] | None = None
                   ) -> optax.GradientTransformation:
    """Builds the single ``optax.chain`` described by an optim config block.

    Fields: ``name`` (sgd|adam|adamw|lars|lamb|rmsprop), ``lr``, ``schedule``
    (constant|cosine|warmup_cosine|step), ``warmup_steps``, ``momentum``,
    ``nesterov``, ``b1``, ``b2``, ``eps``, ``weight_decay`` (coupled L2 for
    sgd/adam, decoupled for adamw/lars/lamb), ``grad_clip_norm`` (0 = off) and
    ``transforms``: a sequence of names or ``(name, kwargs)`` pairs from
    ``GRADIENT_TRANSFORMS`` applied to the raw gradient, in order;
    ``accumulate_steps`` (default 1): apply the chain to the mean gradient of
    that many consecutive training steps (``optax.MultiSteps``; the schedule
    then runs over ``ceil(total_steps / accumulate_steps)`` updates).

    ``combine(build)``, if given, returns the optimiser to accumulate instead
    of ``cfg``'s chain, where ``build(block)`` is the (not accumulated) chain
    of any optim block over the same number of updates; e.g. a learning rule
    puts its feedback weights on their own chain with
    ``optax.multi_transform`` (``neurojax.train.credit``), and MultiSteps then
    wraps the whole combination.
    """
    validate_optim_config(cfg)
    accumulate = int(cfg.get("accumulate_steps", 1))
    updates = -(-total_steps // accumulate)
    tx = (_chain(cfg, updates) if combine is None
          else combine(lambda block: _chain(block, updates)))
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
    return tx


def _chain(cfg: Mapping[str, Any], num_updates: int) -> optax.GradientTransformation:
    """The ``optax.chain`` of one optim block whose schedule spans ``num_updates``."""
    validate_optim_config(cfg)
    lr = make_schedule(cfg, num_updates)
    name = cfg["name"]
    wd = float(cfg.get("weight_decay", 0.0))
    momentum = float(cfg.get("momentum", 0.0))
    b1, b2, eps = float(cfg.get("b1", 0.9)), float(cfg.get("b2", 0.999)), float(cfg.get("eps", 1e-8))

    parts = []
    if cfg.get("grad_clip_norm", 0):
        parts.append(optax.clip_by_global_norm(float(cfg["grad_clip_norm"])))
    parts.extend(_transform_from_entry(e) for e in (cfg.get("transforms", ()) or ()))
    if name == "sgd":
        if wd:
            parts.append(optax.add_decayed_weights(wd))
        parts.append(optax.sgd(lr, momentum=momentum or None,
                               nesterov=bool(cfg.get("nesterov", False))))
    elif name == "adam":
        if wd:
            parts.append(optax.add_decayed_weights(wd))
        parts.append(optax.adam(lr, b1=b1, b2=b2, eps=eps))
    elif name == "adamw":
        parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd))
    elif name == "lars":
        parts.append(optax.lars(lr, weight_decay=wd, momentum=momentum or 0.9,
                                trust_coefficient=float(cfg.get("trust_coefficient", 0.001))))
    elif name == "lamb":
        parts.append(optax.lamb(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd))
    else:  # rmsprop
        if wd:
            parts.append(optax.add_decayed_weights(wd))
        parts.append(optax.rmsprop(lr, momentum=momentum, eps=eps))
    return optax.chain(*parts)
