"""Gradient amplification: unbounded outputs whose output delta is ``y - t``.

Oland 2024, Efficient Deep Learning, Ch. 4. For the canonical output/loss
pairs (linear + squared error, sigmoid + cross-entropy, softmax + multi-class
cross-entropy) the gradient of the loss with respect to the output
pre-activation ``x`` (the logits) is the delta ``y - t`` (Sec 4.3). Softmax
and sigmoid bound ``y`` to ``[0, 1]``, so the delta saturates. Gradient
amplification (GA) keeps the delta ``y - t`` with an unbounded output map:

- exp-GA (Sec 4.5): ``y = alpha e^x``. The loss it minimises is the *sparse
  cross-entropy* (Sec 4.6), ``sum_k |y_k| - t_k ln y_k``, computed here in
  the stable form ``alpha e^x - t (x + ln alpha)``
  (:func:`sparse_cross_entropy`).
- pow3-GA (Sec 4.7): ``y = alpha x^3 + beta``. The loss is the *negative
  correlation loss* (Sec 4.8), ``sum_k alpha x_k^4 / 4 + beta x_k - t_k x_k``
  with linear outputs (:func:`negative_correlation`; the thesis prints the
  middle term as "beta y", read as ``beta y_mk``).

Both are matching losses ``L(x, t) = G(x) - t x (+ const)`` with ``G' = g``
the output map, so ``dL/dx = g(x) - t``. The thesis trains with the delta
written by hand; :func:`amplified_delta_loss` does the same through a
``jax.custom_vjp`` (:func:`impose_delta`), for any of the output maps in
``DELTA_OUTPUTS``. :func:`output_delta` gives the deltas themselves (Fig 4.2
histograms), :func:`softmax_normalizer` the softmax's ``s = sum_i e^{x_i}``
(Fig 4.5) and :func:`squared_error_curvature` the one-output curvatures of
Sec 4.14 (Eqs 4.1-4.4).

Conventions shared with ``neurojax.losses.classification``: logits
``[..., C]`` with integer labels ``batch['label']`` of shape ``[...]``; the
loss sums over the classes and averages over every other axis (the thesis
sums over the examples: a learning-rate factor); targets ``(a, b)`` give
``t = a`` for the negative classes and ``b`` for the positive one; the
prediction is the argmax of the logits (the output maps are increasing, so
the argmax of ``y`` is the same); ``aux = {'accuracy': ...}``. Computation is
in float32 (float64 when the logits are float64).
"""
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_real, is_concrete
from neurojax.losses.classification import label_targets

# Thesis defaults per output map: exp-GA and pow3-GA as in the first experiment
# (Sec 4.5, 4.7: alpha = 0.1, t in {0, 16}; alpha = 0.001, beta = 0.4, t in {0, 10});
# linear outputs with {-1, 1} as in Table 4.2; the bounded maps with {0, 1} / {-1, 1}.
DELTA_OUTPUTS = {
    "exp": {"alpha": 0.1, "targets": (0.0, 16.0)},
    "pow3": {"alpha": 0.001, "beta": 0.4, "targets": (0.0, 10.0)},
    "linear": {"targets": (-1.0, 1.0)},
    "sigmoid": {"targets": (0.0, 1.0)},
    "tanh": {"targets": (-1.0, 1.0)},
    "softmax": {"targets": (0.0, 1.0)},
}


