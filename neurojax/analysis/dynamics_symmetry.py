"""Part "symmetry" of the learning-dynamics driver (``neurojax.analysis.dynamics``):
symmetries and their conservation laws measured during training.

Kunin et al., "Neural mechanics" (ICLR 2021), Sec. 4-5, and Tanaka & Kunin,
"Noether's learning dynamics" (NeurIPS 2021), Sec. 4-5, on the library's
BatchNorm MLP (``neurojax.models.Projector``: dense 16 -> BN -> ReLU -> dense
16 -> BN -> ReLU -> softmax head, no hidden biases) trained on the offline
digits (flattened) by the library's training step (``train_step_fn``, the
step the loop compiles), scanned on the device. Two ``record_metrics`` transforms
carry ``neurojax.metrics.conservation.conservation_record``: one first in the
chain (the raw gradient: charge Q(theta_t), ||g_t||^2-type drive) and one
last (the step Delta_t: the momentum law's drive and the kinetic breaking
term); the step logs them per channel like the gradient RMS.

Runs: SGD, SGD + weight decay, heavy-ball momentum + weight decay, Adam.
Closed-form checks (``checks``; float32 training, so agreement is to
float32 accumulation over the run, and BatchNorm's eps = 1e-5 breaks the
scale symmetry at a relative ~eps / Var):

* SGD and SGD + wd: every scale, rescale and translation charge at the last
  step against the exact discrete law integrated from step 0 (``sgd_charge``);
* momentum: the same against the exact second-order recurrence
  (``heavy_ball_charge``), and the translation charge against the closed
  form of the paper's modified equation (a damped oscillator, an O(eta)
  approximation: its error is reported, not expected to be tiny);
* Adam: the identity Q_T = Q_0 + sum_t (2 <Delta_t, psi> + D_t) (true for any
  optimiser; it checks the recorder), while the Euclidean (SGD-symmetric)
  prediction Q_0 + sum_t D_t fails by the kinetic breaking term, reported in
  ``kinetic_breaking``.

``asymptotic``: SGD + wd's late scale charge against the stationary value of
Tanaka & Kunin's implicit-adaptive reading (``equilibrium_charge``), a
steady-state claim, not an exact law. Each check's ``measured`` and
``predicted`` are the norms over all channels of that kind at the last step,
``rel_error`` is ``max_t ||Q_t - P_t|| / max_t ||P_t||`` over the run (a
charge that weight decay drives to ~0 is judged on its own scale, not on the
float32 rounding of its last value).
"""
from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurojax.analysis.outputs import save_figure
from neurojax.losses import softmax_cross_entropy
from neurojax.metrics.conservation import (charge, conservation_record, equilibrium_charge,
                                           heavy_ball_charge, heavy_ball_modified_charge,
                                           kinetic_breaking, sequential_symmetries, sgd_charge)
from neurojax.data import on_device
from neurojax.models import Projector
from neurojax.optim import record_metrics
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn

PART = "symmetry"
RUNS = {  # lr, weight decay, momentum; Adam at its usual rate
    "sgd": dict(optimizer="sgd", lr=0.05, weight_decay=0.0, momentum=0.0),
    "sgd_wd": dict(optimizer="sgd", lr=0.05, weight_decay=0.05, momentum=0.0),
    "momentum": dict(optimizer="sgd", lr=0.002, weight_decay=0.05, momentum=0.99),
    "adam": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, momentum=0.0),
}
WIDTHS = (16, 16)
LAYERS = ("dense_0", "dense_1", "head")
NORMS = {"dense_0": "bn_0", "dense_1": "bn_1"}
BN_EPS = 1e-8  # BatchNorm's eps breaks the scale symmetry by ~eps / Var (library default 1e-5)
TOLERANCE = 1e-2  # exact laws, float32 accumulation over <= 2000 steps


