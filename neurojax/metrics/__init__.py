"""Pure metrics ``metric(features_or_params, ...) -> scalar or dict``.

Spectrum metrics (``neurojax.metrics.spectrum``) take features or a 1-D
eigenvalue array: alpha (alpha-ReQ), effective rank (RankMe), participation
ratio, the tail ratio of alpha-ReQ Theorem 2.2, and ``spectrum_metrics`` for
all of them from one eigendecomposition. ``neurojax.metrics.features``
collects a model's features over a dataset, or streams their covariance.
"""
from neurojax.metrics.features import (CovarianceState, StreamingCovariance,
                                       collect_features, covariance_init,
                                       covariance_matrix, covariance_update,
                                       streaming_covariance)
from neurojax.metrics.spectrum import (DEFAULT_FIT_RANGE, FASTSSL_PLOT_FIT_RANGE,
                                       RANKME_EPS, REPTRIX_FIT_RANGE, PowerLawFit,
                                       accumulation_dtype, alpha, effective_rank,
                                       eigenspectrum, eigenspectrum_from_covariance,
                                       participation_ratio, spectrum_metrics,
                                       tail_ratio)

__all__ = [
    "CovarianceState", "DEFAULT_FIT_RANGE", "FASTSSL_PLOT_FIT_RANGE", "PowerLawFit",
    "RANKME_EPS", "REPTRIX_FIT_RANGE", "StreamingCovariance", "accumulation_dtype",
    "alpha", "collect_features", "covariance_init", "covariance_matrix",
    "covariance_update", "effective_rank", "eigenspectrum",
    "eigenspectrum_from_covariance", "participation_ratio", "spectrum_metrics",
    "streaming_covariance", "tail_ratio",
]
