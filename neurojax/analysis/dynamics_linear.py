"""Part "linear" of the learning-dynamics study: lambda-balanced deep linear
networks (Dominé et al., ICLR 2025; Saxe et al., ICLR 2014) and rich vs lazy
learning from unbalanced initialisations (Kunin et al., NeurIPS 2024).

A recipe over ``neurojax.metrics.deep_linear`` and ``neurojax.metrics.rich_lazy``:

1. ``DeepLinear(widths=(3,), num_outputs=3)`` on a whitened random regression
   task (n = 8, 4 inputs), lambda-balanced starts for lambda in {-2, 0, 2}:
   full-batch GD in float64 at lr 0.01 against the exact Riccati solution
   (checks: ``||W2 W1 - Sigma_yx||_F`` and the NTK's Frobenius norm, both at
   t = 1, GD vs closed form), the NTK's kernel distance from its start along
   the closed form (lambda = 0 rich: it moves; |lambda| = 2 lazier), Saxe's
   logistic for a task-aligned lambda = 0 start (GD vs the formula), and the
   drift of ``W2^T W2 - W1 W1^T``: after a fixed 10 steps its log-log slope
   in lr is 2 (``lr^2`` per step), at a fixed time t = 2 it is 1 (``t / lr``
   steps of ``lr^2``).
2. One linear neuron ``a w^T x`` on whitened 2-D inputs, ``beta0`` nearly
   orthogonal to ``beta*``: ``r = w.beta*/a`` from GD against the Riccati
   solution for delta in {-2, 0, 2} (checks at t = 5), and the kernel
   distance after convergence as a function of delta: large for delta <= 0
   (rich / delayed rich), falling to ~0 as delta -> +inf (upstream, lazy).
   A trend, not a closed form.
3. The two-layer ReLU grid (Kunin et al. Sec. 5; getrichquick's
   ``run_grid.py`` at CPU scale): a teacher of 3 ReLU units on the sphere,
   students ``MLP(widths=(m,), num_outputs=1, use_bias=False)`` initialised
   by ``two_layer_unbalanced_init`` over (scale, delta), full-batch GD at
   ``lr = 2 base_lr / sqrt(delta^2 + 4 scale^4)`` (the NTK's scale; the
   script's ``base_lr / scale^2`` is the delta = 0 case); the kernel distance between the NTK at
   initialisation and after training, and the test loss. The paper reports
   that upstream (delta > 0) starts are the richer ones at a given scale;
   this is measured, not a closed form.
"""
from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.analysis._dynamics_digits import check_record
from neurojax.analysis.outputs import jsonable, save_figure
from neurojax.metrics import deep_linear as dl
from neurojax.metrics import rich_lazy as rl
from neurojax.models.mlp import MLP, DeepLinear

PART = "linear"
N_I, N_H, N_O, N = 4, 3, 3, 8
LAMBDAS = (-2.0, 0.0, 2.0)
BETA_STAR = np.array([0.0, 1.0])


def _task():
    rng = np.random.default_rng(0)
    x = np.sqrt(N) * np.linalg.qr(rng.normal(size=(N, N_I)))[0]    # X^T X / n = I
    y = rng.normal(size=(N, N_O))
    return x, y, y.T @ x / N


