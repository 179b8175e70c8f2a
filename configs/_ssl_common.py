"""The SSL pretraining config shared by ``configs/ssl_*.py`` (not a config itself).

Defaults are the paper's (Ghosh et al. 2024, Table 4a; thesis Part III,
Appendix D): Adam, lr 1e-3, weight decay 1e-6 (coupled, as PyTorch's Adam),
batch 256, 100 epochs, projector ``Linear -> BN -> ReLU -> Linear`` of width
``pdim``, Barlow Twins with beta = lambd = 5.12 / pdim (the official code's
sweep; ``neurojax.models.projector.beta_for_dim``), the CIFAR augmentation
recipe, m views per image through the Eq. 10 multi-view loss.

``config.loss.lambd`` is a lazy reference to ``config.projector.output_dim``:
``--config.projector.output_dim=64`` moves beta to 5.12 / 64 unless
``--config.loss.lambd=...`` sets it explicitly.
"""
import ml_collections

from neurojax.models.projector import PAPER_BT_BETA_TIMES_DIM


def ssl_config(*, dataset: str, encoder: str, pdim: int = 256, num_views: int = 2,
               batch_size: int = 256, epochs: int = 100, eval_every_epochs: int = 10,
               train_examples: int, **encoder_kwargs) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "ssl"
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    # the training split on the device when it fits the budget: "auto", "on", "off"
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = dataset
    config.dataset.data_dir = ""  # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    config.dataset.train_split = "train"
    config.dataset.eval_split = "test"
    config.dataset.batch_size = batch_size
    config.dataset.eval_batch_size = 500
    config.dataset.fraction = 1.0  # of the unique training images (the paper's E3)
    config.dataset.worker_count = 0  # grain worker processes decoding the training data

    config.model = ml_collections.ConfigDict()
    config.model.name = encoder
    # compute dtype: "float32", "bfloat16" or "float16" (parameters, BatchNorm
    # statistics, losses and metrics stay float32)
    config.model.dtype = "float32"
    config.model.update(encoder_kwargs)

    config.projector = ml_collections.ConfigDict()
    config.projector.output_dim = pdim

    config.views = ml_collections.ConfigDict()
    config.views.num_views = num_views
    config.views.recipe = "cifar"  # or "stl10", "imagenet" (neurojax.data.augment)
    config.views.size = 0  # 0: the dataset's image size
    config.views.small_views = 0  # extra low-resolution views (multi-crop, E6)
    config.views.small_size = 0
    config.views.augment = ml_collections.ConfigDict()  # AugmentRecipe overrides
    config.views.small_augment = ml_collections.ConfigDict()

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "barlow_twins_multiview"
    beta_c = ml_collections.FieldReference(PAPER_BT_BETA_TIMES_DIM)
    config.loss.lambd = beta_c / config.projector.get_ref("output_dim")

    config.probe = ml_collections.ConfigDict()
    config.probe.probes = ("knn", "ridge")  # add "linear" for the paper's trained probe
    config.probe.train_split = "train"
    config.probe.max_train_examples = 0  # 0: all
    config.probe.max_test_examples = 0
    config.probe.knn_k = 200
    config.probe.knn_temperature = 0.1
    config.probe.linear_epochs = 200
    config.probe.linear_batch_size = 512
    config.probe.linear_lr = 1e-3
    config.probe.accuracy_thresholds = ()  # log the training time to reach each

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"
    config.optim.lr = 1e-3
    config.optim.schedule = "constant"
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 1e-6
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = ()

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 1  # steps per compiled call (a lax.scan)
    config.train.num_replicas = 1  # seeds seed, seed + 1, ... as one vmapped program
    config.train.num_steps = 0
    config.train.num_epochs = epochs
    # stop at the first train record after this many seconds of training (0: never)
    config.train.max_train_seconds = 0.0
    steps_per_epoch = max(1, train_examples // batch_size)
    config.train.log_every = min(50, steps_per_epoch)
    config.train.eval_every = eval_every_epochs * steps_per_epoch
    config.train.checkpoint_every = eval_every_epochs * steps_per_epoch
    config.train.keep_checkpoints = 2
    # alpha-ReQ and effective rank of these layers (neurojax.models.layer_names;
    # "" = the output) on 1000 held-out images every k steps (0 = off)
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 1000
    return config


def shrink_for_ci(config: ml_collections.ConfigDict, steps: int = 4) -> ml_collections.ConfigDict:
    """A few steps on small batches with every evaluation path exercised."""
    config.dataset.batch_size = 32
    config.dataset.eval_batch_size = 100
    config.train.num_epochs = 0
    config.train.num_steps = steps
    config.train.log_every = 2
    config.train.eval_every = 2
    config.train.checkpoint_every = 0
    config.probe.max_train_examples = 200
    config.probe.max_test_examples = 100
    config.probe.knn_k = 20
    return config
