"""Layer-wise training as a program of stages (Oland 2024, Efficient Deep
Learning, ch. 6).

Deep layer-wise learning (DLL, Algorithm 3) trains a k-layer network one
block at a time: for block i (bottom-up) it trains (block i, a fresh
decision head) on the output of the frozen *feednet* (blocks below i), then
moves on; the last stage trains the last block with the network's own top.
Here every stage is a :class:`neurojax.train.program.Stage` whose trainable
part is the window's blocks and its head, so each stage is one compiled
``lax.scan`` over its steps and the loop walks the stages (resumption,
logging, seed replicas and evaluation are the loop's).

The model protocol. A model trains layer-wise when its ``__call__`` takes
``start`` and ``stop`` block indices (``x`` is then the output of block
``start - 1``, or the input when ``start == 0``; the result is the output
of block ``stop - 1``, or the logits when ``stop is None``) and it has a
``num_blocks`` attribute: the blocks below the top (parameter-free layers
such as pooling belong to the parameter layer before them, Sec. 6.2). The
top (e.g. global pooling and the classifier) is block ``num_blocks``.

Windows (:func:`stage_windows`):

* ``'dll'``: one block per stage, bottom-up (Algorithm 3).
* ``'segment'``: deep segment-wise learning (Sec. 6.5): ``window``
  consecutive blocks per stage, the window moving by ``step`` blocks
  (overlap ``window - step``; Fig. 6.2 uses ``step = 1``). Overlapping
  blocks continue from their current weights (the thesis does not say; this
  is the reading that keeps what was learnt).
* ``'partition'``: deep partition-wise learning (Sec. 6.9): disjoint
  windows of ``window`` blocks; the thesis scales learning rate and weight
  decay of partition i by 0.5^i (``lr_factor = wd_factor = 0.5``).

A window ending at ``num_blocks`` trains the model's own top as its head;
every other window gets a decision head (``neurojax.models.heads``) whose
parameters live under ``params['layerwise_heads']['head_{stop}']`` beside
the model's own, so the assembled tree is the ordinary model's (plus the
heads, which ``model.apply`` ignores) and the loop's evaluation, the probes
and the spectrum monitor apply to it unchanged.

The feednet keeps no activations, gradients or optimiser state: the stage
differentiates only its trainable part, so nothing below ``start`` is kept
for a backward pass. Its output is either computed once per example at the
stage's start and held on the device (``cache_features``; the stage's
training split is then the features, see ``Stage.inputs``) or recomputed
in every step's forward pass (in evaluation mode, under ``stop_gradient``),
which is what augmentation or data that do not fit on the device need.
BatchNorm layers of the feednet use their running statistics.

The stage's forward pass (feednet, window, heads), forward (input) dropout
decaying as ``p0 * 0.95**epoch``, backward (gradient) dropout and feature
checkpoints are in ``neurojax.train.layerwise_forward`` (every name there is
re-exported here). In a program, a feature checkpoint at block boundary
``checkpoint_block = j`` holds ``Z_j`` (the output of blocks ``[0, j)``)
for every example on the device, in ``checkpoint_dtype``, as the training
split of each stage above ``j`` (computed when the stage starts, so it is
refreshed at every visit under Random Robin), and the stage recomputes only
the cropped feednet ``[j, start)`` in its step; stages at or below ``j``
are as without it.

Random Robin (Sec. 6.6, Algorithm 4): ``rounds`` passes over the windows,
each window visited once per round (in a fresh random order every round
with ``random_order``, drawn from the config's seed; bottom-up otherwise,
the "sequential round robin" of DPL, Sec. 6.9). Every window keeps its own
optimiser state from one visit to the next (an optimiser slot of
``neurojax.train.program``: the extra memory Algorithm 4 accepts), and
its schedule runs over the window's steps in all its visits. The feednet
is recomputed at each visit, so upper blocks see the lower ones change.
``rounds = 1`` without ``random_order`` is Algorithm 3.

Per-stage schedules (Sec. 6.8): stage i's optimiser has learning rate
``lr * lr_factor**i`` and weight decay ``weight_decay * wd_factor**i``
(the thesis's from-scratch schedule is 0.8 and 1.15).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax import data as nj_data
from neurojax._checks import check_bool, check_choice, check_int, check_real
from neurojax.data import on_device
from neurojax.data.pipeline import fraction_indices
from neurojax.models.heads import HEAD_KINDS, decision_head
from neurojax.optim import make_optimizer
from neurojax.train.layerwise_forward import (  # noqa: F401 (re-exported)
    CACHE_DTYPES, CHECKPOINT_PLACES, HEADS, INPUT_DROPOUT_DECAY, REMAT_POLICIES,
    FeatureCheckpoint, _apply, _model_num_blocks, backward_dropout, blocks_forward,
    cached_features, feednet, forward_dropout, head_name, input_dropout_rate, readout,
    record_features, stage_objective, window_forward)
from neurojax.train.program import Stage, stage_bounds
from neurojax.train.state import PyTree
from neurojax.train.step import make_eval_step, model_objective
from neurojax.train.task import (Task, build_model, config_loss, get_task, register_task,
                                 split_evaluator)

METHODS = ("dll", "segment", "partition")


def stage_windows(num_blocks: int, method: str = "dll", *, window: int = 1,
                  step: Optional[int] = None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: the blocks each stage trains, bottom-up.

    ``'dll'``: ``(i, i + 1)`` for every block. ``'segment'``: windows of
    ``window`` blocks moving by ``step`` (default 1), the last one ending
    at ``num_blocks``. ``'partition'``: disjoint windows of ``window``
    blocks (the last may be shorter). A window of ``num_blocks`` or more is
    one stage: end-to-end training.
    """
    check_int("num_blocks", num_blocks)
    check_choice("method", method, METHODS)
    if method == "dll":
        window, step = 1, 1
    check_int("window", window)
    window = min(window, num_blocks)
    if method == "partition":
        return [(s, min(s + window, num_blocks)) for s in range(0, num_blocks, window)]
    step = 1 if step is None else step
    if check_int("step", step) > window:
        raise ValueError(f"step must be <= window ({window}), or blocks between windows are "
                         f"never trained; got {step}")
    starts = list(range(0, num_blocks - window + 1, step))
    if starts[-1] + window < num_blocks:
        starts.append(num_blocks - window)
    return [(s, s + window) for s in starts]


