"""k-redundancy (Oland 2024, Sec 5.4, Def 8): ``neurojax.metrics.k_redundancy``
against scikit-learn's ``NearestNeighbors`` (brute force and a tree), in one run.

Run (writes ``benchmarks/results/k_redundancy.json``):

    nice python -m benchmarks.k_redundancy                     # 10,000 and 60,000 examples
    python -m benchmarks.k_redundancy --sizes=2000 --trees=kd_tree,ball_tree   # quick

Data: synthetic, MNIST-sized (784 float32 features, 10 balanced-at-random
labels): a class mean in a 16-dimensional latent space plus unit Gaussian
latent noise, mapped to 784 dimensions by a fixed random matrix, plus
isotropic noise of 0.3 per feature (about half the examples are 10-redundant,
MNIST's input space has 66%). No duplicates, so ties at equal distance do
not arise and every method has one right answer.

For each size n: the JAX metric (``k_redundancy(x, labels, k)`` under
``jax.jit``; compiled ahead (``lower().compile()``, timed apart), the
features already on the device) and scikit-learn's ``NearestNeighbors(k,
algorithm=...)`` fitted on the features, its ``kneighbors()`` (each point's
k nearest, itself excluded, as here) turned into the same mask, with
``n_jobs=-1`` (every core for the trees; brute force is threaded anyway).
The trees (``kd_tree``, ``ball_tree``) are run only up to
``--tree_max_examples`` (in 784 dimensions they prune nothing: about 3 min
for 10,000 examples and hours for 60,000). The masks are compared; where they
differ, float64 distances decide which is right (float32 rounding can swap
two neighbours at the k-th rank). Ratios are sklearn time / JAX time, from
``--repeats`` interleaved rounds (minimum), with the 1-minute load average
after each timing logged: the machine these numbers come from is shared, so
absolute times are noisy, and a ratio is only as good as the two timings'
loads are alike.

Measured (JAX 0.10.2, one CPU device, 2 shared cores, load average 8-10
during every timing, one round, ``nice``; results/k_redundancy.json):
n = 10,000: neurojax 2.1 s, brute 8.5 s (4.0x), kd_tree 317 s (150x);
n = 60,000: neurojax 47 s, brute 230 s (4.9x); the masks were identical in
every comparison (56% and 62% of the examples 10-redundant). An earlier run
of the same code (load 3.5-12.6, varying between the timings) gave 6.7x and
5.5x against brute force.
"""
import json
import os
import platform
import time

import jax
import numpy as np
from absl import app, flags
from sklearn.neighbors import NearestNeighbors

from neurojax.metrics.redundancy import DEFAULT_BLOCK_SIZE, k_redundancy

_SIZES = flags.DEFINE_list("sizes", ["10000", "60000"], "Numbers of examples n.")
_K = flags.DEFINE_integer("k", 10, "Neighbours k.")
_DIM = flags.DEFINE_integer("dim", 784, "Features per example.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Labels.")
_BLOCK = flags.DEFINE_integer("block_size", DEFAULT_BLOCK_SIZE, "Block size of the JAX metric.")
_TREES = flags.DEFINE_list("trees", ["kd_tree"], "Tree algorithms of NearestNeighbors.")
_TREE_MAX = flags.DEFINE_integer("tree_max_examples", 10000, "Largest n the trees are run at.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Interleaved timing rounds (minimum reported).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic data.")
_OUT = flags.DEFINE_string("json", "benchmarks/results/k_redundancy.json",
                           "Where to write the results ('' for nowhere).")


def synthetic_mnist_like(n: int, dim: int, classes: int, seed: int, latent: int = 16):
    """Gaussian classes on a random 16-d subspace of R^dim, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, latent))
    proj = rng.normal(size=(latent, dim)) / np.sqrt(latent)
    y = rng.integers(0, classes, n).astype(np.int32)
    z = means[y] + rng.normal(size=(n, latent))
    x = z @ proj + 0.3 * rng.normal(size=(n, dim))
    return x.astype(np.float32), y


def sklearn_mask(x, y, k, algorithm):
    nn = NearestNeighbors(n_neighbors=k, algorithm=algorithm, n_jobs=-1).fit(x)
    ind = nn.kneighbors(return_distance=False)
    return np.all(y[ind] == y[:, None], axis=1)


def exact_mask_rows(x, y, k, rows):
    """Def 8's criterion for some rows from float64 distances (ties: lower index)."""
    x64 = x.astype(np.float64)
    out = []
    for i in rows:
        d = ((x64 - x64[i]) ** 2).sum(axis=1)
        d[i] = np.inf
        nearest = np.lexsort((np.arange(len(x)), d))[:k]
        out.append(bool(np.all(y[nearest] == y[i])))
    return np.array(out, bool)


