"""Platonic projections on CPU: Oland 2024, Efficient Deep Learning, ch. 7
(experiments E10-E15 of the spec; Tables 7.1-7.3, Figs 7.4-7.6, 7.11).

A thin driver over :func:`neurojax.rules.platonic.fit_platonic` (the closed-form
fit) and the library's training program (the backprop baselines:
:func:`train_backprop` runs ``neurojax.train.program.make_call``'s compiled
multi-step scans with the data on the device). Parts:

* ``sine`` (Sec 7.5, Fig 7.4): y = sin(2 pi x) on U[-1, 1) (two periods, 5000
  points, ``synthetic.noisy_sinusoid`` without noise), 1-16-16-1 CELU,
  alpha = beta = 1, pinv; train MSE over seeds (the P draws) in float32 and
  float64. Chapter: MSE 2e-5 (one run).
* ``deep`` (Figs 7.5/7.6): very deep narrow CELU nets on the same sine, widths
  2/4/8/16, N_tries 1 and 5, 10,000 layers as in the chapter (one ``lax.scan``,
  ``platonic_fits.deep_lsd``); the per-layer least-squares distance (LSD, Eq
  5.3: the MSE of a least-squares decision layer on Z_i) through every layer
  and its minimum over layers. ``deep_scaled``: the same with alpha =
  1 / sqrt(width + 1) (not in the chapter; with alpha = 1 the scale of Z_i
  grows with depth until float64 overflows).
* ``spirals`` (Sec 7.6, Table 7.1): two spirals (5000 points, a second draw of
  5000 as test set), 2-32-32-32-32-1 tanh, y in {-1, +1}, accuracy of sign(yhat)
  over 100 seeds for (alpha, beta) in {(0.1, 10), (1, 2)} x solver x precision
  (``PRECISIONS``); a sweep over the number of turns (the chapter does not
  state it); and the chapter's backprop baseline (SGD 0.01, momentum 0.9,
  batch 32, 75 epochs, lr / 10 after epoch 56; two softmax outputs with
  cross-entropy, equivalent to one sigmoid output on their difference).
* ``spirals_tries`` (Sec 7.6.2): N_tries 1/5/50/500 over 100 seeds (alpha 0.1,
  beta 10, float32; the chapter: one "unlucky" seed).
* ``ablation`` (Sec 7.3.2, spec claim 3): T = [Z | beta Y] P against T = Y P
  (no Z block) and T = Z P (beta = 0) on the spirals (both (alpha, beta)
  settings, float32 and float64) and the digits (one hidden ReLU layer).
* ``checkerboard`` (Sec 7.7, Fig 7.11): 8 x 8 board, 5000 points, three ReLU
  hidden layers of equal width 2..2048, N_tries 5, alpha = 0.08, beta = 200.
* ``digits`` (Sec 7.9, Tables 7.2/7.3) on scikit-learn's 8x8 digits (1437 train
  / 360 test; MNIST in the chapter): one hidden ReLU layer by ELM (random W),
  random P, Platonic PCA and Sorted PCA over widths, one-hot Y, ridge; and
  deterministic 2-3 hidden-layer nets (Sorted PCA, then Platonic PCA with EMA
  sample weights); a backprop MLP for reference.
* ``mnist`` (Tables 7.2/7.3 on MNIST): ``neurojax.analysis.platonic_mnist``
  with the ``config.platonic`` block of ``--config`` (``configs/platonic_mnist.py``);
  needs the prepared TFDS 'mnist'; not in the default parts.

CLI::

    python -m neurojax.analysis.platonic --outdir DIR [--quick] [--parts sine,deep,...]
    python -m neurojax.analysis.platonic --outdir DIR --parts mnist \
        --config configs/platonic_mnist.py

writes ``DIR/platonic_{full,quick}.json`` and ``.png`` (the figure:
``neurojax.analysis.platonic_figure``). A run of some parts merges into an
existing JSON there, keeping the other parts' results, each with the command
and config it ran with. Accuracies are fractions in [0, 1]; spreads are over
seeds (mean, std, median, min, max).
"""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.analysis.outputs import jsonable, write_json
from neurojax.analysis.platonic_tasks import (  # noqa: F401  (the driver's API)
    binary_accuracy, board_task, class_accuracy, digits_task, forward, over_seeds, signed,
    sine_task, spirals_task, spread)
