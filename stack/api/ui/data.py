"""What the dashboard shows, gathered from the data functions that own each rule.

Nothing here queries Redis its own way: queue depths come from
:mod:`stack.queues` and :mod:`stack.checks.overview`, counters through the
metrics recorder's keys, dead letters from the store, task status from
:mod:`stack.task_status`. The services are the launcher's state file (the
one place `up` writes what it started), read by :func:`services`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from stack import queues
from stack.checks.overview import queue_names, queue_overview
from stack.connection import REDIS_ERRORS, translated
from stack.context import context_of
from stack.deadletter import DeadLetter
from stack.errors import StackError
from stack.launcher.control import Command, call
from stack.metrics.recorder import SEP
from stack.ratelimit import rate_for

PS_TIMEOUT_S = 1.0  # the launcher answers `ps` from its main loop
WORKERS_TIMEOUT_S = 0.5  # each broadcast to the workers waits this long for answers
SAMPLE_EVERY_S = 10.0  # throughput: one sample of the counters per this many seconds ...
SAMPLES_KEPT = 31  # ... kept for the last five minutes (30 intervals)
CHART_EVENTS = ("succeeded", "failed", "dead_lettered")
PREVIEW_CHARS = 120


@dataclass
class Throughput:
    """Counter samples taken while someone watches the overview (one per SAMPLE_EVERY_S), so
    the chart shows tasks per interval over the last minutes from the stack-wide counters."""

    samples: deque[tuple[float, dict[str, int]]] = field(
        default_factory=lambda: deque(maxlen=SAMPLES_KEPT)
    )

    def add(self, now: float, totals: dict[str, int]) -> None:
        if not self.samples or now - self.samples[-1][0] >= SAMPLE_EVERY_S:
            self.samples.append((now, totals))

    def series(self) -> list[dict[str, Any]]:
        """Per interval: its end time and how many tasks of each event happened in it."""
        pairs = zip(list(self.samples), list(self.samples)[1:], strict=False)
        return [
            {"at": t1, **{e: max(0, c1.get(e, 0) - c0.get(e, 0)) for e in CHART_EVENTS}}
            for (_, c0), (t1, c1) in pairs
        ]


def counter_totals(app: Celery) -> dict[str, int]:
    """Every task counter summed over tasks and queues (the recorder's hashes)."""
    recorder = context_of(app).metrics
    pipe = recorder.redis.pipeline(transaction=False)
    for event in CHART_EVENTS:
        pipe.hvals(recorder.counter_key(event))
    return {
        event: sum(int(v) for v in values)
        for event, values in zip(CHART_EVENTS, pipe.execute(), strict=True)
    }


def redis_info(app: Celery) -> dict[str, Any]:
    info = context_of(app).redis.info()
    return {
        "version": info.get("redis_version"),
        "memory": info.get("used_memory_human"),
        "peak_memory": info.get("used_memory_peak_human"),
        "aof": bool(int(info.get("aof_enabled", 0))),
        "last_save_status": info.get("rdb_last_bgsave_status"),
        "clients": info.get("connected_clients"),
        "uptime_s": info.get("uptime_in_seconds"),
    }


def workers(app: Celery) -> list[dict[str, Any]]:
    """Each worker's node name, concurrency, active tasks and processed count (two broadcasts);
    an empty list when none answers."""
    try:
        inspect = app.control.inspect(timeout=WORKERS_TIMEOUT_S)
        stats = inspect.stats() or {}
        active = inspect.active() or {} if stats else {}
    except REDIS_ERRORS:
        return []
    return [
        {
            "name": name,
            "concurrency": (body.get("pool") or {}).get("max-concurrency"),
            "active": len(active.get(name) or []),
            "processed": sum((body.get("total") or {}).values()),
        }
        for name, body in sorted(stats.items())
    ]


def services(data_dir: Path) -> list[dict[str, Any]] | None:
    """The services of the `up` running on ``data_dir``, as `celery-stack ps` shows them (asked
    over its control socket: state, pid, uptime, restarts, URL, RSS), or None when no launcher
    answers there (the API runs on its own)."""
    try:
        reply = call(data_dir, Command("ps", ()), timeout_s=PS_TIMEOUT_S)
    except StackError:  # no stack there, or it is stopping: the page says so
        return None
    return list(reply["services"])


def overview(app: Celery, throughput: Throughput) -> dict[str, Any]:
    context = context_of(app)
    with translated(context.settings.broker_url, "the dashboard overview"):
        throughput.add(time.time(), counter_totals(app))
        body = {
            "redis": redis_info(app),
            "queues": queue_overview(app).model_dump(),
            "throughput": throughput.series(),
            "sample_every_s": SAMPLE_EVERY_S,
        }
    body["workers"] = workers(app)
    body["services"] = services(context.settings.data_dir)
    body["profile"] = context.settings.profile
    return body


def queue_detail(app: Celery) -> dict[str, Any]:
    """Depth per queue and per priority, unacked, unconsumed queues, rate-limited tasks."""
    context = context_of(app)
    names = queue_names(app)
    levels = [queues.Priority.from_step(step).label for step in queues.PRIORITY_STEPS]
    with translated(context.settings.broker_url, "the dashboard's queues"):
        pipe = context.redis.pipeline(transaction=False)
        for physical in names.values():
            for key in queues.priority_lists(physical):
                pipe.llen(key)
        counts = iter(pipe.execute())
        by_priority = {name: {level: int(next(counts)) for level in levels} for name in names}
        summary = queue_overview(app)
        recorder = context.metrics
        deferred = recorder.redis.hgetall(recorder.counter_key("rate_limit_deferred"))
    deferrals: dict[str, int] = {}
    for field_name, value in deferred.items():
        task = field_name.decode().split(SEP)[0]
        deferrals[task] = deferrals.get(task, 0) + int(value)
    limited = []
    for name, task in sorted(app.tasks.items()):
        rate = rate_for(context.settings, task)
        if rate is not None:
            limited.append({"task": name, "rate": str(rate), "deferred": deferrals.get(name, 0)})
    return {
        "levels": levels,
        "queues": by_priority,
        "unacked": summary.unacked,
        "unconsumed": summary.unconsumed,
        "rate_limited": limited,
    }


def summary_of(record: DeadLetter) -> dict[str, Any]:
    """One list row: what failed, how, when; the arguments cut to a preview."""
    arguments = json.dumps({"args": record.args, "kwargs": record.kwargs}, default=repr)
    return {
        "id": record.id,
        "task_id": record.task_id,
        "name": record.name,
        "queue": record.queue,
        "exception_type": record.exception_type,
        "exception_message": record.exception_message[:PREVIEW_CHARS],
        "attempts": record.attempts,
        "last_failure_at": record.last_failure_at,
        "replayed": bool(record.replays),
        "arguments": arguments[:PREVIEW_CHARS],
    }
