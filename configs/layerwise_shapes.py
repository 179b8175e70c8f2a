"""Deep layer-wise learning (Oland 2024, Efficient Deep Learning, ch. 6) of the
small CNN on the procedural shapes, and the chapter's VGG-13 rows for a GPU.

Run:
    python -m launch.run --config configs/layerwise_shapes.py --workdir /tmp/dll_shapes

``config.task = 'layerwise'`` (``neurojax.train.layerwise``) trains the
model as stages: one block (conv, BatchNorm, ReLU, pool; then the hidden
dense layer) per stage with a fresh decision head, bottom-up, the last stage
with the model's own head (Algorithm 3). The training steps are split evenly
over the stages, so a DLL run and the supervised run of
``configs/supervised_shapes.py:small`` see the same number of examples. Each
evaluation reads the network out after the current stage (logged with
``stage`` and ``readout_block``); the final parameters are the ordinary
small CNN's (plus the decision heads under ``layerwise_heads``).

Variants (``:name``):

- ``""``: DLL with decision layers (global average pool + affine map) on
  ``shapes_small``, the feednet's output cached on the device.
- ``block``: decision blocks (one stride-2 conv of 128 channels before the
  pooled affine map, Sec. 6.7).
- ``segment``: deep segment-wise learning, windows of 2 blocks moving by 1
  (Fig. 6.2).
- ``partition``: two partitions of 2 blocks, learning rate and weight decay
  x 0.5 for the second (Sec. 6.9).
- ``random_robin``: Random Robin (Algorithm 4): 4 rounds over the DLL
  windows in a random order per round, each window's optimiser state kept
  between its visits; the same steps in all as the default.
- ``vgg13_cifar10`` / ``vgg13_cifar100`` (GPU): Table 6.2's from-scratch
  set-up, VGG-13 with BatchNorm, AdamW, batch 128, per-layer learning rate
  x 0.8^i and weight decay x 1.15^i, backward dropout 0.5 at the block/head
  interface, decision blocks. The chapter's forward (input) dropout
  decaying as p0 x 0.95^epoch is not implemented yet, so these rows are
  the chapter's method without it.
- ``runlocal``: 20 steps of the default, for CI.

Every field of ``config.layerwise`` is a field of
``neurojax.train.layerwise.LayerwiseSpec``; any can be overridden, e.g.
``--config.layerwise.method=segment --config.layerwise.window=3``.
"""
import ml_collections

from configs import supervised_shapes

_ARGS = ("", "block", "segment", "partition", "random_robin", "vgg13_cifar10", "vgg13_cifar100", "runlocal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or ""
    if arg not in _ARGS:
        raise ValueError(f"config argument must be one of {list(_ARGS)}, got {arg!r}")
    config = supervised_shapes.get_config("runlocal" if arg == "runlocal" else "small")
    config.task = "layerwise"
    config.dataset.on_device = "on" if arg not in ("vgg13_cifar10", "vgg13_cifar100") \
        else "auto"

    config.layerwise = ml_collections.ConfigDict()
    config.layerwise.method = "dll"  # 'dll', 'segment' or 'partition'
    config.layerwise.window = 1  # blocks per stage ('segment', 'partition')
    config.layerwise.step = 1  # the window's stride ('segment')
    config.layerwise.head = "layer"  # decision 'layer' or 'block'
    config.layerwise.head_channels = (128,)  # the decision block's down-convolutions
    config.layerwise.lr_factor = 1.0  # stage i: lr x lr_factor^i
    config.layerwise.wd_factor = 1.0  # stage i: weight decay x wd_factor^i
    config.layerwise.grad_dropout = 0.0  # backward dropout at the block/head interface
    config.layerwise.rounds = 1  # passes over the windows (Random Robin)
    config.layerwise.random_order = False  # a random window order per round
    config.layerwise.cache_features = True  # hold the feednet's output on the device
    config.layerwise.cache_dtype = "float32"

    if arg == "block":
        config.layerwise.head = "block"
    if arg == "segment":
        config.layerwise.method, config.layerwise.window = "segment", 2
    if arg == "random_robin":
        config.layerwise.rounds, config.layerwise.random_order = 4, True
    if arg == "partition":
        config.layerwise.method, config.layerwise.window = "partition", 2
        config.layerwise.lr_factor = config.layerwise.wd_factor = 0.5
    if arg in ("vgg13_cifar10", "vgg13_cifar100"):
        config.dataset.name = arg.split("_")[1]
        config.dataset.batch_size = 128
        config.model = ml_collections.ConfigDict()
        config.model.name = "vgg13"
        config.model.dtype = "float32"
        config.optim.name = "adamw"
        config.optim.lr = 1e-3
        config.optim.weight_decay = 5e-4
        config.train.num_epochs = 10 * 10  # ten epochs per conv layer
        steps_per_epoch = 50_000 // config.dataset.batch_size
        config.train.eval_every = 10 * steps_per_epoch
        config.train.checkpoint_every = 10 * steps_per_epoch
        config.layerwise.head = "block"
        config.layerwise.lr_factor, config.layerwise.wd_factor = 0.8, 1.15
        config.layerwise.grad_dropout = 0.5
    return config
