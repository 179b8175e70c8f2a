"""Training runs of ``neurojax.analysis.credit_assignment``: the rule variants,
the tasks, seed replicas of one rule as one compiled ``vmap``, and the
statistics over replicas.

A task's model learns with a :class:`neurojax.rules.Rule` through
``neurojax.rules.rule_optimizer`` exactly as the supervised task does
(``neurojax.train.credit``); every evaluation records the test accuracy and,
per layer, the angle between the rule's update and the backprop twin's
gradient and between W and B (``neurojax.train.credit.alignment_fn``).
Replica ``s`` draws its initial W (and B) and its batch order from
``PRNGKey(s)``, the same for every rule, so differences are paired by seed.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax import rules
from neurojax.data.on_device import batch_indices, load_split_arrays
from neurojax.models import get_model
from neurojax.optim import make_optimizer
from neurojax.train.credit import alignment_fn, feedback_optim_block
from neurojax.analysis.outputs import paired_difference, spread  # noqa: F401 (re-exported)

# label -> the Rule's fields; sign symmetry in both of its variants
VARIANTS: dict[str, dict[str, Any]] = {
    "backprop": {"name": "backprop"},
    "feedback_alignment": {"name": "feedback_alignment"},
    "sign_symmetry": {"name": "sign_symmetry", "magnitude": "fixed"},
    "sign_symmetry_random": {"name": "sign_symmetry", "magnitude": "random"},
    "kolen_pollack": {"name": "kolen_pollack"},
    "weight_mirror": {"name": "weight_mirror"},
    "symmetric_alignment": {"name": "symmetric_alignment"},
    "activation_alignment": {"name": "activation_alignment"},
    "information_alignment": {"name": "information_alignment"},
}

# configs/credit_digits.py's optimiser (SGD, Nesterov 0.9, lr 0.05, L2 1e-3, cosine)
SGD = (("name", "sgd"), ("lr", 0.05), ("momentum", 0.9), ("nesterov", True),
       ("schedule", "cosine"), ("warmup_steps", 0), ("weight_decay", 1e-3),
       ("grad_clip_norm", 0.0), ("transforms", ()))

@dataclasses.dataclass(frozen=True)
class Task:
    """A model, its data and its training run (hashable: the compiled runs are cached).

    ``model_kwargs`` and ``optim`` are tuples of ``(key, value)`` pairs
    (``optim``: an optim block for ``neurojax.optim.make_optimizer``);
    ``records`` evaluation points are spread evenly over ``steps`` (plus one
    at initialisation); ``align_examples`` training examples give the angles.
    """
    name: str
    dataset: str
    model: str
    model_kwargs: tuple
    optim: tuple
    steps: int
    batch_size: int
    records: int = 10
    align_examples: int = 256

    def __post_init__(self) -> None:
        if self.dataset not in ("digits", "shapes_small"):
            raise ValueError(f"Task.dataset must be 'digits' or 'shapes_small', got "
                             f"{self.dataset!r}")
        if self.steps < 1 or self.records < 1 or self.steps % self.records:
            raise ValueError(f"Task.steps must be a positive multiple of Task.records, got "
                             f"steps={self.steps}, records={self.records}")

    @property
    def flatten(self) -> bool:
        return self.model == "mlp"


def digits_mlp(steps: int = 880, records: int = 10) -> Task:
    """``configs/credit_digits.py``'s MLP (256, 256) and optimiser (batch 64; 880
    steps = 40 epochs)."""
    return Task("digits_mlp", "digits", "mlp", (("widths", (256, 256)),), SGD, steps, 64,
                records)


#: The digits CNN's optimiser: the MLP's with lr 0.02. At the MLP's 0.05 (with
#: Nesterov 0.9) the CNN is unstable while B is still unaligned: feedback
#: alignment's training loss peaked at 2e4 and the local-loss rules, whose B
#: aligns with a time constant of ~1,000 steps at these rates (Neural-Alignment
#: sets them for ~450k steps), diverged on 2 of 3 seeds (head ||W|| 3 -> 1.4e4
#: within 220 steps, W-B angle still 90-100 degrees; no NaN; with B = W the
#: rules' gradients equal backprop's). At 0.02 every rule trains on every seed.
CNN_SGD = tuple((k, 0.02 if k == "lr" else v) for k, v in SGD)


def digits_cnn(steps: int = 880, records: int = 10) -> Task:
    """``small_cnn`` (conv 16, 32 + 64 hidden) on the 8x8 digits, SGD as the
    MLP's with lr 0.02 (``CNN_SGD``)."""
    return Task("digits_cnn", "digits", "small_cnn",
                (("widths", (16, 32)), ("hidden", 64)), CNN_SGD, steps, 64, records)


