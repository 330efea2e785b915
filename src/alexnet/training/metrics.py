"""What a run records as it trains: ``RUN/metrics.jsonl`` (one JSON object per line) and TensorBoard.

Records have a ``kind``: ``step`` (every ``run.log_every`` steps: loss, training
error, learning rate, images/s, data wait), ``epoch`` (training and validation
errors of a whole epoch) or ``event`` (paused, resumed, finished, learning-rate
changes, resumed, interrupted, config_changed).  Only rank 0 writes.  A resume first drops the
records after its checkpoint (:func:`alexnet.training.resume.trim_metrics`), so no step appears
twice; :func:`read_history` skips a last line cut short by a kill.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

from alexnet.errors import UserError


class MetricsLog:
    """JSONL + TensorBoard, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: a resume hides TensorBoard's events after its checkpoint
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)
            except ImportError:  # tensorboard is a dependency, but do not lose a run over it
                self.tb = None

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        if not self.enabled:
            return
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            why = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
            raise UserError(f"cannot write {self.path}: {why}; the checkpoints written before are intact") from None
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
    """The records of ``RUN/metrics.jsonl``; lines that do not parse (one cut short by a kill) are skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