from neurojax.analysis.platonic_fits import ablation, deep_lsd  # noqa: F401  (parts)
from neurojax.rules.platonic import fit_platonic

PARTS = ("sine", "deep", "deep_scaled", "spirals", "spirals_tries", "ablation", "checkerboard", "digits",
         "mnist")
DEFAULT_PARTS = PARTS[:-1]   # mnist needs the prepared dataset and --config
CHAPTER = {
    "sine_mse": 2e-5,
    "deep_layers": 10_000,
    "spirals_backprop_accuracy": 0.9917, "spirals_backprop_seconds_gpu": 52.0,
    "spirals_n_tries": {"1": 0.8973, "5": 0.9269, "50": 0.9451, "500": 0.9437},
    "spirals_n_tries_seconds_gpu": {"1": 0.018, "5": 0.039, "50": 0.249, "500": 2.03},
    "spirals_float64": 0.9999, "spirals_float32_atol_1e-5": 0.9560,
    "table_7_1_cpu": {  # mean, std in percent over 1000 runs: f32, f32 tol 1e-5, f64
        "a0.1_b10": {"pinv": [[80.25, 8.11], [87.16, 2.51], [99.17, 1.63]],
                     "lstsq": [[61.92, 8.75], [87.75, 11.33], [98.50, 2.57]],
                     "ridge": ["Failed", "Failed", [94.87, 2.43]]},
        "a1_b2": {"pinv": [[97.46, 1.80], [99.83, 0.36], [99.93, 0.19]],
                  "lstsq": [[95.95, 3.04], [95.70, 10.28], [99.93, 0.17]],
                  "ridge": ["Failed", "Failed", [99.95, 0.15]]}},
    "checkerboard_width_accuracy": {"1024": 0.9562, "2048": 0.9984},
    "mnist_table_7_2_test": {  # widths 98, 196, 392, 784, 1568
        "elm": [77.28, 83.86, 88.26, 91.52, 93.89], "random": [89.19, 90.55, 91.89, 93.34, 94.63],
        "pca": [89.21, 89.76, 90.63, 91.36, None], "sorted_pca": [86.19, 90.71, 93.14, 94.64, 95.88]},
    "mnist_table_7_3_test": {"392-50": 95.07, "784-392": 96.55, "1568-1200-1000": 97.32,
                             "6500-4500-3000": 97.83},
    "mnist_backprop_test": 98.12,
}

FULL = dict(
    sine_seeds=10,
    deep_layers=10_000, deep_widths=(2, 4, 8, 16), deep_tries=(1, 5), deep_examples=5000,
    spiral_turns=1.5, spiral_seeds=100, spiral_tries=(1, 5, 50, 500), spiral_tries_seeds=100,
    spiral_turns_sweep=(1.0, 1.5, 2.0, 2.5, 3.0), spiral_sweep_seeds=5,
    spiral_solvers=("pinv", "lstsq", "ridge"), spiral_ridge=1e-6, backprop_epochs=75,
    backprop_seeds=3, ablation_seeds=100, ablation_digits_width=256, ablation_digits_seeds=10,
    board_widths=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), board_tries=5,
    digits_widths=(16, 32, 64, 74, 128, 256, 512, 1024), digits_trials=10, digits_ridge=10.0,
    digits_deep=((256, 128), (512, 256), (1024, 512), (1024, 512, 256), (1437, 1024, 512)),
    digits_deep_beta=1e4, digits_deep_ridge=1.0, digits_backprop_epochs=100,
)
QUICK = dict(   # every code path once, few distinct shapes (compilation dominates)
    sine_seeds=2,
    deep_layers=30, deep_widths=(4,), deep_tries=(1, 3), deep_examples=1000,
    spiral_turns=1.5, spiral_seeds=2, spiral_tries=(1, 3), spiral_tries_seeds=2,
    spiral_turns_sweep=(1.0,), spiral_sweep_seeds=2, spiral_solvers=("pinv", "ridge"),
    spiral_ridge=1e-6, backprop_epochs=2, backprop_seeds=1, ablation_seeds=2,
    ablation_digits_width=32, ablation_digits_seeds=1,
    board_widths=(8, 64), board_tries=2,
    digits_widths=(32, 74), digits_trials=2, digits_ridge=10.0,
    digits_deep=((64, 32),), digits_deep_beta=1e4, digits_deep_ridge=1.0,
    digits_backprop_epochs=2,
)
# Table 7.1's columns: (name, dtype, pinv (rtol, atol), lstsq rcond). The
# chapter ran PyTorch: its "FP32" column is torch's default cut, rtol =
# max(m, n) eps for pinv and rcond = max(m, n) eps for its CPU lstsq (gelsy,
# QR; JAX's is SVD-based); "tol=1e-5" is pinv's absolute cut (torch sets
# rtol = 0 when only atol is given; JAX's lstsq has a relative cut only, so
# that lstsq cell uses rcond = 1e-5). "float32"/"float64" are this library's
# default (rtol = eps). Ridge has no tolerance: it runs in the plain columns.
TORCH_RTOL = "max(m, n) eps"
PRECISIONS = (("float32", "float32", (None, None), None),
              ("float32_torch_tol", "float32", (TORCH_RTOL, 0.0), TORCH_RTOL),
              ("float32_atol1e-5", "float32", (0.0, 1e-5), 1e-5),
              ("float64", "float64", (None, None), None))


