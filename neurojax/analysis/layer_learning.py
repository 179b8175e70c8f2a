"""Chapter 5 of the seed thesis (Oland 2024, Efficient Deep Learning, "What
and how networks learn") on offline data: Fig 5.6 / 5.21's per-layer curves,
Table 5.1's kept fractions and the checkerboard of Figs 5.15-5.16.

A recipe over the library: ``neurojax.metrics.layer_learning`` (LSD, Eq 5.3;
selection entropy, Sec 5.5.4), ``neurojax.metrics.redundancy`` (k-redundancy,
Def 8; k-filtering, Sec 5.4), the training loop and the training programs.

* ``lsd`` (Fig 5.6 and 5.21 analogues): MLP 64-128-64-32-10 (ReLU) on
  scikit-learn's 8x8 digits, plain SGD at a constant rate, batch 64, with
  each loss of :data:`LSD_LOSSES` (softmax cross-entropy; the squared error
  of linear outputs against one-hot targets, Fig 5.21's MSE), ``seeds``
  seeds as one vmapped program
  (``neurojax.train.loop.train_and_evaluate`` with
  ``config.train.num_replicas``). After every epoch (and at initialisation,
  from the loop's own initial keys) a loop hook reads, per seed, on the whole
  training split (m = 1,437): LSD(Y, Z_i) = (1/m) ||Y - Z_i Z_i^+ Y||_F^2 of
  the input, every hidden layer (post-ReLU) and the outputs (no bias column,
  Eq 5.3 as printed; ``lsd_bias/``: with a column of ones); the
  layer-average selection entropy H(Y | Z_i) in bits of every hidden layer
  (dead features left out and counted) and that of its most selective
  feature (``entropy_min/``); train and test accuracy. The thesis's net is
  784-392-196-50-10 on MNIST. With the squared error, the outputs' LSD is at
  most twice the training loss (Y ~ Z itself is one least-squares candidate):
  its fall to 0 there holds by construction, not as a finding.
* ``kept``: the fraction of examples k-filtering keeps (1 - Def 8's
  k-redundancy / 100) at k = 5, 10, 20, on the raw inputs (Euclidean, the
  example itself excluded), over the whole training split of the digits
  (1,437) and of the 16x16 shapes (10,000), and over the first 1,437
  shapes (a density matched to the digits). The thesis (Table 5.1, MNIST,
  60,000 images): 18 / 34 / 53 % kept.
* ``checkerboard`` (Figs 5.15-5.16): 5,000 points uniform in [-0.5, 0.5]^2
  on an 8x8 board, no noise (``neurojax.data.synthetic.checkerboard`` scaled
  by 1/2); a ReLU MLP trained by plain SGD (constant rate, batch 32) on the
  whole board and on the board k-filtered at each k of ``board_ks``, the
  same seeds and (about) the same number of SGD steps (a filtered run makes
  proportionally more passes over its fewer points), through ``neurojax.analysis.platonic``'s
  ``train_backprop`` (one compiled epoch per call, seeds vmapped). Reported
  per seed: accuracy on the points trained on, on the whole board and on a
  fresh draw of 5,000 points. The thesis: plain SGD stuck at 51-53% "no
  matter what"; after k-filtering (k not given) it fits to arbitrary
  precision.

CLI::

    python -m neurojax.analysis.layer_learning --outdir DIR [--quick]

writes ``DIR/layer_learning.json`` and ``.png`` (``layer_learning_quick.*``
with ``--quick``: tiny sizes, numbers not meaningful).
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Sequence

import numpy as np

from neurojax.analysis.outputs import jsonable, write_json

PARTS = ("lsd", "kept", "checkerboard")
KS = (5, 10, 20)
WIDTHS = (128, 64, 32)
LSD_LR = 0.1
# config.loss blocks of the lsd part
LSD_LOSSES = {"softmax": {"name": "softmax_cross_entropy"},
              "mse": {"name": "label_mean_squared_error", "output": "linear",
                      "targets": (0.0, 1.0)}}
BOARD_OPTIM = {"name": "sgd", "lr": 0.5, "schedule": "constant"}
BOARD_WIDTHS = (128, 128)
SIZES = {
    "full": {"lsd_seeds": 5, "lsd_epochs": 40, "board_seeds": 3, "board_epochs": 200,
             "board_ks": (5, 10, 20), "shapes_subsets": True},
    "quick": {"lsd_seeds": 2, "lsd_epochs": 2, "board_seeds": 2, "board_epochs": 2,
              "board_ks": (10,), "shapes_subsets": False},
}
THESIS = {
    "table_5_1_kept_mnist": {"5": 0.18, "10": 0.34, "20": 0.53},
    "lsd": "decreases monotonically with the layer index in a trained network and tends to "
           "0 at the top (Fig 5.6; 784-392-196-50-10 MLP, MNIST)",
    "selection_entropy": "feature 1's H(Y|Z) from initialisation to epoch 5: layer 1 "
                         "3.26 -> 3.12, layer 2 3.26 -> 2.55, layer 3 3.03 -> 0.09 "
                         "(Figs 5.18-5.20)",
    "checkerboard": "plain SGD stuck at 51-53% 'no matter what'; after k-filtering it fits "
                    "to arbitrary precision (Figs 5.15-5.16)",
}


def spread(values) -> dict:
    """Mean, standard deviation (ddof 0), min, max and the values."""
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "values": v.tolist()}


# ----------------------------------------------------------------- lsd

def lsd_config(loss: str, *, seeds: int, epochs: int, data_dir: str = ""):
    """The digits MLP 64-128-64-32-10 (ReLU), ``LSD_LOSSES[loss]``, SGD at
    ``LSD_LR``, batch 64, one call per epoch, ``seeds`` replicas."""
    import ml_collections
    from neurojax.analysis import amplification
    config = amplification.pair_config(
        amplification.digits_config(seeds=seeds, epochs=epochs, data_dir=data_dir),
        "softmax", LSD_LR)
    config.model.widths = WIDTHS
    config.loss = ml_collections.ConfigDict(dict(LSD_LOSSES[loss]))
    return config


class LayerProbe:
    """A loop hook (one call per epoch): after each call, every replica's
    per-layer LSD and selection entropy on ``train`` and its train / test
    accuracy (``records``, one dict of ``[replica]`` lists per epoch)."""

    def __init__(self, config, train: dict, test: dict):
        import jax
        import jax.numpy as jnp
        from neurojax.metrics import layer_learning as ll
        from neurojax.models.intermediates import intermediate_features
        from neurojax.train.task import build_model
        self.model = build_model(config, 10)
        self.train, self.test = train, test
        self.replicas = config.train.num_replicas
        m = train["image"].shape[0]
        onehot = jax.nn.one_hot(train["label"], 10)
        hidden = [f"act_{i}" for i in range(len(config.model.widths))]

        def one(params, x, labels, xt, lt):
            feats = intermediate_features(self.model, {"params": params}, x)
            layers = {"input": x.reshape(m, -1), **{h: feats[h] for h in hidden},
                      "head": feats["head"]}
            out = {f"lsd/{n}": ll.least_squares_distance(z, onehot) for n, z in layers.items()}
            out.update({f"lsd_bias/{n}": ll.least_squares_distance(z, onehot, bias=True)
                        for n, z in layers.items()})
            for h in hidden:
                e = ll.layer_selection_entropy(feats[h], labels, 10)
                out[f"entropy/{h}"], out[f"dead/{h}"] = e["entropy"], e["num_dead"]
                out[f"entropy_min/{h}"] = jnp.nanmin(ll.selection_entropy(feats[h], labels, 10))
            out["train_accuracy"] = jnp.mean(jnp.argmax(feats["head"], -1) == labels)
            logits = self.model.apply({"params": params}, xt, train=False)
            out["test_accuracy"] = jnp.mean(jnp.argmax(logits, -1) == lt)
            return out

        self._fn = jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))
        self.records: list[dict] = []

    def record(self, params) -> None:
        import jax
        if self.replicas == 1:
            params = jax.tree.map(lambda a: a[None], params)
        out = self._fn(params, self.train["image"], self.train["label"], self.test["image"],
                       self.test["label"])
        self.records.append({k: np.asarray(v).tolist() for k, v in out.items()})

    def __call__(self, step, state, metrics) -> None:
        del step, metrics
        self.record(state.params)


def initial_params(config, model):
    """The replicas' initial parameters, from the loop's own keys
    (``neurojax.train.loop.seed_keys``), so epoch 0 is the run's start."""
    import jax
    import jax.numpy as jnp
    from neurojax.train.loop import seed_keys
    init_keys, _, _ = seed_keys(config.seed, config.train.num_replicas)
    sample = jnp.zeros((1, 8, 8, 1), jnp.float32)
    init = lambda key: model.init(key, sample, train=False)["params"]
    return jax.vmap(init)(init_keys) if config.train.num_replicas > 1 else init(init_keys)


