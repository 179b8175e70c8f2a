"""Barlow Twins pretraining on the procedural shapes (offline), probed with kNN and ridge.

Run:
    python -m launch.run --config configs/ssl_shapes.py:small --workdir /tmp/ssl_shapes_small
    python -m launch.run --config configs/ssl_shapes.py --workdir /tmp/ssl_shapes

The CPU-scale image task of the SSL and alpha-ReQ experiments (issue 9):
raw pixels and a random encoder sit near chance on it (12.9% / 21.5% on
``shapes_small``; see the README's dataset table), so what a representation
learns shows up in the probes. Encoder: the small CNN (32, 64, 128) with
BatchNorm and without its dense layers (flattened conv features); projector
``Linear -> BN -> ReLU -> Linear`` of width 256 with beta = 5.12 / 256; the
paper's CIFAR augmentation recipe with the crop scale raised from
(0.08, 1) to (0.2, 1) (an 8% crop of a 16 x 16 image is ~4 x 4 pixels and
often misses the shape; STL-10's recipe uses 0.2 too); 2 views; Adam 1e-3,
weight decay 1e-6, batch 256. Measured on 2 loaded CPU cores after 4
epochs (ridge / kNN probe on the encoder features): BN and crop 0.2 gave
26.5% / 17.4%, BN with crop 0.08 24.8% / 16.4%, crop 0.2 without BN
25.7% / 15.8% (a random encoder: 21.5% ridge).

- ``:small`` (``shapes_small``, 16x16, 10,000 images) for 30 epochs,
  ~15-25 min on 2 CPU cores (one epoch took 25-60 s depending on load).
  Measured with ``--config.train.num_epochs=6`` (2-6 min): 24.9% ridge /
  15.0% kNN probe accuracy on the test set (random encoder: 21.5% ridge);
  the encoder learns slowly at this scale.
- default (``shapes``, 32x32, 50,000 images), 100 epochs as in the paper:
  sized for a GPU.
- ``:runlocal`` runs 4 steps with every evaluation path (CI, seconds).

Sweep fields from the command line, e.g. ``--config.views.num_views=4
--config.dataset.fraction=0.5`` (the paper's E3) or
``--config.projector.output_dim=64`` (beta follows as 5.12 / 64).
"""
import ml_collections

from configs._ssl_common import shrink_for_ci, ssl_config

_ARGS = ("", "small", "runlocal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in _ARGS:
        raise ValueError(f"config argument must be one of {list(_ARGS)}, got {arg!r}")
    small = arg in ("small", "runlocal")
    config = ssl_config(dataset="shapes_small" if small else "shapes", encoder="small_cnn",
                        widths=(32, 64, 128), hidden=None, batch_norm=True,
                        pdim=256, num_views=2,
                        batch_size=256, epochs=30 if small else 100,
                        eval_every_epochs=5 if small else 10,
                        train_examples=10_000 if small else 50_000)
    config.views.augment.crop_scale = (0.2, 1.0)
    config.probe.accuracy_thresholds = (0.3, 0.4, 0.5)
    if arg == "runlocal":
        shrink_for_ci(config)
    return config
