"""Gradient bias and noise injection as optax transforms (Ghosh et al., ICLR 2023).

The paper (Sec. 2, Eq. 1) studies the weight update

    Delta w(t) = -grad L[w(t)] + b * beta + sigma * sqrt(f(N)) * n_hat,
    w(t + Delta t) = w(t) + Delta t * Delta w(t),

where N is the number of parameters, ``beta`` a bias direction with
``||beta||_2 = sqrt(N)`` (``beta = 1``, every parameter biased by ``b``, in all
of the paper's experiments), ``n_hat`` a random unit vector with i.i.d.
zero-mean entries (so the total noise variance is ``sigma^2 f(N)``) and
``f(N)`` one of ``1`` (the main case, Theorem 2.2), ``N`` (Theorem A.4) or a
power ``N^a`` (sublinear, e.g. Equilibrium Propagation).

Sign convention
---------------
An optax ``GradientTransformation`` maps a *gradient* to an *update* and the
optimiser negates it at the end (``optax.sgd(lr)`` returns ``-lr * u``). The
transforms here therefore return

    u = grad - b * beta - sigma * sqrt(f(N)) * n_hat,

so that ``optax.chain(inject_gradient_bias(b), inject_gradient_noise(sigma,
...), optax.sgd(lr))`` applies ``lr * (-grad + b * beta + sigma sqrt(f(N))
n_hat)``, i.e. Eq. 1 with ``Delta t = lr``. This is the convention of the
paper's code (it adds ``noise - b`` to the gradient before ``SGD.step``).
Put them first in the chain, before any learning-rate scaling or adaptive
preconditioning (optax#337): "relative to the gradient norm" then means the
raw gradient's norm, and with a non-SGD optimiser the corrupted gradient is
what the optimiser sees.

Relative mode
-------------
With ``relative=True`` the magnitudes are ratios to the (global, whole-PyTree)
gradient norm of the incoming updates, as in the paper's Fig. 1 / Fig. 7
sweeps and its code (``corrupt_gradient(relative=True)``): the bias per unit
of ``beta`` is ``b * ||g||`` (so the bias vector's norm is
``b * ||g|| * sqrt(N)``) and the noise norm is ``sigma * sqrt(f(N)) * ||g||``.
``||g||`` is treated as a constant of the step (no gradient flows through it).

Zero-sum noise sets
-------------------
For finite-sample-unbiased measurements (paper, Appendix B) the noise can come
in cycles of ``R`` steps whose directions sum to zero: steps ``0 .. R-2`` of a
cycle draw fresh unit vectors ``n_1 .. n_{R-1}`` and step ``R-1`` uses
``-(n_1 + ... + n_{R-1})`` (whose norm is about ``sqrt(R-1)``, as in the
paper's ``generate_random_noise_sequence``). The state keeps the running sum
of the cycle's unit-scale directions and a counter, so it costs one extra
copy of the parameters whatever ``R`` is; a new cycle starts every ``R``
steps. The ``R`` directions of one cycle are exactly
``zero_sum_noise_set(cycle_key, params, R)`` with ``cycle_key`` the second
half of ``jax.random.split(state_key)`` taken at the cycle's first step. In
absolute mode the injected noise vectors of a cycle sum to exactly zero; in
relative mode each is scaled by that step's ``||g||``, so the *directions* sum
to zero. With the paper's normalisation the mean squared norm over a set is
``2 (R-1) / R`` rather than 1 (expected); ``zero_sum_normalization=
'mean_square'`` multiplies every vector of the set by ``sqrt(R / (2 (R-1)))``
so that ``E[(1/R) sum_i ||n_i||^2] = 1`` and the set's average of
``n_i^T H n_i`` has expectation ``Tr H / N`` as in Lemma 2.1.
"""
import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from neurojax._checks import check_bool, check_choice, check_int, check_real, is_concrete

SCALINGS = ("constant", "N", "power")
ZERO_SUM_NORMALIZATIONS = ("paper", "mean_square")


# ----------------------------------------------------------------------------- helpers


def _acc_dtype(tree):
    """float64 when any leaf is float64, else float32 (bf16/f16 accumulate in f32)."""
    leaves = jax.tree.leaves(tree)
    if any(jnp.asarray(x).dtype == jnp.float64 for x in leaves):
        return jnp.float64
    return jnp.float32


def _global_norm(tree, dtype):
    """The whole-PyTree L2 norm, computed in ``dtype``."""
    return optax.tree.norm(jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)).astype(dtype)


