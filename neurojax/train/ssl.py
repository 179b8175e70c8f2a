"""Self-supervised pretraining as a task of the one training loop.

Ghosh et al., "Harnessing small projectors and multiple views for efficient
vision pretraining" (NeurIPS 2024; Ghosh, thesis Part III, Sec. 3-4,
Appendix D). Each step:

1. draws m augmented views of every image of the batch *inside* the
   compiled step (``neurojax.data.views.make_views``, keyed by the step's
   rng, so views are a pure function of (seed, step) and resumption is
   exact); with ``config.views.small_views > 0`` the views come in two
   resolutions (the SwAV-like multi-crop of the paper's E6);
2. runs every view through ``projector(encoder(.))`` -- each resolution
   group as one stacked batch, so BatchNorm statistics are shared by the
   views of a group (FastSSL passes the stacked views through the model);
3. applies ``config.loss`` to the embeddings z of shape (m, n, d): the
   multi-view forms (Eq. 10) take all m views; the two-view losses need
   m = 2.

Evaluation drops the projector and probes the encoder's features of the
labelled train split (kNN, closed-form ridge, and optionally the paper's
trained linear probe: Adam 1e-3, batch 512) on the eval split, and logs the
eigenspectrum decay alpha and effective rank of the eval features
(alpha-ReQ), all with the training time so far; the final evaluation adds
the training time at which each probe first reached each of
``config.probe.accuracy_thresholds``.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from neurojax import data as nj_data
from neurojax.data.augment import AugmentRecipe
from neurojax.data.views import make_views
from neurojax.losses import SSL_LOSSES
from neurojax.metrics import probes, spectrum
from neurojax.metrics.features import gather_features, make_features_step
from neurojax.models.ssl import SSLNetwork, build_ssl_network
from neurojax.train.augmentation import VIEW_STREAM, eval_inputs_fn, recipe_from_block
from neurojax.train.evaluation import eval_batches_per_process
from neurojax.train.step import DATA_AXIS, Objective
from neurojax.models.projector import Projector
from neurojax.train.config import positive_int
from neurojax.train.task import Task, eval_loader_fn, register_task

PROBES = ("knn", "ridge", "linear")



def ssl_loss_fn(name: str, num_views: int, **hyper: Any) -> Callable:
    """``z (m, n, d) -> (loss, aux)`` for an ``SSL_LOSSES`` name.

    Multi-view losses (``*_multiview``) take all m views; two-view losses
    take ``z[0], z[1]`` and need m = 2. ``ValueError`` otherwise, naming
    ``config.loss.name``.
    """
    if name not in SSL_LOSSES:
        raise ValueError(f"config.loss.name must be one of {sorted(SSL_LOSSES)} for "
                         f"config.task='ssl', got {name!r}")
    fn = SSL_LOSSES[name]
    if name.endswith("_multiview"):
        return lambda z: fn(z, **hyper)
    if num_views != 2:
        raise ValueError(f"config.loss.name={name!r} is a two-view loss but the views "
                         f"config gives {num_views} views per image; use "
                         f"'barlow_twins_multiview' or 'vicreg_multiview'")
    return lambda z: fn(z[0], z[1], **hyper)


def augment_recipe(views_cfg, size: int, *, small: bool = False) -> AugmentRecipe:
    """The paper's recipe ``views_cfg.recipe`` (default 'cifar') at ``size``,
    with ``views_cfg.augment``'s (for the small views
    ``views_cfg.small_augment``'s) fields overriding it
    (``neurojax.train.augmentation.recipe_from_block``)."""
    which = "small_augment" if small else "augment"
    return recipe_from_block(views_cfg.get("recipe", "cifar"), size, views_cfg.get(which),
                             name_field="config.views.recipe",
                             overrides_field=f"config.views.{which}")


def view_size(config, image_size: int) -> int:
    """The side of the large views: ``config.views.size``, or the images'."""
    return config.views.get("size", 0) or image_size


def probe_features_fn(model: SSLNetwork, recipe: AugmentRecipe) -> Callable:
    """``(variables, images) -> encoder features`` for the probes: the images
    are resized to the large views' size (when it differs) and normalised as
    the views were, with no other augmentation
    (``neurojax.train.augmentation.eval_inputs_fn``); the projector is dropped."""
    inputs = eval_inputs_fn(recipe)

    def features(variables, x):
        return model.apply(variables, inputs(x), train=False, method="features")
    return features


def view_function(config, image_size: int) -> Callable:
    """``(key, images (n, H, W, C)) -> tuple of (m_g, n, h, w, C)`` from
    ``config.views``."""
    v = config.views
    size = view_size(config, image_size)
    small_views = v.get("small_views", 0)
    small_size = v.get("small_size", 0) or None
    recipe = augment_recipe(v, size)
    small_recipe = augment_recipe(v, small_size, small=True) if small_views else None

    def views(key, images):
        return make_views(key, images, v.num_views, recipe, small_views=small_views,
                          small_size=small_size, small_recipe=small_recipe)
    return views


