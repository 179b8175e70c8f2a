"""Learning rules without weight transport: issue 18's experiments on CPU.

Run (one PNG per part, and ``credit_assignment_{full,quick}.json`` with every
part's numbers):

    python -m neurojax.analysis.credit_assignment --outdir DIR [--quick] [--parts rules,depth]

The rules are ``neurojax.rules`` (``Rule``; the models' ``rule`` field builds
the layers whose backward pass sends the error through B), trained with
``neurojax.rules.rule_optimizer`` exactly as the supervised task does
(``neurojax.train.credit``: the forward chain of an optim block on W, the same
block on B without weight decay, with it for Kolen-Pollack). Seed replicas are
one ``vmap``: replica ``s`` draws its initial W (and B) and its batch order
from ``PRNGKey(s)``, the same for every rule, so differences with backprop are
paired by seed. The parts:

* ``rules``: test accuracy and, per layer, the angle between the rule's update
  and the true gradient (the backprop twin's, ``neurojax.train.credit.alignment_fn``)
  and between W and B (Lillicrap et al. 2016 Fig. 2; Akrout et al. 2019 Fig. 3),
  over training, for every variant of ``VARIANTS`` on the digits MLP and on a
  small CNN on the digits (the shapes CNN is too slow here: ``digits_cnn``); mean, spread (sample std) and per-seed values
  over 3 replicas, and each rule's paired difference from backprop.
* ``depth``: accuracy against depth (ReLU MLPs of width 64 on the digits) for
  backprop and feedback alignment: Kunin et al. 2020 ("Two routes to scalable credit assignment
  without weight symmetry", ICML, Sec. 5) find the local rules' gap to
  backprop widening with depth.
* ``transfer``: Kunin et al. 2020's claim (Sec. 4) that information
  alignment's metaparameters transfer across architectures better than the
  weight mirror's: a 2x2 grid per rule (``rate`` scaling every coefficient,
  ``decay`` scaling the decay primitive's) on two digits MLP depths, the best setting
  of each architecture tried on the other (the transfer regret).
* ``bias_variance`` (``neurojax.analysis.credit_assignment_bias``): each rule's
  minibatch gradient against the full-batch true gradient, as Ghosh et al.
  2023's bias and variance, and Lemma 2.1's predicted one-step excess loss
  against the measured one, on an MLP small enough for a dense Hessian.
* ``anchors``: biotorch's published CIFAR-10 ResNet-20 errors beside this
  run's orderings (no training of its own).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax import rules
from neurojax.analysis.outputs import jsonable, write_json
from neurojax.data.on_device import batch_indices, load_split_arrays
from neurojax.models import get_model
from neurojax.optim import make_optimizer
from neurojax.train.credit import alignment_fn, feedback_optim_block

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
PARTS = ("rules", "depth", "transfer", "bias_variance", "anchors")

# configs/credit_digits.py's optimiser (SGD, Nesterov 0.9, lr 0.05, L2 1e-3, cosine)
SGD = (("name", "sgd"), ("lr", 0.05), ("momentum", 0.9), ("nesterov", True),
       ("schedule", "cosine"), ("warmup_steps", 0), ("weight_decay", 1e-3),
       ("grad_clip_norm", 0.0), ("transforms", ()))

# biotorch (Sanfiz & Akrout 2021, github.com/jsalbert/biotorch, Benchmarks.md):
# CIFAR-10 ResNet-20 top-1 error (%); uSF = sign symmetry with a fixed scale,
# frSF = |B0| sign(W) (this library's 'sign_symmetry_random'); brSF (|B| redrawn
# every batch) is not implemented here.
BIOTORCH_CIFAR10_RESNET20 = {"backprop": 8.63, "feedback_alignment": 32.16, "uSF": 10.05,
                             "brSF": 11.02, "frSF": 11.2}
BIOTORCH_NAMES = {"backprop": "backprop", "feedback_alignment": "feedback_alignment",
                  "uSF": "sign_symmetry", "frSF": "sign_symmetry_random"}


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


def digits_cnn(steps: int = 880, records: int = 10) -> Task:
    """``small_cnn`` (conv 16, 32 + 64 hidden) on the 8x8 digits with the digits MLP's
    optimiser. (``configs/credit_shapes.py``'s CNN on ``shapes_small`` needs
    ~0.16 s a step even at a quarter of its widths on this 2-core machine under
    load, and reaches 25% after 600 steps: too slow for 9 rules x 3 seeds.)"""
    return Task("digits_cnn", "digits", "small_cnn",
                (("widths", (16, 32)), ("hidden", 64)), SGD, steps, 64, records)


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


def spread(values) -> dict:
    """``{'mean', 'std', 'per_seed'}`` of per-seed values (sample std, ddof=1;
    0 for one seed)."""
    v = np.asarray(values, np.float64)
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if v.size > 1 else 0.0,
            "per_seed": v.tolist()}


def paired_difference(values, reference) -> dict:
    """:func:`spread` of ``values - reference`` seed by seed (same init and batches)."""
    v, r = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    if v.shape != r.shape:
        raise ValueError(f"values and reference must have the same shape, got {v.shape} "
                         f"and {r.shape}")
    return spread(v - r)


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


# ----------------------------------------------------------------------------- parts


RULE_TASKS = ("digits_mlp", "digits_cnn")


def part_rules(*, quick: bool = False, tasks: Sequence[str] = RULE_TASKS,
               variants: Sequence[str] = tuple(VARIANTS)) -> dict:
    """``variants`` on the digits MLP and the digits CNN (440 steps = 20
    epochs), 3 seed replicas (2 with ``quick``); each variant's paired
    difference from backprop when backprop is among them (else
    :func:`merge_rules` adds it)."""
    bad = [t for t in tasks if t not in RULE_TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks must name some of {RULE_TASKS}, got {list(tasks)}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ValueError(f"variants must name some of {list(VARIANTS)}, got {list(variants)}")
    makers = {"digits_mlp": digits_mlp, "digits_cnn": digits_cnn}
    tasks = [makers[t](40, 2) if quick else makers[t](440, 10) for t in tasks]
    seeds = _seeds(quick)
    out = {"seeds": list(seeds), "tasks": {}}
    for task in tasks:
        rows = {}
        for variant in variants:
            run = train_replicas(task, variant_rule(variant), seeds)
            rows[variant] = summarize_run(run)
            print(f"rules/{task.name}/{variant}: test accuracy "
                  f"{rows[variant]['final']['test_accuracy']['mean']:.4f} "
                  f"+- {rows[variant]['final']['test_accuracy']['std']:.4f} "
                  f"({run['seconds']:.0f} s, loaded)", flush=True)
        out["tasks"][task.name] = {"task": task_record(task), "rules": rows}
    return _with_differences(out)


def _with_differences(result: dict) -> dict:
    """Adds each variant's ``accuracy_minus_backprop`` (paired by seed) where
    the task has a backprop row."""
    for block in result["tasks"].values():
        reference = block["rules"].get("backprop")
        if reference is None:
            continue
        ref = reference["final"]["test_accuracy"]["per_seed"]
        for row in block["rules"].values():
            row["accuracy_minus_backprop"] = paired_difference(
                row["final"]["test_accuracy"]["per_seed"], ref)
    return result


DEPTH_RULES = ("backprop", "feedback_alignment")


def part_depth(*, quick: bool = False) -> dict:
    """Accuracy against depth (ReLU MLPs of width 64 on the digits, 440 steps)
    for ``DEPTH_RULES``; each rule's paired gap to backprop per depth. (MLPs
    on ``shapes_small`` stay near chance, 13%, after 600 SGD steps.)"""
    depths = (1, 2) if quick else (1, 3, 6)
    seeds = _seeds(quick)
    out = {"seeds": list(seeds), "depths": list(depths), "rules": {r: {} for r in DEPTH_RULES},
           "tasks": {}}
    for depth in depths:
        task = digits_depth(depth, 20, 1) if quick else digits_depth(depth, 440, 2)
        out["tasks"][str(depth)] = task_record(task)
        finals = {r: train_replicas(task, variant_rule(r), seeds) for r in DEPTH_RULES}
        reference = finals["backprop"]["test_accuracy"][:, -1]
        for r, run in finals.items():
            acc = run["test_accuracy"][:, -1]
            out["rules"][r][str(depth)] = {
                "test_accuracy": spread(acc),
                "gap_to_backprop": paired_difference(reference, acc),
                "grad_angle_all": spread(run["grad_angle"]["all"][:, -1]),
                "seconds": round(run["seconds"], 1)}
            print(f"depth/{depth}/{r}: {spread(acc)['mean']:.4f}", flush=True)
    shallow, deep = str(depths[0]), str(depths[-1])
    out["gap_growth"] = {r: paired_difference(
        out["rules"][r][deep]["gap_to_backprop"]["per_seed"],
        out["rules"][r][shallow]["gap_to_backprop"]["per_seed"]) for r in DEPTH_RULES[1:]}
    return out


TRANSFER_RULES = ("weight_mirror", "information_alignment")
TRANSFER_RATES = (1.0, 100.0)
TRANSFER_DECAYS = (0.25, 4.0)
# the coefficient of each rule's decay primitive (neurojax.rules.alignment)
DECAY_COEFFICIENT = {"weight_mirror": "alpha", "information_alignment": "gamma"}


def transfer_grid(name: str, rates: Sequence[float] = TRANSFER_RATES,
                  decays: Sequence[float] = TRANSFER_DECAYS) -> list[tuple[str, dict]]:
    """``[(label, metaparameters)]``: the rule's defaults with every coefficient
    times ``rate`` and the decay primitive's coefficient times ``decay`` too."""
    if name not in DECAY_COEFFICIENT:
        raise ValueError(f"name must be one of {list(DECAY_COEFFICIENT)}, got {name!r}")
    defaults = rules.rule_metaparameters(name)
    grid = []
    for rate in rates:
        for decay in decays:
            coeffs = {k: defaults[k] * rate for k in ("alpha", "beta", "gamma") if k in defaults}
            coeffs[DECAY_COEFFICIENT[name]] *= decay
            grid.append((f"rate={rate:g},decay={decay:g}", coeffs))
    return grid