# ----------------------------------------------------------------- fits

def fit_binary(seed: int, task: dict, widths: Sequence[int], activation: str,
               **fit_kwargs) -> dict:
    """One fit on a binary task: train/test accuracy, train MSE, seconds, finite."""
    t0 = time.perf_counter()
    params, info = fit_platonic(jax.random.PRNGKey(seed), task["x"], signed(task["y"]),
                                widths, activation, **fit_kwargs)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - t0
    dtype = params["head"]["kernel"].dtype
    test_out = forward(params, task["x_test"].astype(dtype), widths, activation)
    return {"train_accuracy": binary_accuracy(info["outputs"], task["y"]),
            "test_accuracy": binary_accuracy(test_out, task["y_test"]),
            "train_mse": float(info["train_mse"]), "finite": bool(info["finite"]),
            "seconds": seconds}


def sine(cfg: dict) -> dict:
    """Sec 7.5: train MSE of 1-16-16-1 CELU fits over seeds, float32 and float64."""
    out = {}
    for dtype in cfg.get("sine_dtypes", ("float32", "float64")):
        x, y = sine_task(cfg.get("sine_examples", 5000), dtype)
        mses = [float(fit_platonic(jax.random.PRNGKey(s), x, y, (16, 16), "celu",
                                   dtype=dtype)[1]["train_mse"]) for s in range(cfg["sine_seeds"])]
        out[dtype] = {"mse": mses, **spread(mses)}
    return out


def deep(cfg: dict, dtype: str = "float64", scaled: bool = False) -> dict:
    """Figs 7.5/7.6: per-layer LSD of deep narrow CELU nets on the sine (seed 0),
    alpha = beta = 1 (``scaled``: alpha = 1 / sqrt(width + 1), which keeps the
    scale of Z_i from growing: Eq 7.2's W has N(0, alpha^2) entries over
    width + 1 inputs), pinv, through ``platonic_fits.deep_lsd`` (one scan).
    ``final_train_mse`` is the last layer's LSD: with k = 1 it is the train MSE
    of the net's least-squares output layer. ``log10_max_abs`` is the scale of
    each Z_i, ``first_nonfinite_layer`` where it overflowed (None: never). The
    curves are kept at the layers ``layers`` (:func:`stored_layers`); the
    minimum, its layer and the final value are over every layer."""
    x, y = sine_task(cfg["deep_examples"], dtype)
    out = {"num_layers": cfg["deep_layers"], "num_examples": cfg["deep_examples"],
           "dtype": dtype, "alpha": "1 / sqrt(width + 1)" if scaled else 1.0, "runs": {}}
    for width in cfg["deep_widths"]:
        for tries in cfg["deep_tries"]:
            t0 = time.perf_counter()
            r = deep_lsd(jax.random.PRNGKey(0), x, y, width, cfg["deep_layers"], "celu",
                         n_tries=tries, dtype=dtype,
                         alpha=1.0 / np.sqrt(width + 1) if scaled else 1.0)
            lsd = r["lsd"]
            finite = np.isfinite(lsd)
            first_bad = None if finite.all() else int(np.argmin(finite)) + 1
            best = int(np.nanargmin(lsd)) + 1
            layers = stored_layers(len(lsd), cfg.get("deep_points", 1000),
                                   [best] + ([first_bad] if first_bad else []))
            out["runs"][f"w{width}_n{tries}"] = {
                "width": width, "n_tries": tries, "layers": layers, "lsd": lsd[layers - 1],
                "log10_max_abs": r["log10_max_abs"][layers - 1],
                "first_nonfinite_layer": first_bad, "min_lsd": float(np.nanmin(lsd)),
                "argmin_layer": best, "final_train_mse": float(lsd[-1]),
                "seconds": time.perf_counter() - t0}
            print(f"  deep w{width} n{tries}: min LSD {np.nanmin(lsd):.3g}", flush=True)
    return out