def noise_variance_factor(num_params: int, scaling: str = "constant",
                          exponent: Optional[float] = None) -> float:
    """``f(N)`` of Eq. 1 (Sec. 2): the total noise variance is ``sigma^2 f(N)``.

    ``scaling``: ``'constant'`` (f = 1, the main case, Theorem 2.2), ``'N'``
    (f = N, Theorem A.4) or ``'power'`` (f = N ** exponent, e.g. sublinear
    for Equilibrium Propagation). ``inject_gradient_noise`` scales its unit
    vector by ``sigma * sqrt(f(N))`` with this ``f``.
    """
    check_int("num_params", num_params)
    check_choice("scaling", scaling, SCALINGS)
    if scaling == "power":
        check_real("exponent (of scaling='power')", exponent)
        return float(num_params) ** float(exponent)
    if exponent is not None:
        raise ValueError(f"exponent is only used with scaling='power', got {exponent!r}")
    return 1.0 if scaling == "constant" else float(num_params)


def _check_tree_matches(name: str, tree, like_tree) -> None:
    s1, s2 = jax.tree.structure(tree), jax.tree.structure(like_tree)
    if s1 != s2:
        raise ValueError(f"{name} must have the structure of the parameters: {s1} vs {s2}")
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(like_tree)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"{name} leaf shapes must match the parameters: "
                             f"{jnp.shape(a)} vs {jnp.shape(b)}")


def gradient_bias_direction(like_tree, direction=None):
    """The bias direction ``beta`` of Eq. 1, rescaled to ``||beta||_2 = sqrt(N)``.

    Args:
        like_tree: a PyTree of arrays (parameters or gradients); gives the
            structure, shapes and dtypes of the result and ``N``, the total
            number of entries over all leaves.
        direction: ``None`` for the all-ones direction (the paper's
            ``beta = 1``, already of norm ``sqrt(N)``), or a PyTree with the
            structure and shapes of ``like_tree``, rescaled by
            ``sqrt(N) / ||direction||`` (norm over the whole PyTree).

    Returns:
        ``beta`` with the dtypes of ``like_tree`` (the rescaling is computed in
        at least float32). A zero direction raises ``ValueError`` when
        concrete and gives NaNs when traced.
    """
    if direction is None:
        return jax.tree.map(lambda x: jnp.ones(jnp.shape(x), jnp.asarray(x).dtype), like_tree)
    _check_tree_matches("direction", direction, like_tree)
    n = optax.tree.size(like_tree)
    acc = _acc_dtype(direction)
    norm = _global_norm(direction, acc)
    if is_concrete(norm) and not float(norm) > 0:
        raise ValueError("direction must have a non-zero finite norm")
    scale = jnp.sqrt(jnp.asarray(n, acc)) / norm
    return jax.tree.map(lambda d, x: (jnp.asarray(d, acc) * scale).astype(jnp.asarray(x).dtype),
                        direction, like_tree)


@functools.partial(jax.jit, static_argnames=("dtype",))
def random_unit_vector(key: jax.Array, like_tree, dtype=None):
    """A random unit vector ``n_hat`` over a whole PyTree.

    Entries are i.i.d. standard normal before normalisation (zero mean,
    isotropic), so ``E[n_hat n_hat^T] = I / N``. Drawn and normalised in
    ``dtype`` (default: float64 if any leaf is float64, else float32); leaf
    ``i`` uses ``jax.random.fold_in(key, i)``. The result is in ``dtype``;
    cast it to the leaves' dtypes yourself if they are lower precision.
    """
    acc = dtype or _acc_dtype(like_tree)
    leaves, treedef = jax.tree.flatten(like_tree)
    draws = [jax.random.normal(jax.random.fold_in(key, i), jnp.shape(x), acc)
             for i, x in enumerate(leaves)]
    norm = _global_norm(draws, acc)
    return jax.tree.unflatten(treedef, [d / norm for d in draws])


def zero_sum_noise_set(key: jax.Array, like_tree, num_vectors: int, *,
                       normalization: str = "paper", dtype=None):
    """A set of ``R = num_vectors`` noise directions that sums to zero.

    Vectors ``0 .. R-2`` are independent random unit vectors
    (``random_unit_vector(jax.random.fold_in(key, i), like_tree)``) and vector
    ``R-1`` is minus their sum (paper, Appendix B; its code's
    ``generate_random_noise_sequence``). ``normalization='mean_square'``
    multiplies all ``R`` by ``sqrt(R / (2 (R-1)))`` so the expected mean
    squared norm over the set is 1 (the paper's normalisation gives
    ``2 (R-1) / R``).

    Returns:
        A PyTree like ``like_tree`` whose leaves have a leading axis of size
        ``R``, in ``dtype`` (default float32, or float64 if any leaf is),
        with ``sum over axis 0 == 0`` up to rounding.
    """
    num_vectors = check_int("num_vectors", num_vectors, 2)
    check_choice("normalization", normalization, ZERO_SUM_NORMALIZATIONS)
    return _zero_sum_noise_set(key, like_tree, num_vectors, normalization,
                               dtype or _acc_dtype(like_tree))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _zero_sum_noise_set(key, like_tree, num_vectors, normalization, acc):
    keys = jnp.stack([jax.random.fold_in(key, i) for i in range(num_vectors - 1)])
    head = jax.vmap(lambda k: random_unit_vector(k, like_tree, acc))(keys)
    scale = _zero_sum_scale(normalization, num_vectors)
    return jax.tree.map(
        lambda h: scale * jnp.concatenate([h, -jnp.sum(h, axis=0, keepdims=True)], axis=0), head)


