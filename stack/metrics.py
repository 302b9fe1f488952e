"""Prometheus metrics of the whole stack, counted in Redis and exposed at ``GET /metrics``.

Why Redis and not per-process counters: a task's life crosses processes and
hosts (an API process publishes it, a prefork child runs it, maybe on another
machine, and a recycled child takes its place). Process-local counters would
reset whenever a child is recycled and double count or vanish across API
workers; prometheus_client's multiprocess mode only sums one host's
processes. Here every process adds to one total with ``HINCRBY`` (atomic),
and a custom Collector (``stack.exporter``) reads the totals at scrape time,
so any API process on any host answers the same numbers. Pool children
buffer their per-task increments and write them in one pipeline at most
every ``FLUSH_EVERY_S`` (``bench/bench_metrics.py`` measures the cost).

Keys (owned by this module): ``{prefix}metrics:counter:{event}`` and
``{prefix}metrics:hist:{name}`` hashes whose fields are ``task<US>queue``
(histogram fields add ``<US>bucket`` or ``<US>sum``), and the
``{prefix}metrics:workers`` sorted set of worker heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import redis
from celery import Celery, current_task, signals

from stack import signals as kit
from stack.settings import Settings
from stack.task import RATE_SLOT_HEADER, redis_of, settings_of

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


def recorder_of(app: Celery) -> MetricsRecorder:
    """One recorder per app and process, on the app's Redis client."""
    recorder = getattr(app, "stack_metrics", None)
    if recorder is None:
        recorder = MetricsRecorder(redis_of(app), settings_of(app).key_prefix)
        app.stack_metrics = recorder
    return cast(MetricsRecorder, recorder)


def count_event(
    client: redis.Redis[bytes], settings: Settings, event: str, task: str, queue: str
) -> None:
    """Count one event for the modules that own it (dead letters, rate limit).

    ``queue`` is the physical queue name (what workers consume), like the other labels.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown metrics event {event!r}: expected one of {', '.join(EVENTS)}")
    if settings.metrics_enabled:
        MetricsRecorder(client, settings.key_prefix).record(task, queue, events=(event,))


# --- Celery signal handlers: one set per process, whatever the number of apps ------

_app: Celery | None = None  # this process's stack app: its Redis counts publishes and kit events
_started_at: dict[str, float] = {}  # task id -> monotonic start, in the child running it
_heartbeats: dict[str, tuple[threading.Event, MetricsRecorder, threading.Thread]] = {}


def install(app: Celery) -> None:
    """Count this app's tasks. Publishes in this process are counted in its Redis
    (one stack app per process: the last installed one wins)."""
    global _app
    if not settings_of(app).metrics_enabled:
        return
    _app = app
    signals.before_task_publish.connect(_stamp, weak=False, dispatch_uid="stack.metrics.stamp")
    signals.after_task_publish.connect(_on_publish, weak=False, dispatch_uid="stack.metrics.pub")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="stack.metrics.prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="stack.metrics.postrun")
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="stack.metrics.up")
    signals.worker_shutdown.connect(
        _on_worker_shutdown, weak=False, dispatch_uid="stack.metrics.down"
    )
    signals.worker_process_shutdown.connect(
        _on_child_exit, weak=False, dispatch_uid="stack.metrics.child"
    )
    kit.task_dead_lettered.connect(_on_dead_lettered, weak=False, dispatch_uid="stack.metrics.dl")
    kit.task_rate_limited.connect(_on_rate_limited, weak=False, dispatch_uid="stack.metrics.rl")


def _enabled(app: Any) -> bool:
    settings = getattr(app, "stack_settings", None)
    return isinstance(settings, Settings) and settings.metrics_enabled


def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every publish (retries and deferrals too) carries its time, for the queue wait."""
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


def _on_publish(
    sender: str | None = None,
    headers: dict[str, Any] | None = None,
    routing_key: str | None = None,
    **_: Any,
) -> None:
    """Count a first publish once Redis has taken it (a failed publish is no submission)."""
    if headers is None:
        return
    app = _app
    if app is None or not _enabled(app) or headers.get("retries", 0):
        return
    if RATE_SLOT_HEADER in headers:  # a rate-limit deferral republishes: not a new submission
        return
    recorder_of(app).record(str(sender), routing_key or "", events=("submitted",))


def _queue_of(task: Any) -> str:
    info = getattr(task.request, "delivery_info", None) or {}
    return str(info.get("routing_key") or "")


def _queue_wait_s(request: Any, now: float) -> float | None:
    sent_at = getattr(request, SENT_AT_HEADER, None)
    if sent_at is None:
        return None
    ready_at = float(sent_at)
    eta = getattr(request, "eta", None)
    if eta:
        with contextlib.suppress(ValueError):
            ready_at = max(ready_at, datetime.fromisoformat(str(eta)).timestamp())
    return max(0.0, now - ready_at)


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or not _enabled(task.app):
        return
    _started_at[str(task_id)] = time.monotonic()
    wait = _queue_wait_s(task.request, time.time())
    observations = [("queue_wait", wait)] if wait is not None else []
    recorder_of(task.app).record(
        task.name, _queue_of(task), ("started",), observations, buffered=True
    )


def _on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    if task is None or not _enabled(task.app):
        return
    started = _started_at.pop(str(task_id), None)
    outcome = OUTCOME_OF_STATE.get(str(state))
    events = (outcome,) if outcome else ()
    observations = [("runtime", time.monotonic() - started)] if started is not None else []
    recorder = recorder_of(task.app)
    recorder.record(task.name, _queue_of(task), events, observations, buffered=True)
    if outcome != "succeeded":  # failures, retries and deferrals are worth writing at once
        recorder.flush()


def _on_child_exit(**_: Any) -> None:
    """A pool child leaving (recycled, warm shutdown) writes what it buffered."""
    app = _app
    if app is not None and _enabled(app):
        recorder_of(app).flush()


def _on_dead_lettered(sender: str | None = None, record: Any = None, **_: Any) -> None:
    """The record names its logical queue; the counters label physical ones."""
    app = _app
    if app is None or record is None or not _enabled(app):
        return
    settings = settings_of(app)
    queue = f"{settings.queue_prefix}{record.queue}"
    recorder_of(app).record(str(sender), queue, events=("dead_lettered",))


def _on_rate_limited(sender: str | None = None, **_: Any) -> None:
    """Sent from inside the deferred task's run: its delivery names the queue."""
    app = _app
    if app is None or not _enabled(app):
        return
    task = current_task
    queue = _queue_of(task) if task else ""
    recorder_of(app).record(str(sender), queue, events=("rate_limit_deferred",))


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Start a heartbeat thread in the worker's main process (its own Redis client,
    so pool children forked later never share a connection with it)."""
    app = getattr(sender, "app", None)
    hostname = str(getattr(sender, "hostname", "") or "")
    if app is None or not hostname or not _enabled(app):
        return
    from stack.connection import redis_client

    recorder = MetricsRecorder(redis_client(settings_of(app)), settings_of(app).key_prefix)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            recorder.heartbeat(hostname)
            stop.wait(HEARTBEAT_INTERVAL_S)

    thread = threading.Thread(target=beat, name="stack-metrics-heartbeat", daemon=True)
    _heartbeats[hostname] = (stop, recorder, thread)
    thread.start()


def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """Leave the workers set at once: a stopped worker is down now, not in 30 s."""
    for hostname, (stop, recorder, thread) in list(_heartbeats.items()):
        stop.set()
        thread.join(HEARTBEAT_JOIN_S)
        recorder.worker_gone(hostname)
        _heartbeats.pop(hostname, None)
