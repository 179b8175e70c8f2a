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

from neurojax._checks import check_choice, check_int, check_real

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
    check_int("input_dim", input_dim)
    check_int("output_dim", output_dim)
    check_int("depth", depth)
    check_int("width", width)
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
    check_choice("activation", activation, ACTIVATIONS)
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
        check_int(name, value)
    check_choice("activation", activation, ACTIVATIONS)
    check_real("noise", noise, low=0)
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
    check_int("dim", dim)
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
    check_int("dim", dim)
    check_real("alpha", alpha, low=0)
    check_real("scale", scale, low=0, low_open=True)
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
    check_int("num_examples", num_examples)
    check_int("dim", dim)
    check_real("alpha", alpha, low=0)
    check_real("scale", scale, low=0, low_open=True)
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


POWER_LAW_NORMALIZATIONS = ("trace", "top")


def power_law_scale(dim: int, alpha: float, normalization: str = "trace") -> float:
    """c in lambda_j = c j^-alpha: 1 / sum_j j^-alpha (``'trace'``, tr = 1) or 1 (``'top'``)."""
    check_int("dim", dim)
    check_choice("normalization", normalization, POWER_LAW_NORMALIZATIONS)
    if normalization == "top":
        return 1.0
    return float(1.0 / np.sum(np.arange(1, dim + 1, dtype=np.float64) ** -float(alpha)))


def power_law_regression(key: Array, *, alpha: float, num_train: int, num_test: int,
                         dim: int, noise_stds=(0.1,),
                         normalization: str = "trace") -> dict[str, Array]:
    """Teacher-student regression on power-law Gaussian inputs (alpha-ReQ Fig. 2).

    Agrawal et al., "alpha-ReQ: Assessing representation quality by measuring
    eigenspectrum decay" (NeurIPS 2022), Sec. 2.2. x_i ~ N(0, R diag(lambda)
    R^T) (``power_law_gaussian``), lambda_j = c j^-alpha with c from
    ``normalization``; y_i = x_i^T theta* + eps_i, eps_i ~ N(0, sigma^2), one
    target column per sigma in ``noise_stds`` (the same standard-normal draw
    scaled by each sigma: the same task at several noise levels). Train and
    test inputs share R and theta*. The paper gives neither c nor the teacher;
    the two choices are named:

    * ``'trace'`` (default): c = 1 / sum_j j^-alpha, so tr Sigma = 1 and, with
      theta* ~ N(0, I_d), the signal variance E[(x^T theta*)^2] = 1 for every
      alpha (equal signal-to-noise ratio across an alpha sweep).
    * ``'top'``: c = 1 (lambda_1 = 1), theta* ~ N(0, I_d / d); the signal
      variance is sum_j j^-alpha / d and changes with alpha.

    Returns:
        ``{"x_train": [N, d], "y_train": [N, S], "x_test": [n, d],
        "y_test": [n, S], "theta": [d], "eigenvalues": [d], "rotation":
        [d, d], "noise_stds": [S]}``.
    """
    check_int("num_train", num_train)
    check_int("num_test", num_test)
    check_int("dim", dim)
    check_real("alpha", alpha, low=0)
    check_choice("normalization", normalization, POWER_LAW_NORMALIZATIONS)
    sig = np.asarray(noise_stds, dtype=np.float64)
    if sig.ndim != 1 or sig.size == 0 or not np.all(np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError(f"noise_stds must be a non-empty 1-D sequence of numbers >= 0, "
                         f"got {noise_stds!r}")
    return _power_law_regression(
        key, jnp.asarray(alpha, jnp.float32),
        jnp.asarray(power_law_scale(dim, alpha, normalization), jnp.float32),
        jnp.asarray(sig, jnp.float32), num_train=num_train, num_test=num_test, dim=dim,
        top=normalization == "top")


@functools.partial(jax.jit, static_argnames=("num_train", "num_test", "dim", "top"))
def _power_law_regression(key, alpha, scale, sig, *, num_train, num_test, dim, top):
    k_x, k_theta, k_noise = jax.random.split(key, 3)
    data = power_law_gaussian(k_x, num_examples=num_train + num_test, dim=dim, alpha=alpha,
                              scale=scale)
    dt = data["x"].dtype
    theta = jax.random.normal(k_theta, (dim,), dt)
    if top:
        theta = theta / math.sqrt(dim)
    eps = jax.random.normal(k_noise, (num_train + num_test, 1), dt)
    y = jnp.matmul(data["x"], theta, precision=jax.lax.Precision.HIGHEST)[:, None] + (
        eps * sig.astype(dt)[None, :])
    return {"x_train": data["x"][:num_train], "y_train": y[:num_train],
            "x_test": data["x"][num_train:], "y_test": y[num_train:], "theta": theta,
            "eigenvalues": data["eigenvalues"], "rotation": data["rotation"],
            "noise_stds": sig.astype(dt)}


# --------------------------------------------------------------------------
# Chosen spectra: inputs, correlations and noise sets
# --------------------------------------------------------------------------


def controlled_hessian_inputs(key: Array, num_examples: int, eigenvalues,
                              dtype=None) -> dict[str, Array]:
    """Inputs ``X = V Sigma Z^T`` whose linear-MSE Hessian has a chosen spectrum.

    Ghosh et al., "How gradient estimator variance and bias impact learning in
    neural networks" (ICLR 2023), Sec. 3.2 / Fig. 7 and its code. For
    ``L(w) = (1/n) ||X w - y||^2`` the Hessian is ``(2/n) X^T X = Z ((2/n)
    Sigma^2) Z^T`` with ``V`` ``(n, d)`` orthonormal columns and ``Z``
    ``(d, d)`` orthogonal (both Haar, ``haar_orthogonal``), so
    ``Sigma = sqrt(n lambda / 2)`` gives eigenvalues ``lambda`` (footnote 4: at
    the minimum H is the input covariance up to a constant).

    Returns:
        ``{"x": (n, d), "hessian": Z diag(lambda) Z^T, "rotation": Z}``.
    """
    eigenvalues = jnp.asarray(eigenvalues)
    if eigenvalues.ndim != 1 or eigenvalues.shape[0] == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape "
                         f"{eigenvalues.shape}")
    d = eigenvalues.shape[0]
    check_int("num_examples", num_examples)
    if num_examples < d:
        raise ValueError(f"num_examples must be >= len(eigenvalues) = {d}, got {num_examples}")
    dtype = dtype or jnp.result_type(eigenvalues.dtype, jnp.float32)
    lam = eigenvalues.astype(dtype)
    kv, kz = jax.random.split(key)
    v = haar_orthogonal(kv, num_examples)[:, :d].astype(dtype)
    z = haar_orthogonal(kz, d).astype(dtype)
    s = jnp.sqrt(num_examples * jnp.maximum(lam, 0.0) / 2.0)
    return {"x": (v * s) @ z.T, "hessian": (z * lam) @ z.T, "rotation": z}