def _zero_sum_scale(normalization: str, r: int) -> float:
    return 1.0 if normalization == "paper" else math.sqrt(r / (2.0 * (r - 1)))


def zero_sum_second_moment(num_vectors: int, normalization: str = "paper") -> float:
    """Expected mean squared norm ``E[(1/R) sum_i ||n_i||^2]`` of a
    ``zero_sum_noise_set`` of ``R = num_vectors`` vectors.

    ``R - 1`` independent unit vectors and minus their sum (Appendix B.2):
    the last has ``E||n_R||^2 = R - 1``, so the mean is ``2 (R-1) / R`` with
    the paper's normalisation and 1 with ``'mean_square'`` (which rescales
    every vector by ``sqrt(R / (2 (R-1)))``). The set's average of
    ``n_i^T H n_i`` then has expectation ``factor * Tr H / N`` (Eq. 15).
    """
    r = check_int("num_vectors", num_vectors, 2)
    check_choice("normalization", normalization, ZERO_SUM_NORMALIZATIONS)
    return 2.0 * (r - 1) / r * _zero_sum_scale(normalization, r) ** 2


# ----------------------------------------------------------------------------- bias


def inject_gradient_bias(b, direction=None, *, relative: bool = False
                         ) -> optax.GradientTransformation:
    """Adds the bias term ``b * beta`` of Eq. 1 (Ghosh et al. 2023, Sec. 2).

    The returned transform maps a gradient ``g`` to ``g - b * beta`` (or
    ``g - b * ||g|| * beta`` with ``relative=True``), so that after the
    optimiser's negation the update direction is ``-g + b * beta``: chained
    as ``optax.chain(inject_gradient_bias(b), optax.sgd(lr))`` it applies
    ``lr * (-g + b * beta)``. ``beta = gradient_bias_direction(g, direction)``
    has norm ``sqrt(N)``; the default is all ones (every parameter biased by
    ``b``, the paper's choice).

    Args:
        b: bias magnitude per unit of ``beta``, a finite number ``>= 0`` (a
            traced scalar is accepted unchecked, e.g. to ``vmap`` a sweep);
            the sign of the bias is carried by ``direction``.
        direction: ``None`` (all ones) or a PyTree like the parameters,
            rescaled to norm ``sqrt(N)``.
        relative: scale the bias by the incoming gradient's global norm.

    Stateless (``optax.EmptyState``); works under ``jit``/``vmap`` for any
    PyTree; the result keeps each leaf's dtype (bf16 included; norms and the
    rescaling are computed in float32 or better).
    """
    check_real("b", b, low=0)  # traced (a vmapped sweep): unchecked
    check_bool("relative", relative)

    def init_fn(params):
        if direction is not None:
            _check_tree_matches("direction", direction, params)
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        beta = gradient_bias_direction(updates, direction)
        acc = _acc_dtype(updates)
        scale = jnp.asarray(b, acc)
        if relative:
            scale = scale * jax.lax.stop_gradient(_global_norm(updates, acc))
        new = jax.tree.map(
            lambda g, bt: (jnp.asarray(g, acc) - scale * jnp.asarray(bt, acc)).astype(g.dtype),
            updates, beta)
        return new, state

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- noise


class InjectNoiseState(NamedTuple):
    """State of ``inject_gradient_noise``.

    Attributes:
        count: number of updates done (int32).
        rng_key: the key the next draw splits.
        cycle_key: key of the current zero-sum cycle (unused without a set).
        running_sum: sum of the current cycle's unit-scale directions so far
            (``None`` without a zero-sum set).
    """
    count: jax.Array
    rng_key: jax.Array
    cycle_key: jax.Array
    running_sum: Any