def transfer_regret(acc_a: Mapping[str, float], acc_b: Mapping[str, float]) -> dict:
    """Each architecture's best setting tried on the other: ``{'best_a',
    'best_b', 'a_to_b', 'b_to_a'}`` with ``a_to_b = max acc_b - acc_b[best_a]``
    (accuracy lost by taking A's best setting to B)."""
    if set(acc_a) != set(acc_b) or not acc_a:
        raise ValueError("acc_a and acc_b must score the same non-empty set of settings")
    best_a, best_b = max(acc_a, key=acc_a.get), max(acc_b, key=acc_b.get)
    return {"best_a": best_a, "best_b": best_b,
            "a_to_b": acc_b[best_b] - acc_b[best_a], "b_to_a": acc_a[best_a] - acc_a[best_b]}


def part_transfer(*, quick: bool = False, rules_: Sequence[str] = TRANSFER_RULES,
                  archs: Sequence[str] = ("A", "B")) -> dict:
    """Kunin et al. 2020's transfer claim: ``transfer_grid`` per rule of
    ``TRANSFER_RULES`` on digits MLPs (width 64) of depth 1 (A) and 4 (B), 440
    steps, 2 seeds. ``rules_`` and ``archs`` select a share of the grid (runs
    split across processes; :func:`merge_transfer` joins them)."""
    seeds = (0,) if quick else (0, 1)
    tasks = ({"A": digits_depth(1, 20, 1), "B": digits_depth(2, 20, 1)} if quick
             else {"A": digits_depth(1, 440, 1), "B": digits_depth(4, 440, 1)})
    if not set(archs) <= set(tasks) or not archs or not set(rules_) <= set(TRANSFER_RULES):
        raise ValueError(f"archs must be some of {list(tasks)} and rules_ some of "
                         f"{list(TRANSFER_RULES)}, got {list(archs)} and {list(rules_)}")
    rates, decays = ((1.0, 100.0), (1.0,)) if quick else (TRANSFER_RATES, TRANSFER_DECAYS)
    out = {"seeds": list(seeds), "architectures": {k: task_record(t) for k, t in tasks.items()},
           "rates": list(rates), "decays": list(decays), "rules": {}}
    for name in rules_:
        cells = {}
        for arch in archs:
            cells[arch] = {}
            for label, coeffs in transfer_grid(name, rates, decays):
                run = train_replicas(tasks[arch], variant_rule(name, **coeffs), seeds)
                cells[arch][label] = {"metaparameters": coeffs,
                                      "test_accuracy": spread(run["test_accuracy"][:, -1])}
                print(f"transfer/{name}/{arch}/{label}: "
                      f"{cells[arch][label]['test_accuracy']['mean']:.4f}", flush=True)
        out["rules"][name] = {"cells": cells}
    return _transfer_summary(out)


