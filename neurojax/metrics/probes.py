"""Probes on frozen features: closed-form ridge, the trained linear probe, kNN.

Every probe is a pure function of arrays, ``probe(train_x, train_y, test_x,
test_y, ...)``: features of shape (n, D) (or (n, ...), flattened per example)
and integer labels of shape (n,) in [0, num_classes). Inputs are validated on
the host, raising ``ValueError`` that names the argument, before anything is
compiled; the numerical core of each probe is one jitted program, and the
public functions also run under an outer ``jax.jit`` / ``jax.vmap`` (pass
``num_classes`` there: label ranges can only be checked on concrete arrays).

* ``ridge_probe``: least squares onto one-hot (+-1) targets with an
  unpenalised intercept, the regulariser chosen on a held-out split of the
  training features, then refitted. One ``eigh`` per fit serves every
  regulariser of the grid (as big_vision's few-shot ridge: one
  eigendecomposition, many regularisers).
* ``linear_probe``: the thesis' trained probe (Part III, Appendix D,
  Table 4b; the alpha-ReQ probe of Part II uses the same code): a linear layer
  with bias on frozen encoder features, Adam 1e-3, batch 512, 200 epochs,
  weight decay 1e-6, cross-entropy with label smoothing 0.1, constant learning
  rate, no feature normalisation (FastSSL ``scripts/train_model*.py``,
  ``fastssl/models/linear.py``).
* ``knn_probe``: cosine-similarity k-nearest neighbours with votes weighted by
  exp(similarity / T) (InstDisc; the kNN monitor of lightly's benchmarks, k =
  200, T = 0.1; DINO uses the same weights with T = 0.07, k = 20); Euclidean
  distance and a plain majority vote are options (kNN on raw pixels).
* ``time_to_accuracy``: the first logged wall-clock time at which an accuracy
  reaches a threshold (thesis Part III, Table 2-3: "time to reach X%").

Accuracies are fractions in [0, 1].
"""
import functools
import math
from typing import Any, Literal, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax._checks import check_bool, check_choice, check_int, check_real, is_concrete
from neurojax.metrics.spectrum import accumulation_dtype

ArrayLike = Union[jax.Array, np.ndarray]
Seed = Union[int, jax.Array]

# Ridge regularisers lambda of the per-example objective (see ridge_probe):
# one per decade from 1e-6 to 1e3, in units of the (standardised) feature
# covariance's eigenvalues, whose mean is 1 after standardisation.
DEFAULT_RIDGE_REGULARIZERS = tuple(float(10.0 ** p) for p in range(-6, 4))
# Eigenvalues below this multiple of eps * lambda_max are round-off of a
# zero eigenvalue (as in neurojax.metrics.spectrum): their directions carry
# no signal and are dropped from the ridge solution instead of being
# amplified by 1 / (0 + lambda).
_RCOND_EPS_MULTIPLE = 100

# Thesis Part III, Appendix D, Table 4b and FastSSL's linear-evaluation code.
PAPER_PROBE_EPOCHS = 200
PAPER_PROBE_BATCH_SIZE = 512
PAPER_PROBE_LEARNING_RATE = 1e-3
PAPER_PROBE_WEIGHT_DECAY = 1e-6
PAPER_PROBE_LABEL_SMOOTHING = 0.1

# lightly's kNN monitor (its benchmarks use knn_k=200, knn_t=0.1); InstDisc
# (Wu et al. 2018) used k = 200 as well.
DEFAULT_KNN_K = 200
DEFAULT_KNN_TEMPERATURE = 0.1

_RIDGE_METHODS = ("auto", "covariance", "gram")
_KNN_WEIGHTINGS = ("exponential", "uniform")
_KNN_METRICS = ("cosine", "euclidean")
_INITS = ("torch", "zeros")


# --- validation ---------------------------------------------------------------

