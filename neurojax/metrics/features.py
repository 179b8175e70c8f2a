"""A model's features over a dataset, for the spectrum metrics.

alpha-ReQ measures alpha on the features of a whole evaluation set (Sec. 3.1:
one forward pass, then one PCA). Two ways to get there, by memory:

* ``collect_features``: the (n, D) features in one host array, written in
  place batch by batch (the activations are held once, plus one batch), for
  ``eigenspectrum`` (which takes the n x n Gram route when n < D).
* ``streaming_covariance``: the D x D covariance accumulated on the device
  with the pairwise mean/M2 update of Chan, Golub & LeVeque (1979), and its
  eigenvalues; the features are never stored. Memory O(D^2), for n >> D.

Both run the forward pass under ``jax.jit`` (one compile per batch shape: a
smaller last batch compiles once more), in inference mode (``train=False``),
and flatten each example's features to a vector (the thesis's
representation: all units of a layer).

Layering (DESIGN.md): ``metrics/`` is a leaf folder and imports nothing from
``models/`` at import time. A named layer is read with
``neurojax.models.intermediate_features``, imported when a layer is asked
for; any other extraction is a ``features_fn(variables, x)`` argument.
"""
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from neurojax.metrics.spectrum import accumulation_dtype, eigenspectrum_from_covariance

FeaturesFn = Callable[[Any, jax.Array], jax.Array]


def _features_fn(model: Any, layer: Optional[str],
                 features_fn: Optional[FeaturesFn]) -> FeaturesFn:
    """(variables, x) -> (batch, D) features of ``layer`` (None: model output)."""
    if features_fn is not None:
        if layer is not None:
            raise ValueError("pass either layer or features_fn, not both "
                             f"(got layer={layer!r})")
        fn = features_fn
    elif model is None:
        raise ValueError("model is None: pass a model or a features_fn")
    elif layer is None:
        def fn(variables, x):
            return model.apply(variables, x, train=False)
    else:
        if not isinstance(layer, str):
            raise ValueError(f"layer must be a module path string or None, got {layer!r}")
        # Deferred import keeps metrics/ free of models/ at import time.
        from neurojax.models.features import intermediate_features
        base = layer.split(":")[0]   # 'path:k' names the k-th call of a shared module

        def fn(variables, x):
            feats = intermediate_features(model, variables, x,
                                          filter=lambda path, module: path == base)
            if layer not in feats:
                raise ValueError(
                    f"layer {layer!r} was not recorded (recorded: {sorted(feats)}); "
                    "neurojax.models.layer_names(model, x) lists the layer paths")
            return feats[layer]

    def flat(variables, x):
        f = jnp.asarray(fn(variables, x))
        return f.reshape(f.shape[0], -1)
    return flat


def _inputs(batches: Iterable[Any], max_examples: Optional[int],
            input_key: str) -> Iterator[Any]:
    """Model inputs from the batches, cut to ``max_examples`` in total.

    Stops before pulling a batch it does not need, so an endless iterator is
    fine once ``max_examples`` is set.
    """
    if max_examples is not None and (not isinstance(max_examples, (int, np.integer))
                                     or max_examples < 1):
        raise ValueError(f"max_examples must be None or an int >= 1, got {max_examples!r}")
    seen = 0
    for batch in batches:
        x = batch[input_key] if isinstance(batch, Mapping) else batch
        if max_examples is not None:
            x = x[:max_examples - seen]
        if x.shape[0] == 0:
            continue
        seen += x.shape[0]
        yield x
        if max_examples is not None and seen >= max_examples:
            return


def collect_features(model: Any, variables: Any, batches: Iterable[Any], *,
                     layer: Optional[str], max_examples: Optional[int] = None,
                     features_fn: Optional[FeaturesFn] = None,
                     input_key: str = "image", dtype: Any = np.float32) -> np.ndarray:
    """Features of one layer over a dataset, as one (n, D) host array.

    Each batch's features are computed under ``jax.jit`` and copied to the
    host while the next batch runs (JAX dispatches asynchronously). With
    ``max_examples`` the output array is allocated once, at that size, and
    filled in place; without it the per-batch arrays are moved into the
    output one at a time and freed, so the peak is the features plus one
    batch, never two copies.

    Args:
        model: a Flax Linen module called as ``model.apply(variables, x,
            train=False)``; may be None with ``features_fn``.
        variables: its variables (``params``, ``batch_stats`` ...).
        batches: an iterable of dicts holding ``batch[input_key]`` (or of
            input arrays), e.g. a ``neurojax.data`` loader.
        layer: a module path as ``neurojax.models.layer_names`` lists it
            ('act_0', 'stage4_block2', ...; 'path:k' for the k-th call of a
            shared module), or None for the model's output.
        max_examples: stop after this many examples (the last batch is cut).
        features_fn: ``(variables, x) -> features`` to use instead of
            ``model``/``layer``.
        input_key: the batch key of the model input.
        dtype: host dtype of the result.

    Returns:
        (n, D) array, examples in batch order, each flattened.
    """
    fn = jax.jit(_features_fn(model, layer, features_fn))
    out: Optional[np.ndarray] = None
    chunks: list[Optional[np.ndarray]] = []
    filled = 0
    pending = None

    def store(feats: jax.Array) -> None:
        nonlocal out, filled
        if max_examples is None:
            chunks.append(np.asarray(feats, dtype))
            return
        if out is None:
            out = np.empty((max_examples, feats.shape[1]), dtype)
        out[filled:filled + feats.shape[0]] = np.asarray(feats)
        filled += feats.shape[0]

    for x in _inputs(batches, max_examples, input_key):
        feats = fn(variables, x)      # dispatched; runs while the host copies
        if pending is not None:
            store(pending)
        pending = feats
    if pending is None:
        raise ValueError("batches yielded no examples")
    store(pending)

    if max_examples is not None:
        return out[:filled]
    out = np.empty((sum(c.shape[0] for c in chunks), chunks[0].shape[1]), dtype)
    start = 0
    for i, chunk in enumerate(chunks):
        out[start:start + chunk.shape[0]] = chunk
        start += chunk.shape[0]
        chunks[i] = None              # free each batch as soon as it is copied
    return out


