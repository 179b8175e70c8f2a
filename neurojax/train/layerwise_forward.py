"""The forward pass of a layer-wise stage (Oland 2024, Efficient Deep
Learning, ch. 6): the frozen feednet, the trained window and its read-out,
forward (input) and backward (gradient) dropout, the stage objective, and
feature checkpoints recorded at a narrow block and replayed in order.

``neurojax.train.layerwise`` builds programs of stages from these (and
re-exports every name here); the model protocol is described there.

Forward dropout (Sec. 6.8, the Table 6.2 method): ordinary dropout on the
*input* of the window being trained, i.e. on the feednet's output ``z``,
with a rate that decays per epoch of the window's training,

    p_in(e) = p0 * decay**e,    decay = 0.95,  e = floor(s / S),

where ``s`` counts the window's own steps (over all its visits under Random
Robin) and ``S`` is the number of steps per epoch. Kept entries are scaled
by ``1 / (1 - p_in)`` (the thesis does not say; this is ordinary dropout).
The objective needs the step for this: it sets ``takes_step``
(``neurojax.train.step.takes_step``), so the training step passes
``step=state.step``.

Backward dropout (Sec. 6.8): the identity in the forward pass; dropout with
rate ``p`` on the gradient that flows from the head into the trained block
(:func:`backward_dropout`). Head gradients are untouched. The kept entries
are rescaled by ``1 / (1 - p)``, as in ordinary dropout, so the expected
gradient is unchanged (the thesis does not say).

Feature checkpointing (Sec. 6.4): pick a narrow block boundary ``j`` (the
output of blocks ``[0, j)``); record ``Z_j`` for every mini-batch in the
order the batches were seen (:func:`record_features`, on the device or on
the host, in float32 or bfloat16), then train a later window ``[start,
stop)``, ``start > j``, on the replayed batches (:meth:`FeatureCheckpoint.replay`)
through the cropped feednet ``[j, start)`` (``stage_objective(...,
feed_from=j)``) instead of recomputing ``[0, start)`` from raw, possibly
augmented, inputs. The features come from the frozen blocks below ``j``
(the thesis leaves open whether they come from weights that were still
training; this reading makes a replayed batch the feednet's output).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable, Iterator, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_int, check_real
from neurojax.train.state import PyTree
from neurojax.train.step import Objective

HEADS = "layerwise_heads"
CACHE_DTYPES = ("float32", "bfloat16")
CHECKPOINT_PLACES = ("device", "host")
# Rematerialisation of the trained blocks (``jax.checkpoint`` per block): which
# intermediates the forward pass keeps for the backward pass. 'off': all (no
# checkpoint); 'dots': only the outputs of convolutions and matrix products
# (``jax.checkpoint_policies.dots_saveable``), BatchNorm, activations and
# pooling recomputed from them; 'nothing': the block's input only, the whole
# block recomputed (``jax.checkpoint_policies.nothing_saveable``). On XLA:CPU
# (jaxlib 0.10.2) it does not lower the compiled step's peak memory: the
# optimised program holds no recomputation (the stage of VGG-13 blocks [1, 2)
# compiles to the same convolutions with remat 'nothing' as without) and its
# temporaries grow (144 -> 168 MiB there; ``benchmarks/layerwise_memory.py``);
# the lever is for backends that keep the recomputation.
REMAT_POLICIES = {"off": None, "dots": jax.checkpoint_policies.dots_saveable,
                  "nothing": jax.checkpoint_policies.nothing_saveable}
INPUT_DROPOUT_DECAY = 0.95  # Sec. 6.8: p_in(e) = p0 * 0.95**e


def head_name(stop: int) -> str:
    """The parameter entry of the head reading block ``stop - 1``'s output."""
    return f"head_{stop}"


# ------------------------------------------------------------ backward dropout

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def backward_dropout(x: jax.Array, key: jax.Array, rate: float) -> jax.Array:
    """The identity on ``x``; its gradient is dropped out with probability
    ``rate`` per entry and the kept entries scaled by ``1 / (1 - rate)``
    (Oland 2024, Sec. 6.8: "gradient noise" at the block/head interface)."""
    return x


