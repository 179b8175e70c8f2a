"""Small Fig. 1 of Ghosh et al. (ICLR 2023): full-batch GD with relative bias and noise.

One cell of the grid (one bias, one noise level, one seed) as a training run:

    python -m launch.run --config configs/bias_variance_digits.py --workdir /tmp/bv_digits

An MLP (64 -> 64 -> 10, ReLU) on the offline digits, trained by full-batch
gradient descent (batch = the whole 1437-image training set, one optimiser
step per epoch, as App. B.1's "optimiser step once per epoch"), SGD lr 0.05,
momentum 0.9, no schedule, label-smoothed cross-entropy (0.1, the paper's
code), with ``inject_gradient_bias(1e-3, relative=True)`` in front of the
optimiser. Named cells: ``configs/bias_variance_digits.py:clean`` (no bias,
no noise), ``:noisy`` (adds ``inject_gradient_noise(1.0, relative=True)``),
``:runlocal`` (5 steps for CI, ~30 s with compilation). Sized for 2 CPU
cores: about 1 min for 200 steps.

The whole grid (``config.sweep``: relative bias per parameter x relative
noise norm x seeds, all cells vmapped into one compiled run, < 5 min on 2
CPU cores) is the figure script:

    python -m neurojax.analysis.bias_variance --figure fig1 --outdir DIR [--quick]

Measured results are in ``benchmarks/results/bias_variance_fig1.json``. The
paper's full VGG-16 / CIFAR-10 grid (50 full-batch epochs, grid
``PAPER_BIASES`` x ``PAPER_NOISES``, 3 seeds, ~10 min per run on an RTX8000)
needs GPUs: ``configs/bias_variance_cifar10.py`` is one cell of it per run
(``:bias=1e-5,noise=0.1,seed=1``), and ``python -m
neurojax.analysis.bias_variance --figure fig1_collect --workdirs ...`` draws
the heatmaps from the finished runs.
"""
import ml_collections

# the paper's code's grid (per-parameter bias ratio with N ~ 138M; noise-norm ratio)
PAPER_BIASES = (0.0, 1e-8, 1e-7, 1e-6, 5e-6, 1e-5, 1e-4, 1e-3, 1e-2)
PAPER_NOISES = (0.0, 1e-3, 1e-2, 0.1, 1.0, 5.0, 10.0, 40.0, 100.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    # the training split on the device when it fits the budget: "auto", "on", "off"
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "digits"
    config.dataset.data_dir = ""
    config.dataset.batch_size = 1437  # the whole training split: full-batch GD
    config.dataset.eval_batch_size = 360

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.widths = (64,)
    # compute dtype: "float32", "bfloat16" or "float16" (parameters, BatchNorm
    # statistics, losses and metrics stay float32)
    config.model.dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.1

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = 0.05
    config.optim.momentum = 0.9
    config.optim.schedule = "constant"
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = (("inject_gradient_bias", {"b": 1e-3, "relative": True}),)

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 1  # steps per compiled call (a lax.scan)
    config.train.num_replicas = 1  # seeds seed, seed + 1, ... as one vmapped program
    config.train.num_steps = 200
    config.train.num_epochs = 0
    config.train.log_every = 20
    config.train.eval_every = 100
    config.train.checkpoint_every = 100
    config.train.keep_checkpoints = 2
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 360

    # the grid of the figure script (neurojax.analysis.bias_variance_digits.figure1)
    config.sweep = ml_collections.ConfigDict()
    config.sweep.biases = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    config.sweep.noises = (0.0, 1e-2, 0.1, 1.0, 5.0, 10.0, 40.0)
    config.sweep.seeds = 5

    if arg == "clean":
        config.optim.transforms = ()
    elif arg == "noisy":
        config.optim.transforms = config.optim.transforms + (
            ("inject_gradient_noise", {"sigma": 1.0, "seed": 0, "relative": True}),)
    elif arg == "runlocal":
        config.train.num_steps = 5
        config.train.eval_every = 0
        config.train.checkpoint_every = 5
        config.sweep.seeds = 2
    elif arg not in (None, ""):
        raise ValueError(f"config argument must be '', 'clean', 'noisy' or 'runlocal', "
                         f"got {arg!r}")
    return config