def stored_layers(num_layers: int, points: int, extra: Sequence[int] = ()) -> np.ndarray:
    """The 1-based layers whose LSD the JSON keeps: about ``points``
    log-spaced ones (every layer up to ~points / 10), the last one and
    ``extra``; 10,000 layers x 16 runs in full made a 4.6 MB file."""
    grid = np.round(np.logspace(0, np.log10(num_layers), points)).astype(int)
    return np.unique(np.concatenate([grid, [1, num_layers], np.asarray(extra, int)]))


def deep_scaled(cfg: dict) -> dict:
    """:func:`deep` with alpha = 1 / sqrt(width + 1) (not in the chapter: it
    separates the rule's depth behaviour from float64's range)."""
    return deep(cfg, scaled=True)


def _precision_kwargs(solver: str, precision: tuple, m: int, n: int) -> Optional[dict]:
    """The solver's tolerance for a ``PRECISIONS`` column (None: no such cell)."""
    name, dtype, (rtol, atol), rcond = precision
    torch_rtol = max(m, n) * float(jnp.finfo(dtype).eps)
    fill = lambda v: torch_rtol if v == TORCH_RTOL else v
    if solver == "ridge":
        return {"dtype": dtype} if rtol is None and rcond is None else None
    if solver == "lstsq":
        return {"dtype": dtype, **({} if rcond is None else {"rtol": fill(rcond)})}
    return {"dtype": dtype, **({} if rtol is None else {"rtol": fill(rtol), "atol": atol})}


def spirals_table(cfg: dict, task: dict) -> list[dict]:
    """Table 7.1 over seeds: (alpha, beta) x solver x precision, N_tries = 1."""
    rows = []
    seeds = range(cfg["spiral_seeds"])
    m, n = task["x"].shape[0], 32 + 1   # the widest solve: [1 | Z] of a 32-unit layer
    for alpha, beta in ((0.1, 10.0), (1.0, 2.0)):
        for solver in cfg["spiral_solvers"]:
            for precision in PRECISIONS:
                kw = _precision_kwargs(solver, precision, m, n)
                if kw is None:
                    continue
                kw.update(alpha=alpha, beta=beta, solver=solver)
                if solver == "ridge":
                    kw["ridge"] = cfg["spiral_ridge"]
                res = over_seeds(lambda s: fit_binary(s, task, (32,) * 4, "tanh", **kw), seeds)
                rows.append({"alpha": alpha, "beta": beta, "solver": solver,
                             "precision": precision[0],
                             "tolerance": {k: kw[k] for k in ("rtol", "atol") if k in kw},
                             **res})
                print(f"  {alpha} {beta} {solver} {precision[0]}: "
                      f"{res['train_accuracy'].get('mean', float('nan')):.4f}", flush=True)
    return rows


def spirals(cfg: dict) -> dict:
    """Table 7.1 analogue, the turns sweep and the backprop baseline."""
    task = spirals_task(cfg["spiral_turns"])
    out = {"turns": cfg["spiral_turns"], "architecture": "2-32-32-32-32-1 tanh",
           "ridge": cfg["spiral_ridge"], "table": spirals_table(cfg, task)}
    sweep = []
    for turns in cfg["spiral_turns_sweep"]:
        t = spirals_task(turns)
        for alpha, beta in ((0.1, 10.0), (1.0, 2.0)):
            for dtype in ("float32", "float64"):
                res = over_seeds(lambda s: fit_binary(s, t, (32,) * 4, "tanh", alpha=alpha,
                                                      beta=beta, dtype=dtype),
                                 range(cfg["spiral_sweep_seeds"]))
                sweep.append({"turns": turns, "alpha": alpha, "beta": beta, "precision": dtype,
                              **res})
    out["turns_sweep"] = sweep
    out["backprop"] = spirals_backprop(task, cfg["backprop_epochs"], cfg["backprop_seeds"])
    return out


