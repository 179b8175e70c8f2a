"""Per-stage memory of a layer-wise program (Oland 2024, Efficient Deep
Learning, Sec. 6.7: the largest stage's peak memory relative to end-to-end
backprop, about 30% in the thesis), from XLA's own accounting of each
compiled training step; used by ``colabs/layerwise.ipynb`` and re-exported
by ``neurojax.analysis.layerwise``. ``benchmarks/layerwise_memory.py``
measures the same quantity for VGG-13 and the small CNN at fixed settings.
"""
from __future__ import annotations

import jax

from neurojax.train import layerwise as lw


def compiled_bytes(compiled) -> int:
    """XLA's accounting of a compiled program: arguments + outputs - aliased
    + temporaries, in bytes (``compiled.memory_analysis()``)."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)


def stage_memory(config, *, data_dir: str = "") -> dict:
    """Peak memory of every stage's training step of a layer-wise ``config``
    and of the end-to-end step at the same batch (``config.dataset.batch_size``),
    from XLA's accounting of each compiled step (:func:`compiled_bytes`; the
    state donated, as the loop's calls do; nothing runs). A stage's arguments
    are the whole parameter tree, its trainable part's optimiser state and
    its batch (the cached feednet features of its input block, or raw
    images when the feednet is recomputed); with Random Robin's persistent
    states the other windows' optimiser states are not counted.

    Returns ``{"batch", "end_to_end_bytes", "stages": [{"name", "bytes",
    "argument_bytes"}], "ratio"}`` (``ratio``: the largest stage over the
    end-to-end step, the number of Oland 2024, Sec. 6.7)."""
    import jax.numpy as jnp
    import optax
    from neurojax import data as nj_data
    from neurojax.optim import make_optimizer
    from neurojax.train.program import Stage, stage_opt_state
    from neurojax.train.state import create_train_state
    from neurojax.train.step import make_mesh, model_objective, train_step_fn
    from neurojax.train.task import config_loss, get_task

    if config.get("task") != "layerwise":
        raise ValueError(f"config.task must be 'layerwise', got {config.get('task')!r}")
    info = nj_data.dataset_info(config.dataset.name, data_dir=data_dir or None)
    task = get_task("layerwise").build(config, info, make_mesh(), data_dir or None)
    spec = lw.spec_from_config(config)
    num_visits = len(lw.stage_visits(len(lw.stage_windows(
        task.model.num_blocks, spec.method, window=spec.window, step=spec.step)), spec.rounds))
    stages = task.stages(num_visits, None, data_on_device=True)
    batch = config.dataset.batch_size
    images = jax.ShapeDtypeStruct((batch,) + tuple(info.image_shape), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    sample = jnp.zeros((1,) + tuple(info.image_shape), jnp.float32)

    def measure(stage: Stage, init) -> tuple[int, int]:
        def build(rng):
            variables = dict(init(rng, sample))
            params = variables.pop("params")
            state = create_train_state(params, optax.identity(), model_state=variables,
                                       rng=rng)
            return state.replace(opt_state=stage_opt_state(stage, params))
        state = jax.eval_shape(build, jax.random.PRNGKey(0))
        data = {"image": images, "label": labels}
        if stage.inputs is not None:  # the stage trains on the cached feednet features
            data = jax.eval_shape(stage.inputs, state.params, state.model_state, data)
        step = jax.jit(train_step_fn(stage.objective, stage.tx, trainable=stage.trainable),
                       donate_argnums=0)
        compiled = step.lower(state, data).compile()
        return compiled_bytes(compiled), int(compiled.memory_analysis().argument_size_in_bytes)

    loss_fn, hyper = config_loss(config)
    end_to_end = Stage("end_to_end", 1, model_objective(task.model, loss_fn, **hyper),
                       make_optimizer(config.optim, 1))
    e2e, _ = measure(end_to_end, lambda rng, x: task.model.init(rng, x, train=False))
    rows = []
    for stage in stages:
        total, args = measure(stage, task.init)
        rows.append({"name": stage.name, "bytes": total, "argument_bytes": args})
    return {"batch": batch, "end_to_end_bytes": e2e, "stages": rows,
            "ratio": max(r["bytes"] for r in rows) / e2e}
