"""Learning rules without weight transport: ResNet-18 on ImageNet, the Neural-Alignment schedule (GPU).

Run (ImageNet prepared first: ``tfds build imagenet2012 --data_dir=$NEUROJAX_DATA_DIR
--file_format=array_record`` with the archives in ``downloads/manual``):
    python -m launch.run --config configs/credit_imagenet.py:information_alignment --workdir runs/credit_imagenet/ia

The argument names the rule as for ``configs/credit_digits.py``
(``'<rule>,runlocal'``; default feedback_alignment); the rule's
metaparameters sit under ``config.rule`` with the Neural-Alignment code's
defaults. The schedule is issue 18's reading of Kunin et al. 2020 ("Two
routes to scalable credit assignment without weight symmetry", ICML, the
ImageNet experiments; github.com/neuroailab/Neural-Alignment): 90 epochs,
batch 256, SGD with Nesterov momentum 0.9, lr 0.1 with a linear warm-up, x0.1
at epochs 30, 60 and 80, L2 1e-4 (coupled, on W; Kolen-Pollack's B gets the
same decay, the local-loss rules' B their own alpha). Every layer, the
classifier included, learns with the rule (``config.model.rule_head``).
Anchors: biotorch's ImageNet ResNet-18 top-1 errors (backprop 30.39, FA 85.25,
uSF 34.97, brSF 37.21, frSF 36.5; Sanfiz & Akrout 2021).

Data: ``imagenet2012_224``, all 1000 classes of the prepared ``imagenet2012``
with their labels, each image decoded on the host and served at one size
(training: shorter side to 224, centre 224 x 224 crop; evaluation: shorter
side to 256, centre 224 x 224, the usual 0.875 crop;
``neurojax/data/imagenet100.py``), streamed with 8 loader processes
(``config.dataset.worker_count``: JPEG decoding is host-bound).

Augmentation (``config.augment``, ``neurojax.train.augmentation``): the
Neural-Alignment code (tfutils' ImageNet provider, prep_type 'resnet') trains
on Inception-style random crops (8-100% of the area, aspect 3/4-4/3) resized
to 224 with horizontal flips, and normalises by ImageNet's channel mean and
std; this config trains on the same crop distribution and flip (the
``imagenet`` recipe, drawn inside the compiled step) with ImageNet's
mean/std, and colour jitter, grayscale and blur off. Not matched: the crops
are drawn from the served 224 x 224 centre square (shorter side to 224), not
from the whole full-resolution image, so the image's edges beyond the square
are never seen and small crops are upsampled from fewer pixels. Evaluation
matches (centre 224 at shorter side 256, normalised). Errors are therefore
close to, not exactly, comparable with the anchors'.

Other stated choices: the warm-up length (5 epochs) is this config's choice
(the issue says "with warm-up" without a length); initialisation is
LeCun-normal for W and B. ``:runlocal`` (4 steps at batch 8)
runs this model, rule block, schedule, augmentation and data path on
``imagenet2012_224`` (tfds mock data in CI; a real run needs ImageNet
prepared). Sized for one GPU (days per rule); not run.
"""
import ml_collections

from configs.credit_digits import parse_arg, rule_block
from neurojax.data.augment import IMAGENET_MEAN, IMAGENET_STD

EPOCHS = 90
MILESTONES = (30, 60, 80)
WARMUP_EPOCHS = 5
TRAIN_EXAMPLES = 1_281_167


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    rule, runlocal = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "imagenet2012_224"  # fixed 224 x 224 view of imagenet2012
    config.dataset.data_dir = ""
    config.dataset.worker_count = 8
    config.dataset.eval_split = "validation"  # imagenet2012's test split has no labels
    config.dataset.batch_size = 256
    config.dataset.eval_batch_size = 500

    # random-resized crop (8-100% area, aspect 3/4-4/3) + flip, ImageNet mean/std
    config.augment = ml_collections.ConfigDict()
    config.augment.recipe = "imagenet"
    config.augment.size = 0  # the images' 224
    config.augment.overrides = ml_collections.ConfigDict(dict(
        crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, jitter_p=0.0,
        grayscale_p=0.0, blur_p=0.0, solarize_p=0.0, mean=IMAGENET_MEAN, std=IMAGENET_STD))

    config.model = ml_collections.ConfigDict()
    config.model.name = "resnet18"
    config.model.stem = "imagenet"
    config.model.rule_head = True
    config.model.dtype = "float32"

    config.rule = rule_block(rule)

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.0

    steps_per_epoch = TRAIN_EXAMPLES // config.dataset.batch_size
    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = 0.1
    config.optim.momentum = 0.9
    config.optim.nesterov = True
    config.optim.schedule = "step"
    config.optim.decay_at = tuple(m / EPOCHS for m in MILESTONES)
    config.optim.warmup_steps = WARMUP_EPOCHS * steps_per_epoch
    config.optim.weight_decay = 1e-4
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = ()

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 1
    config.train.num_replicas = 1
    config.train.num_steps = 0
    config.train.num_epochs = EPOCHS
    config.train.log_every = 100
    config.train.eval_every = 5 * steps_per_epoch
    config.train.checkpoint_every = 5 * steps_per_epoch
    config.train.keep_checkpoints = 2
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 1000

    if runlocal:
        config.dataset.worker_count = 0
        config.dataset.batch_size = 8
        config.dataset.eval_batch_size = 16
        config.optim.warmup_steps = 1
        config.train.num_epochs = 0
        config.train.num_steps = 4
        config.train.log_every = 2
        config.train.eval_every = 0
        config.train.checkpoint_every = 0
        config.rule.align_examples = 8
    return config
