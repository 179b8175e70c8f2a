"""Part "lae" of the learning-dynamics study: regularised linear autoencoders
(Kunin, Bloom, Goeva & Seed, ICML 2019) and, labelled as asymptotic only, the
asymmetric max-margin bias of quasi-homogeneous models (Kunin, Yamamura, Ma &
Ganguli, ICLR 2023).

1. LAE on the centred digits (``X = x^T / sqrt(n)``, so ``sigma_i^2`` are the
   covariance eigenvalues), ``k`` latent units, trained by full-batch GD in
   float64 from a small random init: with ``L_sigma`` (L2 on encoder and
   decoder) the decoder's singular values are checked against
   ``sqrt(1 - lambda / sigma_i^2)``, its left singular vectors against the
   principal directions (``|u_i^T v_i|`` vs 1) and the encoder against the
   decoder's transpose; without regularisation only the subspace is checked
   (largest principal angle vs 0), and the direction alignment is shown to be
   below 1.
2. Quasi-homogeneous max margin (asymptotic only, a trend, no check): on a
   separable 2-D set of two tight clusters away from the origin, GD on the exponential loss of a
   homogeneous model ``f = w.x + b`` and of the quasi-homogeneous
   ``f = w.x + b^3`` (``b`` of rate 1/3: ``f(a w, a^(1/3) b) = a f``). The
   paper's theorem says the normalised direction of ``w`` tends to a KKT point
   of ``min ||w||^2`` over the highest-rate parameters only, s.t.
   ``y_i f(x_i) >= 1``: the ordinary SVM with a free bias for the
   quasi-homogeneous model, and the SVM with the bias penalised like ``w``
   (``min ||w||^2 + b^2``) for the homogeneous one. The angle between ``w(t)``
   and each SVM direction is plotted against ``log t``; convergence is
   ``O(1 / log t)``, so only the trend is reported.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from neurojax.analysis._dynamics_digits import check_record, digits_arrays
from neurojax.analysis.outputs import jsonable, save_figure
from neurojax.metrics.linear_autoencoder import (lae_decoder_singular_values, lae_loss,
                                                 lae_recovery, principal_angles)

PART = "lae"


def train_lae(x, k: int, lam: float, regularization: str, *, steps: int, lr: float,
              seed: int = 0):
    """Full-batch GD on ``lae_loss`` from ``N(0, 0.01^2)`` weights (float64)."""
    rng = np.random.default_rng(seed)
    m = x.shape[1]
    p = {"encoder": jnp.asarray(0.01 * rng.standard_normal((k, m))),
         "decoder": jnp.asarray(0.01 * rng.standard_normal((m, k)))}
    grad = jax.grad(lambda q: lae_loss(q, x, lam, regularization=regularization))

    def step(q, _):
        return jax.tree.map(lambda a, g: a - lr * g, q, grad(q)), None

    return jax.jit(lambda q: jax.lax.scan(step, q, None, length=steps)[0])(p)


def lae_part(quick: bool) -> tuple[dict, list]:
    xtr = np.asarray(digits_arrays()[0], np.float64)
    x = (xtr - xtr.mean(0)) / np.sqrt(len(xtr))  # sigma_i^2: covariance eigenvalues
    k = 4 if quick else 8
    sigma = np.linalg.svd(x, compute_uv=False)
    lam = 0.5 * sigma[k - 1] ** 2
    lr = 0.2 / sigma[0] ** 2
    steps = 3000 if quick else 20000
    out, checks = {"k": k, "lambda": lam, "lr": lr, "steps": steps,
                   "data_singular_values": sigma[:k + 2]}, []
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        reg = train_lae(xj, k, lam, "sum", steps=steps, lr=lr)
        rec = {n: np.asarray(v) for n, v in lae_recovery(reg, xj, lam).items()}
        pred = np.asarray(lae_decoder_singular_values(xj, k, lam))
        plain = train_lae(xj, k, 0.0, "none", steps=steps, lr=lr)
        u = np.linalg.svd(x.T, full_matrices=False)[0][:, :k]
        plain_rec = {n: np.asarray(v) for n, v in lae_recovery(plain, xj, 0.0).items()}
        plain_angle = float(jnp.max(principal_angles(plain["decoder"], u)))
    for i in range(k):
        checks.append(check_record(f"L_sigma decoder singular value {i + 1} vs "
                                   "sqrt(1 - lambda/sigma_i^2)", rec["singular_values"][i],
                                   pred[i]))
    checks += [
        check_record("L_sigma: min_i |u_i . v_i| (decoder left singular vectors vs principal "
                     "directions)", rec["direction_alignment"].min(), 1.0),
        check_record("L_sigma: ||W1 - W2^T|| / ||W2||", rec["symmetry_error"], 0.0),
        check_record("L_0: largest principal angle span(W2) vs span(U_k) (rad)", plain_angle,
                     0.0),
    ]
    out.update({"sum": {"singular_values": rec["singular_values"], "predicted": pred,
                        "direction_alignment": rec["direction_alignment"]},
                "none": {"singular_values": plain_rec["singular_values"],
                         "direction_alignment": plain_rec["direction_alignment"],
                         "max_principal_angle": plain_angle}})
    return out, checks


def _svm(x, y, penalize_bias: bool):
    """Hard-margin SVM ``min ||w||^2 (+ b^2)`` s.t. ``y (w.x + b) >= 1`` (SLSQP)."""
    def obj(z):
        return z[0] ** 2 + z[1] ** 2 + (z[2] ** 2 if penalize_bias else 0.0)
    cons = {"type": "ineq", "fun": lambda z: y * (x @ z[:2] + z[2]) - 1.0}
    z = scipy.optimize.minimize(obj, np.array([1.0, 1.0, 0.0]), constraints=[cons],
                                method="SLSQP", options={"ftol": 1e-12, "maxiter": 500}).x
    return z[:2] / np.linalg.norm(z[:2]), z


def max_margin_part(quick: bool) -> dict:
    rng = np.random.default_rng(0)
    n = 40
    y = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    # two tight clusters far from the origin: the free-bias and bias-penalised SVM
    # directions differ by ~9 degrees
    x = rng.standard_normal((n, 2)) * 0.3 + np.where(y[:, None] > 0, [1.0, 3.0], [3.0, 2.0])
    targets = {"free-bias SVM": _svm(x, y, False)[0], "bias-penalised SVM": _svm(x, y, True)[0]}
    models = {"homogeneous f = w.x + b": lambda p, xx: xx @ p["w"] + p["b"],
              "quasi-homogeneous f = w.x + b^3": lambda p, xx: xx @ p["w"] + p["b"] ** 3}
    steps = 20000 if quick else 400000
    rec = np.unique(np.round(np.logspace(2, np.log10(steps), 30)).astype(int))
    out = {"asymptotic_only": True, "targets": targets, "steps": rec, "runs": {},
           "note": "direction convergence is O(1/log t): a trend, not a check"}
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    for name, f in models.items():
        loss = lambda p: jnp.mean(jnp.exp(-yj * f(p, xj)))  # noqa: E731
        # a normalised step (lr / loss) keeps exponential-loss GD moving at this scale
        def step(p, _):
            g = jax.grad(loss)(p)
            p = jax.tree.map(lambda a, b: a - 0.05 * b / loss(p), p, g)
            return p, p["w"]
        p0 = {"w": jnp.zeros(2), "b": jnp.asarray(0.5)}
        _, ws = jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps))(p0)
        ws = np.asarray(ws)[rec - 1]
        ws = ws / np.linalg.norm(ws, axis=1, keepdims=True)
        out["runs"][name] = {t: np.degrees(np.arccos(np.clip(ws @ d, -1, 1)))
                             for t, d in targets.items()}
    return out


def plot(result: dict, path: pathlib.Path) -> None:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 4.5))
    ax = fig.subplots(1, 3)
    lae = result["lae"]
    i = np.arange(1, lae["k"] + 1)
    ax[0].plot(i, lae["sum"]["singular_values"], "o", label="GD-trained decoder (L_sigma)")
    ax[0].plot(i, lae["sum"]["predicted"], "-", label="sqrt(1 - lambda / sigma_i^2)")
    ax[0].set(xlabel="i", ylabel="decoder singular value",
              title=f"regularised LAE on digits, lambda={lae['lambda']:.3g}")
    ax[1].plot(i, lae["sum"]["direction_alignment"], "o-", label="L_sigma")
    ax[1].plot(i, lae["none"]["direction_alignment"], "s--",
               label=f"L_0 (subspace angle {lae['none']['max_principal_angle']:.1e})")
    ax[1].set(xlabel="i", ylabel="|u_i . v_i|", ylim=(0, 1.05),
              title="left singular vectors vs principal directions")
    mm = result["max_margin"]
    for j, (name, r) in enumerate(mm["runs"].items()):
        for ls, (t, ang) in zip(("-", ":"), r.items()):
            ax[2].semilogx(mm["steps"], ang, ls, color=f"C{j}", label=f"{name} vs {t}")
    ax[2].set(xlabel="GD step", ylabel="angle of w (degrees)",
              title="ASYMPTOTIC ONLY: quasi-homogeneous max margin (trend)")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, str(path))


def run(outdir: pathlib.Path, *, quick: bool = False) -> dict:
    """Both experiments; writes ``lae.png`` into ``outdir``."""
    outdir = pathlib.Path(outdir)
    lae, checks = lae_part(quick)
    result = jsonable({"part": PART, "quick": quick, "lae": lae,
                       "max_margin": max_margin_part(quick), "checks": checks})
    plot(result, outdir / f"{PART}.png")
    return result
