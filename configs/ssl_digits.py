"""Barlow Twins on scikit-learn's bundled 8x8 digits: the fastest SSL run (offline).

Run:
    python -m launch.run --config configs/ssl_digits.py --workdir /tmp/ssl_digits

An MLP encoder (256, 256) with a 64-wide projector (beta = 5.12 / 64), two
views from a digit-safe recipe (random resized crop with scale 0.6-1,
brightness and contrast jitter, no flip, no hue or saturation: the images
are one-channel and mirrored digits change meaning), Adam 1e-3, batch 256,
100 epochs (500 steps). Measured on 2 shared CPU cores (jax 0.10.2; the
final eval record and the command in ``benchmarks/results/ssl_digits.json``):
53 s wall including compilation, 97.2% ridge / 96.7% kNN probe accuracy on
the 360 test digits, alpha 1.61. The digits are easy (a linear probe on
raw pixels reaches 96.7%), so this run checks the machinery, not the
paper's trends: those use ``configs/ssl_shapes.py``.
``:runlocal`` runs 4 steps with every evaluation path (CI, seconds).
"""
import ml_collections

from configs._ssl_common import shrink_for_ci, ssl_config

_ARGS = ("", "runlocal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in _ARGS:
        raise ValueError(f"config argument must be one of {list(_ARGS)}, got {arg!r}")
    config = ssl_config(dataset="digits", encoder="mlp", widths=(256, 256), pdim=64,
                        num_views=2, batch_size=256, epochs=100, eval_every_epochs=20,
                        train_examples=1437)
    config.dataset.eval_batch_size = 360
    config.views.augment = ml_collections.ConfigDict(dict(
        crop_scale=(0.6, 1.0), flip_p=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0,
        mean=(0.5,), std=(0.5,)))
    config.probe.knn_k = 20
    config.probe.accuracy_thresholds = (0.9, 0.95)
    if arg == "runlocal":
        shrink_for_ci(config)
        config.probe.knn_k = 10
    return config
