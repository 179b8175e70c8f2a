"""The one entry point: ``python -m launch.run --config configs/X.py --workdir DIR``.

Any config field is overridable from the command line
(``--config.optim.lr=0.1``). On a multi-host cluster the SLURM and TPU-pod
wrappers in this folder start this same command on every host with
``--distributed``, which calls ``jax.distributed.initialize()`` (it reads the
coordinator address and process ids from the SLURM/TPU environment).
"""
import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, plots and checkpoints.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() first (multi-host runs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    # After flag parsing, so that --help is fast; neurojax before any JAX
    # backend starts, so that its XLA:CPU flags take effect (neurojax._xla_cpu_flags).
    import neurojax  # noqa: F401  pylint: disable=unused-import
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from neurojax.train import validate_config
    from neurojax.train.loop import train_and_evaluate

    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config = _CONFIG.value
    validate_config(config)  # fail on a bad field before anything is built
    workdir = _WORKDIR.value
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    print(f"JAX {jax.__version__} on {jax.device_count()} {jax.default_backend()} device(s), "
          f"process {jax.process_index() + 1}/{jax.process_count()}", flush=True)
    result = train_and_evaluate(config, workdir, progress=jax.process_index() == 0)
    summary = {"steps": result.num_steps, "seconds": round(result.seconds, 1),
               **{f"eval_{k}": round(v, 4) if isinstance(v, float) else v
                  for k, v in result.eval_metrics.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
