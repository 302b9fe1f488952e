"""Pass/fail gates of a load test: thresholds, the figures they judge, the verdict.

Pure logic over Locust-like statistics (anything with ``method``, ``name``,
``num_requests``, ``num_failures`` and a ``response_times`` histogram of
rounded milliseconds -> count), so it is tested without Locust and shared by
the Locust process (which sets the exit code) and the CLI (which prints it).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Locust request types ("methods") for the figures that are ours, not HTTP's.
ENQUEUE = "ENQUEUE"  # submit() until Redis stored the message
E2E = "E2E"  # submit until the result is stored (Celery) or seen by a poll (HTTP)

# Defaults: loose enough for a busy 2-core machine running the whole stack and
# Locust, tight enough that a stack with no worker (nothing completes) fails.
DEFAULT_MAX_P95_MS = 5_000.0  # a healthy dev stack answers in tens of ms; 5 s means trouble
DEFAULT_MAX_P99_MS = 10_000.0
DEFAULT_MAX_FAIL_RATIO = 0.01  # Locust's ratio of failed requests, all request types
DEFAULT_MIN_TASKS_PER_S = 1.0  # any live worker completes far more; a dead one completes 0


class RequestStats(Protocol):
    """The part of a Locust ``StatsEntry`` the gates read."""

    method: str | None
    name: str
    num_requests: int
    num_failures: int
    response_times: Mapping[int, int]


@dataclass(frozen=True)
class Gates:
    """Thresholds; ``max_final_depth`` None means: the number of users."""

    max_p95_ms: float = DEFAULT_MAX_P95_MS
    max_p99_ms: float = DEFAULT_MAX_P99_MS
    max_fail_ratio: float = DEFAULT_MAX_FAIL_RATIO
    min_tasks_per_s: float = DEFAULT_MIN_TASKS_PER_S
    max_final_depth: int | None = None


@dataclass(frozen=True)
class Measures:
    """What one run measured; None where nothing could be measured."""

    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    e2e_p99_ms: float | None
    fail_ratio: float
    tasks_per_s: float
    completed: int
    requests: int
    failures: int
    duration_s: float
    final_depth: int | None


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome; ``gate`` is its command-line option."""

    gate: str
    threshold: float
    measured: float | None
    passed: bool
    unit: str = ""
    note: str = ""

    def describe(self) -> str:
        measured = "n/a" if self.measured is None else f"{_fmt(self.measured)}{self.unit}"
        note = f" ({self.note})" if self.note else ""
        verdict = "passed" if self.passed else "crossed"
        return (
            f"gate {self.gate} {verdict}: threshold {_fmt(self.threshold)}{self.unit}, "
            f"measured {measured}{note}"
        )


@dataclass(frozen=True)
class Verdict:
    """Gates and figures of a run, as written for the CLI (JSON) and read back."""

    measures: Measures
    results: list[GateResult]
    rows: list[dict[str, Any]] = field(default_factory=list)
    depth: dict[str, int | None] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Verdict:
        return cls(
            measures=Measures(**raw["measures"]),
            results=[GateResult(**r) for r in raw["results"]],
            rows=list(raw.get("rows", [])),
            depth=dict(raw.get("depth", {})),
            info=dict(raw.get("info", {})),
        )


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """Nearest-rank percentile of a histogram (value -> count); None when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(total * fraction))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


def measure(
    entries: Iterable[RequestStats], duration_s: float, final_depth: int | None
) -> Measures:
    """The figures the gates judge, from Locust's per-request statistics."""
    entries = list(entries)
    e2e = [e for e in entries if e.method == E2E]
    histogram: Counter[int] = Counter()
    for entry in e2e:
        histogram.update(entry.response_times)
    completed = sum(e.num_requests - e.num_failures for e in e2e)
    requests = sum(e.num_requests for e in entries)
    failures = sum(e.num_failures for e in entries)
    return Measures(
        e2e_p50_ms=percentile(histogram, 0.50),
        e2e_p95_ms=percentile(histogram, 0.95),
        e2e_p99_ms=percentile(histogram, 0.99),
        fail_ratio=failures / requests if requests else 0.0,
        tasks_per_s=completed / duration_s if duration_s > 0 else 0.0,
        completed=completed,
        requests=requests,
        failures=failures,
        duration_s=duration_s,
        final_depth=final_depth,
    )


def summary_rows(entries: Iterable[RequestStats], duration_s: float) -> list[dict[str, Any]]:
    """One row per request type and user kind (``E2E celery``, ``POST /tasks``...), for the table.

    Our own names start with the user kind ("celery echo [high]"); rows merge a kind's tasks.
    """
    groups: dict[tuple[str, str], list[RequestStats]] = {}
    for entry in entries:
        method = entry.method or ""
        name = entry.name.split(" ", 1)[0] if method in (ENQUEUE, E2E) else entry.name
        groups.setdefault((method, name), []).append(entry)
    rows = []
    for (method, name), members in sorted(groups.items()):
        histogram: Counter[int] = Counter()
        for entry in members:
            histogram.update(entry.response_times)
        requests = sum(e.num_requests for e in members)
        rows.append(
            {
                "type": method,
                "name": name,
                "requests": requests,
                "failures": sum(e.num_failures for e in members),
                "p50_ms": percentile(histogram, 0.50),
                "p95_ms": percentile(histogram, 0.95),
                "p99_ms": percentile(histogram, 0.99),
                "per_s": requests / duration_s if duration_s > 0 else 0.0,
            }
        )
    return rows


def evaluate(gates: Gates, measures: Measures, users: int) -> list[GateResult]:
    """Judge every gate; a latency gate with no completed task fails (nothing was fast)."""
    no_task = "no task completed"
    max_depth = gates.max_final_depth if gates.max_final_depth is not None else users
    return [
        GateResult(
            "--max-p95-ms",
            gates.max_p95_ms,
            measures.e2e_p95_ms,
            measures.e2e_p95_ms is not None and measures.e2e_p95_ms <= gates.max_p95_ms,
            " ms",
            no_task if measures.e2e_p95_ms is None else "",
        ),
        GateResult(
            "--max-p99-ms",
            gates.max_p99_ms,
            measures.e2e_p99_ms,
            measures.e2e_p99_ms is not None and measures.e2e_p99_ms <= gates.max_p99_ms,
            " ms",
            no_task if measures.e2e_p99_ms is None else "",
        ),
        GateResult(
            "--max-fail-ratio",
            gates.max_fail_ratio,
            measures.fail_ratio,
            measures.fail_ratio <= gates.max_fail_ratio,
            "",
            f"{measures.failures} of {measures.requests} requests failed",
        ),
        GateResult(
            "--min-tasks-per-s",
            gates.min_tasks_per_s,
            measures.tasks_per_s,
            measures.tasks_per_s >= gates.min_tasks_per_s,
            "/s",
            f"{measures.completed} tasks completed in {measures.duration_s:.1f} s",
        ),
        GateResult(
            "--max-final-depth",
            float(max_depth),
            None if measures.final_depth is None else float(measures.final_depth),
            measures.final_depth is not None and measures.final_depth <= max_depth,
            "",
            "queue depth unknown: Redis did not answer"
            if measures.final_depth is None
            else "tasks waiting in the queues when the run stopped",
        ),
    ]
