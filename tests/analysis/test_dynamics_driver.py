"""The dynamics driver: rerunning one part keeps the other parts' results."""
import json
import sys
import types

import pytest

from neurojax.analysis import dynamics


def _fake_part(name, value):
    module = types.ModuleType(name)
    module.run = lambda out, quick=False: {
        "value": value, "checks": [{"name": "c", "measured": value, "predicted": 1.0,
                                    "rel_error": abs(value - 1.0)}]}
    return module


@pytest.fixture
def fake_parts(monkeypatch):
    modules = {"a": _fake_part("fake_part_a", 1.0), "b": _fake_part("fake_part_b", 2.0)}
    for module in modules.values():
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(dynamics, "PARTS", {k: m.__name__ for k, m in modules.items()})
    return modules


def test_rerun_of_one_part_merges_into_the_file(fake_parts, tmp_path):
    dynamics.run(str(tmp_path), quick=True, parts=["a", "b"])
    fake_parts["b"].run = lambda out, quick=False: {"value": 3.0, "checks": []}
    dynamics.run(str(tmp_path), quick=True, parts=["b"])
    saved = json.loads((tmp_path / "dynamics_quick.json").read_text())
    assert saved["parts"]["a"]["value"] == 1.0 and saved["parts"]["b"]["value"] == 3.0
    assert [c["name"] for c in saved["checks"]] == ["a/c"]  # b's old check is gone
    assert saved["commands"]["b"].endswith("--quick --parts b")
    assert saved["commands"]["a"].endswith("--quick --parts a")


def test_unknown_part_is_refused_before_anything_runs(fake_parts, tmp_path):
    with pytest.raises(ValueError, match="parts must be"):
        dynamics.run(str(tmp_path), parts=["c"])
    assert not (tmp_path / "dynamics_full.json").exists()
