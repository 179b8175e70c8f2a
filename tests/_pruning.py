"""The bias-free MLPs of the pruning tests (tests/metrics/test_saliency.py,
tests/train/test_pruning.py): with no biases the network is homogeneous in
each layer's weights, so SynFlow's closed forms hold."""
import jax
import jax.numpy as jnp

from neurojax.models import MLP


def mlp(widths, d_in, d_out, seed=0, dtype=jnp.float32):
    model = MLP(widths=widths, num_outputs=d_out, use_bias=False)
    params = model.init(jax.random.PRNGKey(seed), jnp.ones((1, d_in)))["params"]
    return model, jax.tree.map(lambda x: x.astype(dtype), params)


def apply_of(model):
    return lambda v, x: model.apply(v, x)