# ------------------------------------------------------------------- program

@dataclasses.dataclass(frozen=True)
class LayerwiseSpec:
    """What a layer-wise program needs beyond the model and the loss.

    Attributes:
        method: 'dll', 'segment' or 'partition' (:func:`stage_windows`).
        window, step: blocks per stage and the window's stride ('segment',
            'partition').
        head: 'layer' (pooled affine), 'flat' (affine on the flattened
            features) or 'block' (``neurojax.models.heads``).
        head_channels: the decision block's down-convolution widths.
        lr_factor, wd_factor: stage i's learning rate and weight decay are
            multiplied by ``lr_factor**i`` and ``wd_factor**i``.
        grad_dropout: backward-dropout rate at the block/head interface.
        input_dropout: forward dropout's initial rate ``p0`` on the window's
            input; epoch e of the window's training drops at rate
            ``p0 * input_dropout_decay**e`` (Sec. 6.8: p0 = 0.8, 0.5 or 0.3,
            decay 0.95). 0: off.
        input_dropout_decay: the per-epoch factor of the input-dropout rate.
        steps_factor: window i's share of the program's steps is
            proportional to ``steps_factor**i`` (1: even). The thesis gives
            higher layers more epochs: E1 (Table 6.1) 30/40/50/60 epochs for
            layers 1-4 (about 1.26^i), the transfer schedule (Table 6.5)
            ``e0 * 1.08^i`` or ``e0 * 1.2^i``.
        rounds: passes over the windows (Random Robin, Algorithm 4's
            N_rounds); each pass splits its steps evenly over the windows.
        random_order: visit the windows in a random order each round
            (Algorithm 4's IsRandom; seeded by ``config.seed``).
        cache_features: hold the feednet's output on the device (needs the
            training split there and no augmentation) instead of recomputing
            it every step.
        cache_dtype: 'float32' or 'bfloat16' for the cached features.
        checkpoint_block: feature checkpointing at the boundary after block
            ``checkpoint_block - 1`` (Sec. 6.4): every stage starting above it
            trains on ``Z_j`` held on the device and recomputes only the
            feednet above ``j`` (needs the training split on the device).
            0: off.
        checkpoint_dtype: 'float32' or 'bfloat16' for the checkpointed features.
        remat: rematerialisation of the trained window's blocks in each
            step (``jax.checkpoint`` per block, ``REMAT_POLICIES``): 'off'
            keeps every intermediate for the backward pass; 'dots' keeps
            only the convolution and matmul outputs and recomputes
            BatchNorm, activation and pooling from them; 'nothing' keeps
            only each block's input and recomputes the block. The gradients
            are the same (to float rounding); it trades compute for the
            stage's peak memory where the compiler keeps the recomputation
            (not XLA:CPU in jaxlib 0.10.2: ``benchmarks/layerwise_memory.py``).
        validation_split: a split (e.g. 'train[90%:]', with the dataset's
            ``train_split`` 'train[:90%]') on which every evaluation also reads
            the network out; the final evaluation then names the peak stage
            chosen on it (Sec. 6.1's peak layer, which the thesis picks on the
            test split). '' (default): the peak is chosen on the evaluation
            split, and the final record says so.
    """
    method: str = "dll"
    window: int = 1
    step: Optional[int] = None
    head: str = "layer"
    head_channels: Sequence[int] = (128,)
    lr_factor: float = 1.0
    wd_factor: float = 1.0
    grad_dropout: float = 0.0
    rounds: int = 1
    random_order: bool = False
    cache_features: bool = True
    cache_dtype: str = "float32"
    validation_split: str = ""
    input_dropout: float = 0.0
    input_dropout_decay: float = INPUT_DROPOUT_DECAY
    steps_factor: float = 1.0
    checkpoint_block: int = 0
    checkpoint_dtype: str = "float32"
    remat: str = "off"

    def __post_init__(self):
        check_choice("layerwise.method", self.method, METHODS)
        check_choice("layerwise.head", self.head, HEAD_KINDS)
        check_real("layerwise.lr_factor", self.lr_factor, low=0.0, low_open=True)
        check_real("layerwise.wd_factor", self.wd_factor, low=0.0, low_open=True)
        check_real("layerwise.grad_dropout", self.grad_dropout, low=0.0, high=1.0,
                   high_open=True)
        check_choice("layerwise.cache_dtype", self.cache_dtype, CACHE_DTYPES)
        check_int("layerwise.rounds", self.rounds)
        check_bool("layerwise.random_order", self.random_order)
        check_real("layerwise.input_dropout", self.input_dropout, low=0.0, high=1.0,
                   high_open=True)
        check_real("layerwise.input_dropout_decay", self.input_dropout_decay, low=0.0,
                   low_open=True, high=1.0)
        check_real("layerwise.steps_factor", self.steps_factor, low=0.0, low_open=True)
        check_int("layerwise.checkpoint_block", self.checkpoint_block, minimum=0)
        check_choice("layerwise.checkpoint_dtype", self.checkpoint_dtype, CACHE_DTYPES)
        check_choice("layerwise.remat", self.remat, tuple(REMAT_POLICIES))

    @property
    def persistent(self) -> bool:
        """Whether windows are visited more than once or out of order, so
        each keeps a persistent optimiser state (Random Robin)."""
        return self.rounds > 1 or self.random_order