def inject_gradient_noise(sigma, *, key: Optional[jax.Array] = None, seed: Optional[int] = None,
                          scaling: str = "constant", exponent: Optional[float] = None,
                          relative: bool = False, zero_sum_set: Optional[int] = None,
                          zero_sum_normalization: str = "paper"
                          ) -> optax.GradientTransformation:
    """Adds the noise term ``sigma * sqrt(f(N)) * n_hat`` of Eq. 1 (Sec. 2).

    The transform maps ``g`` to ``g - s * n`` with ``s = sigma * sqrt(f(N))``
    (times ``||g||`` with ``relative=True``) and ``n`` a random unit vector
    over the whole PyTree (``random_unit_vector``; i.i.d. Gaussian entries,
    normalised), so that after the optimiser's negation the update direction
    is ``-g + s * n``. ``N`` is the total number of parameters, fixed at
    trace time.

    Args:
        sigma: noise magnitude, a finite number ``>= 0`` (traced: unchecked).
        key: a ``jax.random`` key (raw ``uint32[2]`` or typed; an int is
            taken as a seed); or
        seed: an int, turned into ``jax.random.PRNGKey(seed)`` (a raw key,
            which orbax checkpoints). Exactly one of ``key``/``seed``.
        scaling: ``f(N)``: ``'constant'`` (f = 1, the default),
            ``'N'`` (f = N) or ``'power'`` (f = N ** exponent).
        exponent: the ``a`` of ``'power'`` (finite; required for it only).
        relative: scale the noise by the incoming gradient's global norm.
        zero_sum_set: ``None`` for fresh noise every step, or ``R >= 2`` for
            cycles of ``R`` steps whose directions sum to zero (see the module
            docstring: ``R-1`` fresh unit vectors, then minus their sum).
        zero_sum_normalization: ``'paper'`` or ``'mean_square'`` (see
            ``zero_sum_noise_set``).

    Per step, without a set: ``rng_key, k = split(rng_key)`` and
    ``n = random_unit_vector(k, g)``. With a set, at the first step of a
    cycle ``rng_key, cycle_key = split(rng_key)``; step ``i < R-1`` of the
    cycle uses ``random_unit_vector(fold_in(cycle_key, i), g)`` (times the
    normalisation factor) and step ``R-1`` minus the running sum.
    Works under ``jit``/``vmap``; results keep each leaf's dtype (noise is
    drawn and accumulated in float32, or float64 for float64 leaves).
    """
    check_real("sigma", sigma, low=0)
    noise_variance_factor(1, scaling, exponent)  # checks scaling and exponent
    check_bool("relative", relative)
    if zero_sum_set is not None:
        zero_sum_set = check_int("zero_sum_set", zero_sum_set, 2)
    check_choice("zero_sum_normalization", zero_sum_normalization, ZERO_SUM_NORMALIZATIONS)
    if (key is None) == (seed is None):
        raise ValueError("exactly one of key and seed must be given")
    if isinstance(key, int) and not isinstance(key, bool):
        key, seed = None, key  # an int key is a seed, as in optax.add_noise
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        key = jax.random.PRNGKey(seed)
    r = zero_sum_set
    set_scale = _zero_sum_scale(zero_sum_normalization, r) if r else 1.0

    def init_fn(params):
        acc = _acc_dtype(params)
        running = None if r is None else optax.tree.zeros_like(params, acc)
        # fresh buffers: a jitted step donates its state, and the same array
        # twice (or the closure's key itself) cannot be donated
        return InjectNoiseState(count=jnp.zeros([], jnp.int32),
                                rng_key=jnp.array(key, copy=True),
                                cycle_key=jnp.array(key, copy=True), running_sum=running)

    def update_fn(updates, state, params=None):
        del params
        acc = _acc_dtype(updates)
        n = optax.tree.size(updates)
        scale = jnp.asarray(sigma, acc) * math.sqrt(noise_variance_factor(n, scaling, exponent))
        if relative:
            scale = scale * jax.lax.stop_gradient(_global_norm(updates, acc))
        if r is None:
            rng_key, sample_key = jax.random.split(state.rng_key)
            direction = random_unit_vector(sample_key, updates, acc)
            cycle_key, running = state.cycle_key, None
        else:
            i = state.count % r
            start = i == 0
            # a new cycle key at the first step of each cycle (cond: typed or raw keys)
            rng_key, cycle_key = jax.lax.cond(
                start, lambda: tuple(jax.random.split(state.rng_key)),
                lambda: (state.rng_key, state.cycle_key))
            last = i == r - 1
            fresh = random_unit_vector(jax.random.fold_in(cycle_key, i), updates, acc)
            fresh = optax.tree.scale(set_scale, fresh)
            # reset the sum at a cycle's start; the last step closes the cycle
            running = optax.tree.where(start, optax.tree.zeros_like(state.running_sum),
                                       state.running_sum)
            direction = optax.tree.where(last, optax.tree.scale(-1.0, running), fresh)
            running = optax.tree.add(running, direction)
        new = jax.tree.map(
            lambda g, d: (jnp.asarray(g, acc) - scale * d).astype(g.dtype), updates, direction)
        return new, InjectNoiseState(count=state.count + 1, rng_key=rng_key,
                                     cycle_key=cycle_key, running_sum=running)

    return optax.GradientTransformation(init_fn, update_fn)

