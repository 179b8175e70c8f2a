"""Pure metrics ``metric(features_or_params, ...) -> scalar or dict``.

Spectrum metrics (``neurojax.metrics.spectrum``) take features or a 1-D
eigenvalue array: alpha (alpha-ReQ), effective rank (RankMe), participation
ratio, the tail ratio of alpha-ReQ Theorem 2.2, and ``spectrum_metrics`` for
all of them from one eigendecomposition. ``neurojax.metrics.features``
gathers a model's features over a dataset (one device or a mesh), or streams
their covariance.
Probes (``neurojax.metrics.probes``): closed-form ridge, the thesis' trained
linear probe, weighted kNN. Curvature (``neurojax.metrics.curvature``):
Hessian-vector products, Hutchinson trace, Lanczos extremal eigenvalues.
"""
from neurojax.metrics.curvature import (dense_hessian, gradient_norm, hessian_frobenius_norm,
                                        hessian_trace, hvp, lanczos_eigenvalues)
from neurojax.metrics.features import (CovarianceState, FeaturesStep, StreamingCovariance,
                                       collect_features, covariance_init,
                                       covariance_matrix, covariance_update,
                                       gather_features, make_features_step,
                                       streaming_covariance)
from neurojax.metrics.layer_learning import (PureVoronoiMap, layer_selection_entropy,
                                             least_squares_distance, least_squares_distances,
                                             pure_voronoi_map, selection_entropy)
from neurojax.metrics.probes import (DEFAULT_KNN_K, DEFAULT_KNN_TEMPERATURE,
                                     DEFAULT_RIDGE_REGULARIZERS, LinearProbeResult,
                                     RidgeProbeResult, knn_probe, linear_probe, ridge_probe,
                                     time_to_accuracy)
from neurojax.metrics.redundancy import (k_filter_arrays, k_filter_indices, k_filter_mask,
                                         k_redundancy, k_redundancy_fractions,
                                         same_label_neighbours)
from neurojax.metrics.covariance_spectrum import (accumulation_dtype, eigenspectrum,
                                                  eigenspectrum_from_covariance)
from neurojax.metrics.spectrum import (DEFAULT_FIT_RANGE, FASTSSL_PLOT_FIT_RANGE,
                                       RANKME_EPS, REPTRIX_FIT_RANGE, PowerLawFit, alpha,
                                       effective_rank, participation_ratio, spectrum_metrics,
                                       tail_ratio)
from neurojax.metrics.credit_assignment import (alignment_metrics, angle, gradient_angles,
                                                layer_paths, weight_angles)

__all__ = [
    "DEFAULT_KNN_K", "DEFAULT_KNN_TEMPERATURE", "DEFAULT_RIDGE_REGULARIZERS",
    "LinearProbeResult", "RidgeProbeResult", "knn_probe", "linear_probe", "ridge_probe",
    "time_to_accuracy", "dense_hessian", "gradient_norm", "hessian_frobenius_norm",
    "hessian_trace", "hvp", "lanczos_eigenvalues",
    "CovarianceState", "DEFAULT_FIT_RANGE", "FASTSSL_PLOT_FIT_RANGE", "PowerLawFit",
    "RANKME_EPS", "REPTRIX_FIT_RANGE", "StreamingCovariance", "accumulation_dtype",
    "alpha", "collect_features", "covariance_init", "covariance_matrix", "FeaturesStep",
    "gather_features", "make_features_step",
    "covariance_update", "effective_rank", "eigenspectrum",
    "eigenspectrum_from_covariance", "participation_ratio", "spectrum_metrics",
    "streaming_covariance", "tail_ratio",
    "PureVoronoiMap", "layer_selection_entropy", "least_squares_distance",
    "least_squares_distances", "pure_voronoi_map", "selection_entropy",
    "k_filter_arrays", "k_filter_indices", "k_filter_mask", "k_redundancy",
    "k_redundancy_fractions", "same_label_neighbours",
    "alignment_metrics", "angle", "gradient_angles", "layer_paths", "weight_angles",
]
