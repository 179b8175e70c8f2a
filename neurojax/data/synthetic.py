"""Synthetic tasks as pure functions of a PRNG key.

Each task returns a dict of arrays with inputs ``"x"`` (and targets ``"y"``
where the task has them), plus whatever a test or analysis needs to check
the data against theory (teacher weights, eigenvalues, the rotation). Sizes
(``num_examples``, dimensions, depth) are Python ints and fix the shapes; the
float hyperparameters may be traced. Each task validates its arguments in
Python and then runs one compiled function (cached per shape), and it can
itself be called under ``jax.jit`` with the sizes held static. The same key
gives the same data.

Keys are split the same way whatever the noise level, so a task drawn with
``noise=0`` is the noiseless version of the same draw with ``noise > 0``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

ACTIVATIONS = ("linear", "relu", "tanh")


# --------------------------------------------------------------------------
# Teacher-student regression
# --------------------------------------------------------------------------


def teacher_params(
    key: Array, *, input_dim: int, output_dim: int = 1, depth: int = 2, width: int = 32
) -> list[Array]:
    """Random teacher weights: ``depth`` matrices, entries N(0, 1 / fan_in).

    The 1 / fan_in variance keeps pre-activations O(1) at every layer. The
    teacher has no biases, as in the usual teacher-student setups.
    """
    _check_int("input_dim", input_dim)
    _check_int("output_dim", output_dim)
    _check_int("depth", depth)
    _check_int("width", width)
    dims = [input_dim] + [width] * (depth - 1) + [output_dim]
    shapes = list(zip(dims[:-1], dims[1:]))
    # One draw carved into layers: every random call compiles its own hash,
    # so one call per layer would make compile time grow with depth.
    flat = jax.random.normal(key, (sum(d_in * d_out for d_in, d_out in shapes),))
    params, offset = [], 0
    for d_in, d_out in shapes:
        w = flat[offset : offset + d_in * d_out].reshape(d_in, d_out)
        params.append(w / math.sqrt(d_in))
        offset += d_in * d_out
    return params


def teacher_forward(params: list[Array], x: Array, activation: str = "relu") -> Array:
    """The teacher MLP: ``activation`` after every layer but the last."""
    _check_choice("activation", activation, ACTIVATIONS)
    act = {"linear": lambda h: h, "relu": jax.nn.relu, "tanh": jnp.tanh}[activation]
    h = x
    for i, w in enumerate(params):
        h = h @ w
        if i < len(params) - 1:
            h = act(h)
    return h


def teacher_student(
    key: Array,
    *,
    num_examples: int,
    input_dim: int,
    output_dim: int = 1,
    depth: int = 2,
    width: int = 32,
    activation: str = "relu",
    noise: float | Array = 0.0,
) -> dict[str, Any]:
    """Regression on the outputs of a random teacher MLP.

    Inputs are standard Gaussian, ``x ~ N(0, I_input_dim)``; targets are
    ``y = teacher(x) + noise * eps`` with ``eps ~ N(0, I)``. The teacher
    depends only on the key and the layer sizes, not on ``num_examples``;
    for a held-out set from the same teacher, draw once and split, or call
    :func:`teacher_params` and :func:`teacher_forward` directly.

    Args:
        key: PRNG key.
        num_examples: number of (x, y) pairs.
        input_dim, output_dim: sizes of x and y.
        depth: number of teacher weight layers (1 is a linear map).
        width: hidden width of the teacher (unused when depth is 1).
        activation: one of ``ACTIVATIONS``.
        noise: standard deviation of the Gaussian label noise.

    Returns:
        ``{"x": [n, input_dim], "y": [n, output_dim], "y_clean": the noiseless
        targets, "params": the teacher's list of weight matrices}``.
    """
    for name, value in [("num_examples", num_examples), ("input_dim", input_dim),
                        ("output_dim", output_dim), ("depth", depth), ("width", width)]:
        _check_int(name, value)
    _check_choice("activation", activation, ACTIVATIONS)
    _check_nonnegative("noise", noise)
    return _teacher_student(
        key, noise, num_examples=num_examples, input_dim=input_dim, output_dim=output_dim,
        depth=depth, width=width, activation=activation,
    )


@functools.partial(
    jax.jit,
    static_argnames=("num_examples", "input_dim", "output_dim", "depth", "width", "activation"),
)
def _teacher_student(key, noise, *, num_examples, input_dim, output_dim, depth, width, activation):
    k_teacher, k_data = jax.random.split(key)
    params = teacher_params(
        k_teacher, input_dim=input_dim, output_dim=output_dim, depth=depth, width=width
    )
    # Inputs and label noise from one draw (fewer random calls to compile).
    z = jax.random.normal(k_data, (num_examples, input_dim + output_dim))
    x, eps = z[:, :input_dim], z[:, input_dim:]
    y_clean = teacher_forward(params, x, activation)
    y = y_clean + noise * eps
    return {"x": x, "y": y, "y_clean": y_clean, "params": params}


# --------------------------------------------------------------------------
# Gaussian inputs with a power-law spectrum
# --------------------------------------------------------------------------


def haar_orthogonal(key: Array, dim: int) -> Array:
    """A Haar-distributed random orthogonal matrix, ``[dim, dim]``, without LAPACK.

    A product of Householder reflections with the sign fix (Stewart 1980,
    "The efficient generation of random orthogonal matrices with an
    application to condition estimators"; Mezzadri 2007, "How to generate
    random matrices from the classical compact groups"):

        Q = H_1 H_2 ... H_d diag(-s_1, ..., -s_d),
        H_k = I - 2 u_k u_k^T / (u_k^T u_k),   u_k = x_k + s_k ||x_k|| e_k,
        x_k = (0, ..., 0, z_kk, ..., z_kd),    s_k = sign(z_kk),   z_kj iid N(0, 1).

    This is the Q of the QR decomposition ``G = Q R`` with ``diag(R) > 0`` of
    a Gaussian matrix ``G``, which is exactly Haar (for a fixed orthogonal
    ``U``, ``U G`` has the law of ``G`` and ``U G = (U Q) R``, so ``U Q`` has
    the law of ``Q``). Householder QR of ``G`` reflects column k's lower part
    ``x_k`` onto ``-s_k ||x_k|| e_k`` (so ``r_kk = -s_k ||x_k||``, and the
    columns of ``H_1 ... H_d`` are multiplied by ``sign(r_kk) = -s_k``), and
    ``x_k`` is a standard Gaussian vector independent of ``x_1 .. x_{k-1}``
    (``H_1 ... H_{k-1}`` depend only on the earlier columns and leave the
    later ones iid Gaussian): Stewart's observation, which lets the
    ``x_k`` be drawn directly instead of running the QR. Without the sign fix
    Q is not Haar (Mezzadri 2007).

    Pure ``jnp`` (a ``lax.scan`` of ``dim`` rank-1 updates, O(dim^3)): no
    LAPACK call, so it can be vmapped freely on CPU, where jaxlib 0.10.2's
    batched LAPACK kernels (``jnp.linalg.qr`` of a batch) can deadlock when
    two run concurrently (``benchmarks/lapack_batch_hang.py``). Float32, or
    float64 under ``jax.enable_x64``, like ``jax.random.normal``.
    """
    _check_int("dim", dim)
    return _haar_orthogonal(key, dim)


@functools.partial(jax.jit, static_argnums=1)
def _haar_orthogonal(key: Array, dim: int) -> Array:
    z = jax.random.normal(key, (dim, dim))
    eye = jnp.eye(dim, dtype=z.dtype)
    x = jnp.where(jnp.triu(jnp.ones((dim, dim), bool)), z, 0.0)  # row k: x_k
    s = jnp.where(jnp.diagonal(z) >= 0, 1.0, -1.0).astype(z.dtype)
    u = x + (s * jnp.linalg.norm(x, axis=1))[:, None] * eye  # row k: u_k
    uu = jnp.sum(u * u, axis=1)
    scale = jnp.where(uu > 0, 2.0 / jnp.where(uu > 0, uu, 1.0), 0.0)  # x_k = 0: H_k = I

    def reflect(m, k):  # m <- H_k m
        return m - (scale[k] * u[k])[:, None] * (u[k] @ m)[None, :], None

    q, _ = jax.lax.scan(reflect, eye, jnp.arange(dim - 1, -1, -1))
    return q * (-s)[None, :]


def power_law_spectrum(dim: int, alpha: float | Array, scale: float | Array = 1.0) -> Array:
    """Eigenvalues ``scale * j**(-alpha)`` for ``j = 1..dim`` (descending)."""
    _check_int("dim", dim)
    _check_nonnegative("alpha", alpha)
    _check_positive("scale", scale)
    j = jnp.arange(1, dim + 1, dtype=jnp.float32)
    return scale * j ** (-jnp.asarray(alpha, jnp.float32))


def power_law_gaussian(
    key: Array,
    *,
    num_examples: int,
    dim: int,
    alpha: float | Array = 1.0,
    scale: float | Array = 1.0,
) -> dict[str, Array]:
    """Gaussian inputs whose covariance has a power-law spectrum.

    ``x ~ N(0, R diag(lambda) R^T)`` with ``lambda_j = scale * j**(-alpha)``
    and ``R`` a Haar-random rotation, sampled as ``x = (z * sqrt(lambda)) R^T``
    with ``z ~ N(0, I)``.

    Returns:
        ``{"x": [n, dim], "eigenvalues": lambda [dim] (descending),
        "rotation": R [dim, dim] (column j is the eigenvector of lambda_j),
        "covariance": R diag(lambda) R^T}``.
    """
    _check_int("num_examples", num_examples)
    _check_int("dim", dim)
    _check_nonnegative("alpha", alpha)
    _check_positive("scale", scale)
    return _power_law_gaussian(key, alpha, scale, num_examples=num_examples, dim=dim)


@functools.partial(jax.jit, static_argnames=("num_examples", "dim"))
def _power_law_gaussian(key, alpha, scale, *, num_examples, dim):
    eigenvalues = power_law_spectrum(dim, alpha, scale)
    k_rot, k_z = jax.random.split(key)
    rotation = haar_orthogonal(k_rot, dim)
    z = jax.random.normal(k_z, (num_examples, dim))
    x = (z * jnp.sqrt(eigenvalues)) @ rotation.T
    covariance = (rotation * eigenvalues) @ rotation.T
    return {"x": x, "eigenvalues": eigenvalues, "rotation": rotation, "covariance": covariance}


# --------------------------------------------------------------------------
# Low-dimensional toy tasks
# --------------------------------------------------------------------------


def two_spirals(
    key: Array, *, num_examples: int, turns: float | Array = 1.5, noise: float | Array = 0.0
) -> dict[str, Array]:
    """Two interleaved spirals in the plane, binary labels.

    Example ``i`` has label ``i % 2``. Its angle is ``theta = 2 pi turns
    sqrt(u)`` with ``u ~ U[0, 1)`` (sqrt spreads points evenly along the
    arc), its radius ``theta / (2 pi turns)`` in [0, 1); class 1 is class 0
    rotated by pi. ``noise`` is the standard deviation of Gaussian noise
    added to the coordinates (labels are those of the clean points).

    Returns:
        ``{"x": float32 [n, 2], "y": int32 [n]}``.
    """
    _check_int("num_examples", num_examples)
    _check_positive("turns", turns)
    _check_nonnegative("noise", noise)
    return _two_spirals(key, turns, noise, num_examples=num_examples)


@functools.partial(jax.jit, static_argnames=("num_examples",))
def _two_spirals(key, turns, noise, *, num_examples):
    k_u, k_noise = jax.random.split(key)
    y = jnp.arange(num_examples, dtype=jnp.int32) % 2
    u = jax.random.uniform(k_u, (num_examples,))
    theta = 2 * jnp.pi * turns * jnp.sqrt(u)
    radius = jnp.sqrt(u)  # = theta / (2 pi turns)
    sign = jnp.where(y == 0, 1.0, -1.0)
    x = (sign * radius)[:, None] * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
    x = x + noise * jax.random.normal(k_noise, x.shape)
    return {"x": x, "y": y}


def checkerboard(
    key: Array, *, num_examples: int, num_tiles: int = 4, noise: float | Array = 0.0
) -> dict[str, Array]:
    """Binary checkerboard on ``[-1, 1]^2`` with ``num_tiles`` tiles a side.

    The label of a point is ``(floor(a) + floor(b)) % 2`` where ``(a, b)`` are
    its coordinates in tile units, ``(x + 1) / 2 * num_tiles``. ``noise`` is
    the standard deviation of Gaussian noise added to the coordinates after
    labelling.

    Returns:
        ``{"x": float32 [n, 2], "y": int32 [n]}``.
    """
    _check_int("num_examples", num_examples)
    _check_int("num_tiles", num_tiles)
    _check_nonnegative("noise", noise)
    return _checkerboard(key, noise, num_examples=num_examples, num_tiles=num_tiles)


@functools.partial(jax.jit, static_argnames=("num_examples", "num_tiles"))
def _checkerboard(key, noise, *, num_examples, num_tiles):
    k_x, k_noise = jax.random.split(key)
    x = jax.random.uniform(k_x, (num_examples, 2), minval=-1.0, maxval=1.0)
    tiles = jnp.clip(jnp.floor((x + 1) / 2 * num_tiles), 0, num_tiles - 1).astype(jnp.int32)
    y = (tiles[:, 0] + tiles[:, 1]) % 2
    x = x + noise * jax.random.normal(k_noise, x.shape)
    return {"x": x, "y": y}


def noisy_sinusoid(
    key: Array,
    *,
    num_examples: int,
    frequency: float | Array = 1.0,
    amplitude: float | Array = 1.0,
    phase: float | Array = 0.0,
    noise: float | Array = 0.1,
) -> dict[str, Array]:
    """1-D regression: ``y = amplitude sin(2 pi frequency x + phase) + noise eps``.

    ``x ~ U[-1, 1)`` and ``eps ~ N(0, 1)``.

    Returns:
        ``{"x": float32 [n, 1], "y": float32 [n, 1], "y_clean": the noiseless
        targets}``.
    """
    _check_int("num_examples", num_examples)
    _check_nonnegative("noise", noise)
    return _noisy_sinusoid(key, frequency, amplitude, phase, noise, num_examples=num_examples)


@functools.partial(jax.jit, static_argnames=("num_examples",))
def _noisy_sinusoid(key, frequency, amplitude, phase, noise, *, num_examples):
    k_x, k_noise = jax.random.split(key)
    x = jax.random.uniform(k_x, (num_examples, 1), minval=-1.0, maxval=1.0)
    y_clean = amplitude * jnp.sin(2 * jnp.pi * frequency * x + phase)
    y = y_clean + noise * jax.random.normal(k_noise, x.shape)
    return {"x": x, "y": y, "y_clean": y_clean}


# --------------------------------------------------------------------------
# Argument checks (skipped for traced values, which have no value yet)
# --------------------------------------------------------------------------


def _check_int(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int (it fixes a shape), got {value!r}")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _concrete(value: Any) -> float | None:
    """The float value of a Python/NumPy scalar or concrete array, else None."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # not a scalar: fails every range check below


def _check_nonnegative(name: str, value: Any) -> None:
    v = _concrete(value)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    v = _concrete(value)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
