"""Spectrum monitoring in the loop: logged alpha-ReQ metrics equal an
independent computation on the final parameters; the plot is written."""
import json
import os

import jax
import numpy as np
import pytest

from configs import supervised_digits
from neurojax import data as nj_data
from neurojax.train import validate_config
from neurojax.train.loop import train_and_evaluate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir):
    config = supervised_digits.get_config("runlocal")
    config.dataset.data_dir = data_dir
    config.train.num_epochs = 0
    config.train.num_steps = 10
    config.train.checkpoint_every = 0
    config.train.spectrum_every = 5
    config.train.steps_per_call = 5
    config.train.spectrum_layers = ("act_0", "")
    config.train.spectrum_examples = 200
    return config


def _numpy_effective_rank(features):
    """exp(entropy) of the normalised singular values of the centred features."""
    x = np.asarray(features, np.float64).reshape(len(features), -1)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.slow
def test_logged_spectrum_matches_the_final_features(data_dir, tmp_path):
    config = _config(data_dir)
    result = train_and_evaluate(config, str(tmp_path), progress=False)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    spectra = [r for r in records if r["split"] == "spectrum"]
    assert [r["step"] for r in spectra] == [5, 10]
    last = spectra[-1]

    model = supervised_digits_model(config)
    images = next(iter(nj_data.load("digits", "test", batch_size=200, data_dir=data_dir,
                                     shuffle=False, num_epochs=1)))["image"]
    variables = {"params": jax.device_get(result.state.params)}
    _, state = model.apply(variables, images, capture_intermediates=True,
                           mutable=["intermediates"])
    hidden = state["intermediates"]["act_0"]["__call__"][0]
    logits = model.apply(variables, images)
    np.testing.assert_allclose(last["act_0/effective_rank"], _numpy_effective_rank(hidden),
                               rtol=2e-3)
    np.testing.assert_allclose(last["output/effective_rank"], _numpy_effective_rank(logits),
                               rtol=2e-3)
    assert np.isfinite(last["act_0/alpha"]) and 0 <= last["act_0/alpha_r2"] <= 1
    for name in ("act_0", "output"):
        assert os.path.getsize(os.path.join(tmp_path, f"eigenspectrum_{name}.png")) > 0


def supervised_digits_model(config):
    from neurojax.models import get_model
    return get_model("mlp", widths=tuple(config.model.widths), num_outputs=10)


def test_unknown_layer_and_bad_fields_fail_clearly(data_dir, tmp_path):
    config = _config(data_dir)
    config.train.spectrum_layers = ("no_such_layer",)
    with pytest.raises(ValueError, match="spectrum_layers"):
        train_and_evaluate(config, str(tmp_path), progress=False)
    config = _config(data_dir)
    config.train.spectrum_layers = ()
    with pytest.raises(ValueError, match="config.train.spectrum_layers"):
        validate_config(config)
    config = _config(data_dir)
    config.train.spectrum_examples = 0
    with pytest.raises(ValueError, match="config.train.spectrum_examples"):
        validate_config(config)
