"""apply_overrides: dotted keys set in place, unknown fields refused outside the open blocks."""
import ml_collections
import pytest

from neurojax.train.config import apply_overrides


def small_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = ml_collections.ConfigDict({"name": "mlp"})
    c.projector = ml_collections.ConfigDict({"output_dim": 64})
    c.loss = ml_collections.ConfigDict({"lambd": c.projector.get_ref("output_dim") * 0.5})
    c.optim = ml_collections.ConfigDict({"learning_rate": 0.1})
    c.lock()
    return c


def test_sets_nested_and_top_level_fields_and_references_follow():
    c = small_config()
    apply_overrides(c, {"optim.learning_rate": 0.5, "seed": 3, "projector.output_dim": 8})
    assert c.optim.learning_rate == 0.5 and c.seed == 3
    assert c.loss.lambd == 4.0                      # the reference follows the override
    apply_overrides(c, {"loss.lambd": 3})          # or is overridden itself
    assert c.loss.lambd == 3
    apply_overrides(c, {"projector.output_dim": 100})
    assert c.loss.lambd == 3 and c.projector.output_dim == 100   # no longer follows


def test_open_blocks_take_new_fields_others_refuse_them():
    c = small_config()
    apply_overrides(c, {"model.widths": (8, 16)})   # 'model' is an open block
    assert c.model.widths == (8, 16)
    with pytest.raises(ValueError, match="optim.lr"):
        apply_overrides(c, {"optim.lr": 0.1})
    with pytest.raises(ValueError, match="views.num_views"):
        apply_overrides(c, {"views.num_views": 4})
    apply_overrides(c, {"optim.momentum": 0.9}, open_blocks=("optim",))
    assert c.optim.momentum == 0.9
