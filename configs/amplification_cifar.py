"""Table 4.2 of Oland 2024 (Efficient Deep Learning, Ch. 4): VGG-13 / VGG-19
with BatchNorm on CIFAR-10 (and CIFAR-100), softmax + cross-entropy against
exp-GA, pow3-GA and linear + squared error. GPU sized; not run yet.

The argument names the cell, ``{vgg13|vgg19}_{softmax|exp|pow3|linear}_{cifar10|cifar100}``
(no argument: ``vgg13_exp_cifar10``). The dataset must be prepared first
(``tfds build cifar10 --data_dir=$NEUROJAX_DATA_DIR --file_format=array_record``):

    python -m launch.run --config configs/amplification_cifar.py:vgg13_exp_cifar10 --workdir runs/ga/vgg13_exp_cifar10

Table 4.2 (median top-1 error of 8 trials on CIFAR-10), with the per-cell
hyperparameters used here (LR, weight decay, targets {negative, positive},
alpha, beta):

=======  ==========  =====  =====  ======  =======  =====  ===
model    pair        error  LR     WD      targets  alpha  beta
=======  ==========  =====  =====  ======  =======  =====  ===
VGG-13   softmax     5.68   0.05   5e-4    {0,1}
VGG-13   exp-GA      5.61   0.01   0.03    {0,2}    0.5
VGG-13   pow3-GA     5.55   0.1    3e-3    {0,2}    0.001  0
VGG-13   linear+MSE  5.47   0.01   0.03    {-1,1}
VGG-19   softmax     6.05   0.05   5e-4    {0,1}
VGG-19   exp-GA      5.82   0.01   0.03    {0,2}    0.5
VGG-19   pow3-GA     5.93   0.07   3e-4    {0,2}    0.001  0
VGG-19   linear+MSE  5.79   0.01   0.03    {-1,1}
=======  ==========  =====  =====  ======  =======  =====  ===

Recipe: SGD with momentum 0.9 (the momentum and batch size are not stated
in the thesis; 0.9 and 128 are the common CIFAR values), coupled weight
decay, the LR divided by 10 at epochs 150 and 225 of 300 (the thesis gives
the drops; 300 epochs is read from its figure, uncertain), the thesis's
LR / WD per cell. The CIFAR-100 cells reuse the CIFAR-10 hyperparameters
(the thesis has no VGG CIFAR-100 table: untuned). Deviation: no data
augmentation (the supervised task has none); the thesis's recipe
presumably used crops and flips, so expect higher errors than the table.
Set ``config.train.num_replicas`` for several seeds in one program (the
thesis: 8 trials). Hardware: one GPU; about 8 M (VGG-13) / 20 M (VGG-19)
parameters, 300 epochs of 390 steps; not measured here (no GPU run yet).

``:runlocal`` (alone, or after a cell: ``:vgg19_pow3_cifar10,runlocal``)
keeps the cell's loss and optimiser chain but trains the VGG at 1/16 width
on the offline digits for 8 steps (CI; numbers not meaningful).
"""
import ml_collections

MODELS = ("vgg13", "vgg19")
PAIRS = ("softmax", "exp", "pow3", "linear")
DATASETS = ("cifar10", "cifar100")
# (lr, weight decay) per (model, pair): Table 4.2
HYPER = {
    ("vgg13", "softmax"): (0.05, 0.0005), ("vgg13", "exp"): (0.01, 0.03),
    ("vgg13", "pow3"): (0.1, 0.003), ("vgg13", "linear"): (0.01, 0.03),
    ("vgg19", "softmax"): (0.05, 0.0005), ("vgg19", "exp"): (0.01, 0.03),
    ("vgg19", "pow3"): (0.07, 0.0003), ("vgg19", "linear"): (0.01, 0.03),
}
LOSSES = {
    "softmax": {"name": "softmax_cross_entropy", "label_smoothing": 0.0},
    "exp": {"name": "sparse_cross_entropy", "alpha": 0.5, "targets": (0.0, 2.0)},
    "pow3": {"name": "negative_correlation", "alpha": 0.001, "beta": 0.0,
             "targets": (0.0, 2.0)},
    "linear": {"name": "label_mean_squared_error", "output": "linear", "targets": (-1.0, 1.0)},
}
EPOCHS = 300
DECAY_EPOCHS = (150, 225)