def run_size(n: int):
    k = _K.value
    x, y = synthetic_mnist_like(n, _DIM.value, _CLASSES.value, _SEED.value)
    xd, yd = jax.device_put(x), jax.device_put(y)
    t0 = time.perf_counter()
    compiled = jax.jit(lambda a, b: k_redundancy(a, b, k, block_size=_BLOCK.value)).lower(
        xd, yd).compile()
    compile_s = time.perf_counter() - t0
    algorithms = ["brute"] + ([t for t in _TREES.value] if n <= _TREE_MAX.value else [])
    fns = {"neurojax": lambda: np.asarray(jax.block_until_ready(compiled(xd, yd)))}
    fns.update({a: (lambda a=a: sklearn_mask(x, y, k, a)) for a in algorithms})
    times = {name: [] for name in fns}
    loads = {name: [] for name in fns}
    masks = {}
    for _ in range(_REPEATS.value):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            masks[name] = fn()
            times[name].append(time.perf_counter() - t0)
            loads[name].append(os.getloadavg()[0])
            print(f"  n={n} {name:<9} {times[name][-1]:8.2f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    ours = masks["neurojax"]
    best = {name: min(ts) for name, ts in times.items()}
    record = {"n": n, "dim": _DIM.value, "classes": _CLASSES.value, "k": k,
              "block_size": _BLOCK.value, "redundant_fraction": float(ours.mean()),
              "neurojax_compile_seconds": compile_s, "seconds": times, "best_seconds": best,
              "load_average_after": loads,
              "speedup_vs": {}, "mismatches_vs": {}, "trees_skipped": n > _TREE_MAX.value}
    for name in algorithms:
        diff = np.flatnonzero(masks[name] != ours)
        exact = exact_mask_rows(x, y, k, diff)
        record["speedup_vs"][name] = best[name] / best["neurojax"]
        record["mismatches_vs"][name] = {
            "count": int(diff.size), "neurojax_right": int(np.sum(exact == ours[diff])),
            "sklearn_right": int(np.sum(exact == masks[name][diff]))}
    return record


def main(argv):
    del argv
    load0 = os.getloadavg()
    print(f"JAX {jax.__version__} on {jax.device_count()} {jax.default_backend()} device(s) "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs), "
          f"load average {load0[0]:.1f}")
    records = []
    for n in (int(s) for s in _SIZES.value):
        rec = run_size(n)
        records.append(rec)
        line = ", ".join(f"{a} {s:.2f}x" for a, s in rec["speedup_vs"].items())
        mism = ", ".join(f"{a} {m['count']}" for a, m in rec["mismatches_vs"].items())
        print(f"n={n}: redundant {rec['redundant_fraction']:.3f}; neurojax "
              f"{rec['best_seconds']['neurojax']:.2f} s (+{rec['neurojax_compile_seconds']:.1f} s "
              f"compile); sklearn / neurojax: {line}; masks differ: {mism}", flush=True)
    result = {"jax": jax.__version__, "backend": jax.default_backend(),
              "cpu_count": os.cpu_count(), "load_average_start": load0[0],
              "load_average_end": os.getloadavg()[0], "repeats": _REPEATS.value,
              "data": (f"synthetic: {_CLASSES.value} labels, 16-d Gaussian classes mapped to "
                       f"{_DIM.value} features + 0.3 isotropic noise, float32, seed {_SEED.value}"),
              "sklearn": "NearestNeighbors(n_jobs=-1).fit(x).kneighbors()", "sizes": records}
    if _OUT.value:
        os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
