"""Training-time augmentation drawn inside the compiled step, for every task.

One code path for the SSL task's views (``neurojax.train.ssl``) and the
supervised task's augmented batches: a config block names one of the
paper's recipes (:data:`RECIPES`, ``neurojax.data.augment``) and overrides
some of its :class:`~neurojax.data.augment.AugmentRecipe` fields
(:func:`recipe_from_block`); the views come from
``neurojax.data.views.make_views`` under a key derived from the step's rng,
so a resumed run draws the same views as an uninterrupted one.

The supervised task reads the optional block ``config.augment``::

    augment = dict(recipe='imagenet',   # '' (default): no augmentation
                   size=0,              # output side; 0 = the images'
                   overrides=dict(jitter_p=0.0, mean=..., std=...))

With a recipe, every training batch is replaced by one view per image
(:func:`augmented_objective`); evaluation is not augmented but sees the
images as the recipe presents them, resized to its ``out_size`` and
normalised with its ``mean``/``std`` (:func:`eval_inputs_fn`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from neurojax.data.augment import (AugmentRecipe, cifar_recipe, imagenet_recipe, normalize,
                                   stl10_recipe)
from neurojax.data.views import make_views
from neurojax._checks import check_int
from neurojax.train.step import Objective, takes_step

RECIPES = {"cifar": cifar_recipe, "stl10": stl10_recipe, "imagenet": imagenet_recipe}
AUGMENT_FIELDS = ("recipe", "size", "overrides")
#: the fold_in of the step's rng that the views are drawn from (as the SSL task's)
VIEW_STREAM = 0


def recipe_from_block(name, size: int, overrides, *, name_field: str,
                      overrides_field: str) -> AugmentRecipe:
    """``RECIPES[name](size)`` with ``overrides`` (a mapping of
    :class:`AugmentRecipe` fields; lists become tuples) replacing its fields.
    ``ValueError`` naming ``name_field`` (e.g. ``'config.views.recipe'``) for
    an unknown name, ``overrides_field`` for a bad override."""
    if name not in RECIPES:
        raise ValueError(f"{name_field} must be one of {sorted(RECIPES)}, got {name!r}")
    fields = {k: tuple(v) if isinstance(v, list) else v
              for k, v in dict(overrides or {}).items()}
    try:
        return dataclasses.replace(RECIPES[name](size), **fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{overrides_field}: {e}") from e


def single_view(key: jax.Array, images: jax.Array, recipe: AugmentRecipe) -> jax.Array:
    """One view of every image, ``(n, S, S, C)``: ``make_views``' only view
    (image ``i`` from ``jax.random.split(jax.random.split(key)[0], (1, n))[0, i]``)."""
    return make_views(key, images, 1, recipe)[0][0]


def eval_inputs_fn(recipe: AugmentRecipe) -> Callable[[jax.Array], jax.Array]:
    """``images (n, H, W, C) -> (n, S, S, C)``: the un-augmented inputs of a
    model trained on ``recipe``'s views, resized (bilinear) to its
    ``out_size`` when they differ and normalised as the views were."""
    def inputs(x):
        size = recipe.out_size
        if x.shape[1:3] != (size, size):
            x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")
        if recipe.mean is not None:
            x = normalize(x, recipe.mean, recipe.std)
        return x
    return inputs


def inputs_objective(objective: Objective, transform: Callable, *,
                     input_key: str = "image") -> Objective:
    """``objective`` on ``batch[input_key]`` replaced by ``transform(key, images)``,
    ``key = fold_in(rng, VIEW_STREAM)``; ``rng`` itself (the model's dropout
    rng) and a step (:func:`~neurojax.train.step.takes_step`) pass through."""
    def wrapped(params, model_state, batch, rng, **extra):
        images = transform(jax.random.fold_in(rng, VIEW_STREAM), batch[input_key])
        return objective(params, model_state, {**batch, input_key: images}, rng, **extra)
    wrapped.takes_step = takes_step(objective)
    return wrapped


def augmented_objective(objective: Objective, recipe: AugmentRecipe, *,
                        input_key: str = "image") -> Objective:
    """``objective`` trained on one ``recipe`` view per image (:func:`single_view`)."""
    return inputs_objective(objective, lambda key, x: single_view(key, x, recipe),
                            input_key=input_key)


def eval_inputs_objective(objective: Objective, recipe: AugmentRecipe, *,
                          input_key: str = "image") -> Objective:
    """``objective`` on the un-augmented inputs (:func:`eval_inputs_fn`)."""
    inputs = eval_inputs_fn(recipe)
    return inputs_objective(objective, lambda key, x: inputs(x), input_key=input_key)


def config_recipe(config, image_size: int) -> Optional[AugmentRecipe]:
    """The recipe of ``config.augment`` at ``size`` (0: ``image_size``), or
    ``None`` without a block or with ``recipe=''``."""
    block = config.get("augment")
    if not block or not block.get("recipe", ""):
        return None
    return recipe_from_block(block.recipe, block.get("size", 0) or image_size,
                             block.get("overrides"), name_field="config.augment.recipe",
                             overrides_field="config.augment.overrides")


def validate_augment_config(config) -> None:
    """``ValueError`` naming the bad field of ``config.augment`` (absent: fine)."""
    block = config.get("augment")
    if block is None:
        return
    if not callable(getattr(block, "items", None)):
        raise ValueError(f"config.augment must be a block with a 'recipe', got {block!r}")
    for key in block.keys():
        if key not in AUGMENT_FIELDS:
            raise ValueError(f"config.augment.{key} is not a field of config.augment; "
                             f"allowed: {list(AUGMENT_FIELDS)}")
    name = block.get("recipe", "")
    if name == "":
        if block.get("overrides"):
            raise ValueError("config.augment.overrides needs a config.augment.recipe")
        return
    if name not in RECIPES:
        raise ValueError(f"config.augment.recipe must be '' (none) or one of "
                         f"{sorted(RECIPES)}, got {name!r}")
    check_int("config.augment.size", block.get("size", 0), 0)
    recipe_from_block(name, block.get("size", 0) or 32, block.get("overrides"),
                      name_field="config.augment.recipe",
                      overrides_field="config.augment.overrides")


def augment_model_init(model, recipe: AugmentRecipe) -> Callable:
    """``init(rng, sample)``: ``model.init`` on the sample as the model sees its
    inputs (:func:`eval_inputs_fn`), for views of another size than the images'."""
    inputs = eval_inputs_fn(recipe)
    return lambda rng, sample: model.init(rng, inputs(jnp.asarray(sample)), train=False)
