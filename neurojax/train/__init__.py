"""Train state, compiled data-parallel steps, training programs, the loop and logging."""
from neurojax.train import conservation as _conservation  # registers "record_conservation"
from neurojax.train.config import validate_config
from neurojax.train.program import Stage, WorkerSync, make_call, run_program
from neurojax.train.state import TrainState, create_train_state
from neurojax.train.step import (make_eval_step, make_mesh, make_train_step, model_objective,
                                 replicate, shard_batch, train_step_fn)