def spirals_tries(cfg: dict) -> dict:
    """Sec 7.6.2: N_tries candidates per layer, alpha 0.1, beta 10, float32,
    pinv, over seeds (candidates nested: those of N_tries = 5 are the first
    five of 50)."""
    task = spirals_task(cfg["spiral_turns"])
    rows = []
    for n in cfg["spiral_tries"]:
        rows.append({"n_tries": n, **over_seeds(
            lambda s: fit_binary(s, task, (32,) * 4, "tanh", alpha=0.1, beta=10.0, n_tries=n,
                                 dtype="float32"), range(cfg["spiral_tries_seeds"]))})
        print(f"  n_tries {n}: {rows[-1]['train_accuracy']['mean']:.4f}", flush=True)
    return {"turns": cfg["spiral_turns"], "alpha": 0.1, "beta": 10.0, "precision": "float32",
            "rows": rows}


def checkerboard(cfg: dict, dtype: str = "float32") -> dict:
    """Fig 7.11: three ReLU hidden layers of width w, N_tries 5, alpha 0.08, beta 200."""
    task = board_task()
    rows = []
    for width in cfg["board_widths"]:
        r = fit_binary(0, task, (width,) * 3, "relu", alpha=0.08, beta=200.0,
                       n_tries=cfg["board_tries"], dtype=dtype)
        rows.append({"width": width, "params": 2 * width + 2 * width * width + 4 * width + 1,
                     **r})
    return {"dtype": dtype, "n_tries": cfg["board_tries"], "num_tiles": 8, "rows": rows}


def digits_single(cfg: dict, task: dict, *, methods: Sequence[str] = ("elm", "random", "pca",
                                                                   "sorted_pca"),
                  alpha: float = 1.0, beta_random: float = 10.0,
                  beta_deterministic: float = 1e4) -> list[dict]:
    """Table 7.2 analogue: one hidden ReLU layer by ``methods`` over
    ``cfg['digits_widths']``, ``cfg['digits_trials']`` seeds for the random
    ones, ridge ``cfg['digits_ridge']``, one-hot Y; beta as the chapter's
    (random P: 10; Platonic and Sorted PCA: 10,000; unused by ELM)."""
    y = jax.nn.one_hot(task["y"], 10)
    n = task["x"].shape[1]
    betas = {"elm": 1.0, "random": beta_random, "pca": beta_deterministic,
             "sorted_pca": beta_deterministic}
    rows = []
    for width in cfg["digits_widths"]:
        for method in methods:
            beta = betas[method]
            if method == "pca" and width > n + 10:
                continue   # Platonic PCA: width <= n + k
            seeds = range(cfg["digits_trials"]) if method in ("elm", "random") else (0,)

            def one(s, method=method, beta=beta, width=width):
                t0 = time.perf_counter()
                params, info = fit_platonic(jax.random.PRNGKey(s), task["x"], y, (width,), "relu",
                                            method=method, alpha=alpha, beta=beta, solver="ridge",
                                            ridge=cfg["digits_ridge"])
                test_out = forward(params, task["x_test"], (width,), "relu")
                return {"train_accuracy": class_accuracy(info["outputs"], task["y"]),
                        "test_accuracy": class_accuracy(test_out, task["y_test"]),
                        "finite": bool(info["finite"]), "seconds": time.perf_counter() - t0}
            rows.append({"method": method, "width": width, "beta": beta,
                         **over_seeds(one, seeds)})
    return rows