def lsd_part(loss: str, seeds: int, epochs: int, workdir: str, data_dir: str = "") -> dict:
    """Per-epoch LSD and H(Y|Z_i) per layer over ``seeds`` seeds, trained
    with ``LSD_LOSSES[loss]`` (see the module docstring)."""
    from neurojax.data.on_device import load_split_arrays
    from neurojax.train.loop import train_and_evaluate
    config = lsd_config(loss, seeds=seeds, epochs=epochs, data_dir=data_dir)
    arrays = {s: load_split_arrays("digits", s, data_dir=data_dir or None)
              for s in ("train", "test")}
    probe = LayerProbe(config, *(arrays[s] for s in ("train", "test")))
    probe.record(initial_params(config, probe.model))
    start = time.time()
    result = train_and_evaluate(config, workdir, hooks=[probe], progress=False)
    final = result.eval_metrics
    curves = {k: [r[k] for r in probe.records] for k in probe.records[0]}   # [epoch][replica]
    layers = ["input"] + [f"act_{i}" for i in range(len(WIDTHS))] + ["head"]
    last = {n: np.asarray(curves[f"lsd/{n}"][-1]) for n in layers}
    last_bias = {n: np.asarray(curves[f"lsd_bias/{n}"][-1]) for n in layers}
    lsd_seq = np.stack([last[n] for n in layers[1:]])         # hidden + head, [layer, replica]
    monotone = np.all(np.diff(lsd_seq, axis=0) < 0, axis=0)
    monotone_bias = np.all(np.diff(np.stack([last_bias[n] for n in layers[1:]]), axis=0) < 0,
                           axis=0)
    hidden = layers[1:-1]
    ent = {h: np.asarray(curves[f"entropy/{h}"]) for h in hidden}
    return {
        "model": f"MLP 64-{'-'.join(map(str, WIDTHS))}-10 ReLU", "loss": LSD_LOSSES[loss],
        "lr": LSD_LR,
        "batch_size": int(config.dataset.batch_size), "epochs": epochs, "seeds": seeds,
        "probe_examples": int(arrays["train"]["label"].shape[0]), "layers": layers,
        "curves": curves,
        "final": {
            **{f"lsd/{n}": spread(last[n]) for n in layers},
            **{f"lsd_bias/{n}": spread(last_bias[n]) for n in layers},
            **{f"entropy/{h}": spread(ent[h][-1]) for h in hidden},
            **{f"entropy_min/{h}": spread(curves[f"entropy_min/{h}"][-1]) for h in hidden},
            **{f"entropy_min_init/{h}": spread(curves[f"entropy_min/{h}"][0]) for h in hidden},
            **{f"entropy_init/{h}": spread(ent[h][0]) for h in hidden},
            "train_accuracy": spread(curves["train_accuracy"][-1]),
            "test_accuracy": spread(curves["test_accuracy"][-1]),
            "loop_test_accuracy": [float(a) for a in final.get("accuracy_replicas",
                                                               [final["accuracy"]])],
        },
        "lsd_decreasing_over_hidden_and_head_per_seed": monotone.tolist(),
        "lsd_bias_decreasing_over_hidden_and_head_per_seed": monotone_bias.tolist(),
        "lsd_head_over_input": spread(last["head"] / last["input"]),
        "entropy_decreases_with_depth_per_seed": np.all(
            np.diff(np.stack([ent[h][-1] for h in hidden]), axis=0) < 0, axis=0).tolist(),
        "seconds": round(time.time() - start, 1),
    }


