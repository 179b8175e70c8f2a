"""Learning rules without weight transport, as one hashable description.

A :class:`Rule` names the rule and holds its metaparameters; it knows the
feedback weights B a layer's backward pass uses, how B is updated (the
``mode`` of ``neurojax.rules.feedback``), and builds the layers
(:meth:`Rule.dense`, :meth:`Rule.conv`) that the models create when their
``rule`` field is a Rule. The rules, with B in W's layout:

* ``'backprop'``: ``dx = dy W^T``; no B.
* ``'feedback_alignment'`` (Lillicrap, Cownden, Tweed & Akerman 2016,
  "Random synaptic feedback weights support error backpropagation for deep
  learning", Nat. Commun., Results): ``dx = dy B^T`` with B fixed random;
  ``dB = 0`` and B's optimiser is ``optax.set_to_zero``.
* ``'sign_symmetry'`` (Liao, Leibo & Poggio 2016, "How important is weight
  symmetry in backpropagation?", AAAI; Xiao, Chen, Liao & Poggio 2018,
  "Biologically-plausible learning algorithms can scale to large
  datasets", arXiv 2018): ``B = s * sign(W)`` recomputed from W at every
  step, with a fixed scale ``s`` (``sign_scale``; default ``1/sqrt(fan_in)``, the
  initial weights' standard deviation, so ``||B|| ~ ||W_0||``; Xiao et al.
  use ``s = 1``), or ``magnitude='random'``: ``B = |B_0| * sign(W)`` with a
  fixed random ``B_0`` (Liao et al.'s random-magnitude sign-concordant
  feedback). For Gaussian W, ``cos(W, B) = E|w| / sqrt(E w^2) = sqrt(2/pi)``:
  37.1 degrees.
* ``'kolen_pollack'`` (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019,
  "Deep learning without weight transport", NeurIPS, the Kolen-Pollack
  section): B receives W's gradient, ``dB = dW`` (+ ``2 alpha B``, Kunin et
  al.'s decay, ``alpha=0`` by default); with the same optimiser and weight
  decay ``lambda`` on both, SGD gives
  ``W_{t+1} - B_{t+1} = (1 - lr lambda)(W_t - B_t)``.
* ``'weight_mirror'`` (Akrout et al. 2019, the weight-mirror section;
  Kunin et al. 2020) and Kunin et al.'s ``'symmetric_alignment'``,
  ``'activation_alignment'``, ``'information_alignment'``: B descends the
  gradient of a local loss (``neurojax.rules.alignment``, which gives each
  rule's equation and fixed point).

Default metaparameters are those of the Neural-Alignment code (Kunin et al.
2020): weight mirror alpha = beta = 1e-3 with unit-variance noise, symmetric
and activation alignment alpha = 1e-3, beta = 2e-3, information alignment
alpha = 2e-3, beta = gamma = 1e-3.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax

from neurojax._checks import check_choice, check_real
from neurojax.rules.alignment import LOCAL_RULES
from neurojax.rules.layers import FeedbackConv, FeedbackDense

RULE_NAMES = ("backprop", "feedback_alignment", "sign_symmetry", "kolen_pollack",
              "weight_mirror", "symmetric_alignment", "activation_alignment",
              "information_alignment")
SIGN_MAGNITUDES = ("fixed", "random")
NOISE_DISTRIBUTIONS = ("gaussian", "rademacher")

# rule -> {metaparameter: default}; the Neural-Alignment code's (params.py) values,
# except Kolen-Pollack's decay, which is the optimiser's weight decay here.
_METAPARAMETERS: dict[str, dict[str, Any]] = {
    "backprop": {},
    "feedback_alignment": {},
    "sign_symmetry": {"magnitude": "fixed", "sign_scale": None},
    "kolen_pollack": {"alpha": 0.0},
    "weight_mirror": {"alpha": 1e-3, "beta": 1e-3, "noise_std": 1.0,
                      "noise_distribution": "gaussian"},
    "symmetric_alignment": {"alpha": 1e-3, "beta": 2e-3},
    "activation_alignment": {"alpha": 1e-3, "beta": 2e-3, "noise_std": None,
                             "noise_distribution": "gaussian"},
    "information_alignment": {"alpha": 2e-3, "beta": 1e-3, "gamma": 1e-3, "noise_std": None,
                              "noise_distribution": "gaussian"},
}
#: Every metaparameter field of a Rule (``config.rule`` takes these and ``name``).
METAPARAMETER_FIELDS = ("alpha", "beta", "gamma", "noise_std", "noise_distribution",
                        "magnitude", "sign_scale")
_FIELDS = METAPARAMETER_FIELDS


@dataclasses.dataclass(frozen=True)
class Rule:
    """A learning rule and its metaparameters (``None``: the rule's default).

    Attributes:
        name: one of ``RULE_NAMES``.
        alpha, beta, gamma: weights of the local loss's primitives
            (``neurojax.rules.alignment``); Kolen-Pollack's ``alpha`` adds
            ``2 alpha B`` to B's update.
        noise_std: standard deviation of the noise that replaces the layer
            input in the local loss (weight mirror: default 1.0); ``None``
            uses the layer's input (activation and information alignment).
        noise_distribution: 'gaussian' (default; Akrout et al.'s noise) or
            'rademacher' (+-noise_std with probability 1/2 each). The local
            losses' expected B update depends on the noise only through
            E[x x^T] = noise_std^2 I, the same for both, so the fixed point
            (e.g. the mirror's B = (beta / 2 alpha) noise_std^2 W) is the
            same; Rademacher noise takes one random bit per entry instead of
            one 32-bit word and an inverse error function, which on a CPU
            costs more than the layer's convolution.
        magnitude: sign symmetry only: 'fixed' (``B = s sign(W)``) or
            'random' (``B = |B_0| sign(W)``).
        sign_scale: sign symmetry with ``magnitude='fixed'``: ``s``;
            ``None`` is ``1/sqrt(fan_in)``.

    A metaparameter the rule does not have raises ``ValueError``.
    """
    name: str = "backprop"
    alpha: Optional[float] = None
    beta: Optional[float] = None
    gamma: Optional[float] = None
    noise_std: Optional[float] = None
    noise_distribution: Optional[str] = None
    magnitude: Optional[str] = None
    sign_scale: Optional[float] = None

    def __post_init__(self) -> None:
        check_choice("rule.name", self.name, RULE_NAMES)
        defaults = _METAPARAMETERS[self.name]
        for field in _FIELDS:
            value = getattr(self, field)
            if field not in defaults:
                if value is not None:
                    raise ValueError(f"rule.{field} is not a metaparameter of rule "
                                     f"{self.name!r} (it has {sorted(defaults)}), got {value!r}")
                continue
            if value is None:
                value = defaults[field]
            if field == "magnitude":
                check_choice("rule.magnitude", value, SIGN_MAGNITUDES)
            elif field == "noise_distribution":
                check_choice("rule.noise_distribution", value, NOISE_DISTRIBUTIONS)
            elif value is not None:
                low_open = field in ("noise_std", "sign_scale")
                value = float(check_real(f"rule.{field}", value, low=0.0, low_open=low_open))
            object.__setattr__(self, field, value)
        if self.noise_std is None and self.noise_distribution not in (None, "gaussian"):
            raise ValueError(f"rule.noise_distribution applies only with a noise_std (rule "
                             f"{self.name!r} reads the layer input), got "
                             f"{self.noise_distribution!r}")
        if self.magnitude == "random" and self.sign_scale is not None:
            raise ValueError("rule.sign_scale applies to magnitude='fixed' only, got "
                             f"sign_scale={self.sign_scale!r} with magnitude='random'")

    # -- what the backward pass does ---------------------------------------
    @property
    def mode(self) -> str:
        """'exact' (backprop), 'zero' (B not updated), 'tied' (Kolen-Pollack)
        or 'local' (B descends a local loss)."""
        if self.name == "backprop":
            return "exact"
        if self.name in ("feedback_alignment", "sign_symmetry"):
            return "zero"
        if self.name == "kolen_pollack":
            return "tied"
        return "local"

    @property
    def local_name(self) -> Optional[str]:
        """The local loss's name in ``neurojax.rules.alignment.LOCAL_RULES``."""
        return self.name if self.name in LOCAL_RULES else None

    @property
    def coefficients(self) -> dict[str, float]:
        """The primitives' weights: ``{'alpha': ..., 'beta': ..., ...}``."""
        return {k: getattr(self, k) for k in ("alpha", "beta", "gamma")
                if getattr(self, k) is not None}

    @property
    def stores_feedback(self) -> bool:
        """Whether layers hold a ``feedback_kernel`` parameter."""
        return self.name != "backprop" and not (
            self.name == "sign_symmetry" and self.magnitude == "fixed")

    @property
    def frozen_feedback(self) -> bool:
        """Whether the stored B never changes (its optimiser is ``set_to_zero``)."""
        return self.name in ("feedback_alignment", "sign_symmetry")

    @property
    def needs_noise(self) -> bool:
        """Whether the backward pass draws noise (an rng stream is needed)."""
        return self.mode == "local" and self.noise_std is not None

    def feedback_weights(self, kernel: jax.Array, feedback: Optional[jax.Array]
                         ) -> jax.Array:
        """The B that carries the error to the layer's input, in W's layout.

        The stored ``feedback`` for every rule but sign symmetry, whose B is
        ``s * sign(W)`` or ``|B_0| * sign(W)`` under ``lax.stop_gradient``.
        """
        if self.name == "sign_symmetry":
            if self.magnitude == "fixed":
                fan_in = math.prod(kernel.shape[:-1])
                scale = self.sign_scale if self.sign_scale is not None else fan_in ** -0.5
                b = scale * jnp.sign(kernel)
            else:
                b = jnp.abs(_required(feedback, self)) * jnp.sign(kernel)
            return lax.stop_gradient(b)
        if self.name == "backprop":
            return kernel
        return _required(feedback, self)

    # -- the layers the models build -----------------------------------------
    def dense(self, features: int, **kwargs: Any) -> FeedbackDense:
        """A dense layer learning with this rule (``flax.linen.Dense``'s
        keyword arguments: ``use_bias``, ``dtype``, ``kernel_init``, ``name``...)."""
        return FeedbackDense(features=features, rule=self, **kwargs)

    def conv(self, features: int, kernel_size=(3, 3), strides=(1, 1), padding="SAME", *,
             conv: Callable[..., jax.Array], **kwargs: Any) -> FeedbackConv:
        """A convolution learning with this rule, running ``conv`` (the
        models pass ``neurojax.models.conv.conv2d``)."""
        return FeedbackConv(features=features, rule=self, conv=conv,
                            kernel_size=kernel_size, strides=strides, padding=padding,
                            **kwargs)


def _required(feedback: Optional[jax.Array], rule: Rule) -> jax.Array:
    if feedback is None:
        raise ValueError(f"rule {rule.name!r} needs the layer's feedback weights, got None")
    return feedback


def rule_metaparameters(name: str) -> dict[str, Any]:
    """The metaparameters of rule ``name`` and their defaults (``None``: derived
    from the layer, e.g. sign symmetry's ``1/sqrt(fan_in)``), as a new dict."""
    check_choice("rule.name", name, RULE_NAMES)
    return dict(_METAPARAMETERS[name])


def get_rule(spec: Union[str, Rule, Mapping[str, Any]] = "backprop", **overrides: Any) -> Rule:
    """A :class:`Rule` from a name, a Rule, or a mapping with a 'name' key
    (a config's ``config.rule``), with ``overrides`` applied."""
    if isinstance(spec, Rule):
        return dataclasses.replace(spec, **overrides) if overrides else spec
    if isinstance(spec, str):
        return Rule(name=spec, **overrides)
    if isinstance(spec, Mapping):
        fields = {**dict(spec), **overrides}
        if "name" not in fields:
            raise ValueError(f"rule must have a 'name' (one of {RULE_NAMES}), got {dict(spec)!r}")
        unknown = sorted(set(fields) - {"name", *_FIELDS})
        if unknown:
            raise ValueError(f"unknown rule field(s) {unknown}; allowed: {['name', *_FIELDS]}")
        return Rule(**fields)
    raise ValueError(f"rule must be a name from {RULE_NAMES}, a Rule or a mapping, got {spec!r}")
