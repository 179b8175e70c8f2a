"""Step time of multi-view Barlow Twins: O(m) (Eq. 10) vs all-pairs, pdim 256 vs 8192.

Run:
    python -m benchmarks.ssl_step                      # ~5 min on 2 CPU cores
    python -m benchmarks.ssl_step --views=2,4 --pdims=256 --batch_size=64   # quick

Two tables, each timed in this run (medians of ``--repeats`` after a
compile-and-warm-up call):

1. The loss alone (value and gradient with respect to the embeddings z of
   shape (m, n, d)) in the Eq. 10 form (each view pulled to the mean
   embedding, orthogonality on the mean: O(m n d^2)) and in the all-pairs
   form (every pair of views through the two-view loss: O(m^2 n d^2)),
   printed as the ratio all-pairs / Eq. 10.
2. The full jit-compiled SSL training step of neurojax (views drawn inside
   the step, ``--encoder`` + projector, Adam) at each m for both forms and,
   at m = 2, with a pdim-256 vs a pdim-8192 projector (the paper's Table 2
   baseline), printed as ratios to the m = 2, pdim-256, Eq. 10 step.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from neurojax.data.augment import cifar_recipe
from neurojax.data.views import make_views
from neurojax.losses import barlow_twins_multiview
from neurojax.models.ssl import build_ssl_network
from neurojax.train.state import create_train_state
from neurojax.train.ssl import ssl_loss_fn, ssl_objective
from neurojax.train.step import make_mesh, make_train_step, replicate, shard_batch

_VIEWS = flags.DEFINE_list("views", ["2", "4", "8", "16"], "Numbers of views m.")
_PDIMS = flags.DEFINE_list("pdims", ["256", "8192"], "Projector dims for the m = 2 comparison.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Images per step (the paper's batch).")
_IMAGE = flags.DEFINE_integer("image_size", 16, "Side of the square RGB images.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per setting (median).")
_FULL_MAX_VIEWS = flags.DEFINE_integer("full_step_max_views", 8,
                                       "Largest m for the full-step table (CPU time).")


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def loss_table(views, d: int, n: int, repeats: int) -> None:
    print(f"\n1. Barlow Twins multi-view loss + gradient, n = {n}, d = {d}")
    print(f"{'m':>4} {'Eq.10 (ms)':>12} {'all-pairs (ms)':>15} {'all-pairs / Eq.10':>18}")
    for m in views:
        z = jax.random.normal(jax.random.PRNGKey(m), (m, n, d))
        times = {}
        for form in ("mean", "all_pairs"):
            f = jax.jit(jax.value_and_grad(
                lambda z, form=form: barlow_twins_multiview(z, 5.12 / d, form=form)[0]))
            times[form] = _median_seconds(lambda: f(z), repeats)
        print(f"{m:>4} {1e3 * times['mean']:>12.2f} {1e3 * times['all_pairs']:>15.2f} "
              f"{times['all_pairs'] / times['mean']:>18.2f}")


def _step_time(m: int, pdim: int, form: str, batch, repeats: int) -> float:
    mesh = make_mesh()
    net = build_ssl_network("small_cnn", {"output_dim": pdim}, widths=(32, 64, 128),
                            hidden=None)
    recipe = cifar_recipe(batch.shape[1])
    objective = ssl_objective(
        net, ssl_loss_fn("barlow_twins_multiview", m, lambd=5.12 / pdim, form=form),
        lambda key, x: make_views(key, x, m, recipe))
    variables = net.init(jax.random.PRNGKey(0), batch[:1])
    params = variables.pop("params")
    tx = optax.adam(1e-3)
    state = replicate(create_train_state(params, tx, model_state=variables,
                                         rng=jax.random.PRNGKey(1)), mesh)
    step = make_train_step(objective, tx, mesh=mesh, donate=False)
    sharded = shard_batch({"image": batch}, mesh)
    return _median_seconds(lambda: step(state, sharded)[1]["loss"], repeats)


def step_table(views, pdims, n: int, size: int, repeats: int) -> None:
    batch = np.random.default_rng(0).uniform(size=(n, size, size, 3)).astype(np.float32)
    print(f"\n2. Full SSL train step (small_cnn encoder, {size}x{size} RGB, batch {n}, "
          f"views drawn in the step, Adam)")
    print(f"{'m':>4} {'pdim':>6} {'form':>10} {'step (s)':>10} {'/ m=2 Eq.10':>12}")
    base = _step_time(2, pdims[0], "mean", batch, repeats)
    rows = [(m, pdims[0], form) for m in views for form in ("mean", "all_pairs")]
    rows += [(2, d, "mean") for d in pdims[1:]]
    for m, d, form in rows:
        t = base if (m, d, form) == (2, pdims[0], "mean") else _step_time(m, d, form, batch,
                                                                          repeats)
        print(f"{m:>4} {d:>6} {form:>10} {t:>10.3f} {t / base:>12.2f}")


def main(argv):
    del argv
    views = [int(v) for v in _VIEWS.value]
    pdims = [int(d) for d in _PDIMS.value]
    print(f"JAX {jax.__version__}, {jax.device_count()} {jax.default_backend()} device(s)")
    loss_table(views, pdims[0], _BATCH.value, _REPEATS.value)
    step_table([m for m in views if m <= _FULL_MAX_VIEWS.value], pdims, _BATCH.value,
               _IMAGE.value, _REPEATS.value)


if __name__ == "__main__":
    app.run(main)
