"""Reading the analyses' JSON strictly: NaN and Infinity are not JSON."""
import json


def strict_json(path):
    def reject(value):
        raise AssertionError(f"non-standard JSON constant {value}")
    with open(path) as fh:
        return json.load(fh, parse_constant=reject)


def check_written(tmp_path, name):
    """The figure's PNG exists and its JSON parses strictly."""
    assert (tmp_path / f"bias_variance_{name}.png").stat().st_size > 0
    return strict_json(tmp_path / f"bias_variance_{name}.json")
