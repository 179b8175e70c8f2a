"""Pruning at initialisation (Tanaka et al. 2020, SynFlow): a small VGG on the
procedural shapes (CPU), and the paper's VGG-16 / CIFAR-10 row (GPU).

Run:
    python -m launch.run --config configs/pruning_shapes.py:synflow --workdir /tmp/pruning_shapes

The argument is a comma list: the method (``synflow`` (default), ``snip``,
``grasp``, ``magnitude``, ``random``), optionally ``vgg16_cifar10`` (the GPU
row) and/or ``runlocal``. The compression (``prunable / kept``, default 100)
and everything else is overridable: ``--config.prune.compression=1000``.
``config.prune`` makes the supervised task prune the initial parameters
(``neurojax.train.pruning.pruning_masks``: SynFlow 100 iterations in float64
on an all-ones input with BatchNorm in evaluation mode; SNIP / GraSP one
round on 10 examples per class; global exact top-k over the conv and dense
kernels) and follows the optimiser with ``mask_updates`` (pruned weights get
no update and stay exactly zero).

Default (CPU): VGG-11 with BatchNorm at 1/8 width (144,856 prunable weights)
on ``shapes_small`` (16x16 RGB, 10,000 / 2,000), Adam 2e-3 cosine, batch 64,
20 epochs (3,120 steps), one step per call (CPU convolutions run slowly
inside scans). Sized for 2 CPU cores; its time and accuracy are not measured
with this config (the analysis ``python -m neurojax.analysis.dynamics
--outdir DIR --parts pruning`` trains the same model for only 1,000 steps per
method and compression over 3 seeds, where the dense net reaches 38.7%: see
its JSON).

``vgg16_cifar10`` (GPU; not run here): the paper's setting for its Fig. 6
row (VGG-16 with BN: 93.5 dense; at 100x / 1000x SynFlow 90.1 / 80.4, SNIP
89.1 / 76.3, GraSP 87.5 / 70.9, magnitude 89.8 / 10.0, random 79.1 / 10.0):
160 epochs, batch 128, SGD with Nesterov momentum 0.9 (the code's
``momentum`` optimizer), learning rate 0.1 divided by 10 at epochs 60 and
120, weight decay 1e-4, SynFlow 100 iterations, SNIP / GraSP on 10 examples
per class, biases and BatchNorm not pruned: checked against the authors'
published run arguments (ganguli-lab/Synaptic-Flow,
``Results/data/0520_2020_cifar100_lottery_vgg16_bn/args.json``, the VGG-16-BN
row's CIFAR-100 twin, and ``Utils/load.py``, where ``momentum`` is SGD with
Nesterov momentum 0.9). Deviations: no random-crop /
flip augmentation and no per-channel normalisation (the supervised task has
neither), and this library's VGG ends with a fifth max-pool and global
average pooling where the paper's drops the last pool and average-pools the
2x2 map; the classifier is one dense layer in both. One seed per run; set
``config.train.num_replicas`` for several in one program. Expected time on
one modern GPU: roughly an hour per run (about 63k steps); not measured.
The dataset must be prepared first:
``tfds build cifar10 --data_dir=$NEUROJAX_DATA_DIR --file_format=array_record``.

``:runlocal`` (CI): the default's model at 1/16 width on the offline digits
(8x8, padded by SAME convolutions) with 5 SynFlow rounds and 4 training
steps (36 s on 2 loaded cores, 25 s of it compilation; numbers not meaningful).
"""
import ml_collections

METHODS = ("synflow", "snip", "grasp", "magnitude", "random")
VARIANTS = ("vgg16_cifar10", "runlocal")


def parse_arg(arg: str | None) -> tuple[str, bool, bool]:
    """``'synflow,vgg16_cifar10'`` -> ``(method, gpu_row, runlocal)``."""
    items = [s.strip() for s in (arg or "").split(",") if s.strip()]
    methods = [s for s in items if s in METHODS]
    unknown = [s for s in items if s not in METHODS + VARIANTS]
    if unknown or len(methods) > 1:
        raise ValueError(f"config argument must be a comma list of at most one method of "
                         f"{METHODS} and the variants {VARIANTS}, got {arg!r}")
    return (methods[0] if methods else "synflow"), "vgg16_cifar10" in items, \
        "runlocal" in items


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    method, gpu, runlocal = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "cifar10" if gpu else "shapes_small"
    config.dataset.data_dir = ""  # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    config.dataset.batch_size = 128 if gpu else 64
    config.dataset.eval_batch_size = 1000

    config.model = ml_collections.ConfigDict()
    config.model.name = "vgg16" if gpu else "vgg11"
    config.model.use_batchnorm = True
    config.model.width_factor = 1.0 if gpu else 1 / 8
    config.model.dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.0

    config.optim = ml_collections.ConfigDict()
    if gpu:
        config.optim.name = "sgd"
        config.optim.lr = 0.1
        config.optim.momentum = 0.9
        config.optim.nesterov = True
        config.optim.weight_decay = 1e-4
        config.optim.schedule = "step"
        config.optim.decay_at = (60 / 160, 120 / 160)
    else:
        config.optim.name = "adam"
        config.optim.lr = 2e-3
        config.optim.schedule = "cosine"
        config.optim.weight_decay = 0.0
    config.optim.warmup_steps = 0
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = ()

    config.prune = ml_collections.ConfigDict()
    config.prune.method = method
    config.prune.compression = 100.0
    config.prune.iterations = 100 if method == "synflow" else 1
    config.prune.schedule = "exponential"
    config.prune.prunable = r"(^|/)kernel$"  # conv and dense kernels; not biases or BN
    config.prune.examples_per_class = 10  # SNIP / GraSP data (the paper's ratio 10)

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 10 if gpu else 1  # CPU: convolutions outside scans
    config.train.num_replicas = 1
    config.train.num_steps = 0
    config.train.num_epochs = 160 if gpu else 20
    steps_per_epoch = 50_000 // 128 if gpu else 10_000 // 64
    config.train.log_every = 50
    config.train.eval_every = 10 * steps_per_epoch
    config.train.checkpoint_every = 10 * steps_per_epoch
    config.train.keep_checkpoints = 2

    if runlocal:
        config.dataset.name = "digits"
        config.dataset.batch_size = 32
        config.dataset.eval_batch_size = 360
        config.model.width_factor = 1 / 16
        config.prune.iterations = 5 if method == "synflow" else 1
        config.train.steps_per_call = 1
        config.train.num_epochs = 0
        config.train.num_steps = 4
        config.train.log_every = 2
        config.train.eval_every = 0
        config.train.checkpoint_every = 0
    return config
