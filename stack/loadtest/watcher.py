"""ResultWatcher: end-to-end time of every task submitted straight to Celery, under gevent.

Celery's Redis result backend publishes each stored result on its key, so one
greenlet per process subscribes to them all and wakes the user waiting for that
id: exact end times, one connection, no polling loop per task. ``AsyncResult.get()``
is avoided on purpose (its result consumer assumes threads, not a patched hub).
A sweep greenlet times out tasks with no result and looks up, by MGET, results
whose pub/sub message was lost (a reconnect).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import redis
from celery import Celery, states
from gevent.event import Event

from stack.connection import redis_client
from stack.loadtest.gates import E2E
from stack.settings import Settings

log = logging.getLogger("celery-stack.load")

RECENT_RESULTS = 10_000  # results seen before their submitter registered (a race under load)
RECHECK_AFTER_S = 1.0  # a pending id older than this is also looked up directly (lost pub/sub)
WATCH_TICK_S = 0.5  # how often timeouts and lost results are swept


class TaskFailed(Exception):
    """A task ended in failure, or no result came in time (an E2E failure in Locust)."""


@dataclass
class Pending:
    name: str
    started: float  # time.perf_counter() before submit
    done: Event = field(default_factory=Event)


class ResultWatcher:
    """Times every submitted task until its result is stored; fires the E2E request event."""

    def __init__(self, fire: Callable[..., Any], app: Celery, settings: Settings) -> None:
        self.fire = fire  # Locust's environment.events.request.fire
        self.backend = app.backend
        prefix = self.backend.task_keyprefix
        self.prefix = prefix if isinstance(prefix, bytes) else prefix.encode()
        self.client = redis_client(settings, url=settings.result_backend)
        self.timeout_s = 0.0
        self.pending: dict[str, Pending] = {}
        self.recent: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self.greenlets: list[gevent.Greenlet] = []

    def start(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.greenlets = [gevent.spawn(self._listen), gevent.spawn(self._sweep)]

    def stop(self) -> None:
        gevent.killall(self.greenlets, block=True, timeout=2)
        self.greenlets = []

    def track(self, task_id: str, name: str, started: float) -> Event:
        """Start waiting for ``task_id`` (already published); the event is set when it ends."""
        pending = Pending(name, started)
        seen = self.recent.pop(task_id, None)
        if seen is not None:
            self._finish(pending, seen[0], seen[1])
        else:
            self.pending[task_id] = pending
        return pending.done

    def _finish(self, pending: Pending, ended: float, error: str | None) -> None:
        self.fire(
            request_type=E2E,
            name=pending.name,
            response_time=(ended - pending.started) * 1000,
            response_length=0,
            exception=TaskFailed(error) if error is not None else None,
            context={},
        )
        pending.done.set()

    def _outcome(self, task_id: str, payload: bytes, ended: float) -> None:
        """A stored result: finish its waiter, or remember it for a submitter not yet tracking."""
        try:
            meta = self.backend.decode_result(payload)
        except Exception:  # another app's payload on the same Redis: not ours to judge
            return
        state = meta.get("status")
        if state not in states.READY_STATES:
            return  # STARTED, RETRY: keep waiting
        error = None if state == states.SUCCESS else f"{state}: {meta.get('result')!r}"[:200]
        pending = self.pending.pop(task_id, None)
        if pending is not None:
            self._finish(pending, ended, error)
        else:
            self.recent[task_id] = (ended, error)
            while len(self.recent) > RECENT_RESULTS:
                self.recent.popitem(last=False)

    def _listen(self) -> None:
        """Celery's Redis backend publishes each stored result on its key: follow them all."""
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(self.prefix + b"*")
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "pmessage":
                        task_id = message["channel"][len(self.prefix) :].decode()
                        self._outcome(task_id, message["data"], time.perf_counter())
            except redis.RedisError as exc:
                log.warning("result watcher lost Redis (%s); resubscribing", exc)
                gevent.sleep(1.0)
            finally:
                pubsub.close()

    def _sweep(self) -> None:
        """Time out tasks with no result, and look up results whose message was lost."""
        while True:
            gevent.sleep(WATCH_TICK_S)
            now = time.perf_counter()
            for task_id, pending in list(self.pending.items()):
                if now - pending.started > self.timeout_s:
                    del self.pending[task_id]
                    self._finish(pending, now, f"no result within {self.timeout_s:g} s")
            stale = [t for t, p in self.pending.items() if now - p.started > RECHECK_AFTER_S]
            if not stale:
                continue
            try:
                payloads = self.client.mget([self.backend.get_key_for_task(t) for t in stale])
            except redis.RedisError:
                continue
            for task_id, payload in zip(stale, payloads, strict=True):
                if payload is not None and task_id in self.pending:
                    self._outcome(task_id, payload, time.perf_counter())