def _transfer_summary(out: dict) -> dict:
    """Adds the regret and accuracy range of every rule with both architectures,
    and the verdict when both rules have them."""
    complete = []
    for name, block in out["rules"].items():
        if set(block["cells"]) != {"A", "B"}:
            continue
        means = {arch: {k: v["test_accuracy"]["mean"] for k, v in c.items()}
                 for arch, c in block["cells"].items()}
        block["regret"] = transfer_regret(means["A"], means["B"])
        block["range"] = {arch: max(m.values()) - min(m.values()) for arch, m in means.items()}
        complete.append(name)
    if set(complete) == set(TRANSFER_RULES):
        regrets = {n: out["rules"][n]["regret"]["a_to_b"] + out["rules"][n]["regret"]["b_to_a"]
                   for n in TRANSFER_RULES}
        out["summary"] = {"total_regret": regrets,
                          "information_alignment_transfers_better":
                              regrets["information_alignment"] < regrets["weight_mirror"]}
    return out


def merge_transfer(results: Sequence[Mapping[str, Any]]) -> dict:
    """One 'transfer' result from shares of the grid (same seeds and grid)."""
    keys = {(tuple(r["seeds"]), tuple(r["rates"]), tuple(r["decays"])) for r in results}
    if len(keys) != 1:
        raise ValueError(f"results must share seeds, rates and decays, got {sorted(keys)}")
    out = {k: copy.deepcopy(results[0][k]) for k in ("seeds", "architectures", "rates",
                                                     "decays")}
    out["rules"] = {}
    for r in results:
        for name, block in r["rules"].items():
            cells = out["rules"].setdefault(name, {"cells": {}})["cells"]
            clash = set(cells) & set(block["cells"])
            if clash:
                raise ValueError(f"results must not repeat an architecture of a rule, got "
                                 f"{sorted(clash)} of {name!r} twice")
            cells.update(copy.deepcopy(block["cells"]))
    return _transfer_summary(out)


