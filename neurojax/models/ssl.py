"""An encoder with a projector head: the network self-supervised losses train.

Ghosh et al. (NeurIPS 2024; thesis Part III, Sec. 3.3 and Appendix D) train
``projector(encoder(x))`` with the SSL loss on the projector's output (the
embeddings z) and evaluate the encoder's output (the representation h,
"projector dropped") with probes. ``SSLNetwork`` keeps both reachable from
one set of variables: ``apply(v, x)`` gives z, ``apply(v, x,
method='features')`` gives h.
"""
from typing import Any

import flax.linen as nn
import jax

from neurojax.models.projector import Projector
from neurojax.models.registry import get_model, model_kwargs


class SSLNetwork(nn.Module):
    """``projector(encoder(x))``; variables live under ``encoder`` and ``projector``.

    Attributes:
        encoder: a module called as ``encoder(x, train)`` returning (n, D)
            features (a registry model built with ``num_classes=None``).
        projector: a module called as ``projector(h, train)``.
    """
    encoder: nn.Module
    projector: nn.Module

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Embeddings z = projector(encoder(x)), shape (n, d)."""
        return self.projector(self.encoder(x, train=train), train=train)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The representation h = encoder(x) that probes evaluate, shape (n, D)."""
        return self.encoder(x, train=train)


def build_ssl_network(encoder_name: str, projector_kwargs: dict[str, Any],
                      **encoder_kwargs: Any) -> SSLNetwork:
    """An ``SSLNetwork`` from a registry encoder name and ``Projector`` fields.

    The encoder's classifier is removed (``num_classes=None`` or
    ``num_outputs=None``, whichever the model has), so it returns the
    representation its classifier would see. ``ValueError`` for unknown names
    or arguments, naming them.

    The encoder's compute ``dtype`` (e.g. ``'bfloat16'``, from
    ``config.model.dtype``) is the projector's too unless
    ``projector_kwargs`` sets its own; both return float32.
    """
    allowed = model_kwargs(encoder_name)
    for field in ("num_classes", "num_outputs"):
        if field in encoder_kwargs:
            raise ValueError(f"{field} is fixed to None for an SSL encoder; "
                             f"remove it from the encoder arguments")
        if field in allowed:
            encoder_kwargs[field] = None
    encoder = get_model(encoder_name, **encoder_kwargs)
    if encoder_kwargs.get("dtype") is not None and "dtype" not in projector_kwargs:
        projector_kwargs = {**projector_kwargs, "dtype": encoder_kwargs["dtype"]}
    try:
        projector = Projector(**projector_kwargs)
    except TypeError as e:
        raise ValueError(f"projector arguments: {e}") from e
    return SSLNetwork(encoder=encoder, projector=projector)
