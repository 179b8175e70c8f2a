"""The credit-assignment configs: every rule builds and validates, the
arguments are checked, the ResNet-20 stand-in has He et al.'s 20 weighted
layers, biotorch's step schedule (and the step schedule's warm-up), and the
ImageNet config's dataset resolves to the fixed-size 1000-class view."""
import jax
import numpy as np
import pytest

from configs import credit_cifar10, credit_digits, credit_imagenet, credit_shapes
from neurojax.data import sources
from neurojax.optim.factory import make_schedule
from neurojax.rules import RULE_NAMES, rule_metaparameters
from neurojax.train import validate_config
from neurojax.train.task import build_model


@pytest.mark.parametrize("module", [credit_digits, credit_shapes, credit_cifar10,
                                    credit_imagenet])
@pytest.mark.parametrize("rule", RULE_NAMES)
def test_every_rule_builds_and_validates(module, rule):
    for arg in (rule, f"{rule},runlocal"):
        config = module.get_config(arg)
        validate_config(config)
        assert config.rule.name == rule
        expected = {k: v for k, v in rule_metaparameters(rule).items() if v is not None}
        assert {k: config.rule[k] for k in expected} == expected


@pytest.mark.parametrize("arg", ["nope", "runlocal,runlocal", "feedback_alignment,backprop"])
def test_bad_arguments_are_named(arg):
    with pytest.raises(ValueError, match="config argument"):
        credit_digits.get_config(arg)


@pytest.mark.slow
def test_resnet20_stand_in_has_20_weighted_layers():
    config = credit_cifar10.get_config("backprop")
    params = build_model(config, 10).init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)),
                                          train=False)["params"]
    paths = ["/".join(str(getattr(k, "key", k)) for k in path)
             for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
             if getattr(path[-1], "key", None) == "kernel"]
    assert len([p for p in paths if "proj_conv" not in p]) == 20  # 19 convs + the head
    assert params["stem"]["conv"]["kernel"].shape == (3, 3, 3, 16)
    assert params["stage3_block3"]["conv2"]["kernel"].shape == (3, 3, 64, 64)


def test_biotorch_schedule_drops_at_its_epochs():
    config = credit_cifar10.get_config()
    steps_per_epoch = 50_000 // 128
    sched = make_schedule(config.optim, 250 * steps_per_epoch)
    for epoch, lr in [(0, 0.1), (99, 0.1), (101, 0.01), (151, 1e-3), (201, 1e-4)]:
        np.testing.assert_allclose(float(sched(epoch * steps_per_epoch)), lr, rtol=1e-5)


def test_step_schedule_warms_up_then_drops_at_fractions_of_all_steps():
    cfg = dict(lr=0.1, schedule="step", warmup_steps=50, decay_at=(30 / 90, 60 / 90, 80 / 90))
    sched = make_schedule(cfg, 900)
    np.testing.assert_allclose([float(sched(s)) for s in (0, 25, 50, 299, 300, 600, 800, 899)],
                               [0.0, 0.05, 0.1, 0.1, 0.01, 1e-3, 1e-4, 1e-4], rtol=1e-5,
                               atol=1e-9)


def test_imagenet_config_reads_the_1000_class_view_at_224(tmp_path):
    for arg in (None, "runlocal"):
        config = credit_imagenet.get_config(arg)
        assert config.dataset.name == "imagenet2012_224"
        assert config.dataset.eval_split == "validation"
        info = sources.dataset_info(config.dataset.name, tmp_path)  # from code, no data
        assert (info.num_classes, info.image_shape) == (1000, (224, 224, 3))
        assert sources.prepare_command(config.dataset.name, tmp_path).startswith(
            "tfds build imagenet2012 ")


def test_imagenet_config_trains_on_random_resized_crops_and_flips():
    """Neural-Alignment's training crops (8-100% of the area, aspect 3/4-4/3)
    and flips with ImageNet's mean/std; no colour augmentation."""
    from neurojax.data.augment import IMAGENET_MEAN, IMAGENET_STD
    from neurojax.train.augmentation import config_recipe
    for arg in (None, "runlocal"):
        r = config_recipe(credit_imagenet.get_config(arg), 224)
        assert (r.out_size, r.crop_padding, r.crop_scale, r.flip_p) == (224, 0, (0.08, 1.0), 0.5)
        np.testing.assert_allclose(r.crop_ratio, (3 / 4, 4 / 3))
        assert (r.jitter_p, r.grayscale_p, r.blur_p, r.solarize_p) == (0, 0, 0, 0)
        assert (r.mean, r.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_cifar_config_uses_biotorchs_padded_crop_and_flip():
    from neurojax.train.augmentation import config_recipe
    r = config_recipe(credit_cifar10.get_config(), 32)
    assert (r.out_size, r.crop_padding, r.flip_p) == (32, 4, 0.5)
    assert (r.jitter_p, r.grayscale_p, r.blur_p, r.solarize_p) == (0, 0, 0, 0)
    assert (r.mean, r.std) == ((0.4914, 0.4821, 0.4465), (0.2470, 0.2435, 0.2616))