def _se(per_seed: Sequence[float]) -> float:
    v = np.asarray(per_seed, np.float64)
    return float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0


def anchors(rules_result: Mapping[str, Any]) -> dict:
    """biotorch's CIFAR-10 ResNet-20 errors beside this run's (``part_rules``'
    output): for each pair that biotorch orders (lower error first), whether
    this run orders it the same way, and whether the paired accuracy
    difference is resolved (|mean| > 2 standard errors over seeds)."""
    order = sorted(BIOTORCH_NAMES, key=BIOTORCH_CIFAR10_RESNET20.get)
    out = {"biotorch_cifar10_resnet20_top1_error": dict(BIOTORCH_CIFAR10_RESNET20),
           "biotorch_names": dict(BIOTORCH_NAMES), "tasks": {}}
    for task, block in rules_result["tasks"].items():
        finals = {b: block["rules"][v]["final"]["test_accuracy"]
                  for b, v in BIOTORCH_NAMES.items()}
        errors = {b: 100.0 * (1.0 - f["mean"]) for b, f in finals.items()}
        pairs = []
        for i, a in enumerate(order):
            for b in order[i + 1:]:
                diff = np.asarray(finals[a]["per_seed"]) - np.asarray(finals[b]["per_seed"])
                mean, se = float(diff.mean()), _se(diff)
                pairs.append({"better_in_biotorch": a, "worse_in_biotorch": b,
                              "accuracy_difference": mean, "standard_error": se,
                              "same_order": mean > 0, "resolved": abs(mean) > 2 * se})
        out["tasks"][task] = {"top1_error": errors,
                              "order": sorted(errors, key=errors.get), "pairs": pairs}
    out["biotorch_order"] = order
    return out