def stage_visits(num_windows: int, rounds: int = 1, random_order: bool = False,
                 seed: int = 0) -> list[tuple[int, int]]:
    """``[(round, window index), ...]`` in the order the stages run: every
    window once per round, bottom-up or (``random_order``) in a permutation
    drawn per round from ``seed`` (Algorithm 4)."""
    check_int("num_windows", num_windows)
    check_int("rounds", rounds)
    rng = np.random.default_rng(seed)
    visits = []
    for r in range(rounds):
        order = rng.permutation(num_windows) if random_order else range(num_windows)
        visits += [(r, int(w)) for w in order]
    return visits


def split_steps(num_steps: int, num_stages: int,
                weights: Optional[Sequence[float]] = None) -> list[int]:
    """``num_steps`` over ``num_stages`` in proportion to ``weights`` (default:
    evenly), so a layer-wise program matches an end-to-end run's total steps.
    Each stage takes the floor of its share and the leftover steps go to the
    largest remainders (ties: earlier stages); every stage gets at least one."""
    check_int("num_steps", num_steps, minimum=num_stages)
    if weights is None:
        weights = [1.0] * num_stages
    weights = np.asarray(weights, np.float64)
    if weights.shape != (num_stages,) or not np.all(weights > 0):
        raise ValueError(f"weights must be {num_stages} positive numbers, got {weights.tolist()}")
    spare = num_steps - num_stages  # one step each first
    share = spare * weights / weights.sum()
    steps = np.floor(share).astype(int)
    order = np.argsort(-(share - steps), kind="stable")
    steps[order[:spare - int(steps.sum())]] += 1
    return [int(n) + 1 for n in steps]


