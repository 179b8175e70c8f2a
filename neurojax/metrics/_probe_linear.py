"""The trained linear probe (``neurojax.metrics.probes.linear_probe``).

The thesis' probe (Part III, Appendix D, Table 4b; the alpha-ReQ probe of
Part II uses the same code): a linear layer with bias on frozen encoder
features, Adam 1e-3, batch 512, 200 epochs, weight decay 1e-6,
cross-entropy with label smoothing 0.1, constant learning rate, no feature
normalisation (FastSSL ``scripts/train_model*.py``,
``fastssl/models/linear.py``). One jitted program: a ``lax.scan`` over
epochs of a ``lax.scan`` over minibatches.
"""
import functools
import math
from typing import Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from neurojax._checks import check_bool, check_choice, check_int, check_real, is_concrete
from neurojax.metrics._probe_inputs import ArrayLike, Seed, check_probe_data, prng_key

# Thesis Part III, Appendix D, Table 4b and FastSSL's linear-evaluation code.
PAPER_PROBE_EPOCHS = 200
PAPER_PROBE_BATCH_SIZE = 512
PAPER_PROBE_LEARNING_RATE = 1e-3
PAPER_PROBE_WEIGHT_DECAY = 1e-6
PAPER_PROBE_LABEL_SMOOTHING = 0.1

_INITS = ("torch", "zeros")


class LinearProbeResult(NamedTuple):
    """Outcome of ``linear_probe`` (a PyTree: jit- and vmap-friendly).

    Attributes:
        test_accuracy: test accuracy after the last epoch (the protocol's
            reported number).
        train_accuracy: accuracy on all training examples after the last epoch.
        final_loss: mean training loss over the last epoch.
        loss_curve: (epochs,) mean training loss of each epoch: the loss of
            each example at the step that used it, averaged over the epoch.
        test_accuracy_curve: (epochs,) test accuracy after each epoch.
        best_test_accuracy: max of the curve (FastSSL also logs it; it peeks
            at the test set, so report ``test_accuracy``).
        kernel: (D, C) on the raw flattened features: logits = x @ kernel + bias
            (standardisation, if any, is folded in).
        bias: (C,).
    """
    test_accuracy: jax.Array
    train_accuracy: jax.Array
    final_loss: jax.Array
    loss_curve: jax.Array
    test_accuracy_curve: jax.Array
    best_test_accuracy: jax.Array
    kernel: jax.Array
    bias: jax.Array