# ----------------------------------------------------------------- kept fractions

def kept_fractions(x, labels, ks: Sequence[int] = KS) -> dict:
    """``{k: fraction kept}`` by k-filtering over the whole set (raw inputs)."""
    from neurojax.metrics.redundancy import k_redundancy_fractions
    x = np.asarray(x, np.float32).reshape(len(labels), -1)
    red = np.asarray(k_redundancy_fractions(x, np.asarray(labels), list(ks)))
    return {str(k): float(1.0 - r) for k, r in zip(ks, red)}


def kept_part(data_dir: str = "", shapes_subsets: bool = True) -> dict:
    from neurojax.data.on_device import load_split_arrays
    out = {"ks": list(KS), "thesis_mnist": THESIS["table_5_1_kept_mnist"], "sets": {}}
    digits = load_split_arrays("digits", "train", data_dir=data_dir or None)
    n_digits = int(digits["label"].shape[0])
    out["sets"]["digits"] = {"n": n_digits, "dim": int(np.prod(digits["image"].shape[1:])),
                             "kept": kept_fractions(digits["image"], digits["label"])}
    shapes = load_split_arrays("shapes_small", "train", data_dir=data_dir or None)
    sets = {"shapes_small": slice(None)}
    if shapes_subsets:
        sets[f"shapes_small_first_{n_digits}"] = slice(0, n_digits)
    for name, sl in sets.items():
        x, y = np.asarray(shapes["image"][sl]), np.asarray(shapes["label"][sl])
        out["sets"][name] = {"n": int(len(y)), "dim": int(np.prod(x.shape[1:])),
                             "kept": kept_fractions(x, y)}
    return out


