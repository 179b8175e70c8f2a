"""Pure loss functions ``loss(outputs, batch, **hyper) -> (scalar, aux_dict)``."""
from neurojax.losses.amplification import (DELTA_OUTPUTS, amplified_delta_loss,
                                           amplified_output, impose_delta,
                                           negative_correlation, output_delta,
                                           softmax_normalizer, sparse_cross_entropy,
                                           squared_error_curvature)
from neurojax.losses.classification import (label_mean_squared_error, label_targets,
                                            mean_squared_error, softmax_cross_entropy)

LOSSES = {
    "softmax_cross_entropy": softmax_cross_entropy,
    "mean_squared_error": mean_squared_error,
    "label_mean_squared_error": label_mean_squared_error,
    # gradient amplification (Oland 2024, Efficient Deep Learning, Ch. 4)
    "sparse_cross_entropy": sparse_cross_entropy,
    "negative_correlation": negative_correlation,
    "amplified_delta": amplified_delta_loss,
}


def get_loss(name: str):
    """Looks a loss up by name; raises ``ValueError`` listing the known names."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]

# Self-supervised losses take embeddings of views, not (outputs, batch); they
# live in their own table so the supervised loop's LOSSES stays uniform.
from neurojax.losses.ssl import (SSL_LOSSES, barlow_twins, barlow_twins_multiview,
                                 eq10_invariance, simclr, spectral_contrastive,
                                 vicreg, vicreg_multiview)