def shapes_cnn(steps: int = 3000, records: int = 10) -> Task:
    """The digits CNN's network (conv 16, 32 + 64 hidden) and optimiser
    (``CNN_SGD``) on ``shapes_small`` (16x16 RGB, 10 classes; 3,000 steps of
    batch 64 = 19 epochs). ``configs/credit_shapes.py``'s full-width network
    (32, 64, 128 + 256, Adam) needs ~0.16 s a step on this 2-core machine
    even at a quarter of its widths under load: too slow for 9 rules x 3
    seeds; this one takes ~0.03 s. (Adam at 1e-3 or 2e-3 does not train
    feedback alignment here: its loss rises above ln 10 within 200 steps and
    settles at chance.)"""
    return Task("shapes_cnn", "shapes_small", "small_cnn",
                (("widths", (16, 32)), ("hidden", 64)), CNN_SGD, steps, 64, records)


def digits_depth(depth: int, steps: int = 440, records: int = 2, width: int = 64) -> Task:
    """A ReLU MLP of ``depth`` hidden layers of ``width`` on the digits, the
    digits MLP's optimiser."""
    return Task(f"digits_mlp_depth{depth}", "digits", "mlp", (("widths", (width,) * depth),),
                SGD, steps, 64, records)


# ----------------------------------------------------------------------------- training


@functools.lru_cache(maxsize=None)
def split_arrays(dataset: str, flatten: bool) -> tuple[jax.Array, ...]:
    """``(x_train, y_train, x_test, y_test)`` of an offline dataset as float32/int32
    device arrays (images flattened for an MLP)."""
    out = []
    for split in ("train", "test"):
        a = load_split_arrays(dataset, split)
        x = np.asarray(a["image"], np.float32)
        out += [jnp.asarray(x.reshape(len(x), -1) if flatten else x),
                jnp.asarray(a["label"], jnp.int32)]
    return tuple(out)


def variant_rule(variant: str | Mapping[str, Any], **overrides: Any) -> rules.Rule:
    """The :class:`neurojax.rules.Rule` of a label of ``VARIANTS`` (or of a Rule's
    fields as a mapping), with metaparameter ``overrides``."""
    if isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        variant = VARIANTS[variant]
    return rules.get_rule(dict(variant), **overrides)


def build_models(task: Task, rule: rules.Rule):
    """``(model, twin)``: the task's model learning with ``rule`` and its backprop twin."""
    kwargs = dict(task.model_kwargs)
    model_rule = "backprop" if rule.name == "backprop" else rule
    return (get_model(task.model, rule=model_rule, **kwargs),
            get_model(task.model, rule="backprop", **kwargs))


def rule_tx(optim: Mapping[str, Any], rule: rules.Rule, steps: int
            ) -> optax.GradientTransformation:
    """The supervised task's optimiser for ``rule`` (``neurojax.train.credit.rule_stages``):
    ``optim``'s chain on W, B's chain from ``feedback_optim_block``."""
    def combine(build):
        forward = build(optim)
        if not rule.stores_feedback or rule.frozen_feedback:
            return rules.rule_optimizer(rule, forward)
        return rules.rule_optimizer(rule, forward, build(feedback_optim_block(optim, rule)))
    return make_optimizer(dict(optim), steps, combine=combine)


def cross_entropy_objective(model) -> Callable:
    """``objective(params, model_state, batch, rng) -> (loss, {})``: mean softmax
    cross-entropy; ``rng`` feeds the rules' ``'feedback'`` noise stream."""
    def objective(params, model_state, batch, rng):
        del model_state
        logits = model.apply({"params": params}, batch["image"], rngs={"feedback": rng})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return jnp.mean(loss), {}
    return objective