# ----------------------------------------------------------------- checkerboard

def board(seed: int, num_examples: int = 5000) -> tuple:
    """The thesis's board: ``num_examples`` points uniform in [-0.5, 0.5]^2,
    8x8 tiles, no noise (``synthetic.checkerboard`` on [-1, 1]^2, halved)."""
    import jax
    from neurojax.data import synthetic
    d = synthetic.checkerboard(jax.random.PRNGKey(seed), num_examples=num_examples,
                               num_tiles=8)
    return np.asarray(0.5 * d["x"], np.float32), np.asarray(d["y"], np.int32)


def checkerboard_part(seeds: int, epochs: int, ks: Sequence[int],
                      num_examples: int = 5000) -> dict:
    import jax
    import jax.numpy as jnp
    from neurojax.analysis.platonic import train_backprop
    from neurojax.metrics.redundancy import k_filter_indices
    from neurojax.models import MLP
    x, y = board(0, num_examples)
    xt, yt = board(1, num_examples)
    model = MLP(widths=BOARD_WIDTHS, num_outputs=2, activation="relu")
    accuracy = jax.jit(jax.vmap(lambda p, a, b: jnp.mean(
        jnp.argmax(model.apply({"params": p}, a), -1) == b), in_axes=(0, None, None)))
    runs = {}
    for k in (None, *ks):
        keep = np.arange(len(y)) if k is None else k_filter_indices(x, y, k)
        xs, ys = x[keep], y[keep]
        # as many SGD steps as the unfiltered run: more passes over fewer points
        run_epochs = max(1, round(epochs * len(y) / len(ys)))
        start = time.time()
        r = train_backprop({"x": xs, "y": ys, "x_test": x, "y_test": y}, BOARD_WIDTHS, "relu",
                           num_classes=2, epochs=run_epochs, batch_size=32, optim=BOARD_OPTIM,
                           seeds=range(seeds), return_params=True)
        name = "unfiltered" if k is None else f"k{k}"
        runs[name] = {
            "k": k, "num_train": int(len(ys)), "epochs": run_epochs,
            "steps_per_epoch": r["steps_per_epoch"],
            "steps": run_epochs * r["steps_per_epoch"],
            "trained_set_accuracy_curve": np.asarray(r["train_accuracy_curve"]).tolist(),
            "whole_board_accuracy_curve": np.asarray(r["test_accuracy_curve"]).tolist(),
            "trained_set_accuracy": spread(np.asarray(r["train_accuracy_curve"])[-1]),
            "whole_board_accuracy": spread(np.asarray(r["test_accuracy_curve"])[-1]),
            "fresh_board_accuracy": spread(np.asarray(accuracy(r["params"], xt, yt))),
            "seconds": round(time.time() - start, 1)}
    return {"num_examples": int(num_examples), "tiles": 8, "box": [-0.5, 0.5],
            "model": f"MLP 2-{'-'.join(map(str, BOARD_WIDTHS))}-2 ReLU", "optim": BOARD_OPTIM,
            "batch_size": 32, "epochs": epochs, "seeds": seeds, "runs": runs}


# ----------------------------------------------------------------- run, figure, CLI

def run(size: str, workdir: str, *, parts: Sequence[str] = PARTS, data_dir: str = "") -> dict:
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {list(parts)}")
    s = SIZES[size]
    out = {"size": size, "thesis": THESIS}
    if "lsd" in parts:
        out["lsd"] = {loss: lsd_part(loss, s["lsd_seeds"], s["lsd_epochs"],
                                     os.path.join(workdir, f"lsd_{loss}"), data_dir)
                      for loss in LSD_LOSSES}
    if "kept" in parts:
        out["kept"] = kept_part(data_dir, s["shapes_subsets"])
    if "checkerboard" in parts:
        out["checkerboard"] = checkerboard_part(s["board_seeds"], s["board_epochs"],
                                                s["board_ks"])
    return out