def part_bias_variance(*, quick: bool = False) -> dict:
    from neurojax.analysis.credit_assignment_bias import run as run_bias_variance
    return run_bias_variance(quick=quick)


PART_FUNCTIONS = {"rules": part_rules, "depth": part_depth, "transfer": part_transfer,
                  "bias_variance": part_bias_variance}


def plot_part(part: str, result: Mapping[str, Any], outdir: str) -> Optional[str]:
    """Draws ``credit_<part>.png`` from a part's result (or its JSON); None for
    'anchors', which has no figure. Returns the path."""
    from neurojax.analysis import credit_assignment_figures as figures
    plots = {"rules": figures.plot_rules, "depth": figures.plot_depth,
             "transfer": figures.plot_transfer, "bias_variance": figures.plot_bias_variance}
    if part not in plots:
        return None
    path = os.path.join(outdir, f"credit_{part}.png")
    plots[part](result, path)
    return path


def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    """``parts`` as a tuple; ``ValueError`` naming the known ones otherwise."""
    parts = tuple(parts)
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts or len(set(parts)) != len(parts):
        raise ValueError(f"parts must be a non-empty list of distinct names from "
                         f"{list(PARTS)}, got {list(parts)}")
    return parts


def run(outdir: str, *, quick: bool = False, parts: Sequence[str] = PARTS,
        rules_tasks: Sequence[str] = RULE_TASKS,
        rules_variants: Sequence[str] = tuple(VARIANTS),
        transfer_rules: Sequence[str] = TRANSFER_RULES,
        transfer_archs: Sequence[str] = ("A", "B")) -> dict:
    """Runs ``parts`` into ``outdir``: each writes ``credit_<part>[_quick].json``
    as soon as it ends, then ``credit_<part>.png`` (not 'anchors'); then
    ``credit_assignment_{full,quick}.json`` holds every part run now, its
    seconds (wall clock, under whatever load the machine had) and the command.
    'anchors' reads the 'rules' part of this run, or ``credit_rules.json`` in
    ``outdir`` when 'rules' is not among ``parts``. ``rules_tasks``: the
    'rules' part's tasks."""
    parts = check_parts(parts)
    os.makedirs(outdir, exist_ok=True)
    suffix = "_quick" if quick else ""
    results: dict = {"quick": quick, "parts": {}, "seconds": {}}
    for part in parts:
        tic = time.time()
        if part == "anchors":
            source = results["parts"].get("rules")
            if source is None:
                source = read_part(outdir, "rules", quick=quick)
            results["parts"][part] = anchors(source)
        elif part == "rules":
            results["parts"][part] = part_rules(quick=quick, tasks=tuple(rules_tasks),
                                                variants=tuple(rules_variants))
        elif part == "transfer":
            results["parts"][part] = part_transfer(quick=quick, rules_=tuple(transfer_rules),
                                                   archs=tuple(transfer_archs))
        else:
            results["parts"][part] = PART_FUNCTIONS[part](quick=quick)
        results["seconds"][part] = round(time.time() - tic, 1)
        results["parts"][part] = jsonable(results["parts"][part])
        write_json(results["parts"][part], os.path.join(outdir, f"credit_{part}{suffix}.json"),
                   digits=6)
        plot_part(part, results["parts"][part], outdir)
        print(f"{part}: {results['seconds'][part]} s", flush=True)
    results["command"] = ("python -m neurojax.analysis.credit_assignment --outdir DIR"
                          + (" --quick" if quick else "") + f" --parts {','.join(parts)}"
                          + ("" if tuple(rules_tasks) == RULE_TASKS or "rules" not in parts
                             else f" --rules_tasks {','.join(rules_tasks)}")
                          + ("" if tuple(rules_variants) == tuple(VARIANTS) or "rules" not in parts
                             else f" --rules_variants {','.join(rules_variants)}")
                          + ("" if "transfer" not in parts else
                             f" --transfer_rules {','.join(transfer_rules)}"
                             f" --transfer_archs {','.join(transfer_archs)}"))
    results["devices"] = str(jax.devices()[0].platform)
    results["load_average"] = os.getloadavg()[0]
    name = "quick" if quick else "full"
    write_json(results, os.path.join(outdir, f"credit_assignment_{name}.json"), digits=6)
    return results