def _features(name: str, x: ArrayLike) -> jax.Array:
    """(n, ...) real array -> (n, D) floating array."""
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if len(x.shape) < 2:
        raise ValueError(f"{name} must have shape (num_examples, num_features), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one example, got shape {tuple(x.shape)}")
    dtype = jnp.dtype(x.dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real (float or integer) array, got dtype {dtype}")
    x = jnp.asarray(x)
    x = x.reshape(x.shape[0], -1)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _labels(name: str, y: ArrayLike, n: int, x_name: str) -> jax.Array:
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    if len(y.shape) != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class labels, "
                         f"got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but {x_name} has {n} examples")
    dtype = jnp.dtype(y.dtype)
    if not jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
        raise ValueError(f"{name} must hold integer class labels, got dtype {dtype}")
    return jnp.asarray(y).astype(jnp.int32)


def _check_data(train_x, train_y, test_x, test_y, num_classes):
    """Shapes, dtypes, label ranges; infers num_classes from concrete labels."""
    tx = _features("train_x", train_x)
    ex = _features("test_x", test_x)
    if tx.shape[1] != ex.shape[1]:
        raise ValueError(f"train_x and test_x must have the same number of features per "
                         f"example, got {tx.shape[1]} and {ex.shape[1]}")
    ty = _labels("train_y", train_y, tx.shape[0], "train_x")
    ey = _labels("test_y", test_y, ex.shape[0], "test_x")
    num_classes = _num_classes(num_classes, {"train_y": ty, "test_y": ey})
    return tx, ty, ex, ey, num_classes


def _num_classes(num_classes, labels: dict) -> int:
    concrete = {k: v for k, v in labels.items() if is_concrete(v)}
    if num_classes is None:
        if len(concrete) < len(labels):
            raise ValueError("num_classes must be given when the labels are traced "
                             "(under jax.jit or jax.vmap)")
        num_classes = 1 + max(int(np.max(np.asarray(v))) for v in labels.values())
    check_int("num_classes", num_classes, 2)
    for name, v in concrete.items():
        v = np.asarray(v)
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, num_classes) = [0, {num_classes}), "
                             f"got labels in [{lo}, {hi}]")
    return int(num_classes)