def linear_probe(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike,
                 test_y: ArrayLike, *, num_classes: Optional[int] = None,
                 epochs: int = PAPER_PROBE_EPOCHS,
                 batch_size: int = PAPER_PROBE_BATCH_SIZE,
                 learning_rate: float = PAPER_PROBE_LEARNING_RATE,
                 weight_decay: float = PAPER_PROBE_WEIGHT_DECAY,
                 label_smoothing: float = PAPER_PROBE_LABEL_SMOOTHING,
                 standardize: bool = False, shuffle: bool = True, drop_last: bool = False,
                 init: Literal["torch", "zeros"] = "torch", seed: Seed = 0,
                 progress: bool = False) -> LinearProbeResult:
    """The thesis' trained linear probe on frozen features.

    Protocol (thesis Part III, Appendix D, Table 4b, "following [14]"; the
    authors' FastSSL code, also used for the alpha-ReQ probes of Part II):
    logits = W^T x + b on the encoder's features (projector discarded),
    trained for ``epochs`` passes over the shuffled training set in minibatches
    of ``batch_size``, minimising the mean cross-entropy with label smoothing
    eps,

        L = -1/|B| sum_{i in B} sum_c q_ic log softmax(W^T x_i + b)_c,
        q_ic = (1 - eps) [c = y_i] + eps / C,

    with Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8, constant learning rate)
    and PyTorch-style *coupled* weight decay 1e-6: the gradient of
    (wd / 2)(||W||^2 + ||b||^2) is added before Adam's moments
    (``torch.optim.Adam(weight_decay=...)``, bias included), i.e.
    ``optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))``. Parameters
    start as PyTorch's ``nn.Linear``: W, b ~ U(-1/sqrt(D), 1/sqrt(D)). The
    features are not normalised (no BatchNorm in the authors' probe);
    ``standardize=True`` z-scores them with the training mean and standard
    deviation (a BatchNorm without affine in eval mode, as MAE's probe). The
    last, smaller minibatch of an epoch is kept (``drop_last=False``, as a
    PyTorch ``DataLoader``); its loss is its own mean. The reported number is
    the test accuracy after the last epoch. The table's "test-patches 16"
    (test-time crops) acts on images: average the features of the crops
    before calling this. Table 4b's batch is 512 (FastSSL uses 256 for STL-10)
    and 200 epochs (the alpha-ReQ ImageNet probes use 100).

    Implementation: one jitted program, a ``lax.scan`` over epochs of a
    ``lax.scan`` over minibatches; each epoch's order is a permutation drawn
    from ``seed``; a partial last batch is padded and masked so that all steps
    have one shape. ``progress=True`` runs the same program one epoch per call
    under a tqdm bar (the same result, keys and all).

    Args:
        train_x, train_y: (n, D) features and (n,) integer labels.
        test_x, test_y: (m, D) and (m,).
        num_classes: C; inferred from the labels if None (needs concrete labels).
        epochs: passes over the training set (paper: 200).
        batch_size: minibatch size (paper: 512); capped at n.
        learning_rate, weight_decay, label_smoothing: see above; these may be
            traced (e.g. ``jax.vmap`` over learning rates).
        standardize: z-score the features first (default False, the paper's).
        shuffle: reshuffle every epoch (default); False keeps the data order.
        drop_last: drop the last partial minibatch of each epoch.
        init: 'torch' (nn.Linear's uniform init) or 'zeros'.
        seed: int or PRNG key (initialisation and shuffling).
        progress: show a per-epoch progress bar (needs concrete inputs).

    Returns:
        A ``LinearProbeResult``.
    """
    tx, ty, ex, ey, num_classes = check_probe_data(train_x, train_y, test_x, test_y, num_classes)
    n = tx.shape[0]
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    check_real("learning_rate", learning_rate, low=0, low_open=True)
    check_real("weight_decay", weight_decay, low=0)
    check_real("label_smoothing", label_smoothing, low=0, high=1, high_open=True)
    for name, flag in (("standardize", standardize), ("shuffle", shuffle),
                       ("drop_last", drop_last), ("progress", progress)):
        check_bool(name, flag)
    check_choice("init", init, _INITS)
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples with "
                         f"drop_last=True: no step would run")
    if progress and not all(is_concrete(a) for a in (tx, ty, ex, ey)):
        raise ValueError("progress=True needs concrete inputs (not under jax.jit/vmap)")
    batch_size = min(batch_size, n)
    key = prng_key(seed)
    cfg = _ProbeConfig(num_classes=num_classes, batch_size=batch_size, standardize=standardize,
                       shuffle=shuffle, drop_last=drop_last, init=init)
    dt = jnp.promote_types(tx.dtype, jnp.float32)
    tx, ex = tx.astype(dt), ex.astype(dt)
    hyper = tuple(jnp.asarray(h, dt) for h in (learning_rate, weight_decay, label_smoothing))
    if not progress:
        return _linear_probe(tx, ty, ex, ey, key, hyper, cfg, epochs)
    import tqdm  # pylint: disable=import-outside-toplevel
    state, epoch_keys, mu, sd = _probe_init(tx, key, hyper, cfg, epochs)
    losses, accs = [], []
    with tqdm.tqdm(total=epochs, desc="linear probe", unit="epoch") as bar:
        for e in range(epochs):
            state, (loss, acc) = _probe_epochs(state, epoch_keys[e:e + 1], tx, ty, ex, ey,
                                               mu, sd, hyper, cfg)
            losses.append(loss[0])
            accs.append(acc[0])
            bar.set_postfix(loss=f"{float(loss[0]):.4f}", test_acc=f"{float(acc[0]):.4f}")
            bar.update()
    return _probe_result(state[0], tx, ty, mu, sd, jnp.stack(losses), jnp.stack(accs))


class _ProbeConfig(NamedTuple):
    num_classes: int
    batch_size: int
    standardize: bool
    shuffle: bool
    drop_last: bool
    init: str


def _probe_optimizer(hyper) -> optax.GradientTransformation:
    lr, wd, _ = hyper
    return optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))