def ssl_objective(model: SSLNetwork, loss_fn: Callable, views_fn: Callable, *,
                  input_key: str = "image") -> Objective:
    """The objective ``(params, model_state, batch, rng) -> (loss, (aux, model_state))``.

    Views are drawn from ``rng`` (``fold_in(rng, 0)``), each resolution group
    is embedded as one batch in training mode, and ``loss_fn`` gets the
    (m, n, d) embeddings, groups concatenated along the view axis (large
    views first).
    """
    def objective(params, model_state, batch, rng):
        groups = views_fn(jax.random.fold_in(rng, VIEW_STREAM), batch[input_key])
        mutable = list(model_state.keys()) or False
        embeddings = []
        for group in groups:
            m, n = group.shape[:2]
            out = model.apply({"params": params, **model_state},
                              group.reshape((m * n,) + group.shape[2:]), train=True,
                              rngs={"dropout": jax.random.fold_in(rng, 1)}, mutable=mutable)
            z, model_state = out if mutable else (out, model_state)
            model_state = dict(model_state)
            embeddings.append(z.reshape(m, n, -1))
        loss, aux = loss_fn(jnp.concatenate(embeddings, axis=0))
        return loss, (dict(aux), model_state)
    return objective


def _probe_metrics(config, train, test, num_classes: int) -> dict:
    """Probe accuracies and spectrum metrics of (features, labels) pairs."""
    p = config.probe
    (x_tr, y_tr), (x_te, y_te) = train, test
    out = {}
    if "knn" in p.probes:
        k = min(p.knn_k, len(x_tr))
        out["knn_accuracy"] = float(probes.knn_probe(
            x_tr, y_tr, x_te, y_te, k=k, temperature=p.knn_temperature,
            num_classes=num_classes))
    if "ridge" in p.probes:
        out["ridge_accuracy"] = float(probes.ridge_probe(
            x_tr, y_tr, x_te, y_te, num_classes=num_classes, seed=config.seed).test_accuracy)
    if "linear" in p.probes:
        result = probes.linear_probe(x_tr, y_tr, x_te, y_te, num_classes=num_classes,
                                     epochs=p.linear_epochs, batch_size=p.linear_batch_size,
                                     learning_rate=p.linear_lr, seed=config.seed)
        out["linear_accuracy"] = float(result.test_accuracy)
    metrics = spectrum.spectrum_metrics(x_te)  # one eigendecomposition
    out.update({k: float(metrics[k]) for k in ("alpha", "alpha_r2", "effective_rank")})
    return out


def time_to_thresholds(records: list[dict], thresholds) -> dict:
    """``{f'{probe}_seconds_to_{t}': s}``: the training seconds of the first
    eval record whose ``{probe}_accuracy`` reached t (``nan`` if none did)."""
    out = {}
    for key in sorted({k for r in records for k in r if k.endswith("_accuracy")}):
        rows = [r for r in records if key in r]
        times = [r["train_seconds"] for r in rows]
        accs = [r[key] for r in rows]
        for t in thresholds:
            s = probes.time_to_accuracy(times, accs, t)
            out[f"{key[:-len('_accuracy')]}_seconds_to_{t:g}"] = float("nan") if s is None else s
    return out


def _check_resolution_independent(model: SSLNetwork, size: int, small_size: int,
                                  channels: int, field: str = "config.views.small_views"
                                  ) -> None:
    """ValueError unless the encoder's parameters (hence its representation
    size) are the same for large and small views (shapes only, no compute)."""
    def shapes(side):
        x = jax.ShapeDtypeStruct((2, side, side, channels), jnp.float32)
        return jax.tree.map(lambda a: a.shape,
                            jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x))
    large = shapes(size)  # the training views: any error here is not about resolution
    try:
        same = large == shapes(small_size)
    except (TypeError, ValueError):  # shape errors of a view too small for the encoder
        same = False
    if not same:
        raise ValueError(
            f"{field} needs an encoder whose representation does not "
            f"depend on the input size ({size} vs {small_size}): use a globally pooled "
            f"one (a ResNet, or config.model.global_pool=True for small_cnn)")


