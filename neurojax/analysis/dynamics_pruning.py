"""Part "pruning" of the learning-dynamics study: SynFlow next to SNIP, GraSP,
magnitude and random pruning at initialisation (Tanaka, Kunin, Yamins &
Ganguli, NeurIPS 2020), at CPU scale on the procedural shapes.

1. Closed-form checks (float64, on the experiment's VGG with BatchNorm in
   evaluation mode, at initialisation where every bias and BN shift is 0):
   layer-wise conservation of synaptic flow (Theorem 2): each conv kernel,
   BN scale and the head kernel carries ``sum theta dR/dtheta = R``; and the
   exact kept count ``round(N / compression)`` of every method's global mask.
2. Layer collapse (Sec. 4, Fig. 1): per-layer fraction of weights kept by each
   method at each compression; magnitude (and, at the highest compressions,
   GraSP/SNIP) empties whole layers of a VGG while SynFlow never does
   (Theorem 3). Measured, not a closed form.
3. Accuracy vs compression (Fig. 6's row, at CPU scale): VGG-11 at 1/8 width
   with BatchNorm on ``shapes_small`` (16x16, 10 classes), pruned at
   initialisation by each method at compressions 10, 100, 1000 (the paper's
   10^1, 10^2, 10^3), then trained briefly with Adam; seeds as repeats. The
   training is short (a few epochs), so absolute accuracies are far below a
   trained model's; what is compared is the order of the methods and the
   collapse to chance (10%) of magnitude and random at 1000x. The paper's
   numbers (VGG-16-BN on CIFAR-10, 160 epochs) are in ``"anchor"``;
   ``configs/pruning_shapes.py:vgg16_cifar10`` is the GPU config of that row.

The masks come from ``neurojax.train.pruning.pruning_masks`` (one compiled
program per method, shared by every compression and seed) and training goes
through ``neurojax.train.step.train_step_fn`` (jit-compiled) with the optimiser followed by
``mask_updates`` (one compiled step for every run: the masks live in the
optimiser state).
"""
from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from neurojax import losses
from neurojax.analysis._dynamics_digits import check_record
from neurojax.analysis.outputs import jsonable, save_figure
from neurojax.data.on_device import load_split_arrays
from neurojax.metrics.saliency import synflow_objective, synflow_scores
from neurojax.models import VGG
from neurojax.optim import make_optimizer, pruning
from neurojax.train.pruning import pruning_masks
from neurojax.train.state import create_train_state
from neurojax.train.step import model_objective, train_step_fn

PART = "pruning"
# Tanaka et al. 2020, VGG-16 (BN) on CIFAR-10, top-1 (%) at 100x / 1000x
# (mean of 3 seeds, recomputed from the authors' Results/data; see ANCHORS.md)
ANCHOR = {"setting": "VGG-16 with BN, CIFAR-10, 160 epochs (Tanaka et al. 2020, Fig. 6)",
          "dense": 93.5,
          "compression": [100, 1000],
          "accuracy": {"synflow": [90.1, 80.4], "snip": [89.1, 76.3], "grasp": [87.5, 70.9],
                       "magnitude": [89.8, 10.0], "random": [79.1, 10.0]}}
SIZES = {
    "quick": dict(width=1 / 8, methods=("synflow", "magnitude"), compressions=(1000.0,),
                  seeds=(0,), steps=5, batch=64, eval_examples=500, synflow_iterations=5,
                  train_examples=2000),
    "full": dict(width=1 / 8, methods=pruning.METHODS, compressions=(10.0, 100.0, 1000.0),
                 seeds=(0, 1, 2), steps=1000, batch=64, eval_examples=2000,
                 synflow_iterations=100, train_examples=None),
}
DATASET = "shapes_small"
IMAGE_SHAPE = (16, 16, 3)
NUM_CLASSES = 10
EXAMPLES_PER_CLASS = pruning.EXAMPLES_PER_CLASS  # SNIP / GraSP data, as the paper


def conservation_checks(model, variables) -> list[dict]:
    """Theorem 2 in float64: every kernel and BN scale carries R."""
    fn = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
    rest = {k: v for k, v in variables.items() if k != "params"}
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), variables["params"])
        state = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), rest)
        scores, big_r = jax.jit(lambda p, s: (
            synflow_scores(fn, p, IMAGE_SHAPE, model_state=s),
            synflow_objective(fn, jax.tree.map(jnp.abs, p), IMAGE_SHAPE,
                              model_state=s)))(params, state)
        sums = {pruning.path_name(p): float(jnp.sum(s))
                for p, s in jax.tree_util.tree_flatten_with_path(scores)[0]}
        big_r = float(big_r)
    return [check_record(f"synflow_conservation/{name}", value, big_r)
            for name, value in sums.items() if not name.endswith("bias")]


