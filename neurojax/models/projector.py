"""Projector heads for self-supervised learning, and the 1/d rule for beta.

Ghosh et al., "Harnessing small projectors and multiple views for efficient
vision pretraining" (NeurIPS 2024; thesis Part III, Sec. 3.3 and 4.1,
Appendix D, Table 5): the projector maps encoder features to the space
where the SSL loss is computed, and is discarded before linear probing. The
paper's projector (FastSSL ``build_projector``) is

    Linear(D -> d, no bias) -> BatchNorm -> ReLU -> Linear(d -> d, bias)

with hidden width d equal to the output width. Its parameter count for a
ResNet-50 (D = 2048) is about Table 5's: 135k at d = 64, 83.9M at d = 8192
(``projector_num_params``). With a low-dimensional projector the
orthogonality weight must grow as beta = O(1/d) (``beta_for_dim``).
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax

from neurojax.models._common import (Activation, check_positive_float,
                                     check_positive_int, check_widths, float32_output,
                                     freeze_sequences, resolve_activation,
                                     set_compute_dtype)
from neurojax.models.layers import Act

# beta * d of the official code's best Barlow Twins lambd for d = 128, 256,
# 512 (0.04, 0.02, 0.01; see beta_for_dim)
PAPER_BT_BETA_TIMES_DIM = 5.12


class Projector(nn.Module):
    """MLP projector head: ``[Linear -> BatchNorm -> act] * k -> Linear``.

    With the defaults (``hidden_dims=None``: one hidden layer as wide as the
    output) this is the paper's ``Linear(no bias) -> BN -> ReLU -> Linear``;
    pass ``hidden_dims=(8192, 8192)`` for the original Barlow Twins' three
    linear layers, or ``()`` for a single linear map. The hidden Linear layers
    have no bias when followed by BatchNorm (its shift makes a bias
    redundant). BatchNorm follows PyTorch's defaults (momentum 0.1, i.e. Flax
    ``momentum=0.9``; ``epsilon=1e-5``) and normalises over every axis but
    the last, so views stacked as ``(m * n, D)`` or ``(m, n, D)`` share one
    set of batch statistics (as FastSSL, which passes the stacked views
    through the model); call once per view for per-view statistics.

    Layers: ``dense_{i}``, ``bn_{i}``, ``act_{i}`` for hidden layer i, then
    ``head``.

    Attributes:
        output_dim: d, the projector (embedding) dimension.
        hidden_dims: widths of the hidden layers; ``None`` means
            ``(output_dim,)``, the paper's projector.
        batch_norm: BatchNorm after each hidden Linear.
        activation: name from ``neurojax.models._common.ACTIVATIONS`` or a
            callable.
        hidden_bias: bias on the hidden Linear layers; ``None`` means
            ``not batch_norm``.
        output_bias: bias on the last Linear (the paper's has one).
        momentum, epsilon: BatchNorm settings (Flax convention).
        dtype: computation dtype (``None``: from inputs and params; or
            'float32', 'bfloat16', 'float16'); parameters, BatchNorm
            statistics and the embeddings stay float32.
    """
    output_dim: int = 256
    hidden_dims: Optional[Sequence[int]] = None
    batch_norm: bool = True
    activation: Activation = "relu"
    hidden_bias: Optional[bool] = None
    output_bias: bool = True
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None

    def __post_init__(self) -> None:
        freeze_sequences(self, "hidden_dims")
        check_positive_int("output_dim", self.output_dim)
        if self.hidden_dims is not None:
            check_widths("hidden_dims", self.hidden_dims)
        resolve_activation(self.activation)
        if not 0.0 <= float(self.momentum) <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum!r}")
        check_positive_float("epsilon", self.epsilon)
        set_compute_dtype(self)
        super().__post_init__()

    @property
    def widths(self) -> tuple[int, ...]:
        """The hidden widths actually used."""
        return (self.output_dim,) if self.hidden_dims is None else tuple(self.hidden_dims)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Project features ``x`` of shape (..., D) to (..., output_dim).

        With ``train=True`` BatchNorm uses batch statistics and updates
        ``batch_stats`` (apply with ``mutable=['batch_stats']``); otherwise it
        uses the running averages.
        """
        act = resolve_activation(self.activation)
        bias = (not self.batch_norm) if self.hidden_bias is None else self.hidden_bias
        for i, width in enumerate(self.widths):
            x = nn.Dense(width, use_bias=bias, dtype=self.dtype, name=f"dense_{i}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                                 epsilon=self.epsilon, dtype=self.dtype,
                                 force_float32_reductions=True, name=f"bn_{i}")(x)
            x = Act(act, name=f"act_{i}")(x)
        return float32_output(nn.Dense(self.output_dim, use_bias=self.output_bias,
                                       dtype=self.dtype, name="head")(x))


def projector_num_params(input_dim: int, output_dim: int,
                         hidden_dims: Optional[Sequence[int]] = None, *,
                         batch_norm: bool = True, hidden_bias: Optional[bool] = None,
                         output_bias: bool = True) -> int:
    """Trainable parameters of ``Projector`` on inputs of width ``input_dim``
    (BatchNorm scale and shift count; its running statistics do not).

    The paper's projector on ResNet-50 features: ``projector_num_params(2048,
    d)`` = 2048 d + d^2 (the two weight matrices) + 3 d (BatchNorm scale and
    shift, output bias): 135,360 for d = 64, 83,910,656 for d = 8192. Table 5's
    "approx" column counts the weight matrices only, 2048 d + d^2, truncated
    or rounded: 135,168 -> "135k", 589,824 -> "589k" (d = 256),
    83,886,080 -> "83.9M".
    """
    check_positive_int("input_dim", input_dim)
    check_positive_int("output_dim", output_dim)
    widths = (output_dim,) if hidden_dims is None else tuple(hidden_dims)
    check_widths("hidden_dims", widths)
    bias = (not batch_norm) if hidden_bias is None else hidden_bias
    total, fan_in = 0, input_dim
    for width in widths:
        total += fan_in * width + (width if bias else 0) + (2 * width if batch_norm else 0)
        fan_in = width
    return total + fan_in * output_dim + (output_dim if output_bias else 0)


def beta_for_dim(d: int, c: float = PAPER_BT_BETA_TIMES_DIM) -> float:
    """Orthogonality weight beta = c / d for a d-dimensional projector.

    The paper (Sec. 4.1, Fig. 2/8, Table 5) finds the best orthogonality
    weight scales as beta*_d proportional to 1/d and recommends: "start with a
    low-dimensional projector, using beta = O(1/d), and sweep over (pdim = d,
    beta = O(1/d)) if needed". The text gives no constant; the official code's
    sweep (FastSSL ``final_exps/BarlowTwins_lambda_pdim_res.sh``, ResNet-50,
    CIFAR-10) uses lambd = 0.04, 0.02, 0.01 at d = 128, 256, 512, i.e.
    c = beta * d = 5.12 (the default; beta(256) = 0.02, the 2-view d = 256
    setting of the multi-augmentation runs, which use 0.01, c = 2.56, with 4
    and 8 views). Over d = 64 ... 8192 its c ranges 1.6 ... 6.6; the "fixed
    beta" of Fig. 8 is 0.0004 (c = 3.3 at d = 8192).

    How to use beta:
      * Barlow Twins (thesis Eq. 26): beta is ``lambd``, the weight of
        sum_{i!=j} C_ij^2: ``barlow_twins(z_a, z_b, lambd=beta_for_dim(d))``.
        (The original Barlow Twins' lambd = 0.0051 at d = 8192 is c = 41.8,
        for unnormalised inputs and batch 2048 on ImageNet.)
      * VICReg (Fig. 8 caption): beta = cov / inv, the covariance coefficient
        over the invariance one. FastSSL fixes cov = 1 and sets
        inv = var = 1/beta; its d = 256 runs use inv = var = 25 (c = 10.24),
        so pass ``c=10.24`` and ``inv = var = 1 / beta``.

    Args:
        d: projector output dimension, a positive int.
        c: the constant, > 0.

    Returns:
        c / d as a Python float.
    """
    check_positive_int("d", d)
    check_positive_float("c", c)
    return float(c) / d


def beta_sweep(dims: Sequence[int], multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
               c: float = PAPER_BT_BETA_TIMES_DIM) -> tuple[tuple[int, float], ...]:
    """The (d, beta) grid ``[(d, k * c / d) for d in dims for k in multipliers]``:
    the paper's recommended sweep over (pdim = d, beta = O(1/d))."""
    check_widths("dims", dims, allow_empty=False)
    for k in multipliers:
        check_positive_float("multipliers", k)
    return tuple((int(d), float(k) * beta_for_dim(d, c)) for d in dims for k in multipliers)