def _float(x: jax.Array) -> jax.Array:
    """At least float32 (bfloat16 and float16 logits are upcast; float64 kept)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_alpha_beta(output: str, alpha, beta) -> None:
    """exp-GA needs alpha > 0 (y = alpha e^x > 0 and ln alpha); pow3-GA alpha > 0
    (bounded below) and beta >= 0, the domain Sec 4.8 states."""
    check_real(f"alpha (of output {output!r})", alpha, low=0.0, low_open=True)
    if output == "pow3":
        check_real("beta (of output 'pow3')", beta, low=0.0)


def _check_exp_targets(targets) -> None:
    """exp-GA needs t >= 0: y = alpha e^x > 0, so a negative target has no
    minimiser (alpha e^x - t x falls without bound as x -> -inf); t = 0 is the
    'inequality' case, whose loss tends to 0 as x -> -inf (Sec 4.5)."""
    if isinstance(targets, (str, bytes)) or not hasattr(targets, "__len__"):
        return  # not a pair: label_targets names the error
    for value in targets:
        if is_concrete(value) and not np.all(np.asarray(value) >= 0):
            raise ValueError(f"targets of exp-GA must be >= 0 (y = alpha e^x > 0), "
                             f"got {tuple(targets)!r}")


def _resolve(output: str, alpha, beta, targets) -> tuple:
    """(alpha, beta, targets) of ``output``: the thesis defaults of
    ``DELTA_OUTPUTS`` where ``None``; ``ValueError`` naming the argument for a
    hyperparameter the output does not use or out of its range."""
    check_choice("output", output, tuple(DELTA_OUTPUTS))
    defaults = DELTA_OUTPUTS[output]
    for name, value in (("alpha", alpha), ("beta", beta)):
        if value is not None and name not in defaults:
            raise ValueError(f"{name} is not used by output {output!r} (only by "
                             f"{[k for k, v in DELTA_OUTPUTS.items() if name in v]}), "
                             f"got {value!r}")
    alpha = defaults.get("alpha") if alpha is None else alpha
    beta = defaults.get("beta") if beta is None else beta
    targets = defaults["targets"] if targets is None else targets
    if output in ("exp", "pow3"):
        _check_alpha_beta(output, alpha, beta)
    if output == "exp":
        _check_exp_targets(targets)
    return alpha, beta, targets


def _labels_and_targets(logits, batch, targets):
    x = _float(logits)
    labels = batch["label"]
    return x, labels, label_targets(labels, x.shape[-1], targets, x.dtype)


def _mean_over_examples(per_class: jax.Array) -> jax.Array:
    """Sum over the class axis, mean over the rest."""
    return jnp.mean(jnp.sum(per_class, axis=-1))


def _accuracy(logits, labels) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def sparse_cross_entropy(logits: jax.Array, batch: dict, *, alpha: float = 0.1,
                         targets: Sequence[float] = (0.0, 16.0)) -> tuple[jax.Array, dict]:
    """exp-GA's loss, the sparse cross-entropy (Oland 2024, Efficient Deep
    Learning, Sec 4.5-4.6).

    With ``y = alpha e^x`` (``alpha > 0``), ``sum_k |y_k| - t_k ln y_k`` (the
    multi-class cross-entropy plus an L1 penalty on the outputs), computed as

        L = mean_b sum_k [ alpha e^{x_bk} - t_bk (x_bk + ln alpha) ],

    so that ``dL/dx = (alpha e^x - t) / B = (y - t) / B``. Per class, for
    ``t > 0`` the minimiser is ``x* = ln(t / alpha)``; for ``t = 0`` there is
    none (the loss tends to 0 as ``x -> -inf``: an inequality). Targets must be
    ``>= 0``. Defaults: Sec 4.5's ``alpha = 0.1``, ``t in {0, 16}``.
    """
    _check_alpha_beta("exp", alpha, None)
    _check_exp_targets(targets)
    x, labels, t = _labels_and_targets(logits, batch, targets)
    loss = _mean_over_examples(alpha * jnp.exp(x) - t * (x + jnp.log(alpha)))
    return loss, {"accuracy": _accuracy(x, labels)}


def negative_correlation(logits: jax.Array, batch: dict, *, alpha: float = 0.001,
                         beta: float = 0.4, targets: Sequence[float] = (0.0, 10.0)
                         ) -> tuple[jax.Array, dict]:
    """pow3-GA's loss, the negative correlation loss (Oland 2024, Efficient
    Deep Learning, Sec 4.7-4.8), on linear outputs ``y = x``:

        L = mean_b sum_k [ alpha x_bk^4 / 4 + beta x_bk - t_bk x_bk ],

    ``alpha > 0``, ``beta >= 0``, so that ``dL/dx = (alpha x^3 + beta - t) / B``,
    the delta ``y - t`` of the output ``y = alpha x^3 + beta``. Per class the
    minimiser is ``x* = cbrt((t - beta) / alpha)``. Defaults: Sec 4.7's
    ``alpha = 0.001``, ``beta = 0.4``, ``t in {0, 10}``.
    """
    _check_alpha_beta("pow3", alpha, beta)
    x, labels, t = _labels_and_targets(logits, batch, targets)
    loss = _mean_over_examples(alpha * x ** 4 / 4 + beta * x - t * x)
    return loss, {"accuracy": _accuracy(x, labels)}


def amplified_output(logits: jax.Array, output: str, *, alpha: Optional[float] = None,
                     beta: Optional[float] = None) -> jax.Array:
    """The output map ``y = g(x)`` named by ``output`` (over the last axis for
    'softmax'): 'exp' ``alpha e^x``; 'pow3' ``alpha x^3 + beta``; 'linear' ``x``;
    'sigmoid'; 'tanh'; 'softmax' (Oland 2024, Efficient Deep Learning, Sec
    4.2-4.7). ``None`` hyperparameters take the ``DELTA_OUTPUTS`` defaults."""
    alpha, beta, _ = _resolve(output, alpha, beta, None)
    x = _float(logits)
    if output == "exp":
        return alpha * jnp.exp(x)
    if output == "pow3":
        return alpha * x ** 3 + beta
    if output == "sigmoid":
        return jax.nn.sigmoid(x)
    if output == "tanh":
        return jnp.tanh(x)
    if output == "softmax":
        return jax.nn.softmax(x, axis=-1)
    return x


def output_delta(logits: jax.Array, labels: jax.Array, *, output: str,
                 alpha: Optional[float] = None, beta: Optional[float] = None,
                 targets: Optional[Sequence[float]] = None) -> jax.Array:
    """The output delta ``y - t`` (Oland 2024, Efficient Deep Learning, Sec
    4.3; the histograms of Fig 4.2), same shape as ``logits``: ``y`` is
    :func:`amplified_output`, ``t`` the scaled one-hot targets of ``labels``.
    ``None`` hyperparameters take the ``DELTA_OUTPUTS`` defaults."""
    alpha, beta, targets = _resolve(output, alpha, beta, targets)
    y = amplified_output(logits, output, alpha=alpha, beta=beta)
    return y - label_targets(labels, y.shape[-1], targets, y.dtype)


@jax.custom_vjp
def impose_delta(logits: jax.Array, delta: jax.Array, value: jax.Array) -> jax.Array:
    """Returns ``value``, whose gradient with respect to ``logits`` is replaced
    by ``delta`` (``d value / d logits := delta``; no gradient flows into
    ``delta`` or ``value``).

    This is how the thesis trains GA (Oland 2024, Efficient Deep Learning, Sec
    4.5: "keep computing the error gradients as alpha exp(x) - t = y - t"):
    the output delta is written by hand and backpropagated from the logits. A
    transformation of the parameter gradients could not do this, as it only
    sees ``J^T delta``. Reverse mode only (no ``jax.jvp``/``jax.hessian``).
    """
    return value


def _impose_fwd(logits, delta, value):
    return value, delta.astype(logits.dtype)


def _impose_bwd(delta, g):
    return g * delta, None, None


impose_delta.defvjp(_impose_fwd, _impose_bwd)


def amplified_delta_loss(logits: jax.Array, batch: dict, *, output: str = "exp",
                         alpha: Optional[float] = None, beta: Optional[float] = None,
                         targets: Optional[Sequence[float]] = None
                         ) -> tuple[jax.Array, dict]:
    """The manual-delta form of GA (Oland 2024, Efficient Deep Learning, Sec
    4.5, 4.7): value ``E = mean_b (1/2) ||y_b - t_b||^2`` (the "exp-GA +
    mean-squared-error" of Table 4.5), gradient with respect to the logits
    imposed as the canonical delta

        dE/dx := (y - t) / B,        y = amplified_output(x, output),

    ignoring ``g'(x)`` (:func:`impose_delta`). For 'exp' and 'pow3' the
    gradient equals that of :func:`sparse_cross_entropy` and
    :func:`negative_correlation`; for 'linear' that of the squared error; for
    'sigmoid' that of the sigmoid binary cross-entropy (``softplus(x) - t x``),
    for 'tanh' that of ``ln cosh x - t x``, and for 'softmax' that of the
    softmax cross-entropy when the targets of an example sum to 1 (``(0, 1)``).
    ``None`` hyperparameters take the ``DELTA_OUTPUTS`` defaults.
    """
    alpha, beta, targets = _resolve(output, alpha, beta, targets)
    x = _float(logits)
    delta = output_delta(x, batch["label"], output=output, alpha=alpha, beta=beta,
                         targets=targets)
    num_examples = delta.size // delta.shape[-1]
    value = 0.5 * _mean_over_examples(delta ** 2)
    loss = impose_delta(x, delta / num_examples, value)
    return loss, {"accuracy": _accuracy(x, batch["label"])}


def softmax_normalizer(logits: jax.Array, *, log: bool = False) -> jax.Array:
    """The softmax normaliser ``s = sum_i e^{x_i}`` over the last axis (Oland
    2024, Efficient Deep Learning, Sec 4.14, Fig 4.5), shape ``logits.shape[:-1]``;
    ``log=True`` returns ``ln s`` (log-sum-exp), finite where ``s`` overflows."""
    log_s = jax.nn.logsumexp(_float(logits), axis=-1)
    return log_s if log else jnp.exp(log_s)


def squared_error_curvature(x: jax.Array, t: jax.Array, output: str, *,
                            alpha: float = 1.0, beta: float = 0.0, s: float = 1.0
                            ) -> tuple[jax.Array, jax.Array]:
    """The two terms of ``d^2 E / dx^2`` for one output, ``E = (1/2)(f(x) - t)^2``
    (Oland 2024, Efficient Deep Learning, Sec 4.14, Eqs 4.1-4.4):

        E'' = f'(x)^2 - f''(x) (t - f(x)),

    returned as ``(f'^2, -f'' (t - f))`` (their sum is the curvature; the
    thesis compares the first terms). ``output`` as in ``DELTA_OUTPUTS``;
    'softmax' is ``f = e^x / s`` with the normaliser ``s`` held constant
    (Eq 4.2); 'exp' is ``alpha e^x`` (Eq 4.3 with ``alpha = 1``), 'pow3'
    ``alpha x^3 + beta`` (Eq 4.4 with ``alpha = 1, beta = 0``). ``alpha`` and
    ``beta`` are used only by 'exp'/'pow3', ``s`` only by 'softmax'.
    """
    check_choice("output", output, tuple(DELTA_OUTPUTS))
    check_real("s", s, low=0.0, low_open=True)
    x, t = _float(x), _float(t)
    if output in ("exp", "softmax"):
        f = alpha * jnp.exp(x) if output == "exp" else jnp.exp(x) / s
        d1, d2 = f, f
    elif output == "pow3":
        f, d1, d2 = alpha * x ** 3 + beta, 3 * alpha * x ** 2, 6 * alpha * x
    elif output == "sigmoid":
        f = jax.nn.sigmoid(x)
        d1 = f * (1 - f)
        d2 = d1 * (1 - 2 * f)
    elif output == "tanh":
        f = jnp.tanh(x)
        d1 = 1 - f ** 2
        d2 = -2 * f * d1
    else:  # linear
        f, d1, d2 = x, jnp.ones_like(x), jnp.zeros_like(x)
    return d1 ** 2, -d2 * (t - f)
