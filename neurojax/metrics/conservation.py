"""Symmetries of the loss and their (broken) conservation laws under SGD.

Kunin, Sagastuy-Brena, Ganguli, Yamins & Tanaka, "Neural mechanics: symmetry
and broken conservation laws in deep learning dynamics" (ICLR 2021), Sec. 3-5;
Tanaka & Kunin, "Noether's learning dynamics: role of symmetry breaking in
neural networks" (NeurIPS 2021), Sec. 4-5.

A *symmetry* of a loss L is a one-parameter group acting on a subset A of
the parameters with L(psi_alpha(theta)) = L(theta). Differentiating at
alpha = 0 gives a geometric constraint on the gradient g (Kunin et al. Sec. 3):

* translation, L(theta + alpha 1_A) = L:            <g, 1_A> = 0
  (the softmax's logits: adding the same number to every class's row of the
  head, or to every class's bias, leaves the probabilities unchanged);
* scale, L(alpha theta_A) = L:                      <g, theta_A> = 0
  (the weights feeding a BatchNorm channel);
* rescale, L(alpha theta_A1, theta_A2 / alpha) = L:  <g, theta_A1> - <g, theta_A2> = 0
  (a ReLU/max-pool unit's incoming weights and bias, A1, and its outgoing
  weights, A2; through a BatchNorm the incoming set is the BN scale and bias).

Each constraint has a *charge* ``Q`` (the Noether charge of Tanaka & Kunin)
that gradient flow conserves without weight decay: ``Q = <theta_A, 1>``
(translation), ``||theta_A||^2`` (scale), ``||theta_A1||^2 - ||theta_A2||^2``
(rescale). In discrete time with learning rate eta and weight decay lambda
(``theta' = theta - eta (g + lambda theta)``) the constraint makes the laws
exact (not the paper's modified-flow approximations):

    translation:  Q_{t+1} = (1 - eta lambda) Q_t
    scale:        Q_{t+1} = (1 - eta lambda)^2 Q_t + eta^2 ||g_t||^2
    rescale:      Q_{t+1} = (1 - eta lambda)^2 Q_t + eta^2 (||g_A1||^2 - ||g_A2||^2)

(expand ``||theta'||^2``; the cross term is ``-2 eta (1 - eta lambda)
<g, theta>``, zero by the constraint). Kunin et al. integrate the continuous
analogue ``Q(t) = e^{-2 lambda t} Q(0) + eta int e^{-2 lambda (t-s)} ||g||^2``
(their Eq. 7-9, with the eta ||g||^2 term from the modified equation); the
discrete sum here (:func:`sgd_charge`) is its exact counterpart.

Heavy-ball momentum (``v' = beta v + g + lambda theta``, ``theta' = theta -
eta v'``: optax's ``trace`` and PyTorch's SGD, no dampening) turns each law
into a damped, driven oscillator. With ``Delta_t = theta_{t+1} - theta_t``
and ``D_t`` the charge of ``Delta_t`` (``||Delta_t||^2``, or the A1 minus A2
difference), the inner product of ``Delta_t = beta Delta_{t-1} - eta (g_t +
lambda theta_t)`` with ``psi(theta_t)`` gives exactly

    translation:    Q_{t+1} = (1 + beta - eta lambda) Q_t - beta Q_{t-1}
    scale, rescale: Q_{t+1} = (1 + beta - 2 eta lambda) Q_t - beta Q_{t-1} + D_t + beta D_{t-1}

with ``Q_{-1} = Q_0`` and ``D_{-1} = 0`` (zero initial velocity)
(:func:`heavy_ball_charge`). Kunin et al.'s modified equation for heavy ball
(Sec. 5, time t = k eta) is ``eta (1 + beta) / 2 theta'' + (1 - beta) theta' =
-grad L``; on the translation charge it is the damped harmonic oscillator
``m Q'' + gamma Q' + lambda Q = 0`` (m = eta (1 + beta) / 2, gamma = 1 - beta),
whose closed form :func:`heavy_ball_modified_charge` gives (the scale and
rescale charges add a drive; only their homogeneous part is closed-form).

Kinetic symmetry breaking (Tanaka & Kunin Sec. 4). For any update rule the
identity ``Q_{t+1} = Q_t + 2 <Delta_t, psi(theta_t)> + D_t`` holds for the
quadratic charges (``Q_{t+1} = Q_t + <Delta_t, 1_A>`` for translation).
SGD's Euclidean kinetic energy respects the symmetry, so
``<Delta_t, psi> = -eta lambda Q_t``. A preconditioned rule such as Adam or
RMSProp (kinetic energy ``theta'^T G theta' / 2`` with a diagonal, time-
varying G) breaks it: the measured ``<Delta_t, psi(theta_t)>`` is the
breaking term (:func:`kinetic_breaking`). What is implemented as a closed form
is the RMSProp case (Adam with beta1 = 0, no weight decay): with the step
``Delta = -eta g / s`` and s the preconditioner of that step, the charge in
the preconditioner's metric ``Q_s = sum_i s_i theta_i^2`` obeys
``Q_s(theta_{t+1}) = Q_s(theta_t) + eta^2 sum_i g_i^2 / s_i`` exactly (the
cross term is ``<g, theta> = 0``): the symmetry is restored in the learning
rule's metric, and the breaking of the Euclidean charge comes from
``s != const`` (:func:`preconditioned_charge`, :func:`rmsprop_charge_step`).
For Adam with beta1 > 0 only the measured breaking term is given.

Tanaka & Kunin (Sec. 5) read SGD + weight decay on a scale-invariant set as
an implicit adaptive method: since ``||g|| = ||g_hat|| / ||theta||`` (g_hat:
the gradient at theta / ||theta||), the scale law's fixed point is
``||theta||^4 = eta ||g_hat||^2 / (lambda (2 - eta lambda))`` (beta = 0, exact
for a constant ||g_hat||; ``eta ||g_hat||^2 / (2 lambda (1 - beta))`` to
leading order in eta lambda with momentum and step-uncorrelated gradients),
so the effective learning rate ``eta / ||theta||^2`` scales as
``1 / sqrt(||g_hat||^2)``, RMSProp's normalisation (:func:`equilibrium_charge`).
This is asymptotic (a stationary state), not an exact law.

Conventions: a symmetry's *channels* are the slices of its arrays along a
channel axis, so every function returns one value per channel (shape
``(C,)``). A dense layer's output channel is its kernel's last axis; a
convolution's too; the outgoing set of a unit is the next kernel's input axis
(-2). When a convolutional map is flattened (NHWC, channels fastest) before a
dense layer, that layer's input axis has ``H W C`` entries and channel c owns
the rows ``c, C + c, 2C + c, ...`` (``num_channels`` does that bookkeeping).
BatchNorm's epsilon (1e-5 in the library's models) breaks the scale symmetry
by a relative ``~eps / Var`` per channel; the laws hold to that order there.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_int, check_real

__all__ = ["KINDS", "Member", "Symmetry", "translation_symmetries", "scale_symmetry",
           "rescale_symmetry", "sequential_symmetries", "charge", "generator_inner",
           "conservation_record", "sgd_charge", "heavy_ball_charge",
           "heavy_ball_modified_charge", "kinetic_breaking", "preconditioned_charge",
           "rmsprop_charge_step", "equilibrium_charge"]

KINDS = ("translation", "scale", "rescale")


@dataclasses.dataclass(frozen=True)
class Member:
    """One array of a symmetry's set: its ``path`` in the parameter tree and
    its channel ``axis`` (``None``: the whole array is one channel)."""
    path: tuple[str, ...]
    axis: Optional[int] = -1


@dataclasses.dataclass(frozen=True)
class Symmetry:
    """A per-channel symmetry of the loss (hashable, so it can be a static
    argument). ``members``: the set A (translation, scale) or A1 (rescale:
    the unit's incoming weights); ``outgoing``: A2 (rescale only);
    ``num_channels``: C, the number of channels (see the module docstring
    for flattened inputs)."""
    kind: str
    name: str
    members: tuple[Member, ...]
    num_channels: int
    outgoing: tuple[Member, ...] = ()

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty str without '/', got {self.name!r}")
        check_int("num_channels", self.num_channels)
        if not self.members or not all(isinstance(m, Member) for m in self.members):
            raise ValueError(f"members must be a non-empty tuple of Member, got {self.members!r}")
        if (self.kind == "rescale") != bool(self.outgoing):
            raise ValueError(f"outgoing must be given for a rescale symmetry and only then, "
                             f"got kind={self.kind!r}, outgoing={self.outgoing!r}")


def _get(tree: Any, path: Sequence[str]) -> jax.Array:
    node = tree
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"symmetry path {'/'.join(path)!r} not found in the tree "
                             f"(no {key!r} under {'/'.join(path[:i]) or 'the root'!r})")
        node = node[key]
    return jnp.asarray(node)


def _rows(tree: Any, member: Member, channels: int) -> jax.Array:
    """The member's array as a ``(C, n)`` matrix: row c holds channel c."""
    x = _get(tree, member.path)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if member.axis is None:
        if channels != 1:
            raise ValueError(f"{'/'.join(member.path)}: axis=None is one channel, but "
                             f"num_channels={channels}")
        return x.reshape(1, -1)
    if not -x.ndim <= member.axis < x.ndim:
        raise ValueError(f"{'/'.join(member.path)}: axis {member.axis} out of range for "
                         f"shape {x.shape}")
    x = jnp.moveaxis(x, member.axis, 0)
    n = x.shape[0]
    if n % channels:
        raise ValueError(f"{'/'.join(member.path)}: axis {member.axis} has {n} entries, "
                         f"not a multiple of num_channels={channels}")
    # channels fastest along the axis (NHWC flatten): index = k * C + c
    return x.reshape(n // channels, channels, -1).transpose(1, 0, 2).reshape(channels, -1)


def _sum(fn, symmetry: Symmetry, *trees) -> jax.Array:
    """sum over the members of ``fn(rows...)`` summed over each row, minus the
    same over the outgoing set (rescale)."""
    c = symmetry.num_channels

    def total(members):
        return sum(jnp.sum(fn(*[_rows(t, m, c) for t in trees]), axis=1) for m in members)
    out = total(symmetry.members)
    if symmetry.kind == "rescale":
        out = out - total(symmetry.outgoing)
    return out


def charge(params: Any, symmetry: Symmetry) -> jax.Array:
    """The per-channel charge Q (shape ``(C,)``): ``sum theta_A`` (translation),
    ``||theta_A||^2`` (scale), ``||theta_A1||^2 - ||theta_A2||^2`` (rescale);
    Kunin et al. 2021, Sec. 4 (Tanaka & Kunin's Noether charge under a
    Euclidean kinetic energy, up to a factor eta / 2). Applied to an update
    tree it gives ``D`` of the module docstring."""
    if symmetry.kind == "translation":
        return _sum(lambda x: x, symmetry, params)
    return _sum(jnp.square, symmetry, params)


def generator_inner(vectors: Any, params: Any, symmetry: Symmetry) -> jax.Array:
    """``<v, psi(theta)>`` per channel, psi the symmetry's generator:
    ``<v, 1_A>`` (translation), ``<v, theta_A>`` (scale), ``<v_A1, theta_A1> -
    <v_A2, theta_A2>`` (rescale). Zero for the loss gradient (Kunin et al.
    2021, Eq. 2-4); for an optimiser's step ``Delta`` it is half the step's
    cross term in the charge (the kinetic breaking term)."""
    if symmetry.kind == "translation":
        return _sum(lambda v: v, symmetry, vectors)
    return _sum(jnp.multiply, symmetry, vectors, params)


def conservation_record(updates: Any, params: Any,
                        symmetries: Sequence[Symmetry]) -> dict[str, dict[str, jax.Array]]:
    """``{symmetry.name: {'charge': Q(theta), 'inner': <u, psi(theta)>,
    'step': Q(u)}}`` per channel, for the ``updates`` u an optax
    transformation receives and the current ``params``. Pure; the recording
    transform is ``neurojax.optim.record_metrics(lambda u, p:
    conservation_record(u, p, symmetries), name)``: first in the chain, u is
    the raw gradient (``step`` = ||g||^2, the SGD law's drive; ``inner`` = 0
    by the symmetry); last, u is the step Delta (``step`` = D_t, the
    heavy-ball law's drive; ``inner``: the kinetic breaking term)."""
    names = [s.name for s in symmetries]
    if len(set(names)) < len(names):
        raise ValueError(f"symmetries must have distinct names, got {names}")
    return {s.name: {"charge": charge(params, s), "inner": generator_inner(updates, params, s),
                     "step": charge(updates, s)} for s in symmetries}


# ------------------------------------------------------------- finding symmetries

def _layer(params: Any, path: Sequence[str]) -> Mapping:
    node = params
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"layer {'/'.join(path)!r} not found in the parameter tree")
        node = node[key]
    return node


def _path(p) -> tuple[str, ...]:
    if isinstance(p, str):
        return tuple(p.split("/"))
    return tuple(p)


def translation_symmetries(params: Any, head: str = "head") -> list[Symmetry]:
    """The softmax head's translation symmetries: one channel per input
    feature j (``kernel[j, :]`` shifted by a constant over the classes) named
    ``<head>_rows``, and the bias shifted over the classes (``<head>_bias``,
    one channel) if the head has one."""
    path = _path(head)
    layer = _layer(params, path)
    if "kernel" not in layer:
        raise ValueError(f"head {head!r} must be a dense layer with a 'kernel'")
    name = "_".join(path)
    out = [Symmetry("translation", f"{name}_rows", (Member(path + ("kernel",), 0),),
                    int(np.shape(layer["kernel"])[0]))]
    if "bias" in layer:
        out.append(Symmetry("translation", f"{name}_bias", (Member(path + ("bias",), None),), 1))
    return out


def _incoming(layer: Mapping, path: tuple[str, ...], names=("kernel", "bias", "scale")):
    return tuple(Member(path + (k,), -1) for k in names if k in layer)


def scale_symmetry(params: Any, layer: str) -> Symmetry:
    """The per-output-channel scale symmetry of a dense or conv ``layer``
    whose outputs are normalised per channel (BatchNorm/LayerNorm over the
    batch/features of each channel): its kernel's last axis and its bias."""
    path = _path(layer)
    node = _layer(params, path)
    if "kernel" not in node:
        raise ValueError(f"layer {layer!r} must have a 'kernel' for a scale symmetry")
    return Symmetry("scale", "_".join(path), _incoming(node, path, ("kernel", "bias")),
                    int(np.shape(node["kernel"])[-1]))


def rescale_symmetry(params: Any, incoming: str, outgoing: str) -> Symmetry:
    """The rescale symmetry of the positively homogeneous units (ReLU, and
    max-pooling after it) between ``incoming`` (a dense/conv layer's kernel
    and bias, or a BatchNorm's scale and bias, last axis) and ``outgoing``
    (the next kernel's input axis, -2; a flattened NHWC map is handled by
    the channel count)."""
    pin, pout = _path(incoming), _path(outgoing)
    node_in, node_out = _layer(params, pin), _layer(params, pout)
    members = _incoming(node_in, pin)
    if not members or "kernel" not in node_out:
        raise ValueError(f"rescale needs a kernel/scale in {incoming!r} and a kernel in "
                         f"{outgoing!r}")
    channels = int(np.shape(_get(params, members[0].path))[-1])
    return Symmetry("rescale", f"{'_'.join(pin)}_to_{'_'.join(pout)}", members, channels,
                    outgoing=(Member(pout + ("kernel",), -2),))


def sequential_symmetries(params: Any, layers: Sequence[str], *,
                          norms: Optional[Mapping[str, str]] = None,
                          head: Optional[str] = "head") -> list[Symmetry]:
    """The symmetries of a chain ``layers[0] -> ... -> layers[-1]`` with
    positively homogeneous activations (ReLU, max-pool) between layers:
    a scale symmetry for every layer in ``norms`` (``{layer: its norm
    layer}``), a rescale symmetry between each consecutive pair (through the
    norm's scale and bias when there is one), and the head's translation
    symmetries when ``head`` (a softmax classifier) is given. E.g.
    ``SmallCNN(batch_norm=True)``: ``layers=('conv_0', 'conv_1', 'hidden',
    'head'), norms={'conv_0': 'bn_0', 'conv_1': 'bn_1'}``."""
    norms = dict(norms or {})
    layers = list(layers)
    if len(layers) < 1:
        raise ValueError("layers must name at least one layer")
    for layer in norms:
        if layer not in layers:
            raise ValueError(f"norms names {layer!r}, which is not in layers {layers}")
    out = [scale_symmetry(params, layer) for layer in layers if layer in norms]
    for a, b in zip(layers[:-1], layers[1:]):
        out.append(rescale_symmetry(params, norms.get(a, a), b))
    if head is not None:
        out.extend(translation_symmetries(params, head))
    return out


# ----------------------------------------------------------------------- laws

def _check_law(kind, lr, weight_decay, momentum=0.0):
    check_choice("kind", kind, KINDS)
    check_real("lr", lr, low=0, low_open=True)
    check_real("weight_decay", weight_decay, low=0)
    check_real("momentum", momentum, low=0, high=1, high_open=True)


def _series(name, value, ndim_min=1):
    x = jnp.asarray(value)
    if x.ndim < ndim_min:
        raise ValueError(f"{name} must have a time axis first (ndim >= {ndim_min}), "
                         f"got shape {x.shape}")
    return x


def sgd_charge(q0: Any, grad_step: Any, *, kind: str, lr: float,
               weight_decay: float = 0.0) -> jax.Array:
    """The charge under SGD with weight decay, integrated from ``q0``:
    ``Q_{t+1} = (1 - eta lambda) Q_t`` (translation) or ``(1 - eta lambda)^2
    Q_t + eta^2 G_t`` (scale, rescale), G_t = ``grad_step[t]`` the charge of
    the raw gradient (``||g_t||^2``, or the A1 - A2 difference). Returns
    ``Q_0 .. Q_T`` (shape ``(T + 1,) + q0.shape``). Exact in discrete time
    (Kunin et al. 2021, Sec. 4; module docstring); ``grad_step`` is unused
    for translation (its charge, ``<g, 1>``, is zero by the symmetry)."""
    _check_law(kind, lr, weight_decay)
    g = _series("grad_step", grad_step)
    q0 = jnp.asarray(q0, g.dtype)
    decay = 1.0 - lr * weight_decay
    if kind == "translation":
        powers = decay ** jnp.arange(g.shape[0] + 1, dtype=g.dtype)
        return powers.reshape((-1,) + (1,) * q0.ndim) * q0

    def step(q, gt):
        q = decay ** 2 * q + lr ** 2 * gt
        return q, q
    _, qs = jax.lax.scan(step, q0, g)
    return jnp.concatenate([q0[None], qs])


def heavy_ball_charge(q0: Any, displacement_step: Any, *, kind: str, lr: float,
                      weight_decay: float = 0.0, momentum: float = 0.9) -> jax.Array:
    """The charge under heavy-ball SGD (``v' = beta v + g + lambda theta``,
    ``theta' = theta - eta v'``, v_0 = 0), integrated from ``q0`` with the exact
    second-order recurrence of the module docstring; ``displacement_step[t]``
    is D_t, the charge of the step ``theta_{t+1} - theta_t`` (unused for
    translation). Returns ``Q_0 .. Q_T``. With ``momentum=0`` it is the SGD law
    written with the step instead of the gradient."""
    _check_law(kind, lr, weight_decay, momentum)
    d = _series("displacement_step", displacement_step)
    q0 = jnp.asarray(q0, d.dtype)
    c = 1.0 if kind == "translation" else 2.0
    if kind == "translation":
        d = jnp.zeros_like(d)
    a, b = 1.0 + momentum - c * lr * weight_decay, momentum

    def step(carry, dt):
        q, q_prev, d_prev = carry
        q_next = a * q - b * q_prev + dt + b * d_prev
        return (q_next, q, dt), q_next
    _, qs = jax.lax.scan(step, (q0, q0, jnp.zeros_like(d[0])), d)
    return jnp.concatenate([q0[None], qs])


def heavy_ball_modified_charge(q0: Any, steps: Any, *, lr: float, weight_decay: float,
                               momentum: float = 0.9, stiffness: float = 1.0) -> jax.Array:
    """The closed form of Kunin et al. 2021's heavy-ball modified equation
    (Sec. 5) for a charge without drive, at step k (time t = k eta):
    ``m Q'' + gamma Q' + kappa Q = 0``, m = eta (1 + beta) / 2, gamma = 1 - beta,
    kappa = ``stiffness`` x lambda (1: translation; 2: the homogeneous part of
    scale and rescale), with ``Q(0) = q0`` and ``Q'(0) = -kappa q0 / (1 + beta)``.
    The modified equation does not fix Q'(0) (v_0 = 0 is a discrete
    condition); this choice is ours: among -kappa q0, -kappa q0 / 2 (matching
    the first step to O(eta^2)), 0 and this one, it was closest to the exact
    recurrence at eta = 0.01, beta = 0.9 (max error 1.5e-4 vs 8.8e-4). Under-,
    critically or over-damped through the complex square root:
    ``Q(t) = e^{-gamma t / 2m} (q0 cosh(w t) + (Q'(0) + gamma q0 / 2m) sinh(w t) / w)``,
    ``w = sqrt(gamma^2 / 4m^2 - kappa / m)``. An O(eta) approximation of
    :func:`heavy_ball_charge`'s exact recurrence, not equal to it."""
    check_real("lr", lr, low=0, low_open=True)
    check_real("weight_decay", weight_decay, low=0)
    check_real("momentum", momentum, low=0, high=1, high_open=True)
    check_real("stiffness", stiffness, low=0, low_open=True)
    k = jnp.asarray(steps)
    q0 = jnp.asarray(q0)
    dtype = jnp.promote_types(q0.dtype, jnp.float32)
    t = (k * lr).astype(dtype)
    m, gamma, kappa = lr * (1 + momentum) / 2, 1 - momentum, stiffness * weight_decay
    v0 = -kappa / (1 + momentum)  # per unit q0
    cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
    w = jnp.sqrt(jnp.asarray(gamma ** 2 / (4 * m ** 2) - kappa / m, cdtype))
    tc = t.astype(cdtype)
    # sinh(w t) / w -> t as w -> 0 (critical damping)
    small = jnp.abs(w) < 1e-12
    sinhc = jnp.where(small, tc, jnp.sinh(w * tc) / jnp.where(small, 1.0, w))
    shape = jnp.real(jnp.cosh(w * tc) + (v0 + gamma / (2 * m)) * sinhc)
    out = jnp.exp(-gamma * t / (2 * m)) * shape
    return out.reshape(out.shape + (1,) * q0.ndim) * q0


def kinetic_breaking(step_inner: Any, q: Any, *, kind: str, lr: float,
                     weight_decay: float = 0.0) -> jax.Array:
    """The kinetic symmetry-breaking term per step (Tanaka & Kunin 2021,
    Sec. 4, discrete): the measured cross term of the charge's change minus
    what a Euclidean (SGD) step with the same eta, lambda would give,
    ``c (<Delta_t, psi(theta_t)> + eta lambda Q_t)`` with c = 2 (scale,
    rescale) or 1 (translation). ``step_inner[t] = <Delta_t, psi(theta_t)>``
    (a recorder placed last), ``q[t] = Q_t``. Zero for plain SGD; the charge
    then follows ``Q_{t+1} = (1 - c eta lambda) Q_t + D_t + breaking_t``."""
    _check_law(kind, lr, weight_decay)
    inner = _series("step_inner", step_inner)
    q = _series("q", q)
    if inner.shape != q.shape:
        raise ValueError(f"step_inner and q must have the same shape, got {inner.shape} "
                         f"and {q.shape}")
    c = 1.0 if kind == "translation" else 2.0
    return c * (inner + lr * weight_decay * q)


def preconditioned_charge(params: Any, preconditioner: Any, symmetry: Symmetry) -> jax.Array:
    """The scale or rescale charge in a diagonal metric s (a tree like the
    parameters, e.g. RMSProp's ``sqrt(nu + eps)``): ``sum_A s theta^2`` (minus
    the outgoing set's for rescale), per channel. Tanaka & Kunin 2021
    (Sec. 4): the Noether charge of a kinetic energy ``theta'^T G theta' / 2``
    with G = diag(s) / eta, up to a factor."""
    if symmetry.kind == "translation":
        raise ValueError("preconditioned_charge is for scale and rescale symmetries "
                         "(translation's charge is linear in theta)")
    return _sum(lambda s, x: s * jnp.square(x), symmetry, preconditioner, params)


def rmsprop_charge_step(q_metric: Any, grads: Any, preconditioner: Any, symmetry: Symmetry, *,
                        lr: float) -> jax.Array:
    """The predicted metric charge after one RMSProp step ``Delta = -eta g / s``
    (no momentum, no weight decay): ``Q_s(theta_{t+1}) = Q_s(theta_t) + eta^2
    sum_A g^2 / s`` (minus A2's for rescale), the metric frozen at this
    step's s. Exact, because the cross term is ``-2 eta <g, theta> = 0``."""
    check_real("lr", lr, low=0, low_open=True)
    if symmetry.kind == "translation":
        raise ValueError("rmsprop_charge_step is for scale and rescale symmetries")
    return jnp.asarray(q_metric) + lr ** 2 * _sum(lambda g, s: jnp.square(g) / s, symmetry,
                                                  grads, preconditioner)


def equilibrium_charge(normalized_grad_sq: Any, *, lr: float, weight_decay: float,
                       momentum: float = 0.0) -> jax.Array:
    """The stationary scale charge ``||theta||^2`` of SGD + weight decay on a
    scale-invariant set (Tanaka & Kunin 2021, Sec. 5, implicit adaptive
    optimisation): ``sqrt(eta G_hat / (lambda (2 - eta lambda)))`` for
    beta = 0 (the exact fixed point of the scale law when G_hat =
    ||g||^2 ||theta||^2 is constant) and ``sqrt(eta G_hat / (2 lambda (1 -
    beta)))`` with momentum (leading order in eta lambda, gradients
    uncorrelated across steps). Asymptotic: compare with a long run's
    late-time charge."""
    check_real("lr", lr, low=0, low_open=True)
    check_real("weight_decay", weight_decay, low=0, low_open=True)
    check_real("momentum", momentum, low=0, high=1, high_open=True)
    g = jnp.asarray(normalized_grad_sq)
    if momentum == 0:
        return jnp.sqrt(lr * g / (weight_decay * (2 - lr * weight_decay)))
    return jnp.sqrt(lr * g / (2 * weight_decay * (1 - momentum)))
