"""Gradient transformations (optax) and the config-to-optimiser factory."""
from neurojax.optim.diagnostics import (GradientRMSState, RecordedMetricsState, gradient_rms,
                                        gradient_rms_metrics, record_gradient_rms,
                                        record_metrics)
from neurojax.optim.factory import (GRADIENT_TRANSFORMS, make_optimizer, make_schedule,
                                    register_gradient_transform, validate_optim_config)
from neurojax.optim.injection import (SCALINGS, ZERO_SUM_NORMALIZATIONS, InjectNoiseState,
                                      gradient_bias_direction, inject_gradient_bias,
                                      inject_gradient_noise, noise_variance_factor,
                                      random_unit_vector, zero_sum_noise_set,
                                      zero_sum_second_moment)
