"""Each learning rule as a biased, noisy gradient estimator (part 'bias_variance'
of ``neurojax.analysis.credit_assignment``).

Ghosh, Liu, Lajoie, Kording & Richards (ICLR 2023) write an imperfect update
as ``Delta w = -g + b beta + sigma sqrt(f(N)) n`` (Eq. 1) and predict its
expected one-step excess loss over a true-gradient step (Lemma 2.1, Eq. 3;
``neurojax.metrics.imperfect_gradients.lemma21_excess_loss``). A learning
rule's minibatch update ``-g_i`` (``g_i``: the rule's gradient of the forward
parameters on batch ``i``) has exactly this form against the full-batch true
gradient ``g``:

    -g_i = -g + (-d) + (-n_i),   d = mean_i g_i - g,   n_i = g_i - mean_i g_i,

so ``b beta = -d`` (``b = ||d|| / sqrt(N)``, Ghosh et al.'s ``||beta|| =
sqrt(N)``) and the noise set is ``{-n_i}`` (zero-sum by construction; sigma =
f(N) = 1 and Lemma 2.1's ``Tr H / N`` replaced by the set's ``mean_i n_i^T H
n_i``, its finite-set form). The batches are whole epochs of disjoint batches
of a fixed training subset, so ``mean_i g_i`` is the rule's full-batch
gradient (checked) and backprop's ``d`` is zero up to rounding. ``H`` is the
dense Hessian of the backprop twin's full-batch loss (forward-mode autodiff
does not pass through the rules' ``custom_vjp``, and the twin has the same
forward function). The measurement is Eq. 2 with those updates applied
(``measure_excess_loss``): exact agreement for a quadratic loss, here up to
the third-order terms of a small ReLU MLP. Float64 throughout.

Each rule trains from the same initial W (seed 0; the rules' B from the same
key) for ``steps`` SGD steps (``configs/credit_digits.py``'s optimiser); the
estimator is measured at the shared initialisation and at the rule's own
trained point.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from neurojax import rules
from neurojax.data.on_device import batch_indices
from neurojax.metrics.credit_assignment import angle
from neurojax.metrics.imperfect_gradients import lemma21_excess_loss, measure_excess_loss

WIDTHS = (16, 16)
SUBSET = 1408          # 22 batches of 64: the "full batch" of this part
BATCH = 64
EPOCHS = 2             # noise set: 2 epochs of disjoint batches (44 vectors)
DT = 0.05              # the step of Eq. 2 (the digits optimiser's learning rate)


def estimator_statistics(rule_grads, true_loss, rule_full_grad, w, dt: float) -> dict:
    """Bias, noise and Lemma 2.1's prediction against Eq. 2's measurement.

    Args:
        rule_grads: ``(R, N)``: the rule's gradient of the forward parameters
            on each batch of whole epochs of disjoint batches (flat).
        true_loss: ``(N,) -> scalar``: the full-batch loss of the backprop twin.
        rule_full_grad: the rule's gradient on the whole subset, ``(N,)``.
        w: the forward parameters, ``(N,)``.
        dt: the step of Eq. 2.

    Returns:
        dict: ``relative_bias`` ``||d|| / ||g||``, ``bias_angle`` (degrees
        between the rule's mean gradient and ``g``), ``relative_noise``
        ``sqrt(mean ||n_i||^2) / ||g||``, ``mean_matches_full_batch``
        (``||mean_i g_i - rule_full_grad|| / ||g||``), ``predicted`` (Lemma
        2.1's terms), ``predicted_isotropic_variance`` (its variance term for
        isotropic noise of the same power: ``1/2 sigma^2 Tr H / N dt^2``),
        ``measured`` (Eq. 2: ``total``, ``bias_only``, ``variance_only``),
        and ``grad_norm``, ``trace_over_n``.
    """
    grads = jnp.asarray(rule_grads)
    n = w.shape[0]
    g = jax.grad(true_loss)(w)
    hessian = jax.hessian(true_loss)(w)
    mean = grads.mean(0)
    d, noise = mean - g, grads - mean
    gnorm, dnorm = jnp.linalg.norm(g), jnp.linalg.norm(d)
    power = jnp.mean(jnp.sum(noise ** 2, axis=1))
    quadratic = jnp.mean(jnp.einsum("ri,ij,rj->r", noise, hessian, noise))
    biased = float(dnorm) > 1e-10 * float(gnorm)
    b = float(dnorm) / np.sqrt(n) if biased else 0.0
    beta = -d if biased else None
    predicted = lemma21_excess_loss(g, dt, hessian=hessian, b=b, beta=beta, sigma=1.0,
                                    f_n=1.0, noise_quadratic=quadratic)
    isotropic = lemma21_excess_loss(g, dt, trace=jnp.trace(hessian), sigma=jnp.sqrt(power))
    measured = {
        "total": measure_excess_loss(true_loss, w, dt, b=b, beta=beta, sigma=1.0,
                                     noise_set=-noise)["delta_loss"],
        "bias_only": measure_excess_loss(true_loss, w, dt, b=b, beta=beta)["delta_loss"],
        "variance_only": measure_excess_loss(true_loss, w, dt, sigma=1.0,
                                             noise_set=-noise)["delta_loss"]}
    return jax.device_get({
        "relative_bias": dnorm / gnorm, "bias_angle": angle(mean, g),
        "relative_noise": jnp.sqrt(power) / gnorm,
        "mean_matches_full_batch": jnp.linalg.norm(mean - rule_full_grad) / gnorm,
        "predicted": predicted, "predicted_isotropic_variance": isotropic["variance"],
        "measured": measured, "grad_norm": gnorm, "trace_over_n": jnp.trace(hessian) / n})


def _relative(measured: float, predicted: float) -> float:
    return abs(measured - predicted) / max(abs(predicted), 1e-300)


def twin_loss(x, y):
    """``true_loss(flat) -> scalar``: the backprop twin's mean cross-entropy on
    ``(x, y)`` at flat forward parameters (one function for every rule, so
    its compiled measurements are shared)."""
    from neurojax.models import get_model
    twin = get_model("mlp", widths=WIDTHS)
    template = jax.tree.map(lambda a: a.astype(x.dtype),
                            twin.init(jax.random.PRNGKey(0), x[:1])["params"])
    _, unravel = ravel_pytree(template)

    def true_loss(flat):
        logits = twin.apply({"params": unravel(flat)}, x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return true_loss


def rule_points(variant: str, *, steps: int, x, y, true_loss=None) -> dict:
    """:func:`estimator_statistics` for ``variant`` at initialisation and after
    ``steps`` training steps (``{'init': ..., 'trained': ...}``)."""
    from neurojax.analysis.credit_assignment_runs import (SGD, cross_entropy_objective,
                                                          rule_tx, variant_rule)
    from neurojax.models import get_model
    rule = variant_rule(variant)
    model = get_model("mlp", widths=WIDTHS, rule="backprop" if rule.name == "backprop" else rule)
    objective = cross_entropy_objective(model)
    true_loss = twin_loss(x, y) if true_loss is None else true_loss
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          model.init(jax.random.PRNGKey(0), x[:1])["params"])
    key = jax.random.PRNGKey(1)
    batches = jnp.concatenate([jax.random.permutation(jax.random.fold_in(key, e), x.shape[0])
                               for e in range(EPOCHS)]).reshape(-1, BATCH)

    def rule_grad(p, idx):
        grads = jax.grad(lambda q: objective(q, {}, {"image": x[idx], "label": y[idx]}, key)[0])(p)
        return ravel_pytree(rules.forward_params(grads))[0]

    per_batch = jax.jit(lambda p: jax.lax.map(lambda i: rule_grad(p, i), batches))
    full_batch = jax.jit(lambda p: rule_grad(p, jnp.arange(x.shape[0])))

    def measure(p):
        w = ravel_pytree(rules.forward_params(p))[0]
        return estimator_statistics(per_batch(p), true_loss, full_batch(p), w, DT)

    out = {"init": measure(params)}
    tx = rule_tx(dict(SGD), rule, steps)
    idx = batch_indices(jax.random.PRNGKey(2), jnp.arange(steps), x.shape[0], BATCH)

    @jax.jit
    def train(p):
        def step(carry, inputs):
            q, s = carry
            i, t = inputs
            g = jax.grad(lambda r: objective(r, {}, {"image": x[i], "label": y[i]},
                                             jax.random.fold_in(key, t))[0])(q)
            u, s = tx.update(g, s, q)
            return (optax.apply_updates(q, u), s), None
        return jax.lax.scan(step, (p, tx.init(p)), (idx, jnp.arange(steps)))[0][0]

    trained = train(params)
    logits = model.apply({"params": trained}, x)
    out["trained"] = measure(trained)
    out["trained"]["train_accuracy"] = float(jnp.mean(jnp.argmax(logits, -1) == y))
    return out


def run(*, quick: bool = False, variants: Sequence[str] | None = None) -> dict:
    """Every variant (``credit_assignment_runs.VARIANTS``) on the digits MLP ``WIDTHS``
    in float64."""
    from neurojax.analysis.credit_assignment_runs import VARIANTS, split_arrays
    variants = tuple(VARIANTS) if variants is None else tuple(variants)
    steps = 20 if quick else 300
    with jax.enable_x64(True):
        xtr, ytr, _, _ = split_arrays("digits", True)
        x = jnp.asarray(np.asarray(xtr)[:SUBSET], jnp.float64)
        y = jnp.asarray(np.asarray(ytr)[:SUBSET])
        points, true_loss = {}, twin_loss(x, y)
        for v in variants:
            points[v] = rule_points(v, steps=steps, x=x, y=y, true_loss=true_loss)
            for where, p in points[v].items():
                p["rel_error"] = _relative(float(p["measured"]["total"]),
                                           float(p["predicted"]["total"]))
            print(f"bias_variance/{v}: trained bias {points[v]['trained']['relative_bias']:.3f} "
                  f"noise {points[v]['trained']['relative_noise']:.3f} predicted "
                  f"{points[v]['trained']['predicted']['total']:.3e} measured "
                  f"{points[v]['trained']['measured']['total']:.3e}", flush=True)
    out = {"widths": list(WIDTHS), "subset": SUBSET, "batch_size": BATCH, "epochs": EPOCHS,
           "dt": DT, "train_steps": steps, "points": points,
           "max_rel_error": max(p["rel_error"] for v in points.values() for p in v.values())}
    return out