def init_heads(model: nn.Module, head: nn.Module, key: jax.Array, variables: PyTree,
               sample: jax.Array, windows: Sequence[tuple[int, int]]) -> dict:
    """Fresh decision heads for every window that does not end at the top,
    each initialised on the shape of its block's output."""
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    num_blocks = _model_num_blocks(model)
    heads = {}
    for i, (_, stop) in enumerate(windows):
        if stop == num_blocks or head_name(stop) in heads:
            continue
        shape = jax.eval_shape(lambda x, s=stop: feednet(model, params, model_state, x, s),
                               sample)
        heads[head_name(stop)] = head.init(jax.random.fold_in(key, i),
                                           jnp.zeros(shape.shape, shape.dtype))["params"]
    return heads


def trainable_prefixes(model: nn.Module, params: PyTree, start: int, stop: int,
                       block_params: Callable[[int], Sequence[str]]) -> tuple[str, ...]:
    """The '/'-joined parameter prefixes of blocks ``[start, stop)``, the top
    when ``stop`` is the top block, and the window's head otherwise."""
    num_blocks = _model_num_blocks(model)
    prefixes = [p for b in range(start, stop) for p in block_params(b)]
    if stop == num_blocks:
        prefixes += list(block_params(num_blocks))
    else:
        prefixes.append(f"{HEADS}/{head_name(stop)}")
    present = [p for p in prefixes if p.split("/")[0] in params]
    if not present:
        raise ValueError(f"blocks [{start}, {stop}) of {type(model).__name__} have no "
                         f"parameters")
    return tuple(present)


def layerwise_stages(model: nn.Module, head: Optional[nn.Module], loss_fn: Callable,
                     spec: LayerwiseSpec, num_steps: int,
                     make_tx: Callable[[int, int], optax.GradientTransformation],
                     params: PyTree, *, data_on_device: bool,
                     loss_hyper: Optional[dict] = None, seed: int = 0,
                     steps_per_epoch: Optional[int] = None) -> list[Stage]:
    """The stages of a layer-wise program over ``num_steps`` in all, one per
    visit of :func:`stage_visits` (``seed`` orders Random Robin's rounds).

    ``make_tx(i, steps)`` builds window i's optimiser for its ``steps`` in
    all (with the per-window factors applied by the caller); ``params`` is
    the initial parameter tree (heads included), used to name each stage's
    trainable part. ``steps_per_epoch`` (needed with ``spec.input_dropout``)
    sets the epochs over which the input-dropout rate decays; a window's
    epochs count its own steps over all its visits.
    """
    num_blocks = _model_num_blocks(model)
    windows = stage_windows(num_blocks, spec.method, window=spec.window, step=spec.step)
    visits = stage_visits(len(windows), spec.rounds, spec.random_order, seed)
    steps = split_steps(num_steps, len(visits), [spec.steps_factor ** i for _, i in visits])
    window_steps = [sum(n for (_, w), n in zip(visits, steps) if w == i)
                    for i in range(len(windows))]
    txs = [make_tx(i, n) for i, n in enumerate(window_steps)]
    cache = spec.cache_features and data_on_device
    j = spec.checkpoint_block
    if j and not data_on_device:
        raise ValueError("layerwise.checkpoint_block holds the checkpointed features on the "
                         "device: it needs the training split there (config.dataset.on_device)"
                         "; without it, record and replay batches with record_features")
    if j >= num_blocks:
        raise ValueError(f"layerwise.checkpoint_block must be < num_blocks ({num_blocks}) of "
                         f"{type(model).__name__}, got {j}")
    stages, done, first = [], [0] * len(windows), 0
    for (r, i), n in zip(visits, steps):
        start, stop = windows[i]
        replay = 0 < j < start
        objective = stage_objective(
            model, head, loss_fn, start, stop, recompute_feednet=replay or not cache,
            feed_from=j if replay else 0, grad_dropout=spec.grad_dropout,
            input_dropout=spec.input_dropout, input_dropout_decay=spec.input_dropout_decay,
            steps_per_epoch=steps_per_epoch, step_offset=first - done[i],
            remat=spec.remat, **(loss_hyper or {}))
        done[i] += n
        first += n
        inputs = None
        if replay:
            inputs = functools.partial(_cached_inputs, model, j, spec.checkpoint_dtype)
        elif cache and start > 0:
            inputs = functools.partial(_cached_inputs, model, start, spec.cache_dtype)
        name = f"blocks_{start}_{stop}" + (f"_round{r}" if spec.rounds > 1 else "")
        stages.append(Stage(name, n, objective, txs[i],
                            trainable=trainable_prefixes(model, params, start, stop,
                                                         model.block_params),
                            inputs=inputs,
                            opt_slot=f"window_{i}" if spec.persistent else None))
    return stages