def _key(seed: Seed) -> jax.Array:
    """An int seed or an existing PRNG key (typed or raw uint32[2])."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    if isinstance(seed, (jax.Array, np.ndarray)) or not is_concrete(seed):
        if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
            return seed
        if seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
            return jax.random.key(seed)
        if seed.shape == (2,) and seed.dtype == jnp.uint32:
            return jax.random.wrap_key_data(seed)
    raise ValueError(f"seed must be an int or a PRNG key, got {seed!r}")


# --- closed-form ridge probe ------------------------------------------------------

class RidgeProbeResult(NamedTuple):
    """Outcome of ``ridge_probe`` (a PyTree: jit- and vmap-friendly).

    Attributes:
        test_accuracy: test accuracy of the final fit at the chosen regulariser.
        regularizer: the chosen lambda.
        train_accuracy: accuracy of that fit on the rows it was fitted on.
        regularizers: (R,) the grid, ascending.
        val_accuracy: (R,) held-out accuracy of each lambda (the selection).
        test_accuracy_per_regularizer: (R,) test accuracy of the final fit at
            each lambda (for analysis only: selecting on it would be cheating).
        kernel: (D, C) weights of the final fit on the raw (unstandardised,
            flattened) features: scores = x @ kernel + bias.
        bias: (C,).
    """
    test_accuracy: jax.Array
    regularizer: jax.Array
    train_accuracy: jax.Array
    regularizers: jax.Array
    val_accuracy: jax.Array
    test_accuracy_per_regularizer: jax.Array
    kernel: jax.Array
    bias: jax.Array


def ridge_probe(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike,
                test_y: ArrayLike, *, num_classes: Optional[int] = None,
                regularizers: Sequence[float] = DEFAULT_RIDGE_REGULARIZERS,
                val_fraction: float = 0.2, val_data: Optional[tuple] = None,
                refit: bool = True, seed: Seed = 0, standardize: bool = True,
                method: Literal["auto", "covariance", "gram"] = "auto",
                dtype: Any = None) -> RidgeProbeResult:
    """Closed-form ridge (least-squares) linear probe with a selected regulariser.

    For a fitting set {(x_i, y_i)}_{i=1..n} and targets t_i = 2 onehot(y_i) - 1
    (+-1, as sklearn's ``RidgeClassifier`` and big_vision's few-shot probe)

        W, b = argmin (1/n) sum_i ||t_i - W^T x_i - b||^2 + lambda ||W||_F^2,

    i.e. with centred X_c, T_c and the covariance C = X_c^T X_c / n = V E V^T,

        W(lambda) = V (E + lambda I)^-1 V^T X_c^T T_c / n,   b = t_bar - W^T x_bar,

    and the prediction is argmax_c (W^T x + b)_c. This is sklearn's
    ``Ridge(alpha=n * lambda, fit_intercept=True)``: lambda is per example, so
    the same grid suits any n, and it is on the scale of C's eigenvalues (after
    standardisation their mean is 1). When D > n the n x n Gram form
    W = X_c^T U (E + lambda I)^-1 U^T T_c / n with X_c X_c^T / n = U E U^T gives
    the same W (push-through identity). Either way one ``eigh`` serves every
    lambda of the grid (big_vision ``evaluators/fewshot_lsr.py``); with
    ``standardize=False`` it is the ``eigh`` whose eigenvalues alpha-ReQ fits.
    Directions whose eigenvalue is round-off of zero (below 100 eps E_max)
    are dropped. Targets in {0, 1} instead of {-1, 1} give the same argmax:
    with an intercept the scores are an affine image of each other.

    Protocol: the training features are split at random (``seed``) into a
    fitting part and a held-out part of ``round(val_fraction * n)`` rows (or
    ``val_data`` is the held-out part and all of ``train_x`` is fitted); each
    lambda is fitted on the fitting part and scored on the held-out part; the
    best lambda (the largest among ties: more regularisation) is then refitted
    on all training rows (fitting + held-out) and scored on the test set.
    ``standardize`` uses the mean and (population) standard deviation of the
    rows being fitted; features with zero variance are only centred.

    Args:
        train_x, train_y: (n, D) features and (n,) integer labels.
        test_x, test_y: (m, D) and (m,).
        num_classes: C; inferred from the labels if None (needs concrete labels).
        regularizers: the lambda grid (positive, finite); default one per
            decade from 1e-6 to 1e3.
        val_fraction: held-out fraction of ``train_x`` used to choose lambda,
            in (0, 1); ignored when ``val_data`` is given.
        val_data: optional explicit held-out split ``(val_x, val_y)``.
        refit: refit the chosen lambda on all training rows (default); False
            keeps the fit from the selection step.
        seed: int or PRNG key for the random split.
        standardize: z-score the features (statistics of the fitted rows).
        method: 'covariance' (eigh of D x D), 'gram' (eigh of n x n) or 'auto'
            (the smaller of the two).
        dtype: accumulation dtype; default float64 with ``jax_enable_x64``,
            else float32 (matrix products at ``Precision.HIGHEST``).

    Returns:
        A ``RidgeProbeResult``.
    """
    tx, ty, ex, ey, num_classes = _check_data(train_x, train_y, test_x, test_y, num_classes)
    check_choice("method", method, _RIDGE_METHODS)
    check_bool("standardize", standardize)
    check_bool("refit", refit)
    lams = _regularizers(regularizers)
    key = _key(seed)
    n = tx.shape[0]
    if val_data is not None:
        if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
            raise ValueError("val_data must be a pair (val_x, val_y)")
        vx = _features("val_x", val_data[0])
        if vx.shape[1] != tx.shape[1]:
            raise ValueError(f"val_x must have {tx.shape[1]} features per example like "
                             f"train_x, got {vx.shape[1]}")
        vy = _labels("val_y", val_data[1], vx.shape[0], "val_x")
        _num_classes(num_classes, {"val_y": vy})
        if n < 2:
            raise ValueError(f"train_x needs at least 2 examples to fit, got {n}")
        fit_idx = jnp.arange(n)
        num_val = vx.shape[0]
        all_x = jnp.concatenate([tx, vx.astype(tx.dtype)])
        all_y = jnp.concatenate([ty, vy])
        val_idx = jnp.arange(n, n + num_val)
    else:
        check_real("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
        num_val = int(round(float(val_fraction) * n))
        if num_val < 1 or n - num_val < 2:
            raise ValueError(f"val_fraction={val_fraction} leaves {num_val} held-out and "
                             f"{n - num_val} fitting examples of train_x's {n}: need at "
                             f"least 1 held-out and 2 fitting examples")
        perm = jax.random.permutation(key, n)
        fit_idx, val_idx = perm[num_val:], perm[:num_val]
        all_x, all_y = tx, ty
    acc = accumulation_dtype(tx.dtype) if dtype is None else jnp.dtype(dtype)
    return _ridge_probe(all_x, all_y, fit_idx, val_idx, ex, ey, lams, num_classes,
                        standardize, method, refit, acc)


def _regularizers(regularizers) -> jax.Array:
    if not is_concrete(regularizers):
        lams = jnp.asarray(regularizers)
        if lams.ndim != 1:
            raise ValueError(f"regularizers must be 1-D, got shape {lams.shape}")
        return jnp.sort(lams)
    lams = np.asarray(regularizers, dtype=np.float64)
    if lams.ndim != 1 or lams.size < 1:
        raise ValueError(f"regularizers must be a non-empty 1-D sequence, got {regularizers!r}")
    if not np.all(np.isfinite(lams)) or not np.all(lams > 0):
        raise ValueError(f"regularizers must be finite and > 0, got {regularizers!r}")
    return jnp.asarray(np.sort(lams))


@functools.partial(jax.jit, static_argnums=(7, 8, 9, 10, 11))
def _ridge_probe(x, y, fit_idx, val_idx, test_x, test_y, lams, num_classes, standardize,
                 method, refit, acc):
    lams = lams.astype(acc)
    x, test_x = x.astype(acc), test_x.astype(acc)
    t = 2 * jax.nn.one_hot(y, num_classes, dtype=acc) - 1
    fx, ft, vx = x[fit_idx], t[fit_idx], x[val_idx]
    w, b, mu, sd = _ridge_fit(fx, ft, lams, standardize, method)
    val_acc = _accuracy_per_lambda((vx - mu) / sd, y[val_idx], w, b)
    # argmax over the reversed grid: among ties, the largest lambda.
    r = lams.shape[0]
    best = r - 1 - jnp.argmax(val_acc[::-1])
    if refit:
        all_idx = jnp.concatenate([fit_idx, val_idx])
        fx, fy = x[all_idx], y[all_idx]
        w, b, mu, sd = _ridge_fit(fx, t[all_idx], lams, standardize, method)
    else:
        fy = y[fit_idx]
    test_acc = _accuracy_per_lambda((test_x - mu) / sd, test_y, w, b)
    train_acc = _accuracy_per_lambda((fx - mu) / sd, fy, w[best][None], b[best][None])[0]
    kernel = w[best] / sd[:, None]
    bias = b[best] - (mu / sd) @ w[best]
    return RidgeProbeResult(test_accuracy=test_acc[best], regularizer=lams[best],
                            train_accuracy=train_acc, regularizers=lams,
                            val_accuracy=val_acc, test_accuracy_per_regularizer=test_acc,
                            kernel=kernel, bias=bias)


def _ridge_fit(x, t, lams, standardize, method):
    """W (R, D, C), b (R, C) on the standardised scale, and mu, sd (D,)."""
    n, d = x.shape
    hi = jax.lax.Precision.HIGHEST
    mu = jnp.mean(x, axis=0)
    xc = x - mu
    if standardize:
        sd = jnp.sqrt(jnp.mean(xc * xc, axis=0))
        sd = jnp.where(sd > 0, sd, 1)
        xc = xc / sd
    else:
        sd = jnp.ones((d,), x.dtype)
    t_bar = jnp.mean(t, axis=0)
    tc = t - t_bar
    if method == "auto":
        method = "covariance" if d <= n else "gram"
    if method == "covariance":
        e, v = jnp.linalg.eigh(jnp.matmul(xc.T, xc, precision=hi) / n)
        proj = jnp.matmul(v.T, jnp.matmul(xc.T, tc, precision=hi), precision=hi) / n
        left = v
    else:
        e, u = jnp.linalg.eigh(jnp.matmul(xc, xc.T, precision=hi) / n)
        proj = jnp.matmul(u.T, tc, precision=hi) / n
        left = jnp.matmul(xc.T, u, precision=hi)
    tol = _RCOND_EPS_MULTIPLE * jnp.finfo(x.dtype).eps * jnp.maximum(jnp.max(e), 0)
    filt = jnp.where(e[None, :] > tol, 1 / (jnp.maximum(e, 0)[None, :] + lams[:, None]), 0)
    # (D, K) @ (R, K, C) -> (R, D, C): memory R K C, never R D K.
    w = jnp.matmul(left, filt[:, :, None] * proj[None], precision=hi)
    b = jnp.broadcast_to(t_bar, (lams.shape[0], t.shape[1]))
    return w, b, mu, sd


def _accuracy_per_lambda(x, y, w, b):
    scores = jnp.einsum("md,rdc->rmc", x, w, precision=jax.lax.Precision.HIGHEST) + b[:, None]
    return jnp.mean(jnp.argmax(scores, axis=-1) == y[None, :], axis=-1)


# --- trained linear probe (thesis Part III, Appendix D) ----------------------------

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
    tx, ty, ex, ey, num_classes = _check_data(train_x, train_y, test_x, test_y, num_classes)
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
    key = _key(seed)
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


# --- kNN probe -------------------------------------------------------------------

def knn_probe(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
              *, num_classes: Optional[int] = None, k: int = DEFAULT_KNN_K,
              temperature: float = DEFAULT_KNN_TEMPERATURE,
              weighting: Literal["exponential", "uniform"] = "exponential",
              metric: Literal["cosine", "euclidean"] = "cosine",
              chunk_size: int = 256) -> jax.Array:
    """Weighted k-nearest-neighbour accuracy with cosine similarity (or
    Euclidean distance).

    Features are L2-normalised (x / max(||x||, 1e-12), as torch's
    ``F.normalize``); for a test point the similarities s_j = <x, x_j> to all
    training points are ranked, the top k kept, and class c gets the vote

        v_c = sum_{j in top-k} w_j [y_j = c],   w_j = exp(s_j / T)

    (InstDisc, Wu et al. 2018; lightly's kNN monitor with k = 200, T = 0.1,
    the defaults here; DINO and solo-learn use T = 0.07, k = 20). The weights
    are computed as exp((s_j - s_max) / T), the same argmax without overflow
    at small T. ``weighting='uniform'`` is the plain majority vote (w_j = 1).
    ``metric='euclidean'`` ranks the raw features by squared Euclidean
    distance instead (s_j = -||x - x_j||^2, no normalisation; with uniform
    weights this is scikit-learn's ``KNeighborsClassifier``, the classic kNN
    on pixels; exponential weights become a Gaussian kernel of width T).
    The prediction is argmax_c v_c. Ties are deterministic: among equal
    similarities the lower training index ranks first (``lax.top_k``), among
    equal votes the lower class index wins. Test points never match
    themselves: train and test are separate arrays.

    Test rows are processed in chunks of ``chunk_size`` (a ``lax.map``), so
    memory is O(chunk_size * n_train) besides the features themselves.

    Args:
        train_x, train_y: (n, D) features and (n,) integer labels.
        test_x, test_y: (m, D) and (m,).
        num_classes: C; inferred from the labels if None (needs concrete labels).
        k: neighbours, 1 <= k <= n (default 200; use fewer, e.g. 20, on small
            training sets, where 200 neighbours span several classes).
        temperature: T > 0 of the exponential weights.
        weighting: 'exponential' (default) or 'uniform'.
        metric: 'cosine' (default) or 'euclidean'.
        chunk_size: test rows per chunk (>= 1).

    Returns:
        The test accuracy, a scalar in [0, 1].
    """
    tx, ty, ex, ey, num_classes = _check_data(train_x, train_y, test_x, test_y, num_classes)
    k = check_int("k", k)
    if k > tx.shape[0]:
        raise ValueError(f"k must be <= the number of training examples "
                         f"({tx.shape[0]}), got k={k}")
    check_real("temperature", temperature, low=0, low_open=True)
    check_choice("weighting", weighting, _KNN_WEIGHTINGS)
    check_choice("metric", metric, _KNN_METRICS)
    chunk_size = min(check_int("chunk_size", chunk_size), ex.shape[0])
    dt = jnp.promote_types(jnp.promote_types(tx.dtype, ex.dtype), jnp.float32)
    return _knn_probe(tx.astype(dt), ty, ex.astype(dt), ey, jnp.asarray(temperature, dt),
                      num_classes, k, weighting, chunk_size, metric)


def _l2_normalize(x):
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, 1e-12)


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9))
def _knn_probe(tx, ty, ex, ey, temperature, num_classes, k, weighting, chunk, metric):
    if metric == "cosine":
        tx, ex = _l2_normalize(tx), _l2_normalize(ex)
    else:   # -||x - t||^2 = 2 <x, t> - ||t||^2 - ||x||^2; the last term does not rank
        half_sq_norms = 0.5 * jnp.sum(tx * tx, axis=-1)
    m = ex.shape[0]
    num_chunks = -(-m // chunk)
    pad = num_chunks * chunk - m
    ex = jnp.pad(ex, ((0, pad), (0, 0)))
    ey = jnp.pad(ey, (0, pad))
    valid = jnp.arange(num_chunks * chunk) < m

    def correct(args):
        x, y, ok = args
        sims = jnp.matmul(x, tx.T, precision=jax.lax.Precision.HIGHEST)
        if metric == "euclidean":   # 2 s = -||x - t||^2 + ||x||^2
            sims = 2 * (sims - half_sq_norms) - jnp.sum(x * x, axis=-1, keepdims=True)
        # The barrier keeps XLA:CPU from rewriting top_k into a full sort when
        # its output is sliced below (measured 30x slower: 2.5 s vs 0.08 s for
        # 256 x 20000 similarities, k = 200).
        top, idx = jax.lax.optimization_barrier(jax.lax.top_k(sims, k))
        if weighting == "exponential":
            w = jnp.exp((top - top[:, :1]) / temperature)
        else:
            w = jnp.ones_like(top)
        rows = jnp.broadcast_to(jnp.arange(x.shape[0])[:, None], idx.shape)
        votes = jnp.zeros((x.shape[0], num_classes), w.dtype).at[rows, ty[idx]].add(w)
        return jnp.sum((jnp.argmax(votes, axis=-1) == y) & ok)

    counts = jax.lax.map(correct, (ex.reshape(num_chunks, chunk, -1),
                                   ey.reshape(num_chunks, chunk),
                                   valid.reshape(num_chunks, chunk)))
    return jnp.sum(counts) / m


# --- time to accuracy --------------------------------------------------------------

def time_to_accuracy(times: ArrayLike, accuracies: ArrayLike,
                     threshold: float) -> Optional[float]:
    """The first logged time at which ``accuracies >= threshold``, else None.

    For the "time to reach X% accuracy" of the thesis' Part III (Tables 2-3,
    minutes to reach the baseline's accuracy or 80%): ``times[i]`` is the
    wall-clock (or epoch) at which ``accuracies[i]`` was measured, in logging
    order; the threshold is in the accuracies' units (fractions here). NaN
    accuracies never count as reached. No interpolation between log points.
    """
    t = np.asarray(times, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}")
    if a.shape != t.shape:
        raise ValueError(f"accuracies must have the shape of times {t.shape}, got {a.shape}")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a real number, got {threshold!r}") from None
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    hit = np.flatnonzero(a >= threshold)
    return float(t[hit[0]]) if hit.size else None
