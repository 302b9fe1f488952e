"""The Celery signal hooks that feed the MetricsRecorder: publishes, runs, kit events, workers.

Installed once per process by the app factory (``install(app)``); the
recorder they write through is the app's, from its StackContext.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime
from typing import Any

from celery import Celery, current_task, signals

from stack import queues
from stack import signals as kit
from stack.connection import redis_client
from stack.context import StackContext, context_of, find_context
from stack.metrics.recorder import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_JOIN_S,
    OUTCOME_OF_STATE,
    SENT_AT_HEADER,
    MetricsRecorder,
)
from stack.task import RATE_SLOT_HEADER

# --- Celery signal handlers: one set per process, whatever the number of apps ------

_app: Celery | None = None  # this process's stack app: its Redis counts publishes and kit events
_started_at: dict[str, float] = {}  # task id -> monotonic start, in the child running it
_heartbeats: dict[str, tuple[threading.Event, MetricsRecorder, threading.Thread]] = {}


def install(app: Celery) -> None:
    """Count this app's tasks. Publishes in this process are counted in its Redis
    (one stack app per process: the last installed one wins)."""
    global _app
    if not context_of(app).settings.metrics_enabled:
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


def _metered(app: Any) -> StackContext | None:
    """The app's context when it is a stack app with metrics on, else None."""
    context = find_context(app)
    return context if context is not None and context.settings.metrics_enabled else None


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
    context = _metered(_app)
    if context is None or headers.get("retries", 0):
        return
    if RATE_SLOT_HEADER in headers:  # a rate-limit deferral republishes: not a new submission
        return
    context.metrics.record(str(sender), routing_key or "", events=("submitted",))


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
    context = _metered(getattr(task, "app", None))
    if context is None:
        return
    _started_at[str(task_id)] = time.monotonic()
    wait = _queue_wait_s(task.request, time.time())
    observations = [("queue_wait", wait)] if wait is not None else []
    context.metrics.record(task.name, _queue_of(task), ("started",), observations, buffered=True)


def _on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    context = _metered(getattr(task, "app", None))
    if context is None:
        return
    started = _started_at.pop(str(task_id), None)
    outcome = OUTCOME_OF_STATE.get(str(state))
    events = (outcome,) if outcome else ()
    observations = [("runtime", time.monotonic() - started)] if started is not None else []
    recorder = context.metrics
    recorder.record(task.name, _queue_of(task), events, observations, buffered=True)
    if outcome != "succeeded":  # failures, retries and deferrals are worth writing at once
        recorder.flush()


def _on_child_exit(**_: Any) -> None:
    """A pool child leaving (recycled, warm shutdown) writes what it buffered."""
    context = _metered(_app)
    if context is not None:
        context.metrics.flush()


def _on_dead_lettered(sender: str | None = None, record: Any = None, **_: Any) -> None:
    """The record names its logical queue; the counters label physical ones."""
    context = _metered(_app)
    if context is None or record is None:
        return
    queue = queues.physical_name(context.settings, record.queue)
    context.metrics.record(str(sender), queue, events=("dead_lettered",))


def _on_rate_limited(sender: str | None = None, **_: Any) -> None:
    """Sent from inside the deferred task's run: its delivery names the queue."""
    context = _metered(_app)
    if context is None:
        return
    task = current_task
    queue = _queue_of(task) if task else ""
    context.metrics.record(str(sender), queue, events=("rate_limit_deferred",))


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Start a heartbeat thread in the worker's main process (its own Redis client,
    so pool children forked later never share a connection with it)."""
    app = getattr(sender, "app", None)
    hostname = str(getattr(sender, "hostname", "") or "")
    context = _metered(app)
    if context is None or not hostname:
        return
    settings = context.settings
    recorder = MetricsRecorder(redis_client(settings), settings.key_prefix)
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
