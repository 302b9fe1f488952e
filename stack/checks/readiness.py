"""Readiness: does Redis answer, and does at least one worker consume? Bounded in time.

A process that lives is not a stack that works (celery #8030): readiness asks
Redis for PING and the workers for a ping reply, each with a short timeout, so
a probe answers in about a second whatever is broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery

from stack.connection import REDIS_ERRORS, problem, redact, redis_client
from stack.context import context_of

REDIS_PING_TIMEOUT_S = 1.0  # a healthy Redis answers in microseconds; a hung one costs 1 s
WORKER_PING_TIMEOUT_S = 1.0  # an idle worker answers a broadcast ping within a few ms


@dataclass(frozen=True)
class Readiness:
    """What a readiness probe found: ``ready`` only when nothing is missing."""

    redis: bool
    workers: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "redis": self.redis,
            "workers": self.workers,
            "missing": self.missing,
        }


def ping_redis(client: redis.Redis[bytes]) -> str | None:
    """None when Redis answers PING, else why not."""
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        return problem(exc, client)
    return None


def ping_workers(
    app: Celery,
    timeout_s: float = WORKER_PING_TIMEOUT_S,
    destination: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[str]:
    """Hostnames of the workers that answered a Celery ping, sorted: the one "does a worker
    consume?" question (celery #8030). ``destination`` asks only those hostnames, ``limit``
    stops after that many replies. Raises REDIS_ERRORS: each caller decides what that means.
    """
    targets = list(destination) if destination else None
    replies = app.control.ping(destination=targets, timeout=timeout_s, limit=limit) or []
    return sorted(host for reply in replies for host in reply)


def active_queues(app: Celery, timeout_s: float = WORKER_PING_TIMEOUT_S) -> dict[str, list[str]]:
    """Worker hostname -> the (physical) queue names it consumes (``inspect active_queues``:
    waits ``timeout_s`` for every reply). Raises REDIS_ERRORS, as ping_workers does."""
    replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    return {host: [str(q["name"]) for q in queues] for host, queues in replies.items()}


def check_readiness(app: Celery, worker_timeout_s: float = WORKER_PING_TIMEOUT_S) -> Readiness:
    """Redis first (the worker ping needs it), then one worker reply is enough."""
    settings = context_of(app).settings
    client = redis_client(settings, socket_timeout_s=REDIS_PING_TIMEOUT_S)
    try:
        problem = ping_redis(client)
    finally:
        client.close()
    if problem is not None:
        return Readiness(
            redis=False,
            missing=[
                f"redis: {redact(settings.broker_url)} does not answer PING ({problem}); "
                "start Redis or fix REDIS_URL",
                "workers: not checked while Redis is down",
            ],
        )
    try:
        workers = ping_workers(app, worker_timeout_s, limit=1)
    except REDIS_ERRORS:
        workers = []
    if not workers:
        return Readiness(
            redis=True,
            missing=[
                f"workers: no worker answered ping within {worker_timeout_s:g} s; "
                "start one (`celery -A stack.celery_app worker`) or `celery-stack up`"
            ],
        )
    return Readiness(redis=True, workers=workers)
