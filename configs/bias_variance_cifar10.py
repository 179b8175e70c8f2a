"""Fig. 1 of Ghosh et al. (ICLR 2023) at full size: VGG-16 on CIFAR-10, one grid cell per run.

Full-batch gradient descent with a bias and a noise relative to the gradient
norm. The argument picks the cell: bias per parameter (``PAPER_BIASES``),
noise-norm ratio (``PAPER_NOISES``) and seed (``PAPER_SEEDS``); no argument
is the clean cell ``bias=0,noise=0,seed=0``. CIFAR-10 must be prepared first
(``tfds build cifar10 --data_dir=$NEUROJAX_DATA_DIR --file_format=array_record``):

    python -m launch.run --config configs/bias_variance_cifar10.py:bias=1e-5,noise=0.1,seed=1 \\
        --workdir runs/bv_cifar10/b1e-5_n0.1_s1

The whole grid is 9 x 9 x 3 = 243 runs; ``cell_args()`` lists their
arguments (e.g. one per SLURM array task:
``python -c "from configs.bias_variance_cifar10 import cell_args; print(cell_args()[$SLURM_ARRAY_TASK_ID])"``).
Then draw the train/test accuracy heatmaps from the finished workdirs:

    python -m neurojax.analysis.bias_variance --figure fig1_collect \\
        --workdirs 'runs/bv_cifar10/*' --outdir benchmarks/results

The recipe (Ghosh et al., ICLR 2023, App. B.1 (thesis Part IV), and the
paper's code, github.com/linclab/approximateGradients): SGD lr 0.02, momentum 0.9, no weight decay, no schedule, 50 epochs
of one optimiser step each (the gradient of the mean loss over all 50,000
training images), cross-entropy with label smoothing 0.1;
``inject_gradient_bias(b, relative=True)`` (every parameter biased by
``b ||g||``) then ``inject_gradient_noise(sigma, relative=True,
zero_sum_set=50)`` (noise norm ``sigma ||g||``, one draw per step, the last
step's draw minus the sum of the others, as the paper's code) in front of
the optimiser. Training accuracy is the last step's full-batch accuracy
(logged every step, before that step's update), test accuracy the final
evaluation on the 10,000 test images.

Hardware: not run yet (no GPU was available). As in the paper (one
RTX8000, ~10 min per run), the full-batch gradient is accumulated over
batches of 5,000 images: ``optim.accumulate_steps = 10`` (``optax.MultiSteps``
in ``make_optimizer``) averages the 10 batch gradients of an epoch and applies
bias, noise and SGD once per epoch, so 50 epochs are 500 training steps and
50 updates. Parameters do not change within an epoch, so each train record
(``log_every = 10``, the mean over the epoch's 10 batches) is the full-batch
loss and accuracy before that epoch's update. Activations of a 5,000-image
VGG-16 batch in float32 are ~20 GB (XLA's memory analysis compiled for CPU,
~4 MB per image): one 40-80 GB GPU, or the batch sharded over the devices of
the 'data' mesh.

Deviations from the paper: random initialisation (the paper fine-tunes an
ImageNet-pretrained torchvision VGG-16; nothing is downloaded here); the
CIFAR VGG-16 without BatchNorm, with global pooling and the 4096-4096
classifier (33.6M parameters; torchvision's replicates the 1x1 map to 7x7,
138M), so the same per-parameter bias ``b`` is a 2x smaller bias-vector
norm relative to ``||g||`` (``b ||g|| sqrt(N)``); no dropout; float32 (the
paper uses fp16 autocast).

``:runlocal`` (may be combined with a cell, e.g. ``:runlocal,bias=1e-3,noise=1``)
keeps the model family and the optimiser chain but shrinks everything for
CPU/CI: VGG-16 at 1/16 width (classifier 32-32) on the offline digits, the
full batch of 1,437 images accumulated over 3 batches of 479, 3 epochs.
"""
import math

import ml_collections

from configs.bias_variance_digits import PAPER_BIASES, PAPER_NOISES

PAPER_SEEDS = (0, 1, 2)
_KEYS = ("bias", "noise", "seed")


