"""Small helpers shared by the model modules: activations, argument checks
and the compute dtype.

Every model validates its fields in ``__post_init__`` so that a bad
configuration raises a ``ValueError`` naming the field at construction time,
before anything is traced or compiled.
"""
import numbers
from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Union[str, Callable[[jax.Array], jax.Array]]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "swish": nn.swish,
    "elu": nn.elu,
    "celu": nn.celu,  # alpha = 1: x for x > 0, exp(x) - 1 otherwise (Oland 2024, Sec 7.5)
    "leaky_relu": nn.leaky_relu,
    "softplus": nn.softplus,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "identity": lambda x: x,
    "linear": lambda x: x,
}


def resolve_activation(activation: Activation) -> Callable[[jax.Array], jax.Array]:
    """Return the callable for an activation given by name or as a callable."""
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return ACTIVATIONS[activation.lower()]
    raise ValueError(
        f"activation={activation!r} is not a known activation; allowed names: "
        f"{sorted(ACTIVATIONS)} (or pass a callable)")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def freeze_sequences(module: Any, *fields: str) -> None:
    """Turn list-valued fields of a module into tuples, in ``__post_init__``.

    Configs (``ml_collections.ConfigDict``) hand over lists; a module holding a
    list cannot be hashed, which breaks ``jax.jit(..., static_argnums=...)``
    over the model. Modules are dataclasses, hence ``object.__setattr__``.
    """
    for field in fields:
        value = getattr(module, field)
        if isinstance(value, list):
            object.__setattr__(module, field, tuple(value))


def check_positive_int(field: str, value: Any, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (or None if allowed)."""
    if allow_none and value is None:
        return
    if not _is_int(value) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{field} must be a positive int{extra}, got {value!r}")


def check_widths(field: str, widths: Any, allow_empty: bool = True) -> None:
    """Raise ``ValueError`` unless ``widths`` is a sequence of positive ints."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(
            f"{field} must be a sequence of positive ints, got {widths!r}")
    if not allow_empty and len(widths) == 0:
        raise ValueError(f"{field} must not be empty")
    for w in widths:
        if not _is_int(w) or w < 1:
            raise ValueError(
                f"{field} must contain only positive ints, got {tuple(widths)!r}")


def check_positive_float(field: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            0 < value < float("inf")):
        raise ValueError(f"{field} must be a positive number, got {value!r}")


def scale_width(channels: int, factor: float) -> int:
    """``channels * factor`` rounded to an int, at least 1."""
    return max(1, int(round(channels * factor)))


def flatten(x: jax.Array) -> jax.Array:
    """Flatten all but the batch axis."""
    return x.reshape((x.shape[0], -1))


# Compute dtypes a model accepts (``dtype`` field; configs give the name).
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


def resolve_dtype(value: Any, field: str = "dtype") -> Any:
    """The model's compute dtype as a ``jnp`` dtype type (``jnp.bfloat16``, ...).

    ``value`` is ``None`` (compute in the dtype of inputs and parameters) or
    one of ``COMPUTE_DTYPES``, by name (``'bfloat16'``, as configs give it on
    the command line) or as a dtype (``jnp.bfloat16``, ``np.dtype('float16')``).
    Anything else raises ``ValueError`` naming ``field``. Parameters stay
    ``float32`` whatever the compute dtype (``param_dtype``); see
    :func:`float32_output` for the outputs.
    """
    if value is None:
        return None
    name = None
    if isinstance(value, str):
        name = value
    elif not isinstance(value, bool):
        try:
            name = jnp.dtype(value).name
        except TypeError:
            name = None
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"{field} must be one of {COMPUTE_DTYPES} (or None), got {value!r}")
    return getattr(jnp, name)


def set_compute_dtype(module: Any) -> None:
    """Resolve a module's ``dtype`` field in ``__post_init__`` (see
    :func:`resolve_dtype`), so ``dtype='bfloat16'`` works and a bad name
    fails at construction."""
    object.__setattr__(module, "dtype", resolve_dtype(module.dtype))


def float32_output(x: jax.Array) -> jax.Array:
    """A model's output in at least float32 (float64 stays float64).

    Every model ends with it: whatever the compute dtype, the logits or
    features handed to losses, probes and metrics are float32, so mixed
    precision never reaches a softmax, a covariance or an accuracy. It is
    done here, once per model, rather than in each consumer (the training
    objective, the eval step, the SSL objective, the probes' feature step,
    analysis drivers, notebooks), which would each have to remember it.
    Intermediate features read with ``capture_intermediates`` keep the
    compute dtype; ``neurojax.metrics`` accumulates in float32 or wider.
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def block_range(num_blocks: int, start: Any, stop: Any) -> tuple[int, int, bool]:
    """``(first, end, top)`` of a layer-wise slice of a model's blocks.

    A model that trains layer-wise (``neurojax.train.layerwise``) numbers its
    blocks ``0 .. num_blocks - 1`` and calls its top (pooling and classifier)
    block ``num_blocks``; ``__call__(x, start=s, stop=e)`` maps the output of
    block ``s - 1`` (the input when ``s == 0``) to the output of block
    ``e - 1``, and ``stop=None`` runs through the top (``top`` is True).
    """
    top = stop is None
    end = num_blocks if top else stop
    for name, value, low, high in (("start", start, 0, num_blocks),
                                   ("stop", end, start if isinstance(start, int) else 0,
                                    num_blocks)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an int in [{low}, {high}] (block indices of a "
                             f"model with {num_blocks} blocks below its top), got {value!r}")
    return start, end, top