def ssl_task(config, info, mesh, data_dir) -> Task:
    """The SSL task of the loop; see the module docstring."""
    image_size = int(info.image_shape[0])
    model = build_ssl_network(
        config.model.name, dict(config.projector),
        **{k: v for k, v in config.model.items() if k != "name"})
    num_views = config.views.num_views + config.views.get("small_views", 0)
    loss_hyper = {k: v for k, v in config.loss.items() if k != "name"}
    loss_fn = ssl_loss_fn(config.loss.name, num_views, **loss_hyper)
    objective = ssl_objective(model, loss_fn, view_function(config, image_size))
    if view_size(config, image_size) != image_size:  # the model is initialised on images
        _check_resolution_independent(model, image_size, view_size(config, image_size),
                                      int(info.image_shape[-1]), field="config.views.size")
    if config.views.get("small_views", 0):
        _check_resolution_independent(model, view_size(config, image_size),
                                      config.views.small_size, int(info.image_shape[-1]))

    ds = config.dataset
    batch_size = ds.get("eval_batch_size", ds.batch_size)
    features_step = make_features_step(
        probe_features_fn(model, augment_recipe(config.views, view_size(config, image_size))),
        mesh, keep=("label",), data_axis=DATA_AXIS)
    p = config.probe
    # (loader factory, examples used) per probe split, sized once
    probe_sets = {}
    for which, split, limit in (("train", p.get("train_split", "train"),
                                 p.get("max_train_examples", 0)),
                                ("test", ds.get("eval_split", "test"),
                                 p.get("max_test_examples", 0))):
        total = len(nj_data.data_source(ds.name, split, data_dir))
        probe_sets[which] = (eval_loader_fn(config, split, batch_size, data_dir),
                             min(total, limit) if limit else total)

    def features(state, which):
        loader, n = probe_sets[which]
        variables = {"params": state.params, **state.model_state}
        out = gather_features(features_step, variables, loader(), batch_size=batch_size,
                              num_batches=eval_batches_per_process(n, batch_size))
        return out["features"][:n], out["label"][:n]

    def evaluate_fn(state) -> dict:
        return _probe_metrics(config, features(state, "train"), features(state, "test"),
                              info.num_classes)

    def summarize(records):
        return time_to_thresholds(records, tuple(p.get("accuracy_thresholds", ())))

    return Task(model=model, objective=objective, evaluate=evaluate_fn, summarize=summarize)


def validate_ssl_config(config) -> None:
    """The SSL blocks: projector, views, loss (hyperparameters included), probe."""
    for block in ("projector", "views", "probe"):
        if block not in config:
            raise ValueError(f"config.{block} is missing (needed by config.task='ssl')")
    try:
        Projector(**config.projector)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.projector: {e}") from e
    v = config.views
    positive_int(v.get("num_views"), "config.views.num_views")
    positive_int(v.get("small_views", 0), "config.views.small_views", allow_zero=True)
    positive_int(v.get("size", 0), "config.views.size", allow_zero=True)
    positive_int(v.get("small_size", 0), "config.views.small_size", allow_zero=True)
    num_views = v.num_views + v.get("small_views", 0)
    if num_views < 2:
        raise ValueError(f"config.views must give at least 2 views per image, got {num_views}")
    if v.get("small_views", 0) and not v.get("small_size", 0):
        raise ValueError("config.views.small_size must be > 0 when config.views.small_views > 0")
    augment_recipe(v, v.get("size", 0) or 32)
    if v.get("small_views", 0):
        augment_recipe(v, v.small_size, small=True)
    hyper = {k: val for k, val in config.loss.items() if k != "name"}
    loss_fn = ssl_loss_fn(config.loss.get("name"), num_views, **hyper)
    try:  # checks the hyperparameters' ranges on a tiny eager batch
        loss_fn(np.random.default_rng(0).normal(size=(num_views, 4, 3)).astype(np.float32))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.loss: {e}") from e
    p = config.probe
    probes = tuple(p.get("probes", ()))
    if not probes or any(name not in PROBES for name in probes):
        raise ValueError(f"config.probe.probes must be a non-empty subset of {PROBES}, "
                         f"got {probes!r}")
    for field in ("knn_k", "linear_epochs", "linear_batch_size"):
        positive_int(p.get(field), f"config.probe.{field}")
    for field in ("max_train_examples", "max_test_examples"):
        positive_int(p.get(field, 0), f"config.probe.{field}", allow_zero=True)
    for field in ("knn_temperature", "linear_lr"):
        value = p.get(field)
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"config.probe.{field} must be a positive number, got {value!r}")
    for t in p.get("accuracy_thresholds", ()):
        if not (isinstance(t, (int, float)) and 0 < t <= 1):
            raise ValueError(f"config.probe.accuracy_thresholds must be fractions in (0, 1], "
                             f"got {t!r}")


def _ssl_model(config, info) -> SSLNetwork:
    return build_ssl_network(config.model.name, dict(config.projector),
                             **{k: v for k, v in config.model.items() if k != "name"})


register_task("ssl", build=ssl_task, validate=validate_ssl_config, model=_ssl_model)
