"""Input pipelines (TFDS + grain), offline datasets (digits, procedural shapes), synthetic tasks."""

from neurojax.data.pipeline import ArraySource, ToFloatImage, load, make_loader, shard_bounds
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