def _mse(model):
    return lambda p, x, y: 0.5 * jnp.mean(jnp.sum((model.apply(p, x) - y) ** 2, axis=-1))


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _gd(loss, params, x, y, lr, steps, every):
    """Full-batch GD; the parameters after every ``every`` steps."""
    def block(p, _):
        p = jax.lax.fori_loop(0, every, lambda _, q: jax.tree.map(
            lambda a, g: a - lr * g, q, jax.grad(loss)(q, x, y)), p)
        return p, p
    return jax.lax.scan(block, params, None, length=steps // every)[1]


@functools.partial(jax.jit, static_argnums=0)
def _gd_final(loss, params, x, y, lr, steps):
    """Full-batch GD for a traced number of steps (one compilation for all)."""
    return jax.lax.fori_loop(0, steps, lambda _, q: jax.tree.map(
        lambda a, g: a - lr * g, q, jax.grad(loss)(q, x, y)), params)


def deep_linear_part(quick: bool):
    x, y, s = _task()
    model = DeepLinear(widths=(N_H,), num_outputs=N_O)
    loss = _mse(model)
    lr, t_end, every = 0.01, 6.0, 25
    times = lr * every * np.arange(1, int(t_end / lr) // every + 1)
    i_check = int(np.argmin(np.abs(times - 1.0)))
    u, sv, vt = np.linalg.svd(s)
    out, checks = {"lr": lr, "times": times, "sigma_yx_singular_values": sv, "runs": {}}, []
    for lam in LAMBDAS:
        w1, w2 = dl.lambda_balanced_init(jax.random.PRNGKey(1), N_I, N_H, N_O, lam, scale=0.3)
        exact = dl.qqt_trajectory(w1, w2, s, lam, np.concatenate([[0.0], times]))
        traj = _gd(loss, dl.params_from_weights(w1, w2), x, y, lr, len(times) * every, every)
        gd_w = jax.vmap(dl.weights_from_params)(traj)
        gd_fn = jnp.einsum("toh,thi->toi", gd_w[1], gd_w[0])
        ex_fn = dl.qqt_blocks(exact, N_I)[1]
        k_exact = jax.vmap(dl.ntk_from_qqt, in_axes=(0, None))(exact, x)
        k_gd = jax.vmap(lambda a, b: dl.deep_linear_ntk(x, a.T @ a, b @ b.T))(*gd_w)
        top = lambda f: np.einsum("o,...oi,i->...", u[:, 0], np.asarray(f), vt[0])  # noqa: E731
        res = {"top_mode_exact": top(ex_fn), "top_mode_gd": top(gd_fn),
               "kernel_distance_exact": rl.kernel_distance(k_exact[:1], k_exact),
               "kernel_distance_gd": rl.kernel_distance(k_exact[:1], k_gd)}
        out["runs"][f"{lam:g}"] = res
        checks.append(check_record(f"lambda={lam:g}: ||W2W1 - Sigma_yx||_F at t=1, GD lr={lr} vs "
                             "exact Riccati solution",
                             np.linalg.norm(gd_fn[i_check] - s),
                             np.linalg.norm(ex_fn[i_check + 1] - s)))
        checks.append(check_record(f"lambda={lam:g}: ||NTK||_F at t=1, GD vs closed form",
                             np.linalg.norm(k_gd[i_check]), np.linalg.norm(k_exact[i_check + 1])))
    # lambda = 0, task-aligned small start: Saxe's logistic
    u0 = np.full(N_H, 1e-3)
    r = np.linalg.qr(np.random.default_rng(4).normal(size=(N_H, N_H)))[0]
    w1, w2 = dl.lambda_balanced_weights(u, u0, vt.T, r, 0.0)
    traj = _gd(loss, dl.params_from_weights(w1, w2), x, y, lr, len(times) * every, every)
    a1, a2 = jax.vmap(dl.weights_from_params)(traj)
    modes = np.einsum("oa,toi,ia->ta", u, np.asarray(jnp.einsum("toh,thi->toi", a2, a1)),
                      vt.T[:, :N_H])
    saxe = np.asarray(dl.saxe_mode_strength(times[:, None], sv, u0))
    out["saxe"] = {"gd": modes, "logistic": saxe}
    for a in range(N_H):      # at the mode's half-way time t = ln(s/u0 - 1) / (2s)
        t_half = np.log(sv[a] / u0[a] - 1) / (2 * sv[a])
        i = int(np.argmin(np.abs(times - t_half)))
        checks.append(check_record(f"lambda=0 aligned: mode {a + 1} strength at t={times[i]:.2f}, "
                             "GD vs Saxe logistic", modes[i, a], saxe[i, a]))
    # balance drift vs lr
    w1, w2 = dl.lambda_balanced_init(jax.random.PRNGKey(2), N_I, N_H, N_O, 1.0, scale=0.5)
    p0 = dl.params_from_weights(w1, w2)
    lrs = np.array([0.0003125, 0.000625, 0.00125, 0.0025, 0.005] if not quick
                   else [0.000625, 0.00125, 0.0025])
    fixed_steps, fixed_time = [], []
    for h in lrs:
        for steps, sink in ((10, fixed_steps), (int(round(2.0 / h)), fixed_time)):
            b1, b2 = dl.weights_from_params(_gd_final(loss, p0, x, y, h, steps))
            sink.append(float(np.linalg.norm(dl.balance(b1, b2) - np.eye(N_H))))
    slope_steps = np.polyfit(np.log(lrs), np.log(fixed_steps), 1)[0]
    slope_time = np.polyfit(np.log(lrs), np.log(fixed_time), 1)[0]
    out["drift"] = {"lrs": lrs, "after_10_steps": fixed_steps, "at_t_2": fixed_time,
                    "slope_after_10_steps": slope_steps, "slope_at_t_2": slope_time}
    checks.append(check_record("balance drift after 10 GD steps: log-log slope in lr", slope_steps, 2.0))
    checks.append(check_record("balance drift at fixed time t=2: log-log slope in lr", slope_time, 1.0))
    return out, checks


def _neuron_loss(a, w):
    return 0.5 * jnp.sum((a * w - BETA_STAR) ** 2)


@functools.partial(jax.jit, static_argnums=3)
def _neuron_gd(a, w, lr, steps):
    def step(c, _):
        ga, gw = jax.grad(_neuron_loss, argnums=(0, 1))(*c)
        c = (c[0] - lr * ga, c[1] - lr * gw)
        return c, c
    return jax.lax.scan(step, (a, w), None, length=steps)[1]


def single_neuron_part(quick: bool):
    beta0 = jnp.array([-0.5, 0.05])
    lr = 0.02
    out, checks = {"beta0": beta0, "beta_star": BETA_STAR, "lr": lr, "riccati": {}}, []
    t = lr * np.arange(1, 301)
    for delta in (-2.0, 0.0, 2.0):
        a0, w0 = rl.single_neuron_init(beta0, delta)
        a, w = _neuron_gd(a0, w0, lr, len(t))
        r_gd = np.asarray(w @ BETA_STAR / a)
        r_th = np.asarray(rl.single_neuron_riccati(t, float(w0 @ BETA_STAR / a0), delta, 1.0))
        out["riccati"][f"{delta:g}"] = {"t": t, "gd": r_gd, "exact": r_th}
        i = int(np.argmin(np.abs(t - 5.0)))
        checks.append(check_record(f"single neuron delta={delta:g}: r = w.beta*/a at t=5, GD lr={lr} "
                             "vs Riccati solution", r_gd[i], r_th[i]))
        ga, gw = jax.grad(_neuron_loss, argnums=(0, 1))(a0, w0)
        moved = rl.conserved_delta(a[0], w[0], lr, lr) - rl.conserved_delta(a0, w0, lr, lr)
        checks.append(check_record(f"single neuron delta={delta:g}: one-step change of delta "
                             "(rates lr) vs lr^2 (lr g_a^2 - lr |g_w|^2)",
                             moved, rl.delta_step_drift(ga, gw, lr, lr)))
    deltas = np.linspace(-8, 8, 9 if quick else 33)
    inits = [rl.single_neuron_init(beta0, d) for d in deltas]
    a0, w0 = jnp.stack([i[0] for i in inits]), jnp.stack([i[1] for i in inits])
    a, w = jax.vmap(_neuron_gd, in_axes=(0, 0, None, None))(a0, w0, lr, 4000)
    ntk = jax.vmap(rl.single_neuron_ntk, in_axes=(0, 0, None))
    eye = jnp.eye(2)
    out["sweep"] = {"delta": deltas, "t_end": lr * 4000,
                    "kernel_distance": rl.kernel_distance(ntk(a0, w0, eye),
                                                          ntk(a[:, -1], w[:, -1], eye)),
                    "final_loss": jax.vmap(_neuron_loss)(a[:, -1], w[:, -1])}
    return out, checks


def relu_grid_part(quick: bool):
    d, m, n, n_test = (6, 10, 30, 300) if quick else (12, 40, 100, 2000)
    steps = 600 if quick else 8000
    scales = np.array([0.3, 1.0]) if quick else np.array([0.2, 0.5, 1.0])
    deltas = np.array([-1.0, 0.0, 1.0]) if quick else np.linspace(-1.0, 1.0, 5)
    base_lr = 0.05
    key_t, key_x, key_test = jax.random.split(jax.random.PRNGKey(0), 3)
    sphere = lambda k, num: (lambda z: z / jnp.linalg.norm(z, axis=1, keepdims=True))(  # noqa
        jax.random.normal(k, (num, d)))
    teacher = {"params": {"dense_0": {"kernel": sphere(key_t, 3).T},
                          "head": {"kernel": jnp.array([[1.0], [-1.0], [1.0]])}}}
    x, x_test = sphere(key_x, n), sphere(key_test, n_test)
    y = MLP(widths=(3,), num_outputs=1, use_bias=False).apply(teacher, x)
    y_test = MLP(widths=(3,), num_outputs=1, use_bias=False).apply(teacher, x_test)
    student = MLP(widths=(m,), num_outputs=1, use_bias=False)
    loss = lambda p, xs, ys: jnp.mean((student.apply(p, xs) - ys) ** 2)  # noqa: E731
    grid = [(sc, de) for sc in scales for de in deltas]
    params = [rl.two_layer_unbalanced_init(jax.random.PRNGKey(1), d, m, float(sc), float(de))
              for sc, de in grid]
    p0 = jax.tree.map(lambda *v: jnp.stack(v), *params)
    # the NTK scales with a_i^2 + |w_i|^2 = sqrt(delta^2 + 4 scale^4): lr = 2 base_lr / that
    # (= getrichquick's base_lr / scale^2 at delta = 0; theirs diverges here for |delta| >> scale^2)
    lrs = jnp.asarray([2 * base_lr / np.sqrt(de ** 2 + 4 * sc ** 4) for sc, de in grid])

    def train(p, lr):
        return jax.lax.fori_loop(0, steps, lambda _, q: jax.tree.map(
            lambda a, g: a - lr * g, q, jax.grad(loss)(q, x, y)), p)

    p1 = jax.jit(jax.vmap(train))(p0, lrs)
    ntk = jax.vmap(lambda p: rl.empirical_ntk(student.apply, p, x))
    dist = np.asarray(rl.kernel_distance(ntk(p0), ntk(p1))).reshape(len(scales), len(deltas))
    test = np.asarray(jax.vmap(lambda p: loss(p, x_test, y_test))(p1)).reshape(dist.shape)
    train_loss = np.asarray(jax.vmap(lambda p: loss(p, x, y))(p1)).reshape(dist.shape)
    return {"in_dim": d, "width": m, "n_train": n, "steps": steps, "base_lr": base_lr,
            "scales": scales, "deltas": deltas, "kernel_distance": dist,
            "test_loss": test, "train_loss": train_loss,
            "delta_sign": "delta > 0 upstream (small first layer), delta < 0 downstream"}


def plot(result: dict, path: pathlib.Path) -> None:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(18, 9))
    ax = fig.subplots(2, 3).ravel()
    dln = result["deep_linear"]
    t = np.asarray(dln["times"])
    for j, (lam, r) in enumerate(dln["runs"].items()):
        ax[0].plot(t, r["top_mode_exact"][1:], "-", color=f"C{j}", label=f"exact, lambda={lam}")
        ax[0].plot(t[::4], np.asarray(r["top_mode_gd"])[::4], "o", color=f"C{j}", ms=4,
                   label=f"GD lr={dln['lr']}")
        ax[1].plot(t, r["kernel_distance_exact"][1:], "-", color=f"C{j}", label=f"lambda={lam}")
        ax[1].plot(t[::4], np.asarray(r["kernel_distance_gd"])[::4], "o", color=f"C{j}", ms=4)
    ax[0].axhline(dln["sigma_yx_singular_values"][0], color="k", lw=0.8, ls=":")
    sx = dln["saxe"]
    ax[0].plot(t, np.asarray(sx["logistic"])[:, 0], "k--", lw=1, label="Saxe logistic (aligned)")
    ax[0].plot(t[::4], np.asarray(sx["gd"])[::4, 0], "kx", ms=4)
    ax[0].set(xlabel="t = lr * step", ylabel="top mode u1^T W2W1 v1",
              title="lambda-balanced DLN: exact solution vs GD")
    ax[1].set(xlabel="t", ylabel="kernel distance of the NTK from t=0",
              title="NTK movement (line exact, dots GD): rich at lambda=0")
    dr = dln["drift"]
    ax[2].loglog(dr["lrs"], dr["after_10_steps"], "o-",
                 label=f"after 10 steps, slope {dr['slope_after_10_steps']:.2f} (theory 2)")
    ax[2].loglog(dr["lrs"], dr["at_t_2"], "s-",
                 label=f"at t=2, slope {dr['slope_at_t_2']:.2f} (theory 1)")
    ax[2].set(xlabel="learning rate", ylabel="||W2^T W2 - W1 W1^T - lambda I||_F",
              title="conserved quantity drift under GD")
    sn = result["single_neuron"]
    for j, (delta, r) in enumerate(sn["riccati"].items()):
        ax[3].plot(r["t"], r["exact"], "-", color=f"C{j}", label=f"Riccati, delta={delta}")
        ax[3].plot(r["t"][::15], np.asarray(r["gd"])[::15], "o", color=f"C{j}", ms=3)
    ax[3].set(xlabel="t", ylabel="r = w.beta*/a", title="single neuron: exact r(t) vs GD (dots)")
    sw = sn["sweep"]
    ax[4].plot(sw["delta"], sw["kernel_distance"], "o-", label="GD, beta0 nearly orthogonal to beta*")
    ax[4].set(xlabel="delta = a^2 - |w|^2  (>0 upstream, <0 downstream)",
              ylabel=f"kernel distance at t={sw['t_end']:g}",
              title="single neuron: lazy as delta -> +inf (trend)")
    g = result["relu_grid"]
    im = ax[5].imshow(np.asarray(g["kernel_distance"], dtype=float), origin="lower", aspect="auto",
                      cmap="viridis", vmin=0, vmax=1)
    ax[5].set_xticks(range(len(g["deltas"])), [f"{v:g}" for v in g["deltas"]])
    ax[5].set_yticks(range(len(g["scales"])), [f"{v:g}" for v in g["scales"]])
    for i in range(len(g["scales"])):
        for k in range(len(g["deltas"])):
            ax[5].text(k, i, f"{np.asarray(g['test_loss'], dtype=float)[i][k]:.2g}", ha="center",
                       va="center", color="w", fontsize=7)
    fig.colorbar(im, ax=ax[5], label="kernel distance (text: test MSE)")
    ax[5].set(xlabel="delta (>0 upstream)", ylabel="scale",
              title=f"two-layer ReLU, width {g['width']}: kernel distance")
    for a in ax[:5]:
        a.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, str(path))


def run(outdir: pathlib.Path, *, quick: bool = False) -> dict:
    """All three experiments in float64; writes ``linear.png`` into ``outdir``."""
    outdir = pathlib.Path(outdir)
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        dln, checks = deep_linear_part(quick)
        neuron, more = single_neuron_part(quick)
        grid = relu_grid_part(quick)
    finally:
        jax.config.update("jax_enable_x64", previous)
    result = jsonable({"part": PART, "quick": quick, "deep_linear": dln,
                       "single_neuron": neuron, "relu_grid": grid, "checks": checks + more})
    plot(result, outdir / f"{PART}.png")
    return result
