"""Scalars to ``metrics.jsonl`` (one JSON object per line) in the workdir."""
import json
import math
import os
from typing import Any, Mapping

import jax

METRICS_FILE = "metrics.jsonl"


def _to_python(value: Any) -> Any:
    value = float(value) if hasattr(value, "__float__") else value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/Inf; keep it readable
    return value


class MetricsWriter:
    """Appends ``{'step': s, 'split': ..., **scalars}`` records to a JSONL file."""

    def __init__(self, workdir: str, filename: str = METRICS_FILE):
        self.path = os.path.join(workdir, filename)

    def write(self, step: int, split: str, scalars: Mapping[str, Any]) -> None:
        if jax.process_index() != 0:  # one writer per multi-host run
            return
        record = {"step": int(step), "split": split}
        record.update({k: _to_python(v) for k, v in scalars.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drops records logged after ``step`` (a resumed run will log them again)."""
        if jax.process_index() != 0 or not os.path.exists(self.path):
            return
        kept = [line for line in read_metrics(self.path) if line["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)


def read_metrics(path: str) -> list[dict]:
    """All records of a metrics file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
