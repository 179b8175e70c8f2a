"""Gradient transformations (optax) and the config-to-optimiser factory."""
from neurojax.optim.factory import (GRADIENT_TRANSFORMS, make_optimizer, make_schedule,
                                    register_gradient_transform, validate_optim_config)
