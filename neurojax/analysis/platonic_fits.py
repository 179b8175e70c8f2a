"""Two fits the chapter-7 driver needs beyond ``fit_platonic``'s own loop
(Oland 2024, Efficient Deep Learning, ch. 7):

* :func:`deep_lsd`: the per-layer least-squares distance of a very deep,
  equal-width Platonic net (Figs 7.5/7.6: 10,000 layers). ``fit_platonic``
  compiles its layers unrolled, one program whose size grows with depth;
  here layers 2..L are one ``lax.scan`` over the rule's own compiled layer
  step (``neurojax.rules.platonic._hidden_layer``, the step ``fit_platonic``
  calls per layer, same keys), so 10,000 layers compile as two layers do.
* :func:`fit_target_ablation`: the T = Y P ablation of Sec 7.3.2 ("does not
  work"; spec claim 3) and its counterpart T = Z P. The rule's target is
  T_i = alpha [Z~_{i-1} | beta Y] P_i with P_i = [P_Z; P_Y] split by rows;
  ``target='y'`` keeps only the label block, T_i = alpha beta Y P_Y (the
  rule with P_Z = 0: with one-hot or +-1 Y every sample of a class gets the
  same target and rank(T_i) <= k), ``target='z'`` only the representation
  block (beta = 0), ``target='zy'`` is the rule itself. The draws are the
  rule's (P_Y is the last k rows of the P that ``fit_platonic`` draws for
  that layer), so the three differ only in the target.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax._checks import check_choice, check_int
from neurojax.analysis.platonic_tasks import (binary_accuracy, class_accuracy, digits_task,
                                              forward, over_seeds, signed, spirals_task)
from neurojax.rules import platonic as rule
from neurojax.rules.platonic import fit_platonic, solve_linear

TARGETS = ("zy", "y", "z")


def deep_lsd(key: jax.Array, x: jax.Array, y: jax.Array, width: int, num_layers: int,
             activation: str, *, n_tries: int = 1, alpha: float = 1.0, beta: float = 1.0,
             solver: str = "pinv", rtol: Optional[float] = None, atol: Optional[float] = None,
             ridge: Optional[float] = None, dtype: Any = "float64") -> dict:
    """Per-layer LSD of a ``num_layers``-deep, ``width``-wide random Platonic
    net (method 'random', N_tries candidates per layer, Sec 7.5.1):

        LSD_i = (1/m) ||Y - Z~_i Z~_i^+ Y||_F^2     (Eq 5.3, Z~_i = [1 | Z_i])

    for i = 1..L, the same numbers as ``fit_platonic(key, x, y, (width,) * L,
    activation, n_tries=..., ...)[1]['lsd']`` (layer i's candidates drawn from
    ``fold_in(fold_in(key, i - 1), t)``), without the output layer or the
    parameters. Returns numpy arrays ``{'lsd': [L], 'selected': [L],
    'log10_max_abs': [L]}``, the last being log10 max_j |Z_i| (with alpha = 1
    the scale of Z_i grows layer by layer: Eq 7.2's W has entries of the size
    of P whatever the size of Z, and CELU passes positive values linearly, so
    a deep enough net overflows, which then shows as NaN LSDs).
    """
    num_layers = check_int("num_layers", num_layers)
    width = check_int("width", width)
    n_tries = check_int("n_tries", n_tries)
    act = rule._resolve_activation(activation)
    dtype = rule._resolve_dtype(dtype, jnp.asarray(x))
    tol = rule._check_solver(solver, rtol, atol, ridge, dtype)
    x = jnp.asarray(x).reshape(len(x), -1)
    y = rule._as_matrix(y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have m = {x.shape[0]} rows, got shape {y.shape}")
    lsd, selected, scale = _deep_lsd(key, x, y, float(alpha), float(beta), tol, width=width,
                              num_layers=num_layers, n_tries=n_tries, act=act, solver=solver,
                              dtype=dtype)
    return {"lsd": np.asarray(lsd, np.float64), "selected": np.asarray(selected),
            "log10_max_abs": np.asarray(scale, np.float64)}


@functools.partial(jax.jit, static_argnames=("width", "num_layers", "n_tries", "act",
                                             "solver", "dtype"))
def _deep_lsd(key, x, y, alpha, beta, tol, *, width, num_layers, n_tries, act, solver, dtype):
    z, y = x.astype(dtype), y.astype(dtype)
    tol = tuple(jnp.asarray(t, dtype) for t in tol)
    d = jnp.ones((z.shape[0],), dtype)

    def layer(i, z, factor):
        _, _, lsds, best, z, factor, err = rule._hidden_layer(
            jax.random.fold_in(key, i), z, factor, y, d, alpha, beta, tol, "random", width,
            n_tries, act, solver, True)
        return z, factor, (jnp.mean(err), best, jnp.log10(jnp.max(jnp.abs(z))))

    # layer 1 changes the width (n -> width); layers 2..L keep it: one scan
    z, factor, first = layer(0, z, rule._input_factor(z, tol, solver))

    def body(carry, i):
        z, factor, out = layer(i, *carry)
        return (z, factor), out

    _, rest = jax.lax.scan(body, (z, factor), jnp.arange(1, num_layers))
    return tuple(jnp.concatenate([a[None], b]) for a, b in zip(first, rest))


def fit_target_ablation(key: jax.Array, x: jax.Array, y: jax.Array, widths: Sequence[int],
                        activation: str, *, target: str = "y", alpha: float = 1.0,
                        beta: float = 1.0, solver: str = "pinv", rtol: Optional[float] = None,
                        atol: Optional[float] = None, ridge: Optional[float] = None,
                        dtype: Any = None) -> tuple[dict, dict]:
    """A random Platonic fit (N_tries = 1) with the target's blocks ablated
    (module docstring): hidden layer i solves Z~_{i-1} W~_i ~ T_i with

        'zy': T_i = alpha [Z~_{i-1} | beta Y] P_i    (Sec 7.3.2, the rule)
        'y':  T_i = alpha beta Y P_Y,i               (T = Y P: P_Z = 0)
        'z':  T_i = alpha Z~_{i-1} P_Z,i             (beta = 0)

    and the output layer W~_L = Z~_{L-1}^+ Y. ``'zy'`` and ``'z'`` are
    ``fit_platonic`` itself (``beta = 0`` for 'z'). Returns
    ``fit_platonic``'s ``(params, info)`` (for 'y', info has 'lsd',
    'outputs', 'train_mse', 'finite').
    """
    check_choice("target", target, TARGETS)
    kw = dict(solver=solver, rtol=rtol, atol=atol, ridge=ridge, dtype=dtype)
    if target != "y":
        return fit_platonic(key, x, y, widths, activation, alpha=alpha,
                            beta=beta if target == "zy" else 0.0, **kw)
    act = rule._resolve_activation(activation)
    z = jnp.asarray(x)
    dtype = rule._resolve_dtype(dtype, z)
    z = z.reshape(len(z), -1).astype(dtype)
    y = rule._as_matrix(y).astype(dtype)
    k = y.shape[1]
    params, lsds = {}, []
    for i, width in enumerate(widths):
        width = check_int(f"widths[{i}]", width)
        zt = rule._with_bias(z)
        # the rule's draw for layer i, candidate 0; its last k rows are P_Y
        p = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, i), 0),
                              (zt.shape[1] + k, width), dtype)
        w = solve_linear(zt, alpha * beta * (y @ p[zt.shape[1]:]), **_solver_kw(kw))
        params[f"dense_{i}"] = {"kernel": w[1:], "bias": w[0]}
        z = act(z @ w[1:] + w[0])
        zt = rule._with_bias(z)
        lsds.append(jnp.mean(jnp.sum((y - zt @ solve_linear(zt, y, **_solver_kw(kw))) ** 2,
                                     axis=1)))
    zt = rule._with_bias(z)
    w = solve_linear(zt, y, **_solver_kw(kw))
    params["head"] = {"kernel": w[1:], "bias": w[0]}
    outputs = zt @ w
    finite = all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(params))
    return params, {"lsd": jnp.stack(lsds) if lsds else jnp.zeros((0,), dtype),
                    "outputs": outputs, "train_mse": jnp.mean((y - outputs) ** 2),
                    "finite": jnp.asarray(finite)}


def _solver_kw(kw: dict) -> dict:
    return {k: kw[k] for k in ("solver", "rtol", "atol", "ridge")}


# ----------------------------------------------------------------- the ablation part

def ablation(cfg: dict) -> dict:
    """Sec 7.3.2 / spec claim 3: the target T = alpha [Z | beta Y] P against
    T = alpha beta Y P (no Z block) and T = alpha Z P (beta = 0), same draws
    (``platonic_fits.fit_target_ablation``). Spirals: 2-32-32-32-32-1 tanh,
    pinv, both (alpha, beta) settings, float32 and float64. Digits: one hidden
    ReLU layer, alpha 1, beta 10, ridge (Table 7.2's random-P setting)."""
    def scored(fit, task, widths, activation, accuracy):
        def one(seed):
            t0 = time.perf_counter()
            params, info = fit(jax.random.PRNGKey(seed))
            dtype = params["head"]["kernel"].dtype
            test_out = forward(params, task["x_test"].astype(dtype), widths, activation)
            return {"train_accuracy": accuracy(info["outputs"], task["y"]),
                    "test_accuracy": accuracy(test_out, task["y_test"]),
                    "finite": bool(info["finite"]), "seconds": time.perf_counter() - t0,
                    "last_lsd": float(info["lsd"][-1])}
        return one

    spiral_rows = []
    task = spirals_task(cfg["spiral_turns"])
    for alpha, beta in ((0.1, 10.0), (1.0, 2.0)):
        for dtype in ("float32", "float64"):
            for target in TARGETS:
                fit = lambda key: fit_target_ablation(key, task["x"], signed(task["y"]),
                                                      (32,) * 4, "tanh", target=target,
                                                      alpha=alpha, beta=beta, dtype=dtype)
                one = scored(fit, task, (32,) * 4, "tanh", binary_accuracy)
                res = over_seeds(one, range(cfg["ablation_seeds"]))
                spiral_rows.append({"alpha": alpha, "beta": beta, "precision": dtype,
                                    "target": target, **res})
                print(f"  spirals {alpha} {beta} {dtype} T={target}P: "
                      f"{res['train_accuracy'].get('mean', float('nan')):.4f}", flush=True)
    dg = digits_task()
    y = jax.nn.one_hot(dg["y"], 10)
    width = cfg["ablation_digits_width"]
    digit_rows = []
    for target in TARGETS:
        fit = lambda key: fit_target_ablation(key, dg["x"], y, (width,), "relu", target=target,
                                              alpha=1.0, beta=10.0, solver="ridge",
                                              ridge=cfg["digits_ridge"])
        one = scored(fit, dg, (width,), "relu", class_accuracy)
        digit_rows.append({"target": target, "width": width, "alpha": 1.0, "beta": 10.0,
                           **over_seeds(one, range(cfg["ablation_digits_seeds"]))})
    return {"spirals": spiral_rows, "spirals_turns": cfg["spiral_turns"],
            "digits": digit_rows, "digits_ridge": cfg["digits_ridge"]}