def _cached_inputs(model, start, dtype, params, model_state, arrays):
    return {**arrays, "image": cached_features(model, params, model_state, arrays["image"],
                                               start, dtype=dtype)}


def without_heads(params: PyTree) -> PyTree:
    """The ordinary model's parameter tree (the decision heads removed)."""
    return {k: v for k, v in params.items() if k != HEADS}


# ---------------------------------------------------------------------- task

def spec_from_config(config) -> LayerwiseSpec:
    """The :class:`LayerwiseSpec` of ``config.layerwise`` (every field optional)."""
    block = config.get("layerwise") or {}
    fields = {f.name for f in dataclasses.fields(LayerwiseSpec)}
    unknown = sorted(set(block) - fields)
    if unknown:
        raise ValueError(f"config.layerwise has unknown fields {unknown}; known: {sorted(fields)}")
    values = dict(block)
    if "head_channels" in values:
        values["head_channels"] = tuple(values["head_channels"])
    return LayerwiseSpec(**values)


def _validate_layerwise(config) -> None:
    get_task("supervised").validate(config)
    spec_from_config(config)


def _scaled_optim(optim, i: int, spec: LayerwiseSpec):
    """``config.optim`` with stage i's learning rate and weight decay."""
    scaled = optim.copy_and_resolve_references() if hasattr(
        optim, "copy_and_resolve_references") else dict(optim)
    scaled["lr"] = float(optim["lr"]) * spec.lr_factor ** i
    if "weight_decay" in optim:
        scaled["weight_decay"] = float(optim["weight_decay"]) * spec.wd_factor ** i
    return scaled


def _steps_per_epoch(config, info, data_dir) -> int:
    """Global batches per pass over the training split, as the loop counts
    them (``neurojax.train.loop``): the epoch of the input-dropout decay."""
    ds = config.dataset
    split = ds.get("train_split", "train")
    num_records = info.num_examples.get(split) or len(
        nj_data.data_source(ds.name, split, data_dir))
    num_train = len(fraction_indices(num_records, ds.get("fraction", 1.0)))
    return max(1, on_device.steps_per_epoch(num_train, ds.batch_size * jax.process_count()))