def deterministic_row(task: dict, widths: Sequence[int], *, beta: float, ridge: float,
                      ema: float, alpha: float = 1.0) -> dict:
    """One Table 7.3 row: fully deterministic PP (Sorted PCA, then Platonic
    PCA with EMA sample weights lambda_EMA = ``ema``) with a ridge output;
    params, train/test MSE against one-hot Y, accuracies, seconds."""
    y = jax.nn.one_hot(task["y"], 10)
    t0 = time.perf_counter()
    params, info = fit_platonic(None, task["x"], y, widths, "relu", method="deterministic",
                                alpha=alpha, beta=beta, solver="ridge", ridge=ridge, ema=ema)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - t0
    test_out = forward(params, task["x_test"], widths, "relu")
    y_test = jax.nn.one_hot(task["y_test"], 10)
    return {"widths": list(widths), "ridge": ridge, "beta": beta, "ema": ema,
            "params": int(sum(v.size for v in jax.tree_util.tree_leaves(params))),
            "train_mse": float(info["train_mse"]),
            "test_mse": float(jnp.mean((test_out - y_test) ** 2)),
            "train_accuracy": class_accuracy(info["outputs"], task["y"]),
            "test_accuracy": class_accuracy(test_out, task["y_test"]),
            "seconds_with_compile": seconds}


def digits_deep(cfg: dict, task: dict) -> list[dict]:
    """Table 7.3 analogue: :func:`deterministic_row` for each of
    ``cfg['digits_deep']``, lambda_EMA = 0.2 as the text."""
    return [deterministic_row(task, widths, beta=cfg["digits_deep_beta"],
                              ridge=cfg["digits_deep_ridge"], ema=0.2)
            for widths in cfg["digits_deep"]]


def digits(cfg: dict, data_dir: Optional[str] = None) -> dict:
    task = digits_task(data_dir)
    return {"ridge": cfg["digits_ridge"], "single": digits_single(cfg, task),
            "deep": digits_deep(cfg, task),
            "backprop": digits_backprop(task, cfg["digits_backprop_epochs"])}


# ----------------------------------------------------------------- backprop baselines

def train_backprop(task: dict, widths: Sequence[int], activation: str, *, num_classes: int,
                   epochs: int, batch_size: int, optim: dict, seeds: Sequence[int] = (0,),
                   return_params: bool = False) -> dict:
    """Backprop baseline through the library's training program: one
    ``program.make_call`` (one epoch of steps as a ``lax.scan``, data on the
    device, seeds as a vmapped replica axis) per epoch, with
    ``model_objective(MLP, softmax_cross_entropy)`` and ``make_optimizer(optim)``.

    Returns per-epoch train and test accuracy ``[epochs, R]``, the seconds of
    each epoch's call (warm: the call is compiled first, ``compile_seconds``;
    evaluation is not timed) and the final accuracies' spreads; with
    ``return_params`` also the trained ``params`` (leading replica axis).
    """
    from neurojax.losses.classification import softmax_cross_entropy
    from neurojax.models import MLP
    from neurojax.optim import make_optimizer
    from neurojax.train import program
    from neurojax.train.state import create_train_state
    from neurojax.train.step import make_mesh, model_objective

    model = MLP(widths=tuple(widths), num_outputs=num_classes, activation=activation)
    x, labels = task["x"].astype(jnp.float32), jnp.asarray(task["y"], jnp.int32)
    per_epoch = x.shape[0] // batch_size
    tx = make_optimizer(optim, epochs * per_epoch)
    stage = program.Stage("backprop", epochs * per_epoch,
                          model_objective(model, softmax_cross_entropy), tx)
    seeds = jnp.asarray(list(seeds), jnp.uint32)

    def init(seed):
        key = jax.random.PRNGKey(seed)
        params = model.init(key, x[:1])["params"]
        return create_train_state(params, tx, rng=jax.random.fold_in(key, 1))

    state = jax.jit(jax.vmap(init))(seeds)
    data_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), 2))(seeds)
    arrays = {"image": x, "label": labels}
    call = program.make_call(stage, per_epoch, make_mesh(),
                             device_data=program.DeviceData(arrays, batch_size), replicas=True,
                             donate=False)
    t0 = time.perf_counter()
    compiled = call.lower(state, arrays, data_keys).compile()
    compile_seconds = time.perf_counter() - t0
    predict = jax.jit(jax.vmap(lambda p, xs: jnp.argmax(model.apply({"params": p}, xs), -1),
                               in_axes=(0, None)))
    train_acc, test_acc, seconds = [], [], []
    x_test, y_test = task["x_test"].astype(jnp.float32), jnp.asarray(task["y_test"])
    for _ in range(epochs):
        t0 = time.perf_counter()
        state, _ = compiled(state, arrays, data_keys)
        jax.block_until_ready(state.params)
        seconds.append(time.perf_counter() - t0)
        train_acc.append(np.asarray(jnp.mean(predict(state.params, x) == labels, axis=1)))
        test_acc.append(np.asarray(jnp.mean(predict(state.params, x_test) == y_test, axis=1)))
    train_acc, test_acc = np.stack(train_acc), np.stack(test_acc)
    extra = {"params": state.params} if return_params else {}
    return {**extra, "widths": list(widths), "activation": activation, "epochs": epochs,
            "batch_size": batch_size, "steps_per_epoch": per_epoch, "optim": dict(optim),
            "seeds": [int(s) for s in seeds], "train_accuracy_curve": train_acc,
            "test_accuracy_curve": test_acc, "epoch_seconds": seconds,
            "compile_seconds": compile_seconds, "train_accuracy": spread(train_acc[-1]),
            "test_accuracy": spread(test_acc[-1])}


