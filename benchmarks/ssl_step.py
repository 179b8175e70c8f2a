"""Step time of multi-view Barlow Twins: O(m) (Eq. 10) vs all-pairs, pdim 256 vs 8192.

Run:
    python -m benchmarks.ssl_step                      # ~5 min on 2 CPU cores
    python -m benchmarks.ssl_step --views=2,4 --pdims=256 --batch_size=64   # quick
    # the recorded run (~3 min):
    python -m benchmarks.ssl_step --views=2,8 --pdims=256 --repeats=7 --json=benchmarks/results/ssl_step.json

Two tables:

1. The loss alone (value and gradient with respect to the embeddings z of
   shape (m, n, d)) in the Eq. 10 form (each view pulled to the mean
   embedding, orthogonality on the mean: O(m n d^2)) and in the all-pairs
   form (every pair of views through the two-view loss: O(m^2 n d^2)),
   printed as the ratio all-pairs / Eq. 10 (medians of ``--repeats``).
2. The full jit-compiled SSL training step of neurojax (views drawn inside
   the step, small CNN encoder + projector, Adam) at each m for both forms
   and, at m = 2, with a pdim-256 vs a pdim-8192 projector (the paper's
   Table 2 baseline), printed as ratios to the m = 2, pdim-256, Eq. 10
   step, in wall time and in process CPU time, with ``make_views`` alone
   (the augmentation) at each m. Every setting is compiled first and then
   timed in interleaved rounds (each round calls each once; medians of
   ``--repeats``), so the ratios compare the same stretch of time: on a
   shared machine, timing the settings one after another compares windows
   of different load (the same code gave m = 8 / m = 2 from 3.6x to 5.5x).

Measured (issue 22), the command above, batch 256, 16x16 images, pdim 256,
Eq. 10: on a 2-core Intel Xeon (session 15, jax 0.10.2), after the colour
jitter was made 4x faster (one hue rotation per view, luma from channel
slices), m = 8 / m = 2 = 4.07x wall (0.129 -> 0.525 s), 4.12x CPU; the
views alone 0.012 -> 0.041 s (``benchmarks/results/ssl_step.json``).
Before that change, on a 2-core AMD EPYC (32 MiB L3, loaded: load average
~7): m = 8 / m = 2 = 4.17x wall (0.285 -> 1.189 s), 3.94x CPU; the views alone
0.088 -> 0.253 s. The encoder's work grows 4x and so does the step: per
part (one process, m = 2 -> 8): augmentation 3.6x, encoder forward +
backward 4.1x, projector 4.1x, loss + gradient 2.6x; XLA's cost analysis
of the whole step: 3.95x flops, 3.81x bytes, temporaries 52 -> 199 MB.
Within the encoder the convolutions' weight gradients (6.5-8.3x CPU) and
the stages' forward passes (4.8-6.3x) grow faster than their work, as the
activations leave the cache (conv_0's output: 17 MB at m = 2, 67 MB at
m = 8); the loss and the views' crop (2.6x, 2.9x) grow slower. At
``--batch_size=128`` (m = 2 is 256 images) the same run gave m = 4 / m = 2
2.34x and m = 8 / m = 2 5.01x wall, 4.99x CPU: the m = 2 step there runs
below that cache cliff. Tried and not kept (no gain measured here): the
encoder run view by view in order (CPU ratio 3.95-4.44x vs 3.48-4.15x
stacked; ``lax.map`` over views 10x slower), 64 weight-gradient chunks
instead of 16, a colour jitter with one hue rotation per image alone (135
-> 115 ms for 2048 views, slower without hue; the kept version of session
15 adds luma and HSV from channel slices, where XLA:CPU had run the
reductions over the 3-long channel axis as separate slow loops: 28 -> 7 ms
for 512 views in an uncommitted profile, one run).
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from neurojax.analysis.outputs import write_json
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
_JSON = flags.DEFINE_string("json", "", "Optional path for the results as JSON "
                            "(benchmarks/results/ssl_step.json).")


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _interleaved(calls: dict, repeats: int) -> dict:
    """``{key: (median wall s, median process CPU s)}`` of ``calls`` (zero-argument
    functions, compiled), timed in rounds that call each once, after a warm-up
    call each: on a shared machine the ratios then compare the same stretch
    of time instead of windows of different load."""
    for fn in calls.values():
        jax.block_until_ready(fn())
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            w, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[k].append(time.perf_counter() - w)
            cpu[k].append(time.process_time() - c)
    return {k: (float(np.median(wall[k])), float(np.median(cpu[k]))) for k in calls}


def loss_table(views, d: int, n: int, repeats: int) -> list:
    print(f"\n1. Barlow Twins multi-view loss + gradient, n = {n}, d = {d}")
    print(f"{'m':>4} {'Eq.10 (ms)':>12} {'all-pairs (ms)':>15} {'all-pairs / Eq.10':>18}")
    rows = []
    for m in views:
        z = jax.random.normal(jax.random.PRNGKey(m), (m, n, d))
        times = {}
        for form in ("mean", "all_pairs"):
            f = jax.jit(jax.value_and_grad(
                lambda z, form=form: barlow_twins_multiview(z, 5.12 / d, form=form)[0]))
            times[form] = _median_seconds(lambda: f(z), repeats)
        print(f"{m:>4} {1e3 * times['mean']:>12.2f} {1e3 * times['all_pairs']:>15.2f} "
              f"{times['all_pairs'] / times['mean']:>18.2f}")
        rows.append({"m": m, "d": d, "n": n, "mean_s": times["mean"],
                     "all_pairs_s": times["all_pairs"]})
    return rows


def _compiled_step(m: int, pdim: int, form: str, batch):
    """The full training step at (m, pdim, form), compiled once; a zero-argument call."""
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
    compiled = step.lower(state, sharded).compile()
    return lambda: compiled(state, sharded)[1]["loss"]


def _compiled_views(m: int, batch):
    """``make_views`` alone (the augmentation drawn in the step) at m views."""
    recipe = cifar_recipe(batch.shape[1])
    x, key = jnp.asarray(batch), jax.random.PRNGKey(2)
    compiled = jax.jit(lambda k, x: make_views(k, x, m, recipe)[0]).lower(key, x).compile()
    return lambda: compiled(key, x)


def step_table(views, pdims, n: int, size: int, repeats: int) -> list:
    batch = np.random.default_rng(0).uniform(size=(n, size, size, 3)).astype(np.float32)
    print(f"\n2. Full SSL train step (small_cnn encoder, {size}x{size} RGB, batch {n}, "
          f"views drawn in the step, Adam; every setting timed in the same interleaved "
          f"rounds, medians of {repeats})")
    settings = [(m, pdims[0], form) for m in views for form in ("mean", "all_pairs")]
    settings += [(2, d, "mean") for d in pdims[1:]]
    calls = {s: _compiled_step(*s, batch) for s in settings}
    calls.update({("views", m): _compiled_views(m, batch) for m in views})
    times = _interleaved(calls, repeats)
    base_wall, base_cpu = times[(2, pdims[0], "mean")]
    print(f"{'m':>4} {'pdim':>6} {'form':>10} {'step (s)':>10} {'/ m=2 Eq.10':>12} "
          f"{'CPU (s)':>9} {'CPU / m=2':>10} {'views (s)':>10}")
    rows = []
    for m, d, form in settings:
        wall, cpu = times[(m, d, form)]
        views_wall = times[("views", m)][0]
        print(f"{m:>4} {d:>6} {form:>10} {wall:>10.3f} {wall / base_wall:>12.2f} "
              f"{cpu:>9.3f} {cpu / base_cpu:>10.2f} {views_wall:>10.3f}")
        rows.append({"m": m, "pdim": d, "form": form, "step_s": wall,
                     "ratio_to_m2": wall / base_wall, "step_cpu_s": cpu,
                     "cpu_ratio_to_m2": cpu / base_cpu, "views_s": views_wall})
    return rows


def main(argv):
    del argv
    views = [int(v) for v in _VIEWS.value]
    pdims = [int(d) for d in _PDIMS.value]
    print(f"JAX {jax.__version__}, {jax.device_count()} {jax.default_backend()} device(s)")
    losses = loss_table(views, pdims[0], _BATCH.value, _REPEATS.value)
    steps = step_table([m for m in views if m <= _FULL_MAX_VIEWS.value], pdims, _BATCH.value,
                       _IMAGE.value, _REPEATS.value)
    if _JSON.value:
        write_json({"jax": jax.__version__, "backend": jax.default_backend(),
                    "batch_size": _BATCH.value, "image_size": _IMAGE.value,
                    "repeats": _REPEATS.value, "encoder": "small_cnn (32, 64, 128)",
                    "loss": losses, "step": steps}, _JSON.value, digits=4)
        print(f"\nwrote {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
