"""A model's features over a dataset, for the spectrum metrics and the probes.

alpha-ReQ measures alpha on the features of a whole evaluation set (Sec. 3.1:
one forward pass, then one PCA); a probe reads the features of a training
and a test split. Two ways to get there, by memory:

* ``gather_features``: the (n, D) features (of one layer, or a PyTree of
  layers) in host arrays, batch by batch, with any labels the batches carry.
  This is the one dataset pass of the package: the training loop's probes
  (``neurojax.train.ssl``), the spectrum monitor and the analyses use it, on
  one device or data-parallel over a ``jax.sharding.Mesh`` (several processes
  included). ``collect_features`` is its front end for a model and a named
  layer.
* ``streaming_covariance``: the D x D covariance accumulated on the device
  with the pairwise mean/M2 update of Chan, Golub & LeVeque (1979), and its
  eigenvalues; the features are never stored. Memory O(D^2), for n >> D.

Both run the forward pass under ``jax.jit`` in inference mode
(``train=False``) and flatten each example's features to a vector (the
thesis's representation: all units of a layer). ``gather_features`` pads a
partial batch to the batch size (one compiled shape) and drops the padding.

Layering: ``metrics/`` is a leaf folder and imports nothing from ``models/``
or ``train/`` at import time. A named layer is read with
``neurojax.models.intermediate_features``, imported when a layer is asked
for; any other extraction is a ``features_fn(variables, x)`` argument.
"""
import dataclasses
from typing import (Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional,
                    Sequence)

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from neurojax._checks import check_int
from neurojax.metrics.covariance_spectrum import (accumulation_dtype,
                                                  eigenspectrum_from_covariance)

FeaturesFn = Callable[[Any, jax.Array], Any]


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
        from neurojax.models.intermediates import intermediate_features
        base = layer.split(":")[0]   # 'path:k' names the k-th call of a shared module

        def fn(variables, x):
            feats = intermediate_features(model, variables, x,
                                          filter=lambda path, module: path == base)
            if layer not in feats:
                raise ValueError(
                    f"layer {layer!r} was not recorded (recorded: {sorted(feats)}); "
                    "neurojax.models.layer_names(model, x) lists the layer paths")
            return feats[layer]

    def flattened(variables, x):
        f = jnp.asarray(fn(variables, x))
        return f.reshape(f.shape[0], -1)
    return flattened


def _per_example(tree):
    """Every leaf (n, ...) flattened to (n, D)."""
    return jax.tree.map(lambda a: jnp.reshape(a, (a.shape[0], -1)), tree)


# ------------------------------------------------------------------ batches


def _batches(batches: Iterable[Any], *, input_key: str, keys: Optional[Sequence[str]],
             max_examples: Optional[int]) -> Iterator[dict]:
    """Dict batches holding ``keys`` (default: every key), cut to
    ``max_examples`` in total; an array batch is ``{input_key: array}``.

    Stops before pulling a batch it does not need, so an endless iterator is
    fine once ``max_examples`` is set; empty batches are skipped.
    """
    if max_examples is not None:
        check_int("max_examples (None or an int)", max_examples)
    seen = 0
    for batch in batches:
        if not isinstance(batch, Mapping):
            batch = {input_key: batch}
        if keys is not None:
            missing = [k for k in keys if k not in batch]
            if missing:
                raise ValueError(f"the batches have no {missing} (keys: {sorted(batch)})")
            batch = {k: batch[k] for k in keys}
        batch = {k: np.asarray(v) for k, v in batch.items()}
        if max_examples is not None:
            batch = {k: v[:max_examples - seen] for k, v in batch.items()}
        n = len(next(iter(batch.values())))
        if n == 0:
            continue
        seen += n
        yield batch
        if max_examples is not None and seen >= max_examples:
            return