SPIRALS_SGD = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "schedule": "step",
               "decay_at": (56 / 75,)}
DIGITS_SGD = {"name": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 0.003,
              "schedule": "step", "decay_at": (0.8,)}


def spirals_backprop(task: dict, epochs: int, num_seeds: int) -> dict:
    """Sec 7.6.1: 2-32-32-32-32 tanh, SGD 0.01, momentum 0.9, batch 32, lr / 10
    after 56 of 75 epochs (the boundary kept at 56/75 of training)."""
    return train_backprop(task, (32,) * 4, "tanh", num_classes=2, epochs=epochs, batch_size=32,
                          optim=SPIRALS_SGD, seeds=range(num_seeds))


def digits_backprop(task: dict, epochs: int) -> dict:
    """Sec 7.9.1's recipe (392-50 ReLU, SGD 0.02, momentum 0.9, wd 0.003, batch
    128, lr / 10 after 80% of training) on the digits, ``epochs`` epochs."""
    return train_backprop(task, (392, 50), "relu", num_classes=10, epochs=epochs,
                          batch_size=128, optim=DIGITS_SGD)


# ----------------------------------------------------------------- run + CLI

def check_parts(parts: Sequence[str]) -> tuple[str, ...]:
    parts = tuple(parts)
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f"--parts must be a non-empty subset of {PARTS}, got {list(parts)}")
    return parts


def merge_into(path: str, new: dict, parts: Sequence[str]) -> dict:
    """``new``'s ``parts`` merged into the results JSON at ``path`` (if any):
    the other parts keep their results, seconds, commands and configs. Read,
    merge and write happen under an exclusive lock on the file's folder
    (``flock``, no lock file left behind), so runs of different parts may
    finish in any order. Files written before
    per-part commands and configs get the file's one command and config for
    each of their parts. Returns the merged results (as written)."""
    import fcntl
    import json
    import os
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = {}
        if os.path.exists(path):
            with open(path) as fh:
                old = json.load(fh)
            done = [p for p in PARTS if p in old]
            for key in ("commands", "configs"):
                if key not in old:   # one command / config for the whole file
                    old[key] = {p: old.get(key[:-1]) for p in done}
            merged = {p: old[p] for p in done if p not in parts}
            for key in ("seconds", "commands", "configs"):
                merged[key] = {p: v for p, v in old[key].items() if p not in parts}
        else:
            merged = {"seconds": {}, "commands": {}, "configs": {}}
        for key in ("seconds", "commands", "configs"):
            merged[key].update(new[key])
        merged.update({p: new[p] for p in parts})
        ordered = {k: new[k] for k in ("quick", "chapter", "blas_threads", "devices")}
        ordered.update({k: merged[k] for k in ("seconds", "commands", "configs")})
        ordered.update({p: merged[p] for p in PARTS if p in merged})
        write_json(ordered, path, digits=5)
    finally:
        os.close(lock)   # releases the lock
    return jsonable(ordered)