def _sgd_family(lr, weight_decay, momentum):
    """``theta' = theta - lr v'``, ``v' = momentum v + g + weight_decay theta``
    (optax's ``trace``: no dampening); its hyperparameters live in the state
    (``inject_hyperparams``), so SGD, SGD + wd and momentum share one compile."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.trace(decay=momentum),
                       optax.scale(-lr))


def _optimizer(kind: str, symmetries) -> optax.GradientTransformation:
    """``record('grad') -> optimiser -> record('step')``."""
    record = lambda name: record_metrics(  # noqa: E731
        lambda u, p: conservation_record(u, p, symmetries), name)
    if kind == "adam":
        base = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    else:
        base = optax.inject_hyperparams(_sgd_family)(lr=0.1, weight_decay=0.0, momentum=0.0)
    return optax.chain(record("grad"), base, record("step"))


def _train_all(runs: dict, steps: int, data: dict, seed: int = 0) -> dict:
    """Every run from the same initialisation and minibatches: the library's
    training step (``train_step_fn``) scanned over ``steps`` minibatches of 64
    drawn on the device (``on_device``); the two recorders' states are read
    after every step (the values the step logs as
    ``grad/<symmetry>/<quantity>/<channel>`` scalars). One compile per
    optimiser kind."""
    model = Projector(output_dim=10, hidden_dims=WIDTHS, batch_norm=True, epsilon=BN_EPS)
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), data["image"][:2])
    params = variables["params"]
    symmetries = tuple(sequential_symmetries(params, LAYERS, norms=NORMS, head="head"))
    objective = model_objective(model, softmax_cross_entropy)
    arrays = {k: jnp.asarray(v) for k, v in data.items()}
    indices = on_device.batch_indices(jax.random.PRNGKey(seed + 2), jnp.arange(steps),
                                      len(data["label"]), 64)
    scans = {}
    for kind in {cfg["optimizer"] for cfg in runs.values()}:
        tx = _optimizer(kind, symmetries)
        step = train_step_fn(objective, tx)

        def scan(state, indices, step=step):
            def body(state, idx):
                state, metrics = step(state, on_device.gather(arrays, idx))
                first, last = state.opt_state[0], state.opt_state[-1]  # the two recorders
                return state, (metrics["loss"], first.values, last.values)
            state, out = jax.lax.scan(body, state, indices)
            return out, {s.name: charge(state.params, s) for s in symmetries}
        scans[kind] = (tx, jax.jit(scan))
    results = {}
    for name, cfg in runs.items():
        tx, scan = scans[cfg["optimizer"]]
        state = create_train_state(params, tx, model_state={"batch_stats":
                                                            variables["batch_stats"]},
                                   rng=jax.random.PRNGKey(seed + 1))
        hyper = state.opt_state[1].hyperparams
        values = ({"learning_rate": cfg["lr"]} if cfg["optimizer"] == "adam" else
                  {k: cfg[k] for k in ("lr", "weight_decay", "momentum")})
        for k, v in values.items():
            hyper[k] = jnp.asarray(v, hyper[k].dtype)
        (loss, grad, disp), final = jax.device_get(scan(state, indices))
        f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
        out = {"symmetries": symmetries, "loss": np.asarray(loss)}
        for s in symmetries:
            out[s.name] = {"q": np.concatenate([f64(grad[s.name]["charge"]),
                                                f64(final[s.name])[None]]),
                           "grad": f64(grad[s.name]["step"]),
                           "grad_inner": f64(grad[s.name]["inner"]),
                           "disp": f64(disp[s.name]["step"]),
                           "disp_inner": f64(disp[s.name]["inner"])}
        results[name] = out
    return results


def _predict(run: dict, cfg: dict, sym) -> np.ndarray:
    r = run[sym.name]
    law = dict(kind=sym.kind, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if cfg["optimizer"] == "adam":  # identity: Q_{t+1} = Q_t + c <Delta, psi> + D
        c = 1.0 if sym.kind == "translation" else 2.0
        incr = c * r["disp_inner"] + (0 if sym.kind == "translation" else r["disp"])
        return np.concatenate([r["q"][:1], r["q"][:1] + np.cumsum(incr, axis=0)])
    if cfg["momentum"]:
        return np.asarray(heavy_ball_charge(r["q"][0], r["disp"], momentum=cfg["momentum"], **law))
    return np.asarray(sgd_charge(r["q"][0], r["grad"], **law))


def _check(name: str, measured: np.ndarray, predicted: np.ndarray) -> dict:
    """``measured``/``predicted``: the norms over channels at the last step;
    ``rel_error``: ``max_t ||Q_t - P_t|| / max_t ||P_t||`` over the run (a
    charge that decays to ~0 under weight decay is compared on the scale it
    had, not on float32 rounding of its last value). 1-D inputs: the last
    step only."""
    m, p = np.atleast_2d(measured), np.atleast_2d(predicted)
    err = np.linalg.norm(m - p, axis=1).max() / max(np.linalg.norm(p, axis=1).max(), 1e-30)
    return {"name": name, "measured": float(np.linalg.norm(m[-1])),
            "predicted": float(np.linalg.norm(p[-1])), "rel_error": float(err)}


def run(outdir: pathlib.Path, *, quick: bool = False) -> dict:
    """Trains the four runs, checks every charge against its law, draws
    ``symmetry.png`` in ``outdir`` and returns the JSON-ready summary."""
    t0 = time.time()
    outdir = pathlib.Path(outdir)
    from neurojax.data.on_device import load_split_arrays
    arrays = load_split_arrays("digits", "train")
    data = {"image": np.asarray(arrays["image"], np.float32).reshape(len(arrays["label"]), -1),
            "label": np.asarray(arrays["label"], np.int32)}
    steps = 300 if quick else 2000
    runs = _train_all(RUNS, steps, data)
    symmetries = runs["sgd"]["symmetries"]
    checks, asymptotic, breaking, summary = [], [], {}, {}
    for name, cfg in RUNS.items():
        run_ = runs[name]
        summary[name] = {**cfg, "steps": steps, "loss_first": float(run_["loss"][:20].mean()),
                         "loss_last": float(run_["loss"][-20:].mean()),
                         "max_abs_grad_inner": {}}
        law = ("identity Q_T = Q_0 + sum(c <Delta, psi> + D)" if cfg["optimizer"] == "adam" else
               "heavy-ball recurrence" if cfg["momentum"] else "discrete SGD law")
        for kind in ("scale", "rescale", "translation"):
            syms = [s for s in symmetries if s.kind == kind]
            q = np.concatenate([run_[s.name]["q"] for s in syms], axis=1)
            pred = np.concatenate([_predict(run_, cfg, s) for s in syms], axis=1)
            checks.append(_check(f"{name}/{kind}: Q_T vs {law}", q, pred))
            summary[name]["max_abs_grad_inner"][kind] = float(
                max(np.abs(run_[s.name]["grad_inner"]).max() for s in syms))
        if cfg["optimizer"] == "adam":
            for kind in ("scale", "rescale"):
                syms = [s for s in symmetries if s.kind == kind]
                q = np.concatenate([run_[s.name]["q"] for s in syms], axis=1)
                disp = np.concatenate([run_[s.name]["disp"] for s in syms], axis=1)
                inner = np.concatenate([run_[s.name]["disp_inner"] for s in syms], axis=1)
                ksb = np.asarray(kinetic_breaking(inner, q[:-1], kind=kind, lr=cfg["lr"]))
                euclid = q[0] + disp.sum(0)
                breaking[kind] = {
                    "euclidean_law": _check(f"adam/{kind}: Q_T vs Q_0 + sum D (SGD-symmetric)",
                                            q[-1:], euclid[None]),
                    "breaking_norm": float(np.linalg.norm(ksb.sum(0))),
                    "change_norm": float(np.linalg.norm(q[-1] - q[0]))}
    # the modified equation (damped oscillator) on the momentum run's translation charges
    cfg = RUNS["momentum"]
    rows = [s for s in symmetries if s.kind == "translation"]
    q = np.concatenate([runs["momentum"][s.name]["q"] for s in rows], axis=1)
    modified = np.asarray(heavy_ball_modified_charge(q[0], np.arange(steps + 1), lr=cfg["lr"],
                                                     weight_decay=cfg["weight_decay"],
                                                     momentum=cfg["momentum"]))
    checks.append(_check("momentum/translation: Q_T vs the modified equation's damped "
                         "oscillator (O(lr) approximation)", q, modified))
    # Tanaka & Kunin's stationary scale charge (asymptotic)
    cfg = RUNS["sgd_wd"]
    scale_syms = [s for s in symmetries if s.kind == "scale"]
    late = slice(3 * steps // 4, steps)
    q = np.concatenate([runs["sgd_wd"][s.name]["q"] for s in scale_syms], axis=1)
    g = np.concatenate([runs["sgd_wd"][s.name]["grad"] for s in scale_syms], axis=1)
    ghat = (g[late] * q[:-1][late]).mean(0)
    asymptotic.append({**_check("sgd_wd/scale: late ||theta||^2 vs sqrt(lr G_hat / (wd (2 - "
                                "lr wd)))", q[late].mean(0)[None],
                                np.asarray(equilibrium_charge(ghat, lr=cfg["lr"],
                                                              weight_decay=cfg["weight_decay"]))),
                       "steps_per_efold": 1.0 / (2 * cfg["lr"] * cfg["weight_decay"])})
    _figure(runs, symmetries, modified, steps, outdir / f"{PART}.png")
    return {"part": PART, "quick": quick, "steps": steps, "batch_size": 64,
            "model": f"Projector(output_dim=10, hidden_dims={WIDTHS}, batch_norm=True) on digits",
            "symmetries": {s.name: {"kind": s.kind, "channels": s.num_channels}
                           for s in symmetries},
            "runs": summary, "checks": checks, "tolerance": TOLERANCE,
            "asymptotic": asymptotic, "kinetic_breaking": breaking,
            "figure": f"{PART}.png", "seconds": round(time.time() - t0, 1)}


def _figure(runs: dict, symmetries, modified: np.ndarray, steps: int, path) -> None:
    from matplotlib.figure import Figure
    by = {s.name: s for s in symmetries}
    fig = Figure(figsize=(20, 8.5))
    ax = fig.subplots(2, 4).ravel()
    t = np.arange(steps + 1)

    def panel(a, run, name, channels=4, title=""):
        cfg = RUNS[run]
        q, pred = runs[run][name]["q"], _predict(runs[run], cfg, by[name])
        for c in range(min(channels, q.shape[1])):
            a.plot(t, q[:, c], color=f"C{c}", lw=1.2)
            a.plot(t, pred[:, c], color="k", ls="--", lw=0.8)
        a.set(title=title, xlabel="step")
    panel(ax[0], "sgd", "dense_1", title="scale, SGD: ||w_c||^2 (dense_1) vs law (--)")
    panel(ax[1], "sgd_wd", "dense_1", title="scale, SGD+wd: ||w_c||^2 vs law (--)")
    panel(ax[2], "sgd_wd", "bn_1_to_head",
          title="rescale, SGD+wd: ||w_in||^2-||w_out||^2 vs law (--)")
    panel(ax[3], "sgd_wd", "head_rows", title="translation, SGD+wd: sum_k W[j,k] vs law (--)")
    panel(ax[4], "momentum", "head_rows",
          title="translation, momentum: recurrence (--), modified eq. (:)")
    for c in range(4):
        ax[4].plot(t, modified[:, c], color="gray", ls=":", lw=1.5)
    panel(ax[5], "momentum", "dense_1", title="scale, momentum+wd: ||w_c||^2 vs recurrence (--)")
    a = ax[6]
    r = runs["adam"]["dense_1"]
    a.plot(t, r["q"].sum(1), label="measured sum_c ||w_c||^2")
    a.plot(t, r["q"][0].sum() + np.concatenate([[0], np.cumsum(r["disp"].sum(1))]), "--",
           label="Euclidean (SGD-symmetric) Q_0 + sum D")
    a.plot(t[1:], np.cumsum(2 * r["disp_inner"].sum(1)), ":", label="cumulative breaking 2<D,w>")
    a.set(title="Adam: kinetic symmetry breaking (scale, dense_1)", xlabel="step")
    a.legend(fontsize=7)
    a = ax[7]
    for run in ("sgd", "sgd_wd", "momentum"):
        a.plot(t, runs[run]["dense_1"]["q"].sum(1), label=run)
    a.set(title="scale charge sum_c ||w_c||^2 (dense_1) per optimiser", xlabel="step",
          yscale="log")
    a.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, str(path))
