"""Input pipelines (TFDS + grain), offline datasets (digits, procedural shapes), synthetic
tasks, jittable augmentations and multi-view generation for SSL."""

# (the function ``augment`` stays in its module: ``neurojax.data.augment`` names the module)
from neurojax.data.augment import (AugmentRecipe, cifar_recipe, imagenet_recipe, normalize,
                                   stl10_recipe)
from neurojax.data.augment_color import color_jitter, random_grayscale
from neurojax.data.augment_spatial import horizontal_flip, random_resized_crop
from neurojax.data.pipeline import (ArraySource, SubsetSource, ToFloatImage, fraction_indices,
                                    load, make_loader, shard_bounds)
from neurojax.data.views import make_views
from neurojax.data.sources import (
    DATASETS,
    DatasetInfo,
    DatasetNotPreparedError,
    data_source,
    dataset_info,
    default_data_dir,
    prepare_command,
)

__all__ = [
    "AugmentRecipe",
    "SubsetSource",
    "cifar_recipe",
    "color_jitter",
    "fraction_indices",
    "horizontal_flip",
    "imagenet_recipe",
    "make_views",
    "normalize",
    "random_grayscale",
    "random_resized_crop",
    "stl10_recipe",
    "ArraySource",
    "DATASETS",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "ToFloatImage",
    "data_source",
    "dataset_info",
    "default_data_dir",
    "load",
    "make_loader",
    "prepare_command",
    "shard_bounds",
]
