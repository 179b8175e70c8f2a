"""SSLNetwork: embeddings are projector(encoder(x)); features are encoder(x)."""
import jax
import numpy as np
import pytest

from neurojax.models import get_model
from neurojax.models.projector import Projector
from neurojax.models.ssl import build_ssl_network


@pytest.mark.slow
def test_embeddings_compose_encoder_and_projector():
    net = build_ssl_network("small_cnn", {"output_dim": 8}, widths=(4, 8), hidden=None)
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 3)).astype(np.float32)
    variables = net.init(jax.random.PRNGKey(0), x)
    z = net.apply(variables, x)
    h = net.apply(variables, x, method="features")
    assert z.shape == (5, 8) and h.ndim == 2 and h.shape[0] == 5

    encoder = get_model("small_cnn", widths=(4, 8), hidden=None, num_classes=None)
    h_ref = encoder.apply({"params": variables["params"]["encoder"]}, x)
    z_ref = Projector(output_dim=8).apply(
        {"params": variables["params"]["projector"],
         "batch_stats": variables["batch_stats"]["projector"]}, h_ref)
    np.testing.assert_allclose(h, h_ref, rtol=1e-6)
    np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=1e-6)


def test_classifier_arguments_are_refused():
    with pytest.raises(ValueError, match="num_classes"):
        build_ssl_network("small_cnn", {"output_dim": 8}, num_classes=10)
    with pytest.raises(ValueError, match="projector"):
        build_ssl_network("small_cnn", {"output_dims": 8})
