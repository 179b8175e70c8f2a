"""The MNIST part of the chapter-7 driver (Oland 2024, Efficient Deep Learning,
Sec 7.9, Tables 7.2 and 7.3): ``python -m neurojax.analysis.platonic --outdir
DIR --parts mnist --config configs/platonic_mnist.py``.

Reads the ``config.platonic`` block of ``configs/platonic_mnist.py`` (and the
config's model, optimiser and batch size for the backprop baseline) and runs

* Table 7.2: one hidden ReLU layer by ELM / random P / Platonic PCA / Sorted
  PCA over widths (``platonic.digits_single`` with the block's settings);
* Table 7.3: fully deterministic PP nets, each with its own L2
  (``platonic.deterministic_row``);
* the backprop baseline (``platonic.train_backprop``).

Needs the prepared TFDS 'mnist'; without it :func:`mnist` raises
``DatasetNotPreparedError`` with the command that prepares it.
"""
from __future__ import annotations

from typing import Any, Optional

from neurojax.analysis import platonic as pa
from neurojax.analysis.platonic_tasks import digits_task
from neurojax.data import DatasetNotPreparedError

REQUIRED = {"single": ("widths", "methods", "trials", "ridge", "alpha", "beta_random",
                       "beta_deterministic"),
            "deep": ("models", "alpha", "beta", "ema")}


def check_block(config: Any) -> Any:
    """``config.platonic``, with every field :func:`mnist` reads present
    (ValueError naming the first missing one)."""
    if "platonic" not in config:
        raise ValueError("config.platonic is missing (see configs/platonic_mnist.py)")
    p = config.platonic
    for field in ("max_train_examples", "backprop_epochs", "single", "deep"):
        if field not in p:
            raise ValueError(f"config.platonic.{field} is missing")
    for block, fields in REQUIRED.items():
        for field in fields:
            if field not in p[block]:
                raise ValueError(f"config.platonic.{block}.{field} is missing")
    for i, model in enumerate(p.deep.models):
        if len(model) != 2 or not all(isinstance(w, int) and w > 0 for w in model[0]):
            raise ValueError(f"config.platonic.deep.models[{i}] must be ((widths...), l2), "
                             f"got {model!r}")
    return p


def mnist(config: Any, data_dir: Optional[str] = None) -> dict:
    """Tables 7.2 and 7.3 and the backprop baseline on ``config.dataset.name``
    ('mnist'), from ``data_dir`` (else ``config.dataset.data_dir``, else the
    library's default)."""
    p = check_block(config)
    name = config.dataset.name
    data_dir = data_dir or config.dataset.get("data_dir") or None
    try:
        task = digits_task(data_dir, name=name,
                           max_train_examples=p.max_train_examples or None)
    except DatasetNotPreparedError as err:
        raise DatasetNotPreparedError(
            f"the platonic mnist part needs the prepared TFDS {name!r}: {err}") from err
    s = p.single
    single = pa.digits_single(
        {"digits_widths": tuple(s.widths), "digits_trials": s.trials, "digits_ridge": s.ridge},
        task, methods=tuple(s.methods), alpha=s.alpha, beta_random=s.beta_random,
        beta_deterministic=s.beta_deterministic)
    deep = [pa.deterministic_row(task, tuple(widths), beta=p.deep.beta, ridge=l2,
                                 ema=p.deep.ema, alpha=p.deep.alpha)
            for widths, l2 in p.deep.models]
    backprop = pa.train_backprop(task, tuple(config.model.widths),
                                 config.model.get("activation", "relu"), num_classes=10,
                                 epochs=p.backprop_epochs, batch_size=config.dataset.batch_size,
                                 optim=config.optim.to_dict())
    return {"dataset": name, "num_train": int(task["x"].shape[0]),
            "num_test": int(task["x_test"].shape[0]), "single": single, "deep": deep,
            "backprop": backprop}