@functools.lru_cache(maxsize=None)
def _compiled_run(task: Task, rule: rules.Rule):
    x, y, x_test, y_test = split_arrays(task.dataset, task.flatten)
    model, twin = build_models(task, rule)
    tx = rule_tx(dict(task.optim), rule, task.steps)
    objective = cross_entropy_objective(model)
    align = alignment_fn(rule, objective, cross_entropy_objective(twin))
    align_batch = {"image": x[:task.align_examples], "label": y[:task.align_examples]}
    every = task.steps // task.records

    def record(params):
        logits = model.apply({"params": params}, x_test)
        out = {"test_accuracy": jnp.mean(jnp.argmax(logits, -1) == y_test)}
        out.update(align(params, {}, align_batch, jax.random.PRNGKey(0)))
        return out

    def one(seed):
        k_init, k_data, k_noise = jax.random.split(jax.random.PRNGKey(seed), 3)
        params = model.init(k_init, x[:1])["params"]
        idx = batch_indices(k_data, jnp.arange(task.steps), x.shape[0], task.batch_size)
        idx = idx.reshape(task.records, every, task.batch_size)
        steps = jnp.arange(task.steps).reshape(task.records, every)

        def step(carry, inputs):
            p, s = carry
            i, t = inputs
            batch = {"image": x[i], "label": y[i]}
            (loss, _), g = jax.value_and_grad(objective, has_aux=True)(
                p, {}, batch, jax.random.fold_in(k_noise, t))
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        def chunk(carry, inputs):
            carry, losses = jax.lax.scan(step, carry, inputs)
            return carry, {**record(carry[0]), "train_loss": jnp.mean(losses)}

        first = {**record(params), "train_loss": jnp.asarray(jnp.nan, jnp.float32)}
        _, recs = jax.lax.scan(chunk, (params, tx.init(params)), (idx, steps))
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, recs)

    return jax.jit(jax.vmap(one))


def train_replicas(task: Task, rule: rules.Rule, seeds: Sequence[int]) -> dict:
    """Trains ``task`` with ``rule`` from every seed (one vmapped, compiled run).

    Returns numpy arrays of shape ``(seeds, records + 1)`` (the first column at
    initialisation): ``test_accuracy``, ``train_loss`` (mean over the steps since
    the last record; NaN at initialisation), ``grad_angle`` and ``weight_angle``
    as ``{layer: array}`` (degrees; ``'all'``: every forward parameter), plus
    ``step`` and ``seconds`` (wall clock, compilation included).
    """
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of ints, got ()")
    tic = time.time()
    out = jax.device_get(_compiled_run(task, rule)(jnp.asarray(list(seeds), jnp.int32)))
    seconds = time.time() - tic
    result = {"test_accuracy": np.asarray(out["test_accuracy"]),
              "train_loss": np.asarray(out["train_loss"]), "grad_angle": {},
              "weight_angle": {}}
    for key, value in out.items():
        parts = key.split("/")
        if parts[0] == "align":
            result[parts[-1]]["/".join(parts[1:-1])] = np.asarray(value)
    result["step"] = np.arange(task.records + 1) * (task.steps // task.records)
    result["seconds"] = seconds
    return result


# ----------------------------------------------------------------------------- statistics


def summarize_run(run: dict) -> dict:
    """Final test accuracy and per-layer angles of :func:`train_replicas`'s
    output as :func:`spread` s, and the mean trajectories."""
    final = {"test_accuracy": spread(run["test_accuracy"][:, -1]),
             "grad_angle": {k: spread(v[:, -1]) for k, v in run["grad_angle"].items()},
             "weight_angle": {k: spread(v[:, -1]) for k, v in run["weight_angle"].items()}}
    initial = {"grad_angle": {k: spread(v[:, 0]) for k, v in run["grad_angle"].items()},
               "weight_angle": {k: spread(v[:, 0]) for k, v in run["weight_angle"].items()}}
    curves = {"step": run["step"], "test_accuracy": run["test_accuracy"].mean(0),
              "train_loss": run["train_loss"].mean(0),
              "grad_angle": {k: v.mean(0) for k, v in run["grad_angle"].items()},
              "weight_angle": {k: v.mean(0) for k, v in run["weight_angle"].items()}}
    return {"final": final, "initial": initial, "curves": curves,
            "seconds": round(run["seconds"], 1)}


def task_record(task: Task) -> dict:
    """The task's fields as a JSON-able dict."""
    out = dataclasses.asdict(task)
    out["model_kwargs"] = dict(task.model_kwargs)
    out["optim"] = dict(task.optim)
    return out


def _seeds(quick: bool) -> tuple[int, ...]:
    return (0, 1) if quick else (0, 1, 2)
