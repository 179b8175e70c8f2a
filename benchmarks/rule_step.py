"""Step time of each learning rule over backprop's, in one run (issue 18's benchmark).

    python benchmarks/rule_step.py --json benchmarks/results/rule_step.json
    python benchmarks/rule_step.py --models=small_cnn --repeats=3      # quick

For each model, every rule of ``neurojax.rules.RULE_NAMES`` trains through
the library's own path: ``configs/credit_shapes.py`` with ``config.rule.name``
set (the small CNN on ``shapes_small`` at batch 128; ``resnet18``: ResNet-18
with the CIFAR stem on ``shapes``, 32x32, batch 64), the supervised task's
stage (the model with the rule's layers, ``rule_optimizer``'s
``multi_transform`` over W and B), one compiled step per call with the split
on the device, as the loop runs it on CPU. Each rule's step is compiled
first; then ``--repeats`` rounds each time one step of every rule in turn
(interleaved, so that drifting load on a shared machine affects all alike).
``weight_mirror_rademacher`` is the weight mirror with Rademacher noise
(``config.rule.noise_distribution``: the same E[x x^T], one random bit per
entry). Reported: the median seconds per step and its ratio to backprop's. Goals of
the issue: <= 1.3x for feedback alignment, sign symmetry and Kolen-Pollack,
<= 2x for the rules with local losses (weight mirror and Kunin et al.'s
alignment rules), which add a second pass through each layer for B's loss.
"""
import functools
import json
import os
import statistics
import sys
import time

from absl import app, flags

import jax
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import credit_shapes, supervised_shapes  # noqa: E402
from neurojax import data as nj_data  # noqa: E402
from neurojax.data import on_device  # noqa: E402
from neurojax.optim import make_optimizer  # noqa: E402
from neurojax.rules import RULE_NAMES  # noqa: E402
from neurojax.train.program import DeviceData, initial_opt_state, make_call  # noqa: E402
from neurojax.train.state import create_train_state  # noqa: E402
from neurojax.train.step import make_mesh, replicate  # noqa: E402
from neurojax.train.task import get_task  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["small_cnn", "resnet18"], "Rows: small_cnn, resnet18.")
# label -> (rule name, config.rule overrides): variants timed beside the rules
VARIANTS = {"weight_mirror_rademacher": ("weight_mirror", {"noise_distribution": "rademacher"})}
_RULES = flags.DEFINE_list("rules", [*RULE_NAMES, *VARIANTS],
                           "Rules (or VARIANTS labels) to time (backprop is always in).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds (median reported).")
_JSON = flags.DEFINE_string("json", "", "Optional path for the results as JSON.")

LOCAL_LOSS = ("weight_mirror", "symmetric_alignment", "activation_alignment",
              "information_alignment")


def rule_config(model: str, rule: str):
    name, overrides = VARIANTS.get(rule, (rule, {}))
    config = credit_shapes.get_config(name)
    config.rule.align_examples = 0
    for key, value in overrides.items():
        config.rule[key] = value
    if model == "resnet18":
        shapes = supervised_shapes.get_config("resnet18")
        config.model, config.dataset = shapes.model, shapes.dataset
        config.dataset.batch_size = 64
    elif model != "small_cnn":
        raise ValueError(f"--models must name small_cnn or resnet18, got {model!r}")
    return config


def compiled_step(model: str, rule: str, mesh):
    """The rule's compiled one-step call and its inputs."""
    config = rule_config(model, rule)
    info = nj_data.dataset_info(config.dataset.name)
    task = get_task("supervised").build(config, info, mesh, None)
    stages = task.stages(100, functools.partial(make_optimizer, config.optim),
                         data_on_device=True)
    arrays = replicate(on_device.load_split_arrays(config.dataset.name, "train"), mesh)
    data = DeviceData(arrays, config.dataset.batch_size)
    sample = np.zeros((1,) + tuple(info.image_shape), np.float32)
    variables = task.model.init(jax.random.PRNGKey(0), sample, train=False)
    params = variables.pop("params")
    state = create_train_state(params, optax.identity(), model_state=variables,
                               rng=jax.random.PRNGKey(1))
    state = replicate(state.replace(opt_state=initial_opt_state(stages, params)), mesh)
    key = replicate(jax.random.PRNGKey(2), mesh)
    call = make_call(stages[0], 1, mesh, device_data=data, donate=False)
    compiled = call.lower(state, arrays, key).compile()
    return compiled, (state, arrays, key)


def time_row(model: str, rules: list[str], repeats: int) -> dict:
    mesh = make_mesh()
    steps, compile_seconds = {}, {}
    for rule in rules:
        tic = time.perf_counter()
        steps[rule] = compiled_step(model, rule, mesh)
        fn, args = steps[rule]
        jax.block_until_ready(fn(*args))  # first execution, untimed
        compile_seconds[rule] = time.perf_counter() - tic
    seconds = {rule: [] for rule in rules}
    for _ in range(repeats):
        for rule in rules:
            fn, args = steps[rule]
            tic = time.perf_counter()
            jax.block_until_ready(fn(*args))
            seconds[rule].append(time.perf_counter() - tic)
    median = {rule: statistics.median(v) for rule, v in seconds.items()}
    row = {"seconds": seconds, "median_seconds": median, "compile_seconds": compile_seconds,
           "ratio": {rule: median[rule] / median["backprop"] for rule in rules},
           "load": os.getloadavg()[0]}
    print(f"\n{model} (seconds per step, median of {repeats}; ratio to backprop; goal)")
    for rule in rules:
        name = VARIANTS.get(rule, (rule,))[0]
        goal = "" if rule == "backprop" else ("<= 2" if name in LOCAL_LOSS else "<= 1.3")
        print(f"   {rule:<24} {median[rule]:8.4f}  {row['ratio'][rule]:5.2f}x  {goal}")
    return row


def main(argv):
    del argv
    rules = ["backprop"] + [r for r in _RULES.value if r != "backprop"]
    unknown = [r for r in rules if r not in RULE_NAMES and r not in VARIANTS]
    if unknown:
        raise app.UsageError(f"--rules: unknown {unknown}; known {[*RULE_NAMES, *VARIANTS]}")
    results = {"jax": jax.__version__, "devices": f"{jax.device_count()} {jax.default_backend()}",
               "cpu_count": os.cpu_count(), "repeats": _REPEATS.value, "rows": {}}
    for model in _MODELS.value:
        results["rows"][model] = time_row(model, rules, _REPEATS.value)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
