"""JSON-lines metrics: one object per line, flushed as written, so a killed run leaves a readable
file. Only the main process writes. On resume, lines of the epoch (episode) that was cut short are
dropped and a "resume" line is added, so the epoch and step records of a resumed run equal those of
an uninterrupted one (up to timings)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def reset(self) -> None:
        """A run that starts over forgets the records of the one before."""
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def truncate_to(self, unit: str, stage_index: int, completed: int) -> None:
        """Keep the records of units ("epoch", "episode") finished before (stage_index, completed),
        and run-level ones."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and _before(json.loads(line), unit, stage_index, completed)
        ]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _before(record: dict[str, Any], unit: str, stage_index: int, completed: int) -> bool:
    if unit not in record:  # run-level events (start, resume, skipped images) are kept
        return True
    return (record.get("stage_index", 0), record[unit]) < (stage_index, completed)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
