"""Every config file: get_config(arg) builds, validates, and documents its command."""
import glob
import importlib.util
import json
import os
import subprocess
import sys

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


OFFLINE = ("digits", "shapes", "shapes_small")
# runlocal variants whose model alone takes minutes to compile on 2 cores
# (credit_shapes and amplification_cifar: their code paths run at runlocal in
# credit_digits and the amplification tests; layerwise_shapes: in
# tests/train/test_layerwise.py's loop runs; ssl_shapes: in ssl_digits and
# tests/train/test_ssl.py's CNN runs; pruning_shapes: config.prune through the
# loop in the pruning tests; supervised_shapes: the shapes through the
# supervised loop in the amplification experiment's test, the small CNN in
# tests/train/test_ssl.py. Kept out to hold the suite under 15 minutes on 2
# cores)
HEAVY = ("bias_variance_cifar10.py", "credit_shapes.py", "amplification_cifar.py",
         "layerwise_shapes.py", "ssl_shapes.py", "pruning_shapes.py", "supervised_shapes.py",
         # 11-20 s each on 2 busy cores: the default run keeps supervised_digits.py
         # (and the small runlocal configs) and leaves these to `-m slow`
         "ssl_digits.py", "compressed_sync_digits.py", "credit_digits.py",
         "bias_variance_digits.py")
# a script that runs launch.run's main under tfds' mock data (random examples
# of the real feature spec, no download), for configs of datasets not here
MOCK_RUN = """
import sys
import tensorflow_datasets as tfds
from absl import app
from launch import run
with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    app.run(run.main, argv=["launch.run"] + sys.argv[1:])
"""


def documented_command(path: str) -> list[str]:
    """The first ``python -m launch.run --config configs/NAME.py...`` line of
    the config's docstring, as arguments after ``python``."""
    name = os.path.basename(path)
    for line in (_load(path).__doc__ or "").splitlines():
        line = line.strip().rstrip("\\").strip()
        if line.startswith(f"python -m launch.run --config configs/{name}"):
            return line.split()[1:]
    raise AssertionError(f"the docstring of {name} gives no 'python -m launch.run "
                         f"--config configs/{name}' command")


def _runlocal_cases():
    for path in CONFIG_FILES:
        name = os.path.basename(path)
        dataset = _load(path).get_config("runlocal").dataset.name
        marks = [pytest.mark.slow] if dataset not in OFFLINE or name in HEAVY else []
        yield pytest.param(path, dataset, id=name, marks=marks)


@pytest.fixture(scope="module")
def shared_data_dir(tmp_path_factory):
    """One data dir for the module: the offline datasets are prepared once."""
    return tmp_path_factory.mktemp("tfds")


@pytest.mark.parametrize("path,dataset", _runlocal_cases())
def test_documented_command_runs_at_runlocal(path, dataset, tmp_path, shared_data_dir):
    """The docstring's command, with the config argument replaced by
    ``runlocal`` and the workdir by a temporary one, trains and evaluates.
    Datasets that cannot be prepared here run on tfds' mock data (slow)."""
    args = documented_command(path)
    at = args.index("--config") + 1
    args[at] = args[at].split(":")[0] + ":runlocal"
    args[args.index("--workdir") + 1] = str(tmp_path / "run")
    args += [f"--config.dataset.data_dir={shared_data_dir}"] if dataset in OFFLINE else []
    cmd = [sys.executable, *(args if dataset in OFFLINE else ["-c", MOCK_RUN, *args[2:]])]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert any(r["split"] == "eval" for r in records)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_builds_and_validates(path):
    module = _load(path)
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

