"""Learning rules without weight transport: the small CNN on the procedural shapes (offline).

Run:
    python -m launch.run --config configs/credit_shapes.py:feedback_alignment --workdir /tmp/credit_shapes

The argument names the rule as for ``configs/credit_digits.py`` (default
feedback_alignment; ``'<rule>,runlocal'``); the rule's metaparameters sit
under ``config.rule`` (overridable: ``--config.rule.beta=0.01``).
``shapes_small`` (16x16 RGB, 10,000 train / 2,000 test, generated on first
use in ~3 s) with ``configs/supervised_shapes.py:small``'s network and
schedule: small_cnn (32, 64, 128) + 256 hidden, Adam 2e-3 cosine, batch 128,
40 epochs; every convolution and dense layer, the classifier included,
learns with the rule. B's optimiser: Adam with the same schedule (no weight
decay: Kolen-Pollack's W - B then does not shrink, set
``--config.optim.name=adamw --config.optim.weight_decay=...`` for that; the
local-loss rules decay B through their alpha). Every evaluation logs
``align/<layer>/grad_angle`` and ``align/<layer>/weight_angle`` on the
first 256 training images. Backprop's measured accuracy is in
``configs/supervised_shapes.py`` (55.6%, 1262 s on 2 shared cores); the
rules' are not yet measured with this config. ``:runlocal`` trains 20 steps
for CI (~30 s, accuracy not meaningful).
"""
import ml_collections

from configs import supervised_shapes
from configs.credit_digits import parse_arg, rule_block


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    rule, runlocal = parse_arg(arg)
    # supervised_shapes.py's ':small' run (':runlocal': its 20-step CI variant)
    config = supervised_shapes.get_config("runlocal" if runlocal else "small")
    config.model.rule_head = True  # the classifier learns with the rule too
    config.rule = rule_block(rule, align_examples=64 if runlocal else 256)
    return config
