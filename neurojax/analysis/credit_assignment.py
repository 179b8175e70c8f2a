"""Learning rules without weight transport: issue 18's experiments on CPU.

Run (one PNG per part, and ``credit_assignment_{full,quick}.json`` with every
part's numbers):

    python -m neurojax.analysis.credit_assignment --outdir DIR [--quick] [--parts rules,depth]

The rules are ``neurojax.rules`` (``Rule``; the models' ``rule`` field builds
the layers whose backward pass sends the error through B), trained with
``neurojax.rules.rule_optimizer`` exactly as the supervised task does
(``neurojax.train.credit``: the forward chain of an optim block on W, the same
block on B without weight decay, with it for Kolen-Pollack), by
``neurojax.analysis.credit_assignment_runs``: seed replicas are one ``vmap``;
replica ``s`` draws its initial W (and B) and its batch order from
``PRNGKey(s)``, the same for every rule, so differences with backprop are
paired by seed. Parts can be split across processes (``--rules_tasks``,
``--rules_variants``, ``--transfer_rules``, ``--transfer_archs``) and their
results joined (``merge_rules``, ``merge_transfer``). The parts:

* ``rules``: test accuracy and, per layer, the angle between the rule's update
  and the true gradient (the backprop twin's, ``neurojax.train.credit.alignment_fn``)
  and between W and B (Lillicrap et al. 2016 Fig. 2; Akrout et al. 2019 Fig. 3),
  over training, for every variant of ``VARIANTS`` on the digits MLP, a small
  CNN on the digits and the same CNN on the shapes (``digits_mlp``,
  ``digits_cnn``, ``shapes_cnn``); mean, spread (sample std) and per-seed
  values over 3 replicas, and each rule's paired difference from backprop.
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
import json
import os
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from neurojax import rules
from neurojax.analysis.credit_assignment_runs import (
    VARIANTS, _seeds, digits_cnn, digits_depth, digits_mlp, paired_difference, shapes_cnn,
    spread,
    summarize_run, task_record, train_replicas, variant_rule)
from neurojax.analysis import outputs
from neurojax.analysis.outputs import jsonable, write_json

PARTS = ("rules", "depth", "transfer", "bias_variance", "anchors")

# biotorch (Sanfiz & Akrout 2021, github.com/jsalbert/biotorch, Benchmarks.md):
# CIFAR-10 ResNet-20 top-1 error (%); uSF = sign symmetry with a fixed scale,
# frSF = |B0| sign(W) (this library's 'sign_symmetry_random'); brSF (|B| redrawn
# every batch) is not implemented here.
BIOTORCH_CIFAR10_RESNET20 = {"backprop": 8.63, "feedback_alignment": 32.16, "uSF": 10.05,
                             "brSF": 11.02, "frSF": 11.2}
BIOTORCH_NAMES = {"backprop": "backprop", "feedback_alignment": "feedback_alignment",
                  "uSF": "sign_symmetry", "frSF": "sign_symmetry_random"}



# ----------------------------------------------------------------------------- parts


RULE_TASKS = ("digits_mlp", "digits_cnn", "shapes_cnn")
# each task's full run: (steps, records); quick runs take (40, 2)
RULE_TASK_SIZES = {"digits_mlp": (440, 10), "digits_cnn": (440, 10), "shapes_cnn": (3000, 10)}


def part_rules(*, quick: bool = False, tasks: Sequence[str] = RULE_TASKS,
               variants: Sequence[str] = tuple(VARIANTS)) -> dict:
    """``variants`` on the digits MLP and the digits CNN (440 steps = 20
    epochs) and the shapes CNN (3,000 steps = 19 epochs), 3 seed replicas (2 with ``quick``); each variant's paired
    difference from backprop when backprop is among them (else
    :func:`merge_rules` adds it)."""
    bad = [t for t in tasks if t not in RULE_TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks must name some of {RULE_TASKS}, got {list(tasks)}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ValueError(f"variants must name some of {list(VARIANTS)}, got {list(variants)}")
    makers = {"digits_mlp": digits_mlp, "digits_cnn": digits_cnn, "shapes_cnn": shapes_cnn}
    tasks = [makers[t](*((40, 2) if quick else RULE_TASK_SIZES[t])) for t in tasks]
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
    return outputs.check_parts(parts, PARTS)


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