def run(outdir: str, *, quick: bool = False, parts: Sequence[str] = DEFAULT_PARTS,
        data_dir: Optional[str] = None, blas_threads: Optional[int] = 1,
        mnist_config: Any = None) -> dict:
    """Runs ``parts`` at full or quick size with float64 enabled (every fit
    names its dtype); merges them into ``platonic_{full,quick}.json`` in
    ``outdir`` (:func:`merge_into`) and draws ``.png`` from the merged file.
    ``mnist_config``: the config (a ConfigDict with a ``platonic`` block,
    ``configs/platonic_mnist.py``) that the ``mnist`` part needs.

    ``blas_threads``: OpenBLAS threads while it runs (``threadpoolctl``;
    None: unchanged). jaxlib's CPU LAPACK kernels (the SVDs and solves of
    every fit) call scipy's OpenBLAS, whose worker threads stalled ~1 s per
    5000 x 33 SVD on this machine's oversubscribed 2 cores (2 ms with one
    thread; scipy.linalg is imported first: threadpoolctl only reaches
    libraries already loaded, and jaxlib loads that OpenBLAS at its first
    LAPACK call)."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, so that the limit reaches it)
    from threadpoolctl import threadpool_limits
    parts = check_parts(parts)
    if blas_threads is not None and (isinstance(blas_threads, bool) or
                                     not isinstance(blas_threads, int) or blas_threads < 1):
        raise ValueError(f"blas_threads must be a positive int or None, got {blas_threads!r}")
    if "mnist" in parts and mnist_config is None:
        raise ValueError("the mnist part needs mnist_config (--config "
                         "configs/platonic_mnist.py)")
    cfg = dict(QUICK if quick else FULL)
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    results: dict = {"quick": quick, "chapter": CHAPTER, "seconds": {}, "commands": {},
                     "configs": {}, "blas_threads": blas_threads,
                     "devices": str(jax.devices()[0].platform)}
    base = "python -m neurojax.analysis.platonic --outdir DIR" + (" --quick" if quick else "")
    limits = threadpool_limits(limits=blas_threads, user_api="blas")
    try:
        for part in parts:
            t0 = time.time()
            if part == "digits":
                results[part] = digits(cfg, data_dir)
                results["configs"][part] = cfg
            elif part == "mnist":
                from neurojax.analysis.platonic_mnist import mnist
                results[part] = mnist(mnist_config, data_dir)
                results["configs"][part] = mnist_config.to_dict()
            else:
                results[part] = globals()[part](cfg)
                results["configs"][part] = cfg
            results["seconds"][part] = round(time.time() - t0, 1)
            results["commands"][part] = f"{base} --parts {part}" + (
                " --config configs/platonic_mnist.py" if part == "mnist" else "")
            print(f"{part}: {results['seconds'][part]} s", flush=True)
    finally:
        limits.restore_original_limits()
        jax.config.update("jax_enable_x64", previous)
    name = "quick" if quick else "full"
    merged = merge_into(f"{outdir}/platonic_{name}.json", results, parts)
    from neurojax.analysis.platonic_figure import plot
    plot(merged, f"{outdir}/platonic_{name}.png")
    return results


def main(argv: Sequence[str]) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    try:
        parts = check_parts(f.parts)
    except ValueError as e:
        raise app.UsageError(str(e))
    if f.blas_threads < 0:
        raise app.UsageError(f"--blas_threads must be >= 0 (0: leave OpenBLAS as it is), "
                             f"got {f.blas_threads}")
    if "mnist" in parts and f.config is None:
        raise app.UsageError("--parts mnist needs --config configs/platonic_mnist.py")
    run(f.outdir, quick=f.quick, parts=parts, data_dir=f.data_dir,
        blas_threads=f.blas_threads or None, mnist_config=f.config)


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags
    flags.DEFINE_string("outdir", None, "Where platonic_{full,quick}.{json,png} go.")
    flags.DEFINE_bool("quick", False, "CI size (~1 min; numbers not meaningful).")
    flags.DEFINE_list("parts", list(DEFAULT_PARTS), f"Which parts, comma-separated: {PARTS}.")
    flags.DEFINE_string("data_dir", None, "TFDS data dir of the digits and MNIST (default: "
                        "the library's).")
    flags.DEFINE_integer("blas_threads", 1, "OpenBLAS threads during the run (0: unchanged).")
    config_flags.DEFINE_config_file("config", None, "The mnist part's config "
                                    "(configs/platonic_mnist.py[:runlocal]).")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
