"""The paper's STL-10 pretraining, with the SwAV-like multi-crop variants (E6).

Run (STL-10 must be prepared: ``tfds build stl10
--data_dir=$NEUROJAX_DATA_DIR --file_format=array_record``):
    python -m launch.run --config configs/ssl_stl10.py --workdir /tmp/bt_stl10
    python -m launch.run --config configs/ssl_stl10.py:multicrop4 --workdir /tmp/bt_stl10_mc4

Pretrains on the 100,000 unlabelled images, probes on the labelled train
split (5,000) and tests on the test split (8,000). ResNet-50 encoder (CIFAR
stem: the views are 64 x 64, which a 7x7/2 stem plus max-pool would shrink
to 16 x 16; the paper's code does not say which stem it used for STL-10),
the paper's STL-10 recipe (crop scale 0.2-1, grayscale p = 0.1) at 64 x 64,
pdim 256, Barlow Twins with beta = 5.12 / pdim, Adam 1e-3, weight decay
1e-6, batch 256, 100 epochs. Sized for one GPU.

- ``:multicrop4``: two 64 x 64 views plus two 32 x 32 views (E6, "4 augs");
- ``:multicrop8``: two 64 x 64 plus six 32 x 32 ("8 augs");
- ``:runlocal``: 4 steps on ResNet-18 (still needs STL-10).
"""
import ml_collections

from configs._ssl_common import shrink_for_ci, ssl_config

_ARGS = ("", "multicrop4", "multicrop8", "runlocal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in _ARGS:
        raise ValueError(f"config argument must be one of {list(_ARGS)}, got {arg!r}")
    encoder = "resnet18" if arg == "runlocal" else "resnet50"
    config = ssl_config(dataset="stl10", encoder=encoder, stem="cifar", pdim=256,
                        num_views=2, batch_size=256, epochs=100, eval_every_epochs=10,
                        train_examples=100_000)
    config.dataset.train_split = "unlabelled"
    config.views.recipe = "stl10"
    config.views.size = 64
    if arg.startswith("multicrop"):
        config.views.small_views = 2 if arg == "multicrop4" else 6
        config.views.small_size = 32
    config.probe.accuracy_thresholds = (0.6, 0.7, 0.8)
    if arg == "runlocal":
        shrink_for_ci(config)
    return config