def _array_batches(arrays: Mapping[str, Any], batch_size: Optional[int]) -> Iterator[dict]:
    """Consecutive slices of a dataset held as arrays (all of it without a
    ``batch_size``)."""
    n = len(next(iter(arrays.values())))
    size = n if batch_size is None else batch_size
    for start in range(0, n, max(size, 1)):
        yield {k: v[start:start + size] for k, v in arrays.items()}


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> dict:
    """Pads a host batch with zero rows to ``size`` and adds a 0/1 float32
    ``mask`` (1 for the real rows)."""
    n = len(next(iter(batch.values())))
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
           for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def padded_batches(batches: Iterable[Any], batch_size: Optional[int] = None, *,
                   num_batches: Optional[int] = None, keys: Optional[Sequence[str]] = None,
                   input_key: str = "image", max_examples: Optional[int] = None,
                   multiple_of: int = 1) -> Iterator[dict]:
    """Host batches padded to one size, each with a ``mask`` (see :func:`pad_batch`).

    The size is ``batch_size`` (default: the largest batch so far, i.e. the
    first one in a loader with a smaller last batch) rounded up to a multiple
    of ``multiple_of`` (the devices a batch is split over). ``num_batches``
    runs exactly that many: after the batches run out, fully masked ones
    follow, so that every process of a multi-host run issues the same steps
    (pass the largest process shard's count). ``keys``, ``input_key`` and
    ``max_examples`` as in :func:`gather_features`.
    """
    if batch_size is not None:
        check_int("batch_size", batch_size)
    if num_batches is not None:
        check_int("num_batches (None or an int)", num_batches, 0)
    size = batch_size
    template = None
    source = _batches(batches, input_key=input_key, keys=keys, max_examples=max_examples)
    count = 0
    while num_batches is None or count < num_batches:
        batch = next(source, None)
        if batch is None:
            if num_batches is None or template is None:
                return
            batch = {k: v[:0] for k, v in template.items()}   # all padding
        n = len(next(iter(batch.values())))
        if batch_size is not None and n > batch_size:
            raise ValueError(f"a batch of {n} examples exceeds batch_size={batch_size}")
        size = max(size or 0, n)
        template = batch if template is None else template
        yield pad_batch(batch, -(-size // multiple_of) * multiple_of)
        count += 1


# ------------------------------------------------------------------ the pass


@dataclasses.dataclass(frozen=True)
class FeaturesStep:
    """The compiled per-batch pass of :func:`gather_features` (build it once
    with :func:`make_features_step`, call it on every pass).

    ``step(variables, batch) -> {"features": tree of (b, D), **kept}`` (and
    the batch's ``mask`` passed through when it has one).
    """
    fn: Callable
    mesh: Optional[Mesh]
    input_key: str
    keep: tuple
    data_axis: str

    def __call__(self, variables, batch):
        return self.fn(variables, batch)

    def place(self, batch: Mapping[str, np.ndarray]) -> dict:
        """A padded host batch on the device(s): split over the mesh's data
        axis (each process passes its own rows; the step sees the global
        batch), or as it is without a mesh."""
        if self.mesh is None:
            return dict(batch)
        sharding = NamedSharding(self.mesh, P(self.data_axis))
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def make_features_step(features_fn: FeaturesFn, mesh: Optional[Mesh] = None, *,
                       input_key: str = "image", keep: Sequence[str] = (),
                       data_axis: str = "data") -> FeaturesStep:
    """Compiles ``features_fn`` for :func:`gather_features`.

    ``features_fn(variables, x)`` maps the inputs ``batch[input_key]`` to
    (b, ...) features, or to a PyTree of them (several layers from one
    forward pass); each leaf is flattened per example. ``keep`` names the
    batch keys passed through with the features (e.g. ``('label',)`` for a
    probe). With a ``mesh`` the batch is split along its first dimension over
    the ``data_axis`` of the mesh and the variables and outputs are
    replicated, so every process receives the outputs of the whole global
    batch.
    """
    keep = tuple(keep)

    def step(variables, batch):
        out = {"features": _per_example(features_fn(variables, batch[input_key]))}
        out.update({k: batch[k] for k in keep})
        if "mask" in batch:
            out["mask"] = batch["mask"]
        return out

    if mesh is None:
        fn = jax.jit(step)
    else:
        if data_axis not in mesh.axis_names:
            raise ValueError(f"data_axis {data_axis!r} is not an axis of the mesh "
                             f"{mesh.axis_names}")
        fn = jax.jit(step, in_shardings=(NamedSharding(mesh, P()),
                                         NamedSharding(mesh, P(data_axis))),
                     out_shardings=NamedSharding(mesh, P()))
    return FeaturesStep(fn=fn, mesh=mesh, input_key=input_key, keep=keep, data_axis=data_axis)


def _assemble(chunks: list) -> np.ndarray:
    """One array from per-batch chunks, each freed as soon as it is copied
    (the peak is the result plus one batch, never two copies)."""
    out = np.empty((sum(len(c) for c in chunks),) + chunks[0].shape[1:], chunks[0].dtype)
    start = 0
    for i, chunk in enumerate(chunks):
        out[start:start + len(chunk)] = chunk
        start += len(chunk)
        chunks[i] = None
    return out


def gather_features(step: FeaturesStep, variables: Any, batches: Any, *,
                    batch_size: Optional[int] = None, num_batches: Optional[int] = None,
                    max_examples: Optional[int] = None, dtype: Any = np.float32) -> dict:
    """Features of every example over a dataset, in host memory.

    Each batch is padded to ``batch_size`` (one compiled shape; see
    :func:`padded_batches`), placed on the step's mesh (or device), run
    through ``step`` and copied to the host while the next batch runs (JAX
    dispatches asynchronously); the padding is dropped.

    Args:
        step: from :func:`make_features_step`.
        variables: the model's variables (``params``, ``batch_stats`` ...).
        batches: an iterable of dict batches (e.g. a ``neurojax.data``
            loader; only the step's input and ``keep`` keys are read, so
            non-numeric features such as string ids are never transferred),
            or of input arrays; or a whole dataset as a dict of arrays or one
            input array, cut into ``batch_size`` slices (one batch without it).
        batch_size: the padded size (default: the largest batch so far);
            per process in a multi-process run.
        num_batches: run exactly this many steps (multi-host: the largest
            process shard's count, see :func:`padded_batches`).
        max_examples: stop after this many examples (the last batch is cut,
            no further batch is pulled).
        dtype: host dtype of the features (the kept keys keep theirs).

    Returns:
        ``{"features": ..., **kept}``: the features as the step's features
        function returns them (an array or a PyTree), each leaf (n, D) in
        batch order, examples of every process included; the kept keys (n,
        ...).
    """
    if isinstance(batches, Mapping):
        batches = _array_batches(batches, batch_size)
    elif isinstance(batches, (np.ndarray, jax.Array)):
        batches = _array_batches({step.input_key: batches}, batch_size)
    multiple = 1 if step.mesh is None else len(step.mesh.local_devices)
    feature_chunks: Optional[list] = None
    kept_chunks: dict = {k: [] for k in step.keep}
    treedef = None
    pending = None

    def drain(out):
        nonlocal feature_chunks, treedef
        out = jax.device_get(out)
        keep = out["mask"] > 0
        leaves, treedef = jax.tree.flatten(out["features"])
        if feature_chunks is None:
            feature_chunks = [[] for _ in leaves]
        for chunks, leaf in zip(feature_chunks, leaves):
            chunks.append(np.asarray(leaf[keep], dtype))
        for k in step.keep:
            kept_chunks[k].append(np.asarray(out[k][keep]))

    for batch in padded_batches(batches, batch_size, num_batches=num_batches,
                                keys=(step.input_key, *step.keep), input_key=step.input_key,
                                max_examples=max_examples, multiple_of=multiple):
        out = step(variables, step.place(batch))   # dispatched; runs while the host copies
        if pending is not None:
            drain(pending)
        pending = out
    if pending is not None:
        drain(pending)
    if feature_chunks is None or not sum(len(c) for c in feature_chunks[0]):
        raise ValueError("the batches yielded no examples to compute features on")
    features = jax.tree.unflatten(treedef, [_assemble(c) for c in feature_chunks])
    return {"features": features, **{k: _assemble(v) for k, v in kept_chunks.items()}}


def collect_features(model: Any, variables: Any, batches: Iterable[Any], *,
                     layer: Optional[str], max_examples: Optional[int] = None,
                     features_fn: Optional[FeaturesFn] = None,
                     input_key: str = "image", dtype: Any = np.float32) -> np.ndarray:
    """Features of one layer over a dataset, as one (n, D) host array, on one
    device: :func:`gather_features` for a model and a layer name.

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
    step = make_features_step(_features_fn(model, layer, features_fn), input_key=input_key)
    return gather_features(step, variables, batches, max_examples=max_examples,
                           dtype=dtype)["features"]


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
    else float32; see ``neurojax.metrics.covariance_spectrum.accumulation_dtype``)."""
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
    for batch in _batches(batches, input_key=input_key, keys=(input_key,),
                          max_examples=max_examples):
        x = batch[input_key]
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