def cells() -> list[str]:
    """Every cell's argument (16: 2 models x 4 pairs x 2 datasets)."""
    return [f"{m}_{p}_{d}" for d in DATASETS for m in MODELS for p in PAIRS]


def parse_arg(arg: str | None) -> tuple[str, str, str, bool]:
    """``'vgg13_exp_cifar10'`` or ``'vgg13_exp_cifar10,runlocal'`` or
    ``'runlocal'`` -> ``(model, pair, dataset, runlocal)``."""
    items = [s.strip() for s in (arg or "").split(",") if s.strip()]
    runlocal = "runlocal" in items
    items = [s for s in items if s != "runlocal"]
    if len(items) > 1:
        raise ValueError(f"config argument must be one cell and/or 'runlocal', got {arg!r}")
    cell = items[0] if items else "vgg13_exp_cifar10"
    parts = cell.split("_")
    if len(parts) != 3 or parts[0] not in MODELS or parts[1] not in PAIRS \
            or parts[2] not in DATASETS:
        raise ValueError(f"config argument must be {{{'|'.join(MODELS)}}}_{{{'|'.join(PAIRS)}}}_"
                         f"{{{'|'.join(DATASETS)}}} (e.g. 'vgg13_exp_cifar10'), optionally with "
                         f"',runlocal'; got {arg!r}")
    return parts[0], parts[1], parts[2], runlocal


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    model, pair, dataset, runlocal = parse_arg(arg)
    lr, wd = HYPER[model, pair]
    batch = 128
    steps_per_epoch = 50_000 // batch
    epochs = 0 if runlocal else EPOCHS

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.cell = f"{model}_{pair}_{dataset}"

    config.dataset = ml_collections.ConfigDict()
    # the training split on the device when it fits the budget: "auto", "on", "off"
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "digits" if runlocal else dataset
    config.dataset.data_dir = ""  # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    config.dataset.batch_size = 64 if runlocal else batch
    config.dataset.eval_batch_size = 360 if runlocal else 1000

    config.model = ml_collections.ConfigDict()
    config.model.name = model
    config.model.use_batchnorm = True
    config.model.width_factor = 1 / 16 if runlocal else 1.0
    config.model.dtype = "float32"

    config.loss = ml_collections.ConfigDict(LOSSES[pair])

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = lr
    config.optim.momentum = 0.9
    config.optim.schedule = "step"
    config.optim.decay_at = tuple(e / EPOCHS for e in DECAY_EPOCHS)   # epochs 150, 225
    config.optim.warmup_steps = 0
    config.optim.weight_decay = wd
    config.optim.grad_clip_norm = 0.0
    # per-layer gradient RMS (Fig. 4.3) in metrics.jsonl as grad_rms/<layer>/<param>
    config.optim.transforms = (("record_gradient_rms", {}),)

    config.train = ml_collections.ConfigDict()
    # steps per compiled call (a lax.scan); one on CPU, where XLA runs
    # convolutions inside a scan far slower (neurojax.train.program)
    config.train.steps_per_call = 1 if runlocal else 50
    config.train.num_replicas = 1  # seeds seed, seed + 1, ... as one vmapped program
    config.train.num_steps = 8 if runlocal else 0
    config.train.num_epochs = epochs
    config.train.log_every = 4 if runlocal else 50
    config.train.eval_every = 0 if runlocal else 5 * steps_per_epoch
    config.train.checkpoint_every = 0 if runlocal else 5 * steps_per_epoch
    config.train.keep_checkpoints = 2
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 1000
    return config
