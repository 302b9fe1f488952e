"""The Celery apps bench_drain.py compares, importable by `celery -A bench.drain_apps:<name>`.

``bare_app`` and ``kit_app`` share one configuration, word for word (prefork
workers, prefetch 1, acks_late, json, results in Redis, Redis priority lists);
the only difference is the task base class: Celery's ``Task`` against
celery-stack's ``StackTask`` (rate-limit gate, redelivery cap, retry policy,
dead letters, the StackRequest hard-time-limit hook), behind the poison guard.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task

from stack import poison
from stack.context import bind
from stack.queues import PRIORITY_STEPS
from stack.settings import Settings
from stack.task import StackTask

REDIS_URL_VARIABLE = "BENCH_REDIS_URL"
NOOP = "bench.noop"


def drain_config(redis_url: str) -> dict[str, Any]:
    """The worker settings both apps run with."""
    return {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "broker_transport_options": {
            "queue_order_strategy": "priority",
            "priority_steps": PRIORITY_STEPS,
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 2,
        "worker_send_task_events": False,
        "task_track_started": False,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
    }


def make_app(kit: bool) -> Celery:
    url = os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/0")
    base: type[Task] = StackTask if kit else Task
    app = Celery("bench_kit" if kit else "bench_bare", task_cls=base, set_as_current=False)
    app.conf.update(drain_config(url))
    if kit:
        bind(app, Settings.load(environ={"REDIS_URL": url}))

    @app.task(name=NOOP, bind=True, shared=False)
    def noop(self: Task) -> None:
        return None

    if kit:
        poison.install(app)
    return app


bare_app = make_app(kit=False)
kit_app = make_app(kit=True)
