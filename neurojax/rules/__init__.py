"""Learning rules without weight transport (``custom_vjp`` layers whose
backward pass uses feedback weights B) and their local losses on B."""
from neurojax.rules.alignment import (LOCAL_RULES, PRIMITIVE_NAMES, PRIMITIVES, amp,
                                      decay, local_feedback_grad, local_loss, null,
                                      reconstruct, self_alignment, sparse)
from neurojax.rules.feedback import (apply_rule, conv_op, dense_op, feedback_conv,
                                     feedback_dense, feedback_linear)
from neurojax.rules.layers import FEEDBACK_PARAM, FeedbackConv, FeedbackDense
from neurojax.rules.optim import (clip_by_forward_norm, feedback_labels, feedback_mask,
                                  forward_params, rule_optimizer)
from neurojax.rules.rule import (METAPARAMETER_FIELDS, NOISE_DISTRIBUTIONS, RULE_NAMES, Rule,
                                 get_rule, rule_metaparameters)

__all__ = [
    "FEEDBACK_PARAM", "FeedbackConv", "FeedbackDense", "LOCAL_RULES", "METAPARAMETER_FIELDS",
    "NOISE_DISTRIBUTIONS", "PRIMITIVES",
    "PRIMITIVE_NAMES", "RULE_NAMES", "Rule", "amp", "apply_rule", "clip_by_forward_norm",
    "conv_op", "decay",
    "dense_op", "feedback_conv", "feedback_dense", "feedback_labels", "feedback_linear",
    "feedback_mask", "forward_params", "get_rule", "local_feedback_grad", "local_loss", "null",
    "reconstruct", "rule_metaparameters", "rule_optimizer", "self_alignment", "sparse",
]

# Platonic projections (closed-form, gradient-free fits that return MLP parameter trees).
from neurojax.rules.platonic import (eq72_weights, fit_platonic, platonic_pca_projection,
                                     sorted_pca_indices, sorted_pca_weights)

__all__ += ["eq72_weights", "fit_platonic", "platonic_pca_projection", "sorted_pca_indices",
            "sorted_pca_weights"]
