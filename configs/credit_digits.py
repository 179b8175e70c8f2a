"""Learning rules without weight transport: an MLP on scikit-learn's digits (offline).

Run:
    python -m launch.run --config configs/credit_digits.py:feedback_alignment --workdir /tmp/credit_digits

The argument names the rule (``neurojax.rules.RULE_NAMES``: backprop,
feedback_alignment, sign_symmetry, kolen_pollack, weight_mirror,
symmetric_alignment, activation_alignment, information_alignment; default
feedback_alignment), optionally followed by ``,runlocal``
(``:kolen_pollack,runlocal``); ``:runlocal`` alone is feedback alignment
shrunk to 2 epochs for CI (seconds; accuracy not meaningful). The rule's
metaparameters sit under ``config.rule`` with the Neural-Alignment code's
defaults (``neurojax.rules.rule_metaparameters``) and can be overridden,
e.g. ``--config.rule.alpha=0.01``; the rule is an argument, not a
``--config.rule.name`` override, because each rule has its own fields.

The MLP (256, 256, ReLU) trains with SGD (Nesterov momentum 0.9, lr 0.05,
L2 1e-3 on the forward weights, coupled; Kolen-Pollack's B gets the same
decay, the local-loss rules' B their own alpha) for 40 epochs, every layer
including the classifier learning with the rule (``config.model.rule_head``).
Every evaluation logs ``align/<layer>/grad_angle`` (the angle between the
rule's gradient and backprop's, on the first 256 training images) and
``align/<layer>/weight_angle`` (W against B). Sized for 2 CPU cores (well
under a minute a rule); accuracy not yet measured with this config.
"""
import ml_collections

from neurojax.rules import RULE_NAMES, rule_metaparameters


def parse_arg(arg: str | None, default: str = "feedback_alignment") -> tuple[str, bool]:
    """``(rule name, runlocal)`` from ``''``, ``'runlocal'``, ``'<rule>'`` or
    ``'<rule>,runlocal'``."""
    parts = [p for p in (arg or "").split(",") if p]
    runlocal = "runlocal" in parts
    names = [p for p in parts if p != "runlocal"]
    if len(names) > 1 or (names and names[0] not in RULE_NAMES) or parts.count("runlocal") > 1:
        raise ValueError(f"config argument must be '', 'runlocal', a rule of {RULE_NAMES} "
                         f"or '<rule>,runlocal', got {arg!r}")
    return (names[0] if names else default), runlocal


def rule_block(name: str, align_examples: int = 256) -> ml_collections.ConfigDict:
    """``config.rule``: the rule's name, its metaparameters' defaults (fields
    whose default is derived from the layer are left out) and align_examples."""
    block = ml_collections.ConfigDict()
    block.name = name
    for field, value in rule_metaparameters(name).items():
        if value is not None:
            setattr(block, field, value)
    block.align_examples = align_examples
    return block


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    rule, runlocal = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.on_device = "auto"
    config.dataset.device_budget_mb = 1024
    config.dataset.name = "digits"
    config.dataset.data_dir = ""  # "" = $NEUROJAX_DATA_DIR or ~/tensorflow_datasets
    config.dataset.batch_size = 64
    config.dataset.eval_batch_size = 360

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.widths = (256, 256)
    config.model.rule_head = True  # the classifier learns with the rule too
    config.model.dtype = "float32"

    config.rule = rule_block(rule)

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "softmax_cross_entropy"
    config.loss.label_smoothing = 0.0

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.lr = 0.05
    config.optim.momentum = 0.9
    config.optim.nesterov = True
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 0
    config.optim.weight_decay = 1e-3
    config.optim.grad_clip_norm = 0.0
    config.optim.transforms = ()

    config.train = ml_collections.ConfigDict()
    config.train.steps_per_call = 110
    config.train.num_replicas = 1
    config.train.num_steps = 0
    config.train.num_epochs = 40
    config.train.log_every = 22
    config.train.eval_every = 220
    config.train.checkpoint_every = 220
    config.train.keep_checkpoints = 2
    config.train.spectrum_every = 0
    config.train.spectrum_layers = ()
    config.train.spectrum_examples = 360

    if runlocal:
        config.train.num_epochs = 2
        config.train.steps_per_call = 22
        config.train.eval_every = 0
        config.rule.align_examples = 64
    return config