def _backward_dropout_fwd(x, key, rate):
    return x, key


def _backward_dropout_bwd(rate, key, g):
    if rate == 0.0:
        return g, None
    keep = jax.random.bernoulli(key, 1.0 - rate, g.shape)
    return jnp.where(keep, g / (1.0 - rate), jnp.zeros((), g.dtype)), None


backward_dropout.defvjp(_backward_dropout_fwd, _backward_dropout_bwd)


# ------------------------------------------------------------- input dropout

def input_dropout_rate(p0: float, epoch, decay: float = INPUT_DROPOUT_DECAY):
    """``p0 * decay**epoch`` (Sec. 6.8; ``epoch`` may be traced)."""
    return p0 * jnp.power(jnp.float32(decay), jnp.asarray(epoch, jnp.float32))


def forward_dropout(x: jax.Array, key: jax.Array, rate) -> jax.Array:
    """Ordinary dropout: every entry of ``x`` zeroed with probability
    ``rate`` (a number or a traced scalar in [0, 1)), the rest scaled by
    ``1 / (1 - rate)``."""
    rate = jnp.asarray(rate, jnp.float32)
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate).astype(x.dtype), jnp.zeros((), x.dtype))


# ------------------------------------------------------------------ forward

def _model_num_blocks(model: nn.Module) -> int:
    num = getattr(model, "num_blocks", None)
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"model {type(model).__name__} does not train layer-wise: it needs a "
                         f"num_blocks attribute and __call__(x, train, start=, stop=) "
                         f"(see neurojax.train.layerwise)")
    return num


def _apply(model, params, model_state, x, *, train, rng=None, **blocks):
    """``model`` on blocks ``[start, stop)``; returns ``(output, model_state)``."""
    variables = {"params": params, **model_state}
    mutable = list(model_state) if train and model_state else False
    out = model.apply(variables, x, train=train, rngs={"dropout": rng} if train else None,
                      mutable=mutable, **blocks)
    return out if mutable else (out, model_state)


def feednet(model: nn.Module, params: PyTree, model_state: PyTree, x: jax.Array,
            start: int, *, first: int = 0) -> jax.Array:
    """Output of the frozen blocks ``[first, start)`` (evaluation mode, no
    gradient) on ``x``, the output of block ``first - 1`` (the input when
    ``first == 0``); ``x`` itself when ``start == first``."""
    if start == first:
        return x
    out, _ = _apply(model, params, model_state, x, train=False, start=first, stop=start)
    return jax.lax.stop_gradient(out)


def _block(model, block, train, params, model_state, x, rng):
    return _apply(model, params, model_state, x, train=train, rng=rng, start=block,
                  stop=block + 1)


def blocks_forward(model: nn.Module, params: PyTree, model_state: PyTree, z: jax.Array,
                   start: int, stop: int, *, train: bool, rng: Optional[jax.Array] = None,
                   remat: str = "off") -> tuple[jax.Array, PyTree]:
    """Blocks ``[start, stop)`` on ``z``; returns ``(output, model_state)``.
    ``remat`` (:data:`REMAT_POLICIES`) other than 'off' runs every block
    under its own ``jax.checkpoint``: the same values and gradients, with
    what the backward pass needs recomputed instead of kept."""
    check_choice("remat", remat, tuple(REMAT_POLICIES))
    if remat == "off":
        return _apply(model, params, model_state, z, train=train, rng=rng, start=start,
                      stop=stop)
    for block in range(start, stop):
        run = jax.checkpoint(functools.partial(_block, model, block, train),
                             policy=REMAT_POLICIES[remat])
        z, model_state = run(params, model_state, z, rng)
    return z, model_state


