"""Compressed weight sync in data-parallel training (seed thesis, chapter 3,
Figs. 3.1, 3.3, 3.4 and 3.5) on the offline digits: a tanh MLP 64-392-50-10
(the thesis's 784-392-50-10 with the digits' 64 inputs), MSE on tanh outputs,
4 workers with local SGD, a compressed sync once per epoch.

Run (the experiment: every setting and seed is a run of the training loop
below, kept in DIR/runs_digits; figure + JSON in DIR):
    python -m neurojax.analysis.compressed_sync --outdir DIR [--quick]
    python -m neurojax.analysis.compressed_sync --outdir DIR \
        --config configs/compressed_sync_digits.py:mnist

Sized for 2 CPU cores: 3 seeds x 20 settings x 100 epochs plus 9 runs of the
Fig. 3.3 monitor (69 runs, each evaluated after every sync) took 13.2 min with
the cores shared by other jobs (22 min under heavier sharing), ``--quick``
about 1.2 min (numbers not meaningful). Measured
(``benchmarks/results/compressed_sync_digits.json``, reproduced exactly by a
second sweep): at (M, c) = (4, 5) 8.26 Huffman-coded bits/parameter (3.87x;
raw N 8.85), at (4, 6) 9.17 bits (3.49x), against the thesis's 3.55 (9.01x)
and 3.78 (8.47x) on MNIST: the digits net's weight histograms stay close to
uniform over their range (4-bit entropy of the first layer 3.77 -> 3.54 bits
over training), so N = H + c stays high and Huffman saves only ~0.6 bit.
Final test accuracy changes by +0.19 / 0.00 points (baseline 97.31%, seed
std 0.57 points), i.e. unchanged.

Arguments: ``""`` (the digits experiment), ``"runlocal"`` (CI size: one
seed, a few epochs, three fixed widths), ``"mnist"`` (784-392-50-10 on
MNIST, 100 epochs; needs the prepared MNIST, see ``neurojax.data.sources``).

One run of one setting (``config.sync``: mode 'dynamic' with c = 5 by
default; 'fixed' with ``num_bits``, 'none' for float32 averaging) goes
through the training loop, which logs every sync's bits and bytes in
metrics.jsonl (about 30 s on 2 CPU cores, 100 epochs, 98.1% test accuracy):
    python -m launch.run --config configs/compressed_sync_digits.py --workdir /tmp/cs_digits
    python -m launch.run --config configs/compressed_sync_digits.py --workdir /tmp/cs_fixed8 \
        --config.sync.mode=fixed --config.sync.num_bits=8

Thesis choices that are not stated there and are ours: the optimiser (SGD with
momentum 0.9, the thesis's default optimiser in ch. 1, lr 0.05), the batch
(32 per worker), the number of workers (4) and the sync period (one epoch of
local steps, matching the per-epoch bit widths of Sections 3.5-3.8), MSE
targets one-hot in {0, 1}, and the flax default (truncated LeCun normal)
initialisation.
"""
import ml_collections

FIXED_BITS = tuple(range(2, 17))   # Fig. 3.1
FLOORS = (3, 4, 5, 6)              # Fig. 3.4b: M = 4, floor c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "digits"
    config.dataset.data_dir = ""       # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    config.dataset.batch_size = 32     # per worker
    config.dataset.eval_batch_size = 360
    config.dataset.on_device = "auto"  # the sync mode needs the split on the device
    config.dataset.device_budget_mb = 1024

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.widths = (392, 50)
    config.model.activation = "tanh"   # the head is linear; tanh is applied in the loss
    # compute dtype: "float32", "bfloat16" or "float16" (parameters, BatchNorm
    # statistics, losses and metrics stay float32)
    config.model.dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "label_mean_squared_error"   # tanh outputs, one-hot targets in {0, 1}
    config.loss.output = "tanh"
    config.loss.targets = (0.0, 1.0)

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = 0.05
    config.optim.momentum = 0.9
    config.optim.schedule = "constant"

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 0
    config.train.num_epochs = 100      # thesis: 100 epochs
    config.train.steps_per_call = 1    # unused with a sync: a call is one round of K steps
    config.train.num_replicas = 1
    config.train.log_every = 0
    config.train.eval_every = 0        # 0: at the end; the sweep driver evaluates every epoch
    config.train.checkpoint_every = 0

    config.sync = ml_collections.ConfigDict()
    config.sync.mode = "dynamic"       # "dynamic" (N = ceil(H + c)), "fixed", "none", "off"
    config.sync.num_bits = 8           # N of mode "fixed"
    config.sync.floor = 5.0            # c of mode "dynamic"
    config.sync.num_workers = 4
    config.sync.local_steps = 0        # K; 0 = one epoch of local steps per sync
    config.sync.fraction = 0.03        # F
    config.sync.prelim_bits = 4        # M
    config.sync.grouping = "layer"     # kernel + bias share one quantiser
    config.sync.method = "huffman"

    # The sweep of neurojax.analysis.compressed_sync (the loop ignores this
    # block): every setting for every seed, each a run of the loop with the
    # sync fields above changed.
    config.experiment = ml_collections.ConfigDict()
    config.experiment.seeds = (0, 1, 2)
    config.experiment.fixed_bits = FIXED_BITS   # mode "fixed", num_bits = N
    config.experiment.floors = FLOORS           # mode "dynamic", floor = c
    # entropy monitor of the uncompressed runs (Fig. 3.3): (M, F) pairs, each
    # a baseline run with prelim_bits = M, fraction = F
    config.experiment.monitor = ((4, 0.03), (4, 1.0), (8, 0.03), (8, 1.0))

    if arg in (None, ""):
        pass
    elif arg == "runlocal":
        config.train.num_epochs = 3
        config.train.eval_every = 0
        config.experiment.seeds = (0,)
        config.experiment.fixed_bits = (2, 8, 16)
        config.experiment.floors = (5, 6)
        config.experiment.monitor = ((4, 0.03), (8, 0.03))
    elif arg == "mnist":
        config.dataset.name = "mnist"
        config.dataset.batch_size = 64
        config.dataset.eval_batch_size = 1000
        config.optim.lr = 0.02
    else:
        raise ValueError(f"config argument must be '', 'runlocal' or 'mnist', got {arg!r}")
    return config