@functools.partial(jax.jit, static_argnums=(6, 7))
def _linear_probe(tx, ty, ex, ey, key, hyper, cfg, epochs):
    state, epoch_keys, mu, sd = _probe_init(tx, key, hyper, cfg, epochs)
    state, (losses, accs) = _probe_epochs(state, epoch_keys, tx, ty, ex, ey, mu, sd, hyper, cfg)
    return _probe_result(state[0], tx, ty, mu, sd, losses, accs)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _probe_init(tx, key, hyper, cfg, epochs):
    d = tx.shape[1]
    init_key, shuffle_key = jax.random.split(key)
    if cfg.standardize:
        mu = jnp.mean(tx, axis=0)
        sd = jnp.sqrt(jnp.mean(jnp.square(tx - mu), axis=0))
        sd = jnp.where(sd > 0, sd, 1)
    else:
        mu, sd = jnp.zeros((d,), tx.dtype), jnp.ones((d,), tx.dtype)
    if cfg.init == "torch":
        bound = 1 / math.sqrt(d)
        k_w, k_b = jax.random.split(init_key)
        params = {"kernel": jax.random.uniform(k_w, (d, cfg.num_classes), tx.dtype, -bound, bound),
                  "bias": jax.random.uniform(k_b, (cfg.num_classes,), tx.dtype, -bound, bound)}
    else:
        params = {"kernel": jnp.zeros((d, cfg.num_classes), tx.dtype),
                  "bias": jnp.zeros((cfg.num_classes,), tx.dtype)}
    opt_state = _probe_optimizer(hyper).init(params)
    return (params, opt_state), jax.random.split(shuffle_key, epochs), mu, sd


def _logits(params, x):
    return x @ params["kernel"] + params["bias"]


def _accuracy(params, x, y):
    return jnp.mean(jnp.argmax(_logits(params, x), axis=-1) == y)


@functools.partial(jax.jit, static_argnums=(9,))
def _probe_epochs(state, epoch_keys, tx, ty, ex, ey, mu, sd, hyper, cfg):
    """Runs len(epoch_keys) epochs; returns the state and per-epoch (loss, test acc)."""
    n = tx.shape[0]
    bsz = cfg.batch_size
    steps = n // bsz if cfg.drop_last else -(-n // bsz)
    xs, exs = (tx - mu) / sd, (ex - mu) / sd
    opt = _probe_optimizer(hyper)
    smoothing = hyper[2]

    def batch_loss(params, x, y, mask):
        targets = optax.smooth_labels(jax.nn.one_hot(y, cfg.num_classes, dtype=x.dtype),
                                      smoothing)
        per_example = optax.softmax_cross_entropy(_logits(params, x), targets)
        total = jnp.sum(mask * per_example)
        return total / jnp.sum(mask), total

    def step(carry, batch):
        params, opt_state = carry
        idx, mask = batch
        (_, total), grads = jax.value_and_grad(batch_loss, has_aux=True)(
            params, xs[idx], ty[idx], mask)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), total

    def epoch(carry, key):
        order = jax.random.permutation(key, n) if cfg.shuffle else jnp.arange(n)
        pad = steps * bsz - n
        mask = jnp.ones((steps * bsz,), xs.dtype)
        if pad > 0:      # the last batch is partial: pad with masked rows
            order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
            mask = mask.at[n:].set(0)
        else:            # drop_last (or n divisible by the batch)
            order = order[:steps * bsz]
        carry, totals = jax.lax.scan(step, carry, (order.reshape(steps, bsz),
                                                   mask.reshape(steps, bsz)))
        loss = jnp.sum(totals) / jnp.sum(mask)
        return carry, (loss, _accuracy(carry[0], exs, ey))

    return jax.lax.scan(epoch, state, epoch_keys)


def _probe_result(params, tx, ty, mu, sd, losses, accs):
    kernel = params["kernel"] / sd[:, None]
    bias = params["bias"] - (mu / sd) @ params["kernel"]
    raw = {"kernel": kernel, "bias": bias}
    return LinearProbeResult(test_accuracy=accs[-1], train_accuracy=_accuracy(raw, tx, ty),
                             final_loss=losses[-1], loss_curve=losses,
                             test_accuracy_curve=accs, best_test_accuracy=jnp.max(accs),
                             kernel=kernel, bias=bias)
