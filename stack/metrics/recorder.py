"""Prometheus metrics of the whole stack, counted in Redis and exposed at ``GET /metrics``.

Why Redis and not per-process counters: a task's life crosses processes and
hosts (an API process publishes it, a prefork child runs it, maybe on another
machine, and a recycled child takes its place). Process-local counters would
reset whenever a child is recycled and double count or vanish across API
workers; prometheus_client's multiprocess mode only sums one host's
processes. Here every process adds to one total with ``HINCRBY`` (atomic),
and a custom Collector (``stack.metrics.exporter``) reads the totals at scrape time,
so any API process on any host answers the same numbers. Pool children
buffer their per-task increments and write them in one pipeline at most
every ``FLUSH_EVERY_S`` (``bench/bench_metrics.py`` measures the cost).

Keys (owned by this module): ``{prefix}metrics:counter:{event}`` and
``{prefix}metrics:hist:{name}`` hashes whose fields are ``task<US>queue``
(histogram fields add ``<US>bucket`` or ``<US>sum``), and the
``{prefix}metrics:workers`` sorted set of worker heartbeats.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence

import redis

log = logging.getLogger(__name__)

NAMESPACE = "celery_stack"
SEP = "\x1f"  # field separator: cannot occur in a task or queue name
SENT_AT_HEADER = "stack_sent_at"  # publish time, for the queue-wait histogram

# event -> help text; each becomes celery_stack_tasks_<event>_total{task,queue}.
EVENTS = {
    "submitted": "Tasks published for their first attempt (retries are not resubmissions).",
    "started": "Deliveries a worker began (rate-limit deferrals included).",
    "succeeded": "Task attempts that returned.",
    "failed": "Task attempts that raised and were not retried.",
    "retried": "Task attempts that raised and were scheduled again.",
    "dead_lettered": "Tasks moved to the dead letters.",
    "rate_limit_deferred": "Task attempts deferred by the global rate limit.",
}
OUTCOME_OF_STATE = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}

RUNTIME_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
HISTOGRAMS = {
    "runtime": ("task_runtime_seconds", "Task attempt run time.", RUNTIME_BUCKETS_S),
    "queue_wait": (
        "task_queue_wait_seconds",
        "Time from publish (or ETA) until a worker started the attempt.",
        WAIT_BUCKETS_S,
    ),
}

FLUSH_EVERY_S = 0.5  # a pool child's counts reach Redis within this long ...
FLUSH_EVERY_TASKS = 200  # ... or after this many tasks, whichever comes first
HEARTBEAT_INTERVAL_S = 10.0  # each worker refreshes its entry this often ...
HEARTBEAT_STALE_S = 3 * HEARTBEAT_INTERVAL_S  # ... and counts as down after three misses
HEARTBEAT_JOIN_S = 2.0  # a shutdown waits this long for a heartbeat in flight


def bucket_index(buckets: Sequence[float], value: float) -> int:
    """The first bucket whose upper bound holds ``value``; len(buckets) is +Inf."""
    for index, bound in enumerate(buckets):
        if value <= bound:
            return index
    return len(buckets)


class MetricsRecorder:
    """Adds to the stack-wide totals in Redis; never fails the caller.

    In a pool child the per-task increments are buffered and written in one
    pipeline every ``FLUSH_EVERY_S`` or ``FLUSH_EVERY_TASKS`` tasks (and when
    the child exits): many increments of one counter become one ``HINCRBY``,
    which keeps the cost per no-op task small. Failures are written at once.
    """

    def __init__(self, client: redis.Redis[bytes], key_prefix: str) -> None:
        self.redis = client
        self.prefix = f"{key_prefix}metrics:"
        self._lock = threading.Lock()
        self._ints: dict[tuple[str, str], int] = {}
        self._floats: dict[tuple[str, str], float] = {}
        self._buffered = 0
        self._flushed_at = time.monotonic()
        self._flusher_pid = 0

    def counter_key(self, event: str) -> str:
        return f"{self.prefix}counter:{event}"

    def histogram_key(self, name: str) -> str:
        return f"{self.prefix}hist:{name}"

    @property
    def workers_key(self) -> str:
        return f"{self.prefix}workers"

    def record(
        self,
        task: str,
        queue: str,
        events: Iterable[str] = (),
        observations: Iterable[tuple[str, float]] = (),
        buffered: bool = False,
    ) -> None:
        """Count ``events`` and observe ``(histogram, seconds)`` pairs: now, in one round
        trip, or (``buffered``) with the next flush."""
        labels = f"{task}{SEP}{queue}"
        ints = [(self.counter_key(event), labels) for event in events]
        floats = []
        for name, seconds in observations:
            key = self.histogram_key(name)
            ints.append((key, f"{labels}{SEP}{bucket_index(HISTOGRAMS[name][2], seconds)}"))
            floats.append((key, f"{labels}{SEP}sum", seconds))
        if not buffered:
            self._write(_count(ints), {(key, field): v for key, field, v in floats})
            return
        with self._lock:
            for item in ints:
                self._ints[item] = self._ints.get(item, 0) + 1
            for key, field, seconds in floats:
                self._floats[(key, field)] = self._floats.get((key, field), 0.0) + seconds
            self._buffered += 1
            due = (
                self._buffered >= FLUSH_EVERY_TASKS
                or time.monotonic() - self._flushed_at >= FLUSH_EVERY_S
            )
        self._ensure_flusher()
        if due:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (one pipeline)."""
        with self._lock:
            ints, floats = self._ints, self._floats
            self._ints, self._floats, self._buffered = {}, {}, 0
            self._flushed_at = time.monotonic()
        if ints or floats:
            self._write(ints, floats)

    def _write(
        self, ints: dict[tuple[str, str], int], floats: dict[tuple[str, str], float]
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for (key, field), amount in ints.items():
            pipe.hincrby(key, field, amount)
        for (key, field), seconds in floats.items():
            pipe.hincrbyfloat(key, field, seconds)
        try:
            pipe.execute()
        except redis.RedisError as exc:  # the broker is down too; the task must not fail
            log.debug("metrics not recorded (%s)", exc)

    def _ensure_flusher(self) -> None:
        """A daemon thread per process flushes an idle child's last counts."""
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()

        def flush_periodically() -> None:
            while True:
                time.sleep(FLUSH_EVERY_S)
                self.flush()

        threading.Thread(target=flush_periodically, name="stack-metrics-flush", daemon=True).start()

    def heartbeat(self, hostname: str) -> None:
        try:
            self.redis.zadd(self.workers_key, {hostname: time.time()})
        except redis.RedisError as exc:
            log.debug("worker heartbeat not recorded (%s)", exc)

    def worker_gone(self, hostname: str) -> None:
        try:
            self.redis.zrem(self.workers_key, hostname)
        except redis.RedisError as exc:
            log.debug("worker exit not recorded (%s)", exc)


def _count(items: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