class CovarianceState(NamedTuple):
    """Running statistics of a stream of feature vectors.

    ``count`` examples (a float, exact up to 2^24 examples in float32),
    their ``mean`` (D,) and ``m2`` (D, D) = sum_i (f_i - mean)(f_i - mean)^T.
    """
    count: jax.Array
    mean: jax.Array
    m2: jax.Array


def covariance_init(dim: int, dtype: Any = None) -> CovarianceState:
    """Empty statistics for D = ``dim`` features (dtype: float64 under x64,
    else float32; see ``neurojax.metrics.spectrum.accumulation_dtype``)."""
    dt = accumulation_dtype() if dtype is None else jnp.dtype(dtype)
    return CovarianceState(count=jnp.zeros((), dt), mean=jnp.zeros((dim,), dt),
                           m2=jnp.zeros((dim, dim), dt))


def covariance_update(state: CovarianceState, features: jax.Array) -> CovarianceState:
    """Adds a batch of features (b, ...) to the running statistics.

    Chan, Golub & LeVeque (1979) pairwise update: with the batch's own mean
    mu_b and centred scatter M2_b (two-pass within the batch),

        n = n_a + n_b,   delta = mu_b - mu_a,
        mu = mu_a + delta n_b / n,
        M2 = M2_a + M2_b + delta delta^T n_a n_b / n.

    Unlike accumulating sum f f^T and subtracting n mu mu^T at the end, no
    large terms cancel, so float32 keeps the small eigenvalues. Jittable;
    the batch must not be empty.
    """
    x = jnp.asarray(features)
    x = x.reshape(x.shape[0], -1).astype(state.mean.dtype)
    n_b = x.shape[0]
    mu_b = jnp.mean(x, axis=0)
    xc = x - mu_b
    m2_b = jnp.matmul(xc.T, xc, precision=jax.lax.Precision.HIGHEST)
    n = state.count + n_b
    delta = mu_b - state.mean
    return CovarianceState(
        count=n,
        mean=state.mean + delta * (n_b / n),
        m2=state.m2 + m2_b + jnp.outer(delta, delta) * (state.count * n_b / n))


def covariance_matrix(state: CovarianceState) -> jax.Array:
    """Sigma_n = M2 / n, the 1/n covariance of alpha-ReQ Sec. 2.1."""
    return state.m2 / state.count


class StreamingCovariance(NamedTuple):
    """``eigenvalues`` (descending, min(n, D) of them unless truncated) of the
    ``covariance`` (D, D) of ``count`` examples with mean ``mean``."""
    eigenvalues: jax.Array
    covariance: jax.Array
    mean: jax.Array
    count: int


def streaming_covariance(model: Any, variables: Any, batches: Iterable[Any], *,
                         layer: Optional[str], max_examples: Optional[int] = None,
                         features_fn: Optional[FeaturesFn] = None,
                         input_key: str = "image",
                         max_eigenvalues: Optional[int] = None,
                         dtype: Any = None) -> StreamingCovariance:
    """Covariance eigenspectrum of a layer over a dataset, features never stored.

    The forward pass and ``covariance_update`` are one compiled step, so the
    features stay on the device; only the D x D statistics persist. The
    eigenvalues equal ``eigenspectrum(collect_features(...))`` (same 1/n
    covariance, same centring, same count min(n, D)); pass the result's
    ``eigenvalues`` to ``spectrum_metrics``.

    Arguments as in ``collect_features``; ``dtype`` is the accumulation dtype
    (default float64 under x64, else float32).
    """
    fn = _features_fn(model, layer, features_fn)

    def step(state, variables, x):
        return covariance_update(state, fn(variables, x))
    step = jax.jit(step, donate_argnums=0)   # update the D x D buffer in place

    state = None
    for x in _inputs(batches, max_examples, input_key):
        if state is None:
            dim = jax.eval_shape(fn, variables, x).shape[1]
            state = covariance_init(dim, dtype)
        state = step(state, variables, x)
    if state is None:
        raise ValueError("batches yielded no examples")
    count = int(state.count)
    cov = covariance_matrix(state)
    m = min(count, cov.shape[0])
    lam = eigenspectrum_from_covariance(
        cov, max_eigenvalues=m if max_eigenvalues is None else min(m, max_eigenvalues))
    return StreamingCovariance(eigenvalues=lam, covariance=cov, mean=state.mean,
                               count=count)