def isotropic_noise_set(key: Array, num_params: int, dtype=jnp.float32) -> Array:
    """``2N`` unit vectors ``{+q_i, -q_i}``, ``q_i`` the rows of a Haar orthogonal ``Q``.

    The set sums to zero and its second moment is exactly isotropic,
    ``(1/2N) sum_i n_i n_i^T = I / N`` (Ghosh et al. 2023, Eq. 15's
    ``E[n n^T]``), so the set average of any quadratic in the noise equals its
    expectation over a uniform random unit vector; each vector is marginally
    such a vector. Compare ``neurojax.optim.injection.zero_sum_noise_set``
    (the paper's Appendix B set, whose average only estimates it).

    Returns:
        ``(2N, N)`` array.
    """
    check_int("num_params", num_params)
    q = haar_orthogonal(key, num_params).astype(dtype)
    return jnp.concatenate([q, -q], axis=0)


def correlation_with_spectrum(eigenvalues, key: Array) -> tuple[Array, Array]:
    """A symmetric T = V diag(eigenvalues) V^T with a random orthogonal V (Haar, via QR).

    The augmentation correlation of a linear Barlow Twins model with a chosen
    spectrum (Ghosh et al. 2024, App. B, Eq. 36). Returns (T, V) with V's
    columns ordered like ``eigenvalues``. (LAPACK QR with the sign fix, not
    ``haar_orthogonal``: the committed ``ssl_theory`` results were drawn this
    way; do not vmap it on CPU, see ``haar_orthogonal``.)
    """
    lam = jnp.asarray(eigenvalues)
    if lam.ndim != 1 or lam.shape[0] < 1:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
    return _correlation(key, lam.astype(jnp.promote_types(lam.dtype, jnp.float32)))


@jax.jit
def _correlation(key, lam):
    n = lam.shape[0]
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype=lam.dtype))
    v = q * jnp.sign(jnp.diagonal(r))[None, :]
    return jnp.matmul(v * lam[None, :], v.T, precision=jax.lax.Precision.HIGHEST), v


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
    check_int("num_examples", num_examples)
    check_real("turns", turns, low=0, low_open=True)
    check_real("noise", noise, low=0)
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
    check_int("num_examples", num_examples)
    check_int("num_tiles", num_tiles)
    check_real("noise", noise, low=0)
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
    check_int("num_examples", num_examples)
    check_real("noise", noise, low=0)
    return _noisy_sinusoid(key, frequency, amplitude, phase, noise, num_examples=num_examples)


@functools.partial(jax.jit, static_argnames=("num_examples",))
def _noisy_sinusoid(key, frequency, amplitude, phase, noise, *, num_examples):
    k_x, k_noise = jax.random.split(key)
    x = jax.random.uniform(k_x, (num_examples, 1), minval=-1.0, maxval=1.0)
    y_clean = amplitude * jnp.sin(2 * jnp.pi * frequency * x + phase)
    y = y_clean + noise * jax.random.normal(k_noise, x.shape)
    return {"x": x, "y": y, "y_clean": y_clean}