def read_part(outdir: str, part: str, *, quick: bool = False) -> dict:
    """A part's result from ``credit_<part>[_quick].json`` in ``outdir``."""
    path = os.path.join(outdir, f"credit_{part}{'_quick' if quick else ''}.json")
    if not os.path.isfile(path):
        raise ValueError(f"no result of part {part!r}: {path} does not exist")
    with open(path) as fh:
        return json.load(fh)


def merge_rules(results: Sequence[Mapping[str, Any]]) -> dict:
    """One 'rules' result from several (runs split across processes by task or
    by variant): the same seeds, no variant of a task twice; the paired
    differences from backprop are recomputed."""
    seeds = {tuple(r["seeds"]) for r in results}
    if len(seeds) != 1:
        raise ValueError(f"results must share their seeds, got {sorted(seeds)}")
    tasks: dict = {}
    for r in results:
        for name, block in r["tasks"].items():
            into = tasks.setdefault(name, {"task": block["task"], "rules": {}})
            clash = set(into["rules"]) & set(block["rules"])
            if clash:
                raise ValueError(f"results must not repeat a variant of a task, got "
                                 f"{sorted(clash)} of {name!r} twice")
            into["rules"].update(copy.deepcopy(block["rules"]))
    order = {v: i for i, v in enumerate(VARIANTS)}
    for block in tasks.values():
        block["rules"] = dict(sorted(block["rules"].items(), key=lambda kv: order[kv[0]]))
    return _with_differences({"seeds": list(seeds.pop()), "tasks": tasks})


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    try:
        parts = check_parts(f.parts)
    except ValueError as e:
        raise app.UsageError(str(e))
    run(f.outdir, quick=f.quick, parts=parts, rules_tasks=f.rules_tasks,
        rules_variants=f.rules_variants, transfer_rules=f.transfer_rules,
        transfer_archs=f.transfer_archs)


def _define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("outdir", None, "Where the PNGs and credit_assignment_*.json go.")
    flags.DEFINE_bool("quick", False, "CI size (seconds per part; numbers not meaningful).")
    flags.DEFINE_list("parts", list(PARTS), f"Which parts, comma-separated: {list(PARTS)}.")
    flags.DEFINE_list("rules_tasks", list(RULE_TASKS), f"Part 'rules': which of {RULE_TASKS}.")
    flags.DEFINE_list("rules_variants", list(VARIANTS), "Part 'rules': which rule variants.")
    flags.DEFINE_list("transfer_rules", list(TRANSFER_RULES), "Part 'transfer': which rules.")
    flags.DEFINE_list("transfer_archs", ["A", "B"], "Part 'transfer': which architectures.")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