def plot(results: dict, path: str) -> None:
    """LSD per layer over epochs for each loss (seed means, min-max bands),
    H(Y|Z_i) per hidden layer (seed means), kept fractions against the
    thesis's MNIST row, checkerboard accuracy."""
    from matplotlib.figure import Figure
    from neurojax.analysis.outputs import save_figure
    fig = Figure(figsize=(20, 4))
    axes = list(fig.subplots(1, 5))
    for i, loss in enumerate(LSD_LOSSES):
        if loss not in results.get("lsd", {}):
            continue
        lsd = results["lsd"][loss]
        ax = axes[i]
        for name in lsd["layers"]:
            v = np.asarray(lsd["curves"][f"lsd/{name}"])
            ep = np.arange(len(v))
            line, = ax.plot(ep, v.mean(1), label=name)
            ax.fill_between(ep, v.min(1), v.max(1), alpha=0.2, color=line.get_color())
            key = f"entropy/{name}"
            if key in lsd["curves"]:
                e = np.asarray(lsd["curves"][key])
                style = "-" if loss == "softmax" else "--"
                axes[2].plot(ep, e.mean(1), style, color=line.get_color(),
                             label=f"{name} ({loss})")
        ax.set(title=f"LSD per layer, digits MLP, {loss} (Eq 5.3)", xlabel="epoch",
               ylabel="LSD")
        ax.legend(fontsize=7)
    axes[2].set(title="H(Y|Z_i), bits, layer mean (Sec 5.5.4)", xlabel="epoch")
    axes[2].legend(fontsize=7)
    if "kept" in results:
        kept = results["kept"]
        ks = [str(k) for k in kept["ks"]]
        rows = {"MNIST (thesis)": kept["thesis_mnist"],
                **{n: s["kept"] for n, s in kept["sets"].items()}}
        width = 0.8 / len(rows)
        for i, (name, row) in enumerate(rows.items()):
            axes[3].bar(np.arange(len(ks)) + i * width, [row[k] for k in ks], width, label=name)
        axes[3].set_xticks(np.arange(len(ks)) + 0.4 - width / 2, [f"k={k}" for k in ks])
        axes[3].set(title="kept fraction after k-filtering", ylim=(0, 1))
        axes[3].legend(fontsize=7)
    if "checkerboard" in results:
        for name, r in results["checkerboard"]["runs"].items():
            v = np.asarray(r["whole_board_accuracy_curve"])
            steps = np.arange(1, len(v) + 1) * r["steps_per_epoch"]
            line, = axes[4].plot(steps, v.mean(1), label=f"{name}: whole board")
            t = np.asarray(r["trained_set_accuracy_curve"])
            axes[4].plot(steps, t.mean(1), "--", color=line.get_color(),
                         label=f"{name}: trained set")
        axes[4].set(title="checkerboard 8x8, plain SGD", xlabel="SGD step", ylabel="accuracy")
        axes[4].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def headline(results: dict) -> dict:
    out = {}
    for loss, lsd in results.get("lsd", {}).items():
        f = lsd["final"]
        out[f"lsd_{loss}"] = {
            "lsd_final_mean": {n: f[f"lsd/{n}"]["mean"] for n in lsd["layers"]},
            "lsd_decreasing_per_seed": lsd["lsd_decreasing_over_hidden_and_head_per_seed"],
            "entropy_final_mean": {k[len("entropy/"):]: v["mean"] for k, v in f.items()
                                   if k.startswith("entropy/")},
            "test_accuracy": f["test_accuracy"]["mean"]}
    if "kept" in results:
        out["kept"] = {n: s["kept"] for n, s in results["kept"]["sets"].items()}
    if "checkerboard" in results:
        out["checkerboard"] = {n: {"trained_set": r["trained_set_accuracy"]["mean"],
                                   "whole_board": r["whole_board_accuracy"]["mean"],
                                   "fresh_board": r["fresh_board_accuracy"]["mean"]}
                               for n, r in results["checkerboard"]["runs"].items()}
    return out


def main(argv: Sequence[str]) -> None:
    import json
    from absl import app, flags, logging
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    prefix = "layer_learning_quick" if f.quick else "layer_learning"
    start = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        results = run("quick" if f.quick else "full", workdir, parts=tuple(f.parts),
                      data_dir=f.data_dir)
    results["seconds_loaded_machine"] = round(time.time() - start, 1)
    js, png = (os.path.join(f.outdir, f"{prefix}.{ext}") for ext in ("json", "png"))
    write_json(results, js, digits=5, indent=None)
    plot(results, png)
    print(json.dumps({"files": [js, png], **jsonable(headline(results), 4)}, indent=1))


def _define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("outdir", None, "Where the JSON and PNG files go.")
    flags.DEFINE_bool("quick", False, "CI size (seconds; numbers not meaningful).")
    flags.DEFINE_list("parts", list(PARTS), f"Which parts to run: {', '.join(PARTS)}.")
    flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = $NEUROJAX_DATA_DIR or "
                        "~/tensorflow_datasets).")
    flags.mark_flag_as_required("outdir")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
