"""Bias and variance of gradient estimators: the study's command line and the
pieces that tie the predictions to the optax transforms.

Ghosh, Liu, Lajoie, Kording & Richards, "How gradient estimator variance and
bias impact learning in neural networks" (ICLR 2023). The update of Eq. 1,

    Delta w = -g + b beta + sigma sqrt(f(N)) n_hat,   w <- w + dt Delta w,

is applied by ``neurojax.optim.injection``'s transforms; the predictions
(Lemma 2.1, Theorems 2.4, 3.1, 3.2, Corollary A.2, Theorems A.3/A.5) and the
explicit measurement of Eq. 2 are ``neurojax.metrics.imperfect_gradients``;
the controlled-spectrum inputs and the isotropic noise set are
``neurojax.data.synthetic``. This module adds ``measure_excess_loss_optax``
(Eq. 2 through the transforms themselves), ``noise_variance_factor`` (f(N))
and ``zero_sum_second_moment`` (the second moment of the paper's zero-sum
noise set), and runs the figures:

    python -m neurojax.analysis.bias_variance --figure {fig1,fig3,fig4,fig7,all} \
        --outdir DIR [--quick] [--seed S]
    python -m neurojax.analysis.bias_variance --figure fig1_collect \
        --workdirs 'runs/bv_cifar10/*' --outdir DIR [--skip_unfinished]

Each figure writes ``bias_variance_<fig>.png`` and ``bias_variance_<fig>.json``
(the numbers behind the verdict under ``"summary"``): Figs. 3 and 4 from
``bias_variance_figures``, Fig. 7 from ``bias_variance_descent``, Fig. 1 from
``bias_variance_digits``. ``--workdirs`` takes a comma-separated list of
run directories or shell patterns.
"""
from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from neurojax.analysis import bias_variance_descent, bias_variance_digits, bias_variance_figures
from neurojax.analysis.outputs import jsonable
from neurojax._checks import check_int, check_real
from neurojax.optim.injection import (inject_gradient_bias, inject_gradient_noise,
                                      noise_variance_factor, zero_sum_second_moment)

FIGURES = ("fig1", "fig3", "fig4", "fig7")
MAKERS: dict[str, Callable[..., dict]] = {
    "fig1": bias_variance_digits.figure1, "fig3": bias_variance_figures.figure3,
    "fig4": bias_variance_figures.figure4, "fig7": bias_variance_descent.figure7}


def _tree_axpy(params, dt, direction):
    return optax.tree.add_scale(params, dt, optax.tree.cast_like(direction, params))


def measure_excess_loss_optax(loss_fn: Callable[[Any], jax.Array], params, dt, *, b=0.0,
                              sigma=0.0, key: jax.Array, num_vectors: int,
                              normalization: str = "paper", scaling: str = "constant",
                              exponent: Optional[float] = None) -> dict:
    """``measure_excess_loss`` through the optax transforms.

    Runs ``optax.chain(inject_gradient_bias(b), inject_gradient_noise(sigma,
    key=key, zero_sum_set=R, ...), optax.sgd(dt))`` for ``R`` updates, each
    from the same ``params`` (the transform state carries on, so the ``R``
    noise draws are one zero-sum cycle), and averages the losses. The noise
    directions are those of ``zero_sum_noise_set(jax.random.split(key)[1],
    params, R, normalization=...)`` (the transform's documented cycle key).

    Returns:
        dict: ``delta_loss`` and ``per_vector`` as ``measure_excess_loss``.
    """
    check_int("num_vectors", num_vectors, 2)
    check_real("dt", dt, low=0.0, low_open=True)
    return _measure_optax(loss_fn, params, dt, b, sigma, key, num_vectors, normalization,
                          scaling, exponent)


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 8, 9))
def _measure_optax(loss_fn, params, dt, b, sigma, key, num_vectors, normalization, scaling,
                   exponent):
    opt = optax.chain(inject_gradient_bias(b),
                      inject_gradient_noise(sigma, key=key, scaling=scaling, exponent=exponent,
                                            zero_sum_set=num_vectors,
                                            zero_sum_normalization=normalization),
                      optax.sgd(dt))
    g = jax.grad(loss_fn)(params)
    loss_true = loss_fn(_tree_axpy(params, dt, jax.tree.map(jnp.negative, g)))

    def body(state, _):
        updates, state = opt.update(g, state, params)
        return state, loss_fn(optax.apply_updates(params, updates))

    _, per = jax.lax.scan(body, opt.init(params), None, length=num_vectors)
    return {"delta_loss": jnp.mean(per) - loss_true, "per_vector": per - loss_true}


def run(figure: str, outdir: str, *, quick: bool = False, seed: int = 0,
        workdirs: Sequence[str] = (), skip_unfinished: bool = False) -> dict:
    """Make ``figure`` (one of ``FIGURES``, ``'fig1_collect'`` or ``'all'``) under
    ``outdir``; prints each figure's summary and returns ``{name: result}``."""
    if figure not in FIGURES + ("fig1_collect", "all"):
        raise ValueError(f"figure must be one of {FIGURES + ('fig1_collect', 'all')}, "
                         f"got {figure!r}")
    if figure == "fig1_collect" and not workdirs:
        raise ValueError("figure 'fig1_collect' needs workdirs (--workdirs)")
    out = {}
    for name in FIGURES if figure == "all" else (figure,):
        t0 = time.time()
        if name == "fig1_collect":
            out[name] = bias_variance_digits.figure1_collect(
                list(workdirs), outdir, skip_unfinished=skip_unfinished)
        else:
            out[name] = MAKERS[name](outdir, quick=quick, seed=seed)
        print(f"{name}: {time.time() - t0:.0f} s")
        print(json.dumps(jsonable(out[name]["summary"], 4), indent=1))
    return out


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_enum("figure", None, list(FIGURES) + ["fig1_collect", "all"],
                      "Which figure.")
    flags.DEFINE_string("outdir", None, "Where bias_variance_<fig>.{png,json} go.")
    flags.DEFINE_bool("quick", False, "Smaller grids and fewer seeds.")
    flags.DEFINE_integer("seed", 0, "Seed.")
    flags.DEFINE_list("workdirs", [], "fig1_collect: finished run directories or shell "
                      "patterns, comma-separated.")
    flags.DEFINE_bool("skip_unfinished", False,
                      "fig1_collect: leave out unfinished runs instead of failing.")
    flags.mark_flags_as_required(["figure", "outdir"])


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    if f.figure == "fig1_collect" and not f.workdirs:
        raise app.UsageError("--figure=fig1_collect needs --workdirs")
    run(f.figure, f.outdir, quick=f.quick, seed=f.seed, workdirs=f.workdirs,
        skip_unfinished=f.skip_unfinished)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
