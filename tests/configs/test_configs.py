"""Every config file: get_config(arg) builds, validates, and documents its command."""
import glob
import importlib.util
import os

import ml_collections
import pytest

from neurojax.train import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                      if not os.path.basename(p).startswith("_"))


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_configs():
    assert CONFIG_FILES


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_builds_validates_and_says_how_to_run_it(path):
    module = _load(path)
    doc = module.__doc__ or ""
    assert "python -m launch.run --config configs/" in doc, "docstring must give the command"
    for arg in (None, "runlocal"):
        config = module.get_config(arg)
        assert isinstance(config, ml_collections.ConfigDict)
        validate_config(config)
    with pytest.raises(ValueError, match="config argument"):
        module.get_config("no-such-variant")


@pytest.mark.parametrize("field, value, name", [
    ("dataset.batch_size", -4, "config.dataset.batch_size"),
    ("optim.name", "sgdx", "config.optim.name"),
    ("train.log_every", -1, "config.train.log_every"),
    ("loss.name", "nope", "config.loss.name"),
])
def test_validation_names_the_field(field, value, name):
    config = _load(os.path.join(ROOT, "configs", "supervised_digits.py")).get_config()
    block, key = field.split(".")
    config[block][key] = value
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        validate_config(config)

