"""The paper's CIFAR-10 pretraining (Ghosh et al. 2024, Table 4a; thesis Part III, App. D).

Run (CIFAR-10 must be prepared first: ``tfds build cifar10
--data_dir=$NEUROJAX_DATA_DIR --file_format=array_record``):
    python -m launch.run --config configs/ssl_cifar10.py --workdir /tmp/bt_cifar10
    python -m launch.run --config configs/ssl_cifar10.py:resnet18 --workdir /tmp/bt_cifar10_r18

ResNet-50 (CIFAR stem) encoder, projector of width pdim = 256 with beta =
5.12 / pdim, Barlow Twins through the Eq. 10 multi-view loss, Adam 1e-3,
weight decay 1e-6, batch 256, 100 epochs, kNN and ridge probes every 10
epochs (add ``--config.probe.probes='("knn","ridge","linear")'`` for the
paper's trained probe: Adam 1e-3, batch 512, 200 epochs). Sized for one
GPU; the paper reports ~83% (pdim 256, optimal beta) after 100 epochs on an
RTX8000 in about 60-100 min.

The paper's experiments are field overrides:
- E1 projector dimension: ``--config.projector.output_dim=64`` (beta follows
  as 5.12 / 64; ``--config.loss.lambd=0.0004`` for the "fixed beta").
- E2 views: ``--config.views.num_views=4`` (or 8).
- E3 data fraction: ``--config.views.num_views=4 --config.dataset.fraction=0.5``.
- VICReg: ``--config.loss.name=vicreg_multiview`` with ``--config.loss.inv``,
  ``var``, ``cov`` (the lazy ``lambd`` field must then be removed: use the
  ``:vicreg`` argument instead).
``:runlocal`` shrinks it to 4 steps on ResNet-18 (still needs CIFAR-10).
"""
import ml_collections

from configs._ssl_common import shrink_for_ci, ssl_config

_ARGS = ("", "resnet18", "vicreg", "runlocal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in _ARGS:
        raise ValueError(f"config argument must be one of {list(_ARGS)}, got {arg!r}")
    encoder = "resnet18" if arg in ("resnet18", "runlocal") else "resnet50"
    config = ssl_config(dataset="cifar10", encoder=encoder, stem="cifar", pdim=256,
                        num_views=2, batch_size=256, epochs=100, eval_every_epochs=10,
                        train_examples=50_000)
    config.probe.accuracy_thresholds = (0.7, 0.8)
    if arg == "vicreg":
        vicreg_loss(config)
    if arg == "runlocal":
        shrink_for_ci(config)
    return config


def vicreg_loss(config: ml_collections.ConfigDict) -> None:
    """VICReg as FastSSL runs it at pdim 256: cov = 1, inv = var = 1 / beta
    with beta = 10.24 / pdim (``neurojax.models.projector.beta_for_dim``)."""
    inv = config.projector.output_dim / 10.24
    config.loss = ml_collections.ConfigDict(
        {"name": "vicreg_multiview", "inv": inv, "var": inv, "cov": 1.0})
