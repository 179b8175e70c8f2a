"""Learning rules without weight transport: biotorch's CIFAR-10 ResNet-20 row (GPU).

Run (CIFAR-10 prepared first: ``tfds build cifar10 --data_dir=$NEUROJAX_DATA_DIR
--file_format=array_record``):
    python -m launch.run --config configs/credit_cifar10.py:feedback_alignment --workdir runs/credit_cifar10/fa

The argument names the rule as for ``configs/credit_digits.py``
(``'<rule>,runlocal'``; default feedback_alignment). The recipe is
biotorch's (Sanfiz & Akrout 2021, "Benchmarking the accuracy and robustness
of feedback alignment algorithms", github.com/jsalbert/biotorch,
``benchmark_configs/cifar10/resnet_20/sgd/*.yaml``): 250 epochs, batch 128,
SGD lr 0.1, momentum 0.9, L2 1e-4, lr x0.1 at epochs 100, 150 and 200.
Their top-1 errors (backprop 8.63, FA 32.16, uSF 10.05, brSF 11.02,
frSF 11.2) are the anchors this row is compared with.

Differences from biotorch, stated: ResNet-20 is not a registered model; the
closest is ``resnet`` with ``stage_sizes=(3, 3, 3)``, ``width=0.25`` (16, 32
and 64 channels) and the CIFAR stem: He et al.'s 20 weighted layers, but
with 1x1-projection shortcuts (option B) where He et al.'s CIFAR ResNets
pad with zeros (option A). Initialisation is LeCun-normal for W and B
(biotorch: Xavier). biotorch's ``cifar10_benchmark`` data trains on 45,000
images (5,000 held out for validation) where this trains on all 50,000.
Augmentation (``config.augment``) is biotorch's: random horizontal flip and
``RandomCrop(32, padding=4)`` (zero padding; ``AugmentRecipe.crop_padding``),
normalised by its CIFAR-10 mean (0.4914, 0.4821, 0.4465) and std (0.2470,
0.2435, 0.2616), no colour augmentation; the evaluation images are only
normalised. Sized for one GPU (hours per rule); not run yet.
``:runlocal`` trains 4 steps (CI runs it on mock data).
"""
import ml_collections

from configs.credit_digits import parse_arg, rule_block

EPOCHS = 250
BIOTORCH_CIFAR10_MEAN = (0.4914, 0.4821, 0.4465)
BIOTORCH_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MILESTONES = (100, 150, 200)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    rule, runlocal = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "cifar10"
    config.dataset.data_dir = ""
    config.dataset.batch_size = 128
    config.dataset.eval_batch_size = 500

    # biotorch's CIFAR10Benchmark transforms: flip + pad-4 random crop, its mean/std
    config.augment = ml_collections.ConfigDict()
    config.augment.recipe = "cifar"
    config.augment.size = 0
    config.augment.overrides = ml_collections.ConfigDict(dict(
        crop_padding=4, flip_p=0.5, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
        solarize_p=0.0, mean=BIOTORCH_CIFAR10_MEAN, std=BIOTORCH_CIFAR10_STD))

    config.model = ml_collections.ConfigDict()
    config.model.name = "resnet"
    config.model.stage_sizes = (3, 3, 3)
    config.model.block_cls = "basic"
    config.model.width = 0.25
    config.model.stem = "cifar"
    config.model.rule_head = True
    config.model.dtype = "float32"

    config.rule = rule_block(rule)

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.0

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = 0.1
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.schedule = "step"
    config.optim.decay_at = tuple(m / EPOCHS for m in MILESTONES)
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 1e-4
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = ()

    steps_per_epoch = 50_000 // config.dataset.batch_size
    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 1
    config.train.num_replicas = 1
    config.train.num_steps = 0
    config.train.num_epochs = EPOCHS
    config.train.log_every = 100
    config.train.eval_every = 10 * steps_per_epoch
    config.train.checkpoint_every = 10 * steps_per_epoch
    config.train.keep_checkpoints = 2
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 1000

    if runlocal:
        config.dataset.batch_size = 8
        config.dataset.eval_batch_size = 16
        config.train.num_epochs = 0
        config.train.num_steps = 4
        config.train.log_every = 2
        config.train.eval_every = 0
        config.train.checkpoint_every = 0
        config.rule.align_examples = 8
    return config
