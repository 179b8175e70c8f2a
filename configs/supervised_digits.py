"""Quickstart: an MLP on scikit-learn's bundled 8x8 digits (offline).

Run:
    python -m launch.run --config configs/supervised_digits.py --workdir /tmp/digits

Sized for 2 CPU cores: about 20-40 s including compilation and preparing the
dataset on first use, and >= 95% test accuracy (measured: see the README).
``--config configs/supervised_digits.py:runlocal`` shrinks it for CI (a few
seconds, accuracy not meaningful). Any field can be overridden, e.g.
``--config.optim.lr=0.003 --config.model.name=small_cnn``.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    # the training split on the device when it fits the budget: "auto", "on", "off"
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "digits"
    config.dataset.data_dir = ""  # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    config.dataset.batch_size = 64
    config.dataset.eval_batch_size = 360

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.widths = (256, 256)
    # compute dtype: "float32", "bfloat16" or "float16" (parameters, BatchNorm
    # statistics, losses and metrics stay float32)
    config.model.dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.0

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"
    config.optim.lr = 1e-3
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = ()

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 220  # steps per compiled call (a lax.scan)
    config.train.num_replicas = 1  # seeds seed, seed + 1, ... as one vmapped program
    config.train.num_steps = 0
    config.train.num_epochs = 40
    config.train.log_every = 22
    config.train.eval_every = 220
    config.train.checkpoint_every = 220
    config.train.keep_checkpoints = 2
    # alpha-ReQ and effective rank of these layers (neurojax.models.layer_names;
    # "" = the output) on 360 held-out images every k steps (0 = off)
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 360

    if arg == "runlocal":
        config.train.num_epochs = 2
        config.train.eval_every = 0
    elif arg not in (None, ""):
        raise ValueError(f"config argument must be '' or 'runlocal', got {arg!r}")
    return config
