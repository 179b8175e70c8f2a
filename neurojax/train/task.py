"""What the training loop trains: a model, an objective and an evaluation.

``config.task`` picks a builder: ``'supervised'`` (the default) trains the
model on ``config.loss`` against labels; ``'ssl'`` (``neurojax.train.ssl``)
pretrains an encoder with a projector on views of unlabelled images and
evaluates the encoder with probes. The loop itself (steps, logging,
checkpoints, resumption) is the same for every task.
"""
import dataclasses
from typing import Callable, Optional

import flax.linen as nn

from neurojax import data as nj_data
from neurojax import losses, models
from neurojax.train.evaluation import eval_batches_per_process, evaluate
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


def eval_loader_fn(config, split: str, batch_size: int, data_dir) -> Callable:
    """A function returning a fresh single-pass, unshuffled loader of ``split``."""
    def make():
        return nj_data.load(config.dataset.name, split, batch_size=batch_size,
                            data_dir=data_dir, shuffle=False, num_epochs=1,
                            drop_remainder=False)
    return make


def build_model(config, num_classes: int) -> nn.Module:
    """The config's model, its output size defaulting to the dataset's classes."""
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    for field in ("num_classes", "num_outputs"):
        if field in models.model_kwargs(config.model.name):
            kwargs.setdefault(field, num_classes)
    try:
        return models.get_model(config.model.name, **kwargs)
    except ValueError as e:
        raise ValueError(f"config.model: {e}") from e


def supervised_task(config, info, mesh, data_dir) -> Task:
    """Supervised training with ``config.loss`` and exact eval-set means."""
    model = build_model(config, info.num_classes)
    loss_fn = losses.get_loss(config.loss.name)
    loss_hyper = {k: v for k, v in config.loss.items() if k != "name"}
    eval_step = make_eval_step(model, loss_fn, mesh=mesh)
    ds_cfg = config.dataset
    eval_split = ds_cfg.get("eval_split", "test")
    batch_size = ds_cfg.get("eval_batch_size", ds_cfg.batch_size)
    loader = eval_loader_fn(config, eval_split, batch_size, data_dir)
    num_batches = eval_batches_per_process(
        len(nj_data.data_source(ds_cfg.name, eval_split, data_dir)), batch_size)

    def evaluate_fn(state: TrainState) -> dict:
        return evaluate(eval_step, state, loader(), batch_size, mesh, num_batches=num_batches)

    return Task(model=model, objective=model_objective(model, loss_fn, **loss_hyper),
                evaluate=evaluate_fn)