def mask_fns(model, batch, size):
    """``{method: jit(fn(variables, counts, key) -> masks)}``."""
    loss = losses.get_loss("softmax_cross_entropy")
    apply_fn = lambda v, x: model.apply(v, x, train=False)  # noqa: E731

    def make(method):
        def fn(variables, counts, key):
            rest = {k: v for k, v in variables.items() if k != "params"}
            return pruning_masks(
                method, variables["params"], counts=counts, apply_fn=apply_fn,
                model_state=rest, input_shape=IMAGE_SHAPE, batch=batch,
                loss=lambda out, b: loss(out, b)[0], key=key)
        return jax.jit(fn)
    return {m: make(m) for m in size["methods"]}


def counts_for(method: str, n: int, compression: float, size) -> np.ndarray:
    iterations = size["synflow_iterations"] if method == "synflow" else \
        pruning.DEFAULT_ITERATIONS[method]
    return pruning.schedule_counts(n, compression, iterations).astype(np.int32)


def train_and_test(step, tx, variables, masks, data, *, seed: int, steps: int, batch: int,
                   accuracy_fn) -> float:
    """Trains the masked network and returns its test accuracy."""
    params = pruning.apply_masks(variables["params"], masks)
    state = create_train_state(params, tx, model_state={"batch_stats": variables["batch_stats"]},
                               rng=jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    x, y = data["train"]
    for _ in range(steps):
        idx = rng.integers(0, len(y), batch)
        state, _ = step(state, {"image": x[idx], "label": y[idx]})
    return accuracy_fn(state.params, state.model_state)


def run(outdir: pathlib.Path, *, quick: bool = False, data_dir=None) -> dict:
    """Runs the part; writes ``pruning.png`` into ``outdir``; returns the results."""
    size = SIZES["quick" if quick else "full"]
    tic = time.time()
    outdir = pathlib.Path(outdir)
    tr = load_split_arrays(DATASET, "train", data_dir=data_dir,
                           max_examples=size["train_examples"])
    te = load_split_arrays(DATASET, "test", data_dir=data_dir,
                           max_examples=size["eval_examples"])
    data = {"train": (tr["image"], tr["label"]),
            "test": (jnp.asarray(te["image"]), jnp.asarray(te["label"]))}
    order = np.random.default_rng(0).permutation(len(tr["label"]))[:EXAMPLES_PER_CLASS
                                                                     * NUM_CLASSES]
    prune_batch = {"image": jnp.asarray(tr["image"][order]),
                   "label": jnp.asarray(tr["label"][order])}

    model = VGG(depth=11, width_factor=size["width"], num_classes=NUM_CLASSES)
    init = jax.jit(lambda key: model.init(key, jnp.zeros((1,) + IMAGE_SHAPE), train=False))
    variables0 = init(jax.random.PRNGKey(0))
    flags = pruning.prunable_flags(variables0["params"])
    n = pruning.num_prunable(variables0["params"])
    checks = conservation_checks(model, variables0)

    optim = ml_collections.ConfigDict(dict(name="adam", lr=2e-3, schedule="cosine"))
    tx = optax.chain(make_optimizer(optim, size["steps"]), pruning.mask_updates())
    # the plain jit of the step: make_train_step's mesh shardings cost ~0.5 s a
    # step on 2 CPU cores for this 10 ms step
    step = jax.jit(train_step_fn(model_objective(model, losses.get_loss(
        "softmax_cross_entropy")), tx))
    logits = jax.jit(lambda p, s, x: model.apply({"params": p, **s}, x, train=False))

    def accuracy_fn(params, model_state):
        x, y = data["test"]
        return float(jnp.mean(jnp.argmax(logits(params, model_state, x), -1) == y))

    fns = mask_fns(model, prune_batch, size)
    accuracy = {m: {str(int(c)): [] for c in size["compressions"]} for m in size["methods"]}
    dense, density, collapsed = [], {}, {}
    for seed in size["seeds"]:
        variables = init(jax.random.PRNGKey(seed))
        all_kept = jax.tree.map(lambda x: jnp.ones(x.shape, bool), variables["params"])
        dense.append(train_and_test(step, tx, variables, all_kept, data, seed=seed,
                                    steps=size["steps"], batch=size["batch"],
                                    accuracy_fn=accuracy_fn))
        for method in size["methods"]:
            for c in size["compressions"]:
                counts = counts_for(method, n, c, size)
                masks = fns[method](variables, counts, jax.random.PRNGKey(1000 + seed))
                key = f"{method}/{int(c)}"
                if seed == size["seeds"][0]:
                    kept = int(pruning.count_kept(masks, flags))
                    checks.append(check_record(f"exact_count/{key}", kept, counts[-1]))
                    layers = {k: float(v) for k, v in pruning.layer_density(masks,
                                                                            flags).items()}
                    density[key] = layers
                    collapsed[key] = [k for k, v in layers.items() if v == 0.0]
                accuracy[method][str(int(c))].append(train_and_test(
                    step, tx, variables, masks, data, seed=seed, steps=size["steps"],
                    batch=size["batch"], accuracy_fn=accuracy_fn))

    results = {
        "part": PART, "quick": quick,
        "setting": {"dataset": DATASET, "model": f"VGG-11 (BN), width x{size['width']}",
                    "num_prunable": n, "optimizer": "adam 2e-3 cosine", **{
                        k: v for k, v in size.items() if k != "methods"},
                    "methods": list(size["methods"])},
        "checks": checks,
        "accuracy": {m: {c: {"mean": float(np.mean(v)), "std": float(np.std(v)),
                             "per_seed": v} for c, v in per.items()}
                     for m, per in accuracy.items()},
        "dense_accuracy": {"mean": float(np.mean(dense)), "std": float(np.std(dense)),
                           "per_seed": dense},
        "layer_density": density,
        "collapsed_layers": collapsed,
        "anchor": ANCHOR,
        "seconds": time.time() - tic,
    }
    plot(results, str(outdir / f"{PART}.png"))
    return jsonable(results)


def plot(results: dict, path: str) -> None:
    """Accuracy vs compression, per-layer kept fraction at the highest
    compression, and the paper's anchor row."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(16, 4.5))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    for method, per in results["accuracy"].items():
        i = pruning.METHODS.index(method)
        cs = sorted(per, key=float)
        ax.errorbar([float(c) for c in cs], [100 * per[c]["mean"] for c in cs],
                    yerr=[100 * per[c]["std"] for c in cs], marker="o", capsize=3,
                    color=f"C{i}", label=method)
    ax.axhline(100 * results["dense_accuracy"]["mean"], color="k", ls="--", lw=1, label="dense")
    ax.axhline(100 / NUM_CLASSES, color="gray", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set(xlabel="compression (prunable / kept)", ylabel="test accuracy (%)",
           title=f"{results['setting']['model']} on {DATASET}, "
                 f"{results['setting']['steps']} Adam steps")
    ax.legend(fontsize=7)

    ax = axes[1]
    top = max(float(k.split("/")[1]) for k in results["layer_density"])
    keys = [k for k in results["layer_density"] if float(k.split("/")[1]) == top]
    layers = list(results["layer_density"][keys[0]])
    for key in keys:
        i = pruning.METHODS.index(key.split("/")[0])
        ax.semilogy(range(len(layers)), [max(results["layer_density"][key][l], 1e-6)
                                         for l in layers], "o-", color=f"C{i}",
                    label=key.split("/")[0])
    ax.axhline(1e-6, color="r", lw=0.8, ls=":")
    ax.set_xticks(range(len(layers)), [l.split("/")[0] for l in layers], rotation=45,
                  fontsize=7)
    ax.set(ylabel="fraction kept (1e-6 = collapsed)",
           title=f"layer collapse at {int(top)}x (Theorem 3)")
    ax.legend(fontsize=7)

    ax = axes[2]
    anchor = results["anchor"]
    for method, vals in anchor["accuracy"].items():
        i = pruning.METHODS.index(method)
        ax.plot(anchor["compression"], vals, "o-", color=f"C{i}", label=method)
    ax.axhline(anchor["dense"], color="k", ls="--", lw=1, label="dense")
    ax.set_xscale("log")
    ax.set(xlabel="compression", ylabel="test accuracy (%)",
           title="anchor: VGG-16-BN, CIFAR-10 (Tanaka et al. 2020)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
