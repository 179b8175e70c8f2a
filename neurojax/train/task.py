"""What the training loop trains: a model, an objective and an evaluation.

``config.task`` names a registered task: ``'supervised'`` (the default,
here) trains the model on ``config.loss`` against labels; ``'ssl'``
(``neurojax.train.ssl``) pretrains an encoder with a projector on views of
unlabelled images and evaluates the encoder with probes. Each task registers,
in its own module, its builder, the validation of its own config blocks and
the module a run of it trains (:func:`register_task`); the loop itself
(steps, logging, checkpoints, resumption) and ``neurojax.train.config`` (the
common blocks) are the same for every task.
"""
import dataclasses
import functools
import importlib
from typing import Callable, Optional

import flax.linen as nn
import jax
import optax

from neurojax import data as nj_data
from neurojax import losses, models
from neurojax.optim import pruning
from neurojax.train import augmentation, credit, filters
from neurojax.train.evaluation import eval_batches_per_process, evaluate
from neurojax.train.program import Stage
from neurojax.train.pruning import pruning_masks
from neurojax.train.state import TrainState
from neurojax.train.step import Objective, make_eval_step, model_objective


@dataclasses.dataclass
class Task:
    """model: initialised on one example; objective: what the step
    differentiates; evaluate(state) -> scalars logged as 'eval';
    summarize(eval_records) -> scalars added to the final evaluation (e.g.
    the time to reach an accuracy), or None."""
    model: nn.Module
    objective: Objective
    evaluate: Callable[[TrainState], dict]
    summarize: Optional[Callable[[list[dict]], dict]] = None
    # (num_steps, make_optimizer, *, data_on_device) -> [Stage, ...]; None: one
    # stage training every parameter on `objective` with config.optim
    stages: Optional[Callable] = None
    # (rng, sample) -> variables of the trained tree; None: model.init(rng,
    # sample, train=False). A layer-wise task adds its decision heads here.
    init: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task: ``build(config, info, mesh, data_dir) -> Task``;
    ``validate(config)`` raises ``ValueError`` naming a bad field of the
    task's own blocks (called before anything loads); ``model(config, info)``
    is the module a run of the task trains (no parameters)."""
    build: Callable[..., Task]
    validate: Callable[[object], None]
    model: Callable[..., nn.Module]


_TASKS: dict[str, TaskSpec] = {}
# built-in tasks living in other modules, imported when first asked for
_TASK_MODULES = {"ssl": "neurojax.train.ssl", "layerwise": "neurojax.train.layerwise"}


def register_task(name: str, *, build: Callable[..., Task], validate: Callable,
                  model: Callable[..., nn.Module]) -> None:
    """Makes ``config.task = name`` run ``build``; see :class:`TaskSpec`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty str, got {name!r}")
    _TASKS[name] = TaskSpec(build=build, validate=validate, model=model)


def task_names() -> tuple[str, ...]:
    return tuple(sorted(set(_TASKS) | set(_TASK_MODULES)))


def get_task(name) -> TaskSpec:
    """The registered task ``name``; ``ValueError`` naming ``config.task``."""
    if name not in _TASKS and name in _TASK_MODULES:
        importlib.import_module(_TASK_MODULES[name])
    if name not in _TASKS:
        raise ValueError(f"config.task must be one of {task_names()}, got {name!r}")
    return _TASKS[name]


def eval_loader_fn(config, split: str, batch_size: int, data_dir) -> Callable:
    """A function returning a fresh single-pass, unshuffled loader of ``split``."""
    def make():
        return nj_data.load(config.dataset.name, split, batch_size=batch_size,
                            data_dir=data_dir, shuffle=False, num_epochs=1,
                            drop_remainder=False)
    return make


def split_evaluator(config, split: str, data_dir, mesh) -> Callable:
    """``run(eval_step, state) -> means`` over one pass of ``split`` at the
    config's eval batch size (exact means, ``evaluate``)."""
    batch_size = config.dataset.get("eval_batch_size", config.dataset.batch_size)
    loader = eval_loader_fn(config, split, batch_size, data_dir)
    num_batches = eval_batches_per_process(
        len(nj_data.data_source(config.dataset.name, split, data_dir)), batch_size)

    def run(eval_step, state: TrainState) -> dict:
        return evaluate(eval_step, state, loader(), batch_size, mesh, num_batches=num_batches)
    return run


def config_loss(config) -> tuple[Callable, dict]:
    """``(loss_fn, hyperparameters)`` of ``config.loss``."""
    return (losses.get_loss(config.loss.name),
            {k: v for k, v in config.loss.items() if k != "name"})


def build_model(config, num_classes: int, *, backprop: bool = False) -> nn.Module:
    """The config's model, its output size defaulting to the dataset's classes,
    learning with ``config.rule`` when the config has one (``backprop=True``:
    its backprop twin, the same model with rule='backprop')."""
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    rule = None if backprop else credit.config_rule(config)
    if rule is not None:
        kwargs["rule"] = credit.model_rule(rule)
    for field in ("num_classes", "num_outputs"):
        if field in models.model_kwargs(config.model.name):
            kwargs.setdefault(field, num_classes)
    try:
        return models.get_model(config.model.name, **kwargs)
    except ValueError as e:
        raise ValueError(f"config.model: {e}") from e


