"""What a run records as it trains: ``RUN/metrics.jsonl`` (one JSON object per line) and TensorBoard.

Records have a ``kind``: ``step`` (every ``run.log_every`` steps: loss, training
error, learning rate, images/s, data wait), ``epoch`` (training and validation
errors of a whole epoch) or ``event`` (paused, resumed, finished, learning-rate
changes).  Only rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

class MetricsLog:
    """JSONL + TensorBoard, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but do not lose a run over it
                self.tb = None

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and step is not None:
            kind = record.get("kind", "x")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step", "kind"):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