def window_forward(model: nn.Module, head: Optional[nn.Module], params: PyTree,
                   model_state: PyTree, z: jax.Array, start: int, stop: int, *,
                   train: bool, rng: Optional[jax.Array] = None,
                   grad_dropout: float = 0.0, remat: str = "off") -> tuple[jax.Array, PyTree]:
    """Logits of the window ``[start, stop)`` and its read-out on the
    feednet's output ``z``: the window's blocks (rematerialised per block
    with ``remat``, :func:`blocks_forward`), then the decision head
    (``head_{stop}``) or, when ``stop`` is the model's top block, the
    model's own top. Returns ``(logits, model_state)``."""
    top = stop == _model_num_blocks(model)
    out, model_state = blocks_forward(model, params, model_state, z, start, stop,
                                      train=train, rng=rng, remat=remat)
    if train and grad_dropout > 0.0:
        out = backward_dropout(out, jax.random.fold_in(rng, 1), grad_dropout)
    if top:
        return _apply(model, params, model_state, out, train=train, rng=rng, start=stop,
                      stop=None)
    return head.apply({"params": params[HEADS][head_name(stop)]}, out), model_state


def stage_objective(model: nn.Module, head: Optional[nn.Module], loss_fn: Callable,
                    start: int, stop: int, *, recompute_feednet: bool,
                    grad_dropout: float = 0.0, input_dropout: float = 0.0,
                    input_dropout_decay: float = INPUT_DROPOUT_DECAY,
                    steps_per_epoch: Optional[int] = None, step_offset: int = 0,
                    feed_from: int = 0, input_key: str = "image", remat: str = "off",
                    **loss_hyper) -> Objective:
    """The objective of the stage training blocks ``[start, stop)`` with
    their read-out.

    ``batch[input_key]`` is the feednet's cached output when not
    ``recompute_feednet``; otherwise it is the output of blocks ``[0,
    feed_from)`` (the raw input for ``feed_from = 0``, a replayed feature
    checkpoint otherwise) and the feednet ``[feed_from, start)`` runs in the
    step. ``input_dropout = p0 > 0``: forward dropout on the window's input
    at rate ``p0 * input_dropout_decay**e``, ``e = (step - step_offset) //
    steps_per_epoch`` (the window's epoch); the objective then takes
    ``step=`` (``neurojax.train.step.takes_step``). Random keys:
    ``fold_in(rng, 1)`` for backward dropout, ``fold_in(rng, 2)`` for input
    dropout, ``rng`` itself for the model's own dropout.
    """
    check_int("feed_from", feed_from, minimum=0)
    if feed_from > start:
        raise ValueError(f"feed_from must be <= start ({start}): the replayed features feed "
                         f"the blocks below the window; got {feed_from}")
    check_real("input_dropout", input_dropout, low=0.0, high=1.0, high_open=True)
    check_choice("remat", remat, tuple(REMAT_POLICIES))
    if input_dropout > 0.0:
        check_real("input_dropout_decay", input_dropout_decay, low=0.0, low_open=True,
                   high=1.0)
        if steps_per_epoch is None:
            raise ValueError("input_dropout > 0 needs steps_per_epoch (its rate decays per "
                             "epoch), got None")
        check_int("steps_per_epoch", steps_per_epoch)

    def objective(params, model_state, batch, rng, step=None):
        z = batch[input_key]
        if recompute_feednet:
            z = feednet(model, params, model_state, z, start, first=feed_from)
        if input_dropout > 0.0:
            if step is None:
                raise ValueError("this stage objective applies input dropout: call it with "
                                 "step= (the training step does, see takes_step)")
            epoch = (step - step_offset) // steps_per_epoch
            rate = input_dropout_rate(input_dropout, epoch, input_dropout_decay)
            z = forward_dropout(z, jax.random.fold_in(rng, 2), rate)
        logits, model_state = window_forward(model, head, params, model_state, z, start,
                                             stop, train=True, rng=rng,
                                             grad_dropout=grad_dropout, remat=remat)
        loss, aux = loss_fn(logits, batch, **loss_hyper)
        return loss, (aux, dict(model_state))
    objective.takes_step = input_dropout > 0.0
    return objective


def readout(model: nn.Module, head: Optional[nn.Module], stop: int) -> Callable:
    """``forward(variables, x) -> logits`` of the network read out after
    block ``stop - 1`` (evaluation mode): the peak-layer read-out of Sec. 6.1."""
    def forward(variables, x):
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        logits, _ = window_forward(model, head, params, model_state, x, 0, stop, train=False)
        return logits
    return forward