def supervised_task(config, info, mesh, data_dir) -> Task:
    """Supervised training with ``config.loss`` and exact eval-set means (the
    eval loss with the same hyperparameters as the training loss). With
    ``config.augment.recipe`` the step trains on one view per image drawn
    from its rng, and the evaluations (eval split, alignment angles, pruning
    scores) see the un-augmented images as the recipe presents them
    (``neurojax.train.augmentation``)."""
    model = build_model(config, info.num_classes)
    loss_fn, loss_hyper = config_loss(config)
    recipe = augmentation.config_recipe(config, int(info.image_shape[0]))
    forward = None
    if recipe is not None:
        inputs = augmentation.eval_inputs_fn(recipe)
        forward = lambda variables, x: model.apply(variables, inputs(x), train=False)
    eval_step = make_eval_step(model, functools.partial(loss_fn, **loss_hyper), mesh=mesh,
                               forward=forward)
    run_eval = split_evaluator(config, config.dataset.get("eval_split", "test"), data_dir, mesh)

    flt = filters.config_filter(config, info, data_dir)   # config.data_filter
    objective = (model_objective(model, loss_fn, **loss_hyper) if flt is None
                 else filters.filtered_model_objective(model, loss_fn, flt, **loss_hyper))
    rule = credit.config_rule(config)
    align = None
    if rule is not None:  # config.rule: B's optimiser and the alignment metrics
        twin = model_objective(build_model(config, info.num_classes, backprop=True), loss_fn,
                               **loss_hyper)
        pair = (objective, twin) if recipe is None else tuple(
            augmentation.eval_inputs_objective(o, recipe) for o in (objective, twin))
        align = credit.alignment_evaluator(config, rule, *pair, data_dir)
    init = None
    if recipe is not None:
        objective = augmentation.augmented_objective(objective, recipe)
        if recipe.out_size != int(info.image_shape[0]):
            init = augmentation.augment_model_init(model, recipe)

    def evaluate_fn(state: TrainState) -> dict:
        metrics = run_eval(eval_step, state)
        return metrics if align is None else {**metrics, **align(state)}

    task = Task(model=model, objective=objective, evaluate=evaluate_fn, init=init,
                stages=None if rule is None else credit.rule_stages(config, rule, objective))
    return task if not config.get("prune") else pruned_task(config, task, data_dir)


def pruned_task(config, task: Task, data_dir) -> Task:
    """``task`` pruned at initialisation as ``config.prune`` says
    (``neurojax.train.pruning``; Tanaka et al. 2020): its ``init`` computes
    the masks from the initial parameters (SNIP/GraSP on
    ``examples_per_class`` x classes training examples, drawn with
    ``config.seed``) and zeroes the pruned entries; every stage's optimiser
    is followed by ``mask_updates``, which keeps them zero (and reads the
    masks from the pruned parameters, so seed replicas keep their own)."""
    cfg = config.prune
    pruning.validate_prune_config(cfg)
    prunable = cfg.get("prunable", pruning.DEFAULT_PRUNABLE)
    kwargs = {k: cfg[k] for k in ("iterations", "schedule", "temperature", "dtype") if k in cfg}
    batch = None
    if cfg.method in ("snip", "grasp"):
        info = nj_data.dataset_info(config.dataset.name, data_dir=data_dir)
        size = cfg.get("examples_per_class", pruning.EXAMPLES_PER_CLASS) * info.num_classes
        batch = next(iter(nj_data.load(config.dataset.name, config.dataset.get(
            "train_split", "train"), batch_size=size, data_dir=data_dir, seed=config.seed,
            shuffle=True, num_epochs=1, drop_remainder=False)))
        batch = {k: v for k, v in batch.items() if k in ("image", "label")}
    recipe = augmentation.config_recipe(config, int(nj_data.dataset_info(
        config.dataset.name, data_dir=data_dir).image_shape[0])) if config.get("augment") else None
    inputs = (lambda x: x) if recipe is None else augmentation.eval_inputs_fn(recipe)
    if batch is not None:  # scored on the images as the model sees them
        batch["image"] = inputs(batch["image"])
    loss_fn, loss_hyper = config_loss(config)
    model = task.model

    def init(rng, sample):
        variables = (task.init(rng, sample) if task.init is not None
                     else model.init(rng, sample, train=False))
        params, rest = variables["params"], {k: v for k, v in variables.items()
                                             if k != "params"}
        masks = pruning_masks(
            cfg.method, params, compression=cfg.compression, prunable=prunable,
            apply_fn=lambda v, x: model.apply(v, x, train=False), model_state=rest,
            input_shape=inputs(sample).shape[1:], batch=batch,
            loss=lambda out, b: loss_fn(out, b, **loss_hyper)[0],
            key=jax.random.fold_in(rng, 0x5EED), **kwargs)
        return {**variables, "params": pruning.apply_masks(params, masks)}

    def stages(num_steps, make_optimizer, *, data_on_device):
        inner = (task.stages(num_steps, make_optimizer, data_on_device=data_on_device)
                 if task.stages is not None
                 else [Stage("train", num_steps, task.objective, make_optimizer(num_steps))])
        return [dataclasses.replace(s, tx=optax.chain(s.tx, pruning.mask_updates(prunable=prunable)))
                for s in inner]

    return dataclasses.replace(task, init=init, stages=stages)


def _validate_supervised(config) -> None:
    if config.loss.get("name") not in losses.LOSSES:
        raise ValueError(f"config.loss.name must be one of {sorted(losses.LOSSES)}, "
                         f"got {config.loss.get('name')!r}")
    credit.validate_rule_config(config)
    augmentation.validate_augment_config(config)
    if config.get("prune"):
        pruning.validate_prune_config(config.prune)


def _supervised_model(config, info) -> nn.Module:
    return build_model(config, info.num_classes)


register_task("supervised", build=supervised_task, validate=_validate_supervised,
              model=_supervised_model)