def cell_args(runlocal: bool = False) -> list[str]:
    """The config argument of every cell of the paper's grid (243 strings)."""
    prefix = "runlocal," if runlocal else ""
    return [f"{prefix}bias={b:g},noise={n:g},seed={s}"
            for b in PAPER_BIASES for n in PAPER_NOISES for s in PAPER_SEEDS]


def parse_arg(arg: str | None) -> tuple[dict, bool]:
    """``'bias=1e-5,noise=0.1,seed=1'`` (any subset, any order, plus an optional
    ``runlocal``) -> ``({'bias', 'noise', 'seed'}, runlocal)``; missing keys are 0."""
    cell = {"bias": 0.0, "noise": 0.0, "seed": 0}
    runlocal = False
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item == "runlocal":
            runlocal = True
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in _KEYS:
            raise ValueError(f"config argument must be 'runlocal' or comma-separated "
                             f"{'/'.join(_KEYS)}=value items (e.g. 'bias=1e-5,noise=0.1,"
                             f"seed=1'), got {item!r} in {arg!r}")
        try:
            cell[key] = int(value) if key == "seed" else float(value)
        except ValueError:
            raise ValueError(f"config argument {key} must be a number, got {value!r}") from None
    for key, allowed in (("bias", PAPER_BIASES), ("noise", PAPER_NOISES)):
        match = [v for v in allowed if math.isclose(v, cell[key], rel_tol=1e-9, abs_tol=0.0)]
        if not match:
            raise ValueError(f"config argument {key} must be one of the paper's grid "
                             f"{allowed}, got {cell[key]!r}")
        cell[key] = match[0]
    if cell["seed"] not in PAPER_SEEDS:
        raise ValueError(f"config argument seed must be one of {PAPER_SEEDS}, "
                         f"got {cell['seed']!r}")
    return cell, runlocal


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    cell, runlocal = parse_arg(arg)
    num_epochs = 3 if runlocal else 50

    config = ml_collections.ConfigDict()
    config.seed = cell["seed"]
    # the cell, for bookkeeping (the collector reads what ran from optim.transforms)
    config.grid_cell = ml_collections.ConfigDict(cell)

    config.dataset = ml_collections.ConfigDict()
    # the training split on the device when it fits the budget: "auto", "on", "off"
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "digits" if runlocal else "cifar10"
    config.dataset.data_dir = ""  # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    # the full batch (1,437 / 50,000 training images) as 3 / 10 accumulated batches
    accumulate = 3 if runlocal else 10
    config.dataset.batch_size = 479 if runlocal else 5_000
    config.dataset.eval_batch_size = 360 if runlocal else 10_000

    config.model = ml_collections.ConfigDict()
    config.model.name = "vgg16"
    config.model.use_batchnorm = False
    config.model.width_factor = 1 / 16 if runlocal else 1.0
    config.model.classifier_widths = (32, 32) if runlocal else (4096, 4096)
    # compute dtype: "float32", "bfloat16" or "float16" (parameters, BatchNorm
    # statistics, losses and metrics stay float32)
    config.model.dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.1

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = 0.02
    config.optim.momentum = 0.9
    config.optim.schedule = "constant"
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0
    config.optim.accumulate_steps = accumulate  # one update per epoch
    config.optim.transforms = (
        ("inject_gradient_bias", {"b": cell["bias"], "relative": True}),
        ("inject_gradient_noise", {"sigma": cell["noise"], "seed": 1000 + cell["seed"],
                                   "relative": True, "zero_sum_set": num_epochs}),
    )

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 1  # steps per compiled call (a lax.scan)
    config.train.num_replicas = 1  # seeds seed, seed + 1, ... as one vmapped program
    config.train.num_steps = 0
    config.train.num_epochs = num_epochs  # one update per epoch (full batch)
    config.train.log_every = accumulate  # each epoch's full-batch loss and accuracy
    config.train.eval_every = 0 if runlocal else 10 * accumulate
    config.train.checkpoint_every = 0 if runlocal else 10 * accumulate
    config.train.keep_checkpoints = 1
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 1000

    # the grid this config is one cell of
    config.sweep = ml_collections.ConfigDict()
    config.sweep.biases = PAPER_BIASES
    config.sweep.noises = PAPER_NOISES
    config.sweep.seeds = len(PAPER_SEEDS)
    return config