def cached_features(model: nn.Module, params: PyTree, model_state: PyTree, images: jax.Array,
                    start: int, *, chunk: int = 512, dtype: str = "float32") -> jax.Array:
    """The feednet's output for every example, computed ``chunk`` examples
    at a time (``jax.lax.map``) and stored as ``dtype``."""
    check_choice("dtype", dtype, CACHE_DTYPES)
    check_int("chunk", chunk)

    n = images.shape[0]
    chunk = min(chunk, n)
    pad = -n % chunk
    padded = jnp.concatenate([images, jnp.zeros((pad,) + images.shape[1:], images.dtype)])
    chunks = padded.reshape((-1, chunk) + images.shape[1:])
    out = jax.lax.map(
        lambda x: feednet(model, params, model_state, x, start).astype(dtype), chunks)
    return out.reshape((-1,) + out.shape[2:])[:n]


# -------------------------------------------------------- feature checkpoints

@dataclasses.dataclass
class FeatureCheckpoint:
    """Feednet outputs ``Z_block`` recorded batch by batch (Sec. 6.4).

    Attributes:
        block: the features are the output of blocks ``[0, block)``.
        batches: the recorded batches in the order they were seen: each the
            original batch with ``input_key`` replaced by its features (jax
            arrays on the device, or numpy arrays on the host).
        input_key: the batch entry holding the features.
    """
    block: int
    batches: list
    input_key: str = "image"

    def __len__(self) -> int:
        return len(self.batches)

    def replay(self, first: int = 0) -> Iterator[dict]:
        """The recorded batches in the recorded order, from batch ``first``
        (a later stage with ``feed_from = block`` trains on them)."""
        check_int("first", first, minimum=0)
        yield from self.batches[first:]

    def stacked(self, first: int, num: int) -> dict:
        """Batches ``first .. first + num - 1`` (modulo the recording, so a
        stage longer than the recording replays it again from the start)
        stacked on a new leading axis: the ``batches`` of a multi-step call
        without device data (``neurojax.train.program.make_call``)."""
        check_int("first", first, minimum=0)
        check_int("num", num)
        picked = [self.batches[(first + i) % len(self.batches)] for i in range(num)]
        stack = np.stack if isinstance(picked[0][self.input_key], np.ndarray) else jnp.stack
        return {k: stack([b[k] for b in picked]) for k in picked[0]}


@functools.lru_cache(maxsize=32)
def _recorder(model: nn.Module, block: int, dtype: str) -> Callable:
    """The compiled ``(params, model_state, x) -> Z_block`` (one per model,
    block and dtype, reused by every recording)."""
    return jax.jit(lambda p, s, x: feednet(model, p, s, x, block).astype(dtype))


def record_features(model: nn.Module, params: PyTree, model_state: PyTree,
                    batches: Iterable[dict], block: int, *, dtype: str = "float32",
                    where: str = "device", input_key: str = "image") -> FeatureCheckpoint:
    """Records ``Z_block``, the frozen feednet's output ``[0, block)``, for
    every batch of ``batches`` (e.g. the augmented mini-batches a stage
    draws, in its order), stored as ``dtype`` on the device or on the host
    (``where``), with the batch's other entries (labels) beside it."""
    check_int("block", block)
    check_choice("dtype", dtype, CACHE_DTYPES)
    check_choice("where", where, CHECKPOINT_PLACES)
    feed = _recorder(model, block, dtype)
    recorded = []
    for batch in batches:
        if input_key not in batch:
            raise ValueError(f"batches must hold the input under input_key={input_key!r}; "
                             f"got keys {sorted(batch)}")
        z = feed(params, model_state, jnp.asarray(batch[input_key]))
        entry = {**batch, input_key: z}
        recorded.append(jax.device_get(entry) if where == "host" else entry)
    if not recorded:
        raise ValueError("batches is empty: there is nothing to record")
    return FeatureCheckpoint(block, recorded, input_key)