def layerwise_task(config, info, mesh, data_dir):
    """``config.task = 'layerwise'``: the supervised task's model and loss,
    trained as the stages of ``config.layerwise``; each evaluation reads the
    network out after the current stage's window (its head, or the model's
    top in the last stage), logged with ``stage`` and ``readout_block``; the
    evaluation after the last step reads out the whole network (under Random
    Robin the last visit may be a lower window)."""
    spec = spec_from_config(config)
    model = build_model(config, info.num_classes)
    num_blocks = _model_num_blocks(model)
    windows = stage_windows(num_blocks, spec.method, window=spec.window, step=spec.step)
    seed = int(config.get("seed", 0))
    visits = stage_visits(len(windows), spec.rounds, spec.random_order, seed)
    head = decision_head(spec.head, info.num_classes, channels=spec.head_channels,
                         dtype=getattr(model, "dtype", None))
    loss_fn, loss_hyper = config_loss(config)

    def init(rng, sample):
        model_rng, head_rng = jax.random.split(rng)
        variables = model.init(model_rng, sample, train=False)
        heads = init_heads(model, head, head_rng, variables, sample, windows)
        if heads:
            variables = {**variables, "params": {**variables["params"], HEADS: heads}}
        return variables

    sample = jnp.zeros((1,) + tuple(info.image_shape), jnp.float32)
    params_shape = jax.eval_shape(init, jax.random.PRNGKey(0), sample)["params"]
    bounds: list[tuple[int, int]] = []

    def stages(num_steps, make_tx, *, data_on_device):
        del make_tx  # each stage scales config.optim itself
        program = layerwise_stages(
            model, head, loss_fn, spec, num_steps,
            lambda i, steps: make_optimizer(_scaled_optim(config.optim, i, spec), steps),
            params_shape, data_on_device=data_on_device, loss_hyper=loss_hyper, seed=seed,
            steps_per_epoch=(_steps_per_epoch(config, info, data_dir)
                             if spec.input_dropout > 0 else None))
        bounds[:] = stage_bounds(program)
        return program

    run_eval = split_evaluator(config, config.dataset.get("eval_split", "test"), data_dir, mesh)
    run_validation = (split_evaluator(config, spec.validation_split, data_dir, mesh)
                      if spec.validation_split else None)
    eval_steps: dict[int, Callable] = {}

    def evaluate_fn(state) -> dict:
        step = int(jax.device_get(state.step))
        # the stage that ran the last step (steps (first, end] of stage i)
        i = next((j for j, (_, end) in enumerate(bounds) if step <= end), len(visits) - 1)
        # after the program's last step the whole network is read out (its own
        # top), whichever window Random Robin visited last
        done = bool(bounds) and step >= bounds[-1][1]
        stop = num_blocks if done else windows[visits[i][1]][1]
        if stop not in eval_steps:
            eval_steps[stop] = make_eval_step(
                model, functools.partial(loss_fn, **loss_hyper), mesh=mesh,
                forward=readout(model, head, stop))
        metrics = run_eval(eval_steps[stop], state)
        if run_validation is not None:
            held_out = run_validation(eval_steps[stop], state)
            metrics.update({f"validation_{k}": v for k, v in held_out.items()})
        return {**metrics, "stage": i, "readout_block": stop}

    return Task(model=model, objective=model_objective(model, loss_fn, **loss_hyper),
                evaluate=evaluate_fn, stages=stages,
                init=init, summarize=peak_readout)


def peak_readout(records: Sequence[dict]) -> dict:
    """The peak-layer read-out (Sec. 6.1) from the eval records of a run: of
    each read-out block's latest evaluation (after Random Robin's last
    round), the one with the best ``validation_accuracy`` (or ``accuracy``
    when there is no validation split, which the thesis does and which
    overstates the peak), with its stage and evaluation-split accuracy."""
    last = {}
    for r in records:
        if "stage" in r:
            last[int(r["readout_block"])] = r
    if not last:
        return {}
    key = "validation_accuracy" if all("validation_accuracy" in r for r in last.values()) \
        else "accuracy"
    block = max(sorted(last), key=lambda b: last[b][key])
    return {"peak_stage": int(last[block]["stage"]), "peak_readout_block": block,
            "peak_accuracy": last[block]["accuracy"],
            "peak_selected_on": "validation" if key != "accuracy" else "evaluation split"}


def _layerwise_model(config, info):
    return build_model(config, info.num_classes)


register_task("layerwise", build=layerwise_task, validate=_validate_layerwise,
              model=_layerwise_model)
