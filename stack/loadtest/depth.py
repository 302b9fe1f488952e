"""Queue depth during a load test: samples over time, written to CSV.

Depth is what waits in Redis (``stack.queues.queue_depths``: summed over a
queue's priority lists); tasks a worker has taken are not counted.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from stack.queues import QUEUES

DEPTH_INTERVAL_S = 1.0  # one sample a second: enough to see a backlog build in a 20 s run


@dataclass
class DepthLog:
    """Depth samples of one run: (seconds since start, depth per queue)."""

    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def record(self, elapsed_s: float, depths: dict[str, int]) -> None:
        self.samples.append((elapsed_s, depths))

    @staticmethod
    def total(depths: dict[str, int]) -> int:
        return sum(depths.values())

    def summary(self) -> dict[str, int | None]:
        """Depth at the start, the highest seen, and at the end (None: never sampled)."""
        if not self.samples:
            return {"start": None, "max": None, "end": None}
        totals = [self.total(depths) for _, depths in self.samples]
        return {"start": totals[0], "max": max(totals), "end": totals[-1]}

    def write_csv(self, path: Path) -> None:
        """One row per sample: elapsed seconds, total depth, then one column per queue."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["elapsed_s", "total", *QUEUES])
            for elapsed_s, depths in self.samples:
                row = [f"{elapsed_s:.2f}", self.total(depths), *(depths.get(q, 0) for q in QUEUES)]
                writer.writerow(row)
