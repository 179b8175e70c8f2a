"""Rich versus lazy learning from unbalanced initialisations: the conserved
quantity of a neuron, its exact single-neuron dynamics, tangent kernels and
the kernel distance.

Kunin, Raventós, Dominé, Chen, Klindt, Saxe, Ganguli, "Get rich quick: exact
solutions reveal how unbalanced initializations promote rapid feature
learning" (NeurIPS 2024; code allanraventos/getrichquick).

Model and conventions. A neuron ``f(x) = a relu(w^T x)`` or ``f(x) = a w^T x``
with scalar ``a``, vector ``w`` and layer-wise learning rates ``lr_a``,
``lr_w`` (``w <- w - lr_w dL/dw``, ``a <- a - lr_a dL/da``). Because
``a dL/da = w^T dL/dw`` (the rescaling symmetry ``a -> a/c, w -> c w`` of any
loss of ``a w`` and of positively homogeneous activations), gradient flow
conserves

    delta = lr_w a^2 - lr_a ||w||^2                       (paper, Sec. 3)

per hidden neuron (``conserved_delta``). Under gradient descent it moves by
exactly ``lr_a lr_w (lr_a g_a^2 - lr_w ||g_w||^2)`` per step
(``delta_step_drift``): with both rates ``lr`` times fixed ratios, ``delta / lr``
drifts by ``lr^2`` per step.

Sign convention, as in the paper: ``delta > 0`` is an *upstream*
initialisation (the first layer ``w`` small and learning fast relative to
``a``), ``delta < 0`` a *downstream* one (``w`` large, ``a`` small). For the
single linear neuron the paper finds ``delta -> +inf`` lazy (the kernel
``lr_w a^2 I + lr_a w w^T`` is dominated by the almost constant ``a^2`` term,
so the kernel distance goes to 0), ``delta = 0`` rich, and ``delta -> -inf``
"delayed rich" (a lazy fit along ``w0`` first, then a slow rotation of
``w``: the kernel distance is large at the end of training unless ``w0`` is
already aligned with the task). In two-layer ReLU networks, upstream
initialisations (``delta > 0``) reach the rich regime fastest (Sec. 5).

Single neuron on whitened inputs (``E[x x^T] = I``, ``beta* = E[x y]``,
``s = ||beta*||``, loss ``E (y - a w^T x)^2 / 2``): ``r = w^T beta* / a``
obeys the scalar Riccati equation ``dr/dt = lr_w s^2 - delta r - lr_a r^2``,
so

    r(t) = (-delta + D tanh(D t / 2 + artanh((delta + 2 lr_a r0) / D))) / (2 lr_a),
    D = sqrt(delta^2 + 4 lr_a lr_w s^2)

(``single_neuron_riccati``; the paper's notebook writes it for unit rates,
with a complex ``artanh`` where ``|delta + 2 r0| > D``, which is the ``coth``
branch; here ``t`` is the number of steps times 1, i.e. the rates carry the
time scale). Given ``delta`` and ``beta = a w`` the parameters are fixed:
``a^2 = (delta + sqrt(delta^2 + 4 lr_a lr_w ||beta||^2)) / (2 lr_w)``
(``single_neuron_init``).

Kernel distance (Fort et al. 2020, used by the paper):
``S(K0, K1) = 1 - <K0, K1>_F / (||K0||_F ||K1||_F)`` (``kernel_distance``).
The tangent kernel weights each parameter's Jacobian by its learning rate,
``K = sum_p lr_p J_p J_p^T`` (``empirical_ntk``), the kernel that drives the
function under gradient flow; the getrichquick grid scripts use equal rates,
where this is the ordinary NTK.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from neurojax._checks import check_int, check_matrix, check_real, is_concrete

__all__ = ["conserved_delta", "delta_step_drift", "single_neuron_init",
           "single_neuron_riccati", "single_neuron_ntk", "kernel_distance", "empirical_ntk",
           "unbalanced_alpha", "two_layer_unbalanced_init"]


def _rates(lr_a, lr_w):
    check_real("lr_a", lr_a, low=0.0, low_open=True)
    check_real("lr_w", lr_w, low=0.0, low_open=True)


def conserved_delta(a, w, lr_a=1.0, lr_w=1.0) -> jax.Array:
    """``delta = lr_w a^2 - lr_a ||w||^2`` per neuron (Kunin et al. 2024, Sec. 3).

    ``a``: ``(...)`` output weights, ``w``: ``(..., d)`` input weights (one row
    per hidden neuron; for ``MLP`` kernels pass ``dense_0.kernel.T`` and
    ``head.kernel[:, 0]``). Returns ``(...)``.
    """
    _rates(lr_a, lr_w)
    a, w = jnp.asarray(a), jnp.asarray(w)
    if w.ndim < 1 or w.shape[:-1] != a.shape:
        raise ValueError(f"w must be a.shape + (d,) = {a.shape} + (d,), got {w.shape}")
    return lr_w * a ** 2 - lr_a * jnp.sum(w ** 2, axis=-1)


def delta_step_drift(g_a, g_w, lr_a=1.0, lr_w=1.0) -> jax.Array:
    """Exact one-step change of ``conserved_delta`` under gradient descent,
    ``lr_a lr_w (lr_a g_a^2 - lr_w ||g_w||^2)``, given the gradients ``g_a``
    ``(...)`` and ``g_w`` ``(..., d)`` at the step's start (the first-order
    terms cancel by ``a g_a = w^T g_w``)."""
    _rates(lr_a, lr_w)
    g_a, g_w = jnp.asarray(g_a), jnp.asarray(g_w)
    if g_w.ndim < 1 or g_w.shape[:-1] != g_a.shape:
        raise ValueError(f"g_w must be g_a.shape + (d,), got g_a {g_a.shape}, g_w {g_w.shape}")
    return lr_a * lr_w * (lr_a * g_a ** 2 - lr_w * jnp.sum(g_w ** 2, axis=-1))


def single_neuron_init(beta0, delta, lr_a=1.0, lr_w=1.0) -> tuple[jax.Array, jax.Array]:
    """``(a, w)`` with ``a > 0``, ``a w = beta0`` and ``conserved_delta = delta``:
    ``a^2 = (delta + sqrt(delta^2 + 4 lr_a lr_w ||beta0||^2)) / (2 lr_w)``,
    ``w = beta0 / a`` (the ``coordinates`` helper of the paper's notebook,
    with learning rates). ``beta0`` must be non-zero, or ``delta > 0``."""
    _rates(lr_a, lr_w)
    check_real("delta", delta)
    beta0 = jnp.asarray(beta0)
    if beta0.ndim != 1:
        raise ValueError(f"beta0 must be a 1-D vector, got shape {beta0.shape}")
    nb2 = jnp.sum(beta0 ** 2)
    if is_concrete(nb2) and is_concrete(delta) and float(nb2) == 0.0 and float(delta) <= 0.0:
        raise ValueError("beta0 must be non-zero unless delta > 0 (a = 0 otherwise)")
    a = jnp.sqrt((delta + jnp.sqrt(delta ** 2 + 4 * lr_a * lr_w * nb2)) / (2 * lr_w))
    return a, beta0 / a


def single_neuron_riccati(t, r0, delta, s, lr_a=1.0, lr_w=1.0) -> jax.Array:
    """Exact ``r(t) = w(t)^T beta* / a(t)`` of a linear neuron under gradient
    flow on whitened inputs (Kunin et al. 2024, Sec. 3, the Riccati equation
    ``dr/dt = lr_w s^2 - delta r - lr_a r^2``):

    ``r(t) = (-delta + D tanh(D t/2 + artanh((delta + 2 lr_a r0)/D))) / (2 lr_a)``,
    ``D = sqrt(delta^2 + 4 lr_a lr_w s^2)``; where ``|delta + 2 lr_a r0| > D``
    ``tanh`` becomes ``coth`` (the complex ``artanh`` of the paper's code),
    which is singular when ``a`` crosses 0 (possible only for ``delta < 0``).
    ``t`` is gradient-flow time: steps when the rates are the step sizes.
    """
    _rates(lr_a, lr_w)
    check_real("delta", delta)
    check_real("s", s, low=0.0)
    t = jnp.asarray(t)
    d = jnp.sqrt(delta ** 2 + 4 * lr_a * lr_w * s ** 2)
    y0 = (delta + 2 * lr_a * jnp.asarray(r0)) / d
    inside = jnp.abs(y0) < 1
    # artanh(y0) for |y0| < 1; arcoth(y0) = artanh(1/y0) for |y0| > 1 (coth branch)
    c = jnp.arctanh(jnp.where(inside, y0, 1 / jnp.where(y0 == 0, 1.0, y0)))
    z = d * t / 2 + c
    shape = jnp.where(inside, jnp.tanh(z), 1 / jnp.tanh(z))
    return (-delta + d * shape) / (2 * lr_a)


def single_neuron_ntk(a, w, x, lr_a=1.0, lr_w=1.0) -> jax.Array:
    """Tangent kernel of ``f(x) = a w^T x``:
    ``K = lr_w a^2 X X^T + lr_a (X w)(X w)^T`` (``(n, n)``; ``x`` is ``(n, d)``)."""
    _rates(lr_a, lr_w)
    x = check_matrix("x", x)
    w = jnp.asarray(w)
    if w.shape != (x.shape[1],):
        raise ValueError(f"w must have shape ({x.shape[1]},) to match x, got {w.shape}")
    xw = x @ w
    return lr_w * a ** 2 * (x @ x.T) + lr_a * jnp.outer(xw, xw)


def kernel_distance(k0, k1) -> jax.Array:
    """``S = 1 - <K0, K1>_F / (||K0||_F ||K1||_F)`` (Fort et al., NeurIPS 2020;
    Kunin et al. 2024, Sec. 3): 0 for kernels equal up to scale, 1 for
    orthogonal ones. The last two axes are the kernel; leading axes batch."""
    k0, k1 = jnp.asarray(k0), jnp.asarray(k1)
    if k0.ndim < 2 or k0.shape[-2:] != k1.shape[-2:]:
        raise ValueError(f"k0 and k1 must be (..., n, n) kernels of one size, got "
                         f"{k0.shape} and {k1.shape}")
    inner = jnp.sum(k0 * k1, axis=(-2, -1))
    norms = jnp.sqrt(jnp.sum(k0 ** 2, axis=(-2, -1)) * jnp.sum(k1 ** 2, axis=(-2, -1)))
    return 1.0 - inner / norms


def empirical_ntk(apply_fn: Callable[[Any, jax.Array], jax.Array], params, x,
                  lrs: Optional[Any] = None) -> jax.Array:
    """``K = sum_p lr_p J_p J_p^T`` with ``J = d vec(apply_fn(params, x)) / d params``
    by ``jax.jacobian`` (``(n * outputs, n * outputs)``, row-major over
    ``apply_fn``'s output). ``lrs``: ``None`` (all 1: the ordinary NTK) or a
    tree of scalars matching ``params`` (layer-wise learning rates).
    Dense Jacobians: for small models (the kernels of the paper's grids)."""
    def flat(p):
        return jnp.reshape(apply_fn(p, x), (-1,))
    jac = jax.jacobian(flat)(params)
    leaves, treedef = jax.tree.flatten(jac)
    if lrs is None:
        rates = [1.0] * len(leaves)
    else:
        rates = treedef.flatten_up_to(lrs)
    k = 0.0
    for j, lr in zip(leaves, rates):
        j2 = j.reshape(j.shape[0], -1)
        k = k + lr * (j2 @ j2.T)
    return k


def unbalanced_alpha(delta, scale) -> jax.Array:
    """``alpha`` with ``1/alpha^2 - alpha^2 = delta / scale^2``:
    ``alpha^2 = (sqrt(4 + (delta/scale^2)^2) - delta/scale^2) / 2`` (getrichquick's
    ``get_alpha``), so a neuron with ``||w|| = scale alpha`` and
    ``|a| = scale / alpha`` has ``a^2 - ||w||^2 = delta``."""
    check_real("scale", scale, low=0.0, low_open=True)
    check_real("delta", delta)
    r = delta / scale ** 2
    return jnp.sqrt((jnp.sqrt(4 + r ** 2) - r) / 2)


def two_layer_unbalanced_init(key, in_dim: int, width: int, scale: float, delta: float, *,
                              dtype: Any = None) -> dict:
    """Parameters of ``MLP(widths=(width,), num_outputs=1, use_bias=False)``
    (ReLU) with every hidden neuron at ``a_i^2 - ||w_i||^2 = delta``
    (equal learning rates) and overall size ``scale`` (Kunin et al. 2024,
    Sec. 5, the two-layer ReLU grid; getrichquick's ``StudentNetwork`` with
    ``symmetrize=True``): directions uniform on the sphere, ``||w_i|| = scale
    alpha``, ``a_i = +-scale/alpha`` (``unbalanced_alpha``); neurons come in
    pairs with the same ``w`` and opposite ``a``, so the network is 0 at
    initialisation. ``delta > 0``: upstream, ``delta < 0``: downstream."""
    check_int("in_dim", in_dim)
    check_int("width", width, minimum=2)
    if width % 2:
        raise ValueError(f"width must be even (neurons come in +-a pairs), got {width}")
    alpha = unbalanced_alpha(delta, scale)
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.asarray(1.0).dtype
    k1, k2 = jax.random.split(key)
    half = width // 2
    w = jax.random.normal(k1, (half, in_dim), dtype)
    w = w / jnp.linalg.norm(w, axis=1, keepdims=True) * scale * alpha
    a = jnp.sign(jax.random.normal(k2, (half,), dtype)) * scale / alpha
    w = jnp.concatenate([w, w], axis=0)
    a = jnp.concatenate([a, -a]).astype(dtype)
    return {"params": {"dense_0": {"kernel": w.T.astype(dtype)},
                       "head": {"kernel": a[:, None]}}}
