"""Tasks and scores of the chapter-7 driver (``neurojax.analysis.platonic``;
Oland 2024, Efficient Deep Learning, ch. 7): the sine, two spirals,
checkerboard and digits tasks as the chapter sets them up (Secs 7.5-7.9), the
spread of a score over seeds, the accuracies, and the fitted network's forward
pass through ``neurojax.models.MLP``."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.data import synthetic


# ----------------------------------------------------------------- statistics

def spread(values: Sequence[float]) -> dict:
    """Mean, std (ddof 0), median, min and max of the finite values, and how
    many values were not finite (a failed fit)."""
    v = np.asarray(values, np.float64)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return {"n": int(v.size), "failed": int(v.size)}
    return {"n": int(v.size), "failed": int(v.size - ok.size), "mean": float(ok.mean()),
            "std": float(ok.std()), "median": float(np.median(ok)), "min": float(ok.min()),
            "max": float(ok.max())}


def binary_accuracy(outputs: jax.Array, labels: jax.Array) -> float:
    """Fraction of sign(outputs[:, 0]) == 2 labels - 1 (labels in {0, 1}); NaN
    outputs count as wrong."""
    return float(jnp.mean((outputs[:, 0] > 0) == (labels == 1)))


def class_accuracy(outputs: jax.Array, labels: jax.Array) -> float:
    return float(jnp.mean(jnp.argmax(outputs, axis=1) == labels))


def forward(params: dict, x: jax.Array, widths: Sequence[int], activation: str) -> jax.Array:
    """The fitted network through ``neurojax.models.MLP`` (the fit's params are its tree)."""
    from neurojax.models import MLP
    num_outputs = params["head"]["kernel"].shape[1]
    return MLP(widths=tuple(widths), num_outputs=num_outputs, activation=activation).apply(
        {"params": params}, x)


# ----------------------------------------------------------------- tasks

def sine_task(num_examples: int = 5000, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """(x [m, 1], y [m, 1]): y = sin(2 pi x), x ~ U[-1, 1), a fixed draw (key 0)."""
    d = synthetic.noisy_sinusoid(jax.random.PRNGKey(0), num_examples=num_examples, noise=0.0)
    return jnp.asarray(d["x"], dtype), jnp.asarray(d["y_clean"], dtype)


def spirals_task(turns: float, num_examples: int = 5000) -> dict:
    """Train and test draws (keys 0 and 1) of ``synthetic.two_spirals``; float32."""
    tr = synthetic.two_spirals(jax.random.PRNGKey(0), num_examples=num_examples, turns=turns)
    te = synthetic.two_spirals(jax.random.PRNGKey(1), num_examples=num_examples, turns=turns)
    return {"x": jnp.asarray(tr["x"], jnp.float32), "y": tr["y"],
            "x_test": jnp.asarray(te["x"], jnp.float32), "y_test": te["y"]}


def board_task(num_examples: int = 5000, num_tiles: int = 8) -> dict:
    """Train and test draws of the 8 x 8 ``synthetic.checkerboard``; float32."""
    tr = synthetic.checkerboard(jax.random.PRNGKey(0), num_examples=num_examples,
                                num_tiles=num_tiles)
    te = synthetic.checkerboard(jax.random.PRNGKey(1), num_examples=num_examples,
                                num_tiles=num_tiles)
    return {"x": jnp.asarray(tr["x"], jnp.float32), "y": tr["y"],
            "x_test": jnp.asarray(te["x"], jnp.float32), "y_test": te["y"]}


def digits_task(data_dir: Optional[str] = None, name: str = "digits",
                max_train_examples: Optional[int] = None) -> dict:
    """An image-classification split pair as flat float32 pixels in [0, 1]:
    the offline digits, or ``name`` (e.g. 'mnist', which must be prepared:
    ``neurojax.data.DatasetNotPreparedError`` names the command otherwise);
    ``max_train_examples`` keeps the first that many training images."""
    from neurojax.data.on_device import load_split_arrays
    tr = load_split_arrays(name, "train", data_dir=data_dir, max_examples=max_train_examples)
    te = load_split_arrays(name, "test", data_dir=data_dir)
    flat = lambda a: jnp.asarray(a["image"].reshape(len(a["label"]), -1), jnp.float32)
    return {"x": flat(tr), "y": jnp.asarray(tr["label"]), "x_test": flat(te),
            "y_test": jnp.asarray(te["label"])}


def signed(labels: jax.Array) -> jax.Array:
    """{0, 1} -> {-1, +1} as a column [m, 1]."""
    return (2.0 * labels - 1.0)[:, None]


def over_seeds(fn, seeds: Sequence[int], keys=("train_accuracy", "test_accuracy")) -> dict:
    """``fn(seed)`` for each seed (a loop: each fit is a few LAPACK calls, and
    batched LAPACK kernels can deadlock on CPU); spreads of ``keys``; a
    non-finite fit counts as failed (its accuracy NaN)."""
    runs = [fn(s) for s in seeds]
    out = {}
    for k in keys:
        out[k] = spread([r[k] if r.get("finite", True) else np.nan for r in runs])
    out["seconds"] = spread([r["seconds"] for r in runs])
    return out
