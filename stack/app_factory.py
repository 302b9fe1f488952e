"""The app factory: builds stack apps when called, never on import.

``load_app(settings)`` gives the app the settings name: the reference app
(:func:`create_celery_app`, every seed feature configured) or a user's own
app (``STACK_CELERY_APP=module:attr``) with the kit installed into it
(:func:`install_stack`). Only :mod:`stack.celery_app` calls it at import time,
for ``celery -A stack.celery_app``.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import Celery

from stack import compat, jsonlog, poison, queues, retry
from stack.connection import sentinel_transport_options, ssl_options, url_with_password
from stack.context import bind
from stack.errors import SettingsError
from stack.metrics import hooks
from stack.queues import DEFAULT_PRIORITY, PRIORITY_STEPS
from stack.ratelimit import rate_for, rate_limits
from stack.result_backend import backend_url
from stack.settings import Settings
from stack.task import StackTask

REFERENCE_APP = "stack.celery_app:app"
TASK_MODULES = [
    "stack.tasks.diagnostics",
    "stack.tasks.reference",
    "stack.tasks.maintenance",
]
DIAGNOSTICS_MODULE = "stack.tasks.diagnostics"
PUBLISH_RETRY_INTERVAL_S = 0.2
REDIS_SOCKET_TIMEOUT_S = 2.0  # a healthy Redis answers in ms; a dead one must fail a call fast


def transport_options(settings: Settings) -> dict[str, Any]:
    """Broker transport options; the visibility timeout must match the backend's."""
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "queue_order_strategy": "priority",
        "priority_steps": PRIORITY_STEPS,
        # A killed worker's unacked messages come back within a visibility
        # timeout; sweep for them every few seconds rather than kombu's minute.
        "unacked_restore_interval": min(10, settings.visibility_timeout_s),
        "unacked_restore_throttle": 1,
        # A Redis that takes TCP but never answers costs one socket timeout per
        # attempt; no redis-py retry on timeout (it would re-send a publish
        # pipeline: duplicates), kombu's retry policy and submit's deadline rule.
        "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
        "retry_on_timeout": False,
        **sentinel_transport_options(settings, settings.broker_url),
    }


def broker_settings(settings: Settings) -> dict[str, Any]:
    """Where the app talks to Redis: shared by the reference app and rebound user apps."""
    tls = ssl_options(settings)
    conf: dict[str, Any] = {
        "broker_url": url_with_password(settings.broker_url, settings),
        "result_backend": backend_url(url_with_password(settings.result_backend, settings)),
        "broker_transport_options": transport_options(settings),
        "result_backend_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            **sentinel_transport_options(settings, settings.result_backend),
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_publish_retry_policy": {
            "max_retries": max(1, int(settings.publish_timeout_s / PUBLISH_RETRY_INTERVAL_S)),
            "interval_start": 0,
            "interval_step": PUBLISH_RETRY_INTERVAL_S,
            "interval_max": PUBLISH_RETRY_INTERVAL_S,
        },
        "result_expires": settings.result_expires_s,
        "redis_socket_timeout": REDIS_SOCKET_TIMEOUT_S,
        "redis_socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
        "redis_retry_on_timeout": False,  # the backend's own retry policy retries writes
    }
    if settings.redis_password is not None:
        conf["broker_transport_options"]["password"] = settings.redis_password.get_secret_value()
        conf["redis_password"] = settings.redis_password.get_secret_value()
    if tls:
        conf["broker_use_ssl"] = tls
        conf["redis_backend_use_ssl"] = tls
    return conf


def celery_config(settings: Settings) -> dict[str, Any]:
    """The reference stack's whole Celery configuration, from one Settings."""
    default_queue = queues.queue_name(settings, queues.DEFAULT_QUEUE)
    return {
        **broker_settings(settings),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_timeout_s,
        "task_time_limit": settings.hard_timeout_s,
        "task_track_started": True,
        "result_extended": True,
        "task_default_queue": default_queue,
        "task_default_exchange": default_queue,
        "task_default_routing_key": default_queue,
        "task_default_priority": DEFAULT_PRIORITY.value,
        "task_queue_max_priority": max(PRIORITY_STEPS),
        "task_queues": queues.declarations(settings),
        "task_routes": queues.task_routes(settings),
        # An undeclared queue is refused at publish (queues.UndeclaredQueue), not created
        # for no worker to consume: a seed's queue="normal" would stay PENDING for ever.
        "task_create_missing_queues": False,
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "worker_concurrency": settings.worker_concurrency,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout_s,
        "worker_enable_soft_shutdown_on_idle": settings.worker_soft_shutdown_timeout_s > 0,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry": True,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
        "enable_utc": True,
    }


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic maintenance (seed guides: cleanup and health checks, on `maintenance`)."""
    maintenance = queues.queue_name(settings, "maintenance")
    return {
        "cleanup-expired-results": {
            "task": "maintenance.cleanup_expired_results",
            "schedule": 300.0,
            "options": {"queue": maintenance, "priority": queues.Priority.LOW.value},
        },
        "health-check": {
            "task": "maintenance.health_check",
            "schedule": 60.0,
            "options": {"queue": maintenance, "priority": queues.Priority.HIGH.value},
        },
    }


def create_celery_app(settings: Settings) -> Celery:
    """The reference app: every seed feature configured from ``settings``."""
    app = Celery(
        "stack", task_cls="stack.task:StackTask", amqp=queues.StackAMQP, set_as_current=False
    )
    app.conf.update(celery_config(settings))
    app.conf.include = list(TASK_MODULES)
    return install_stack(app, settings)


def install_stack(app: Celery, settings: Settings) -> Celery:
    """Bind ``app`` to the stack: its Redis, a StackContext, the diagnostics tasks, the poison
    guard on every task, the hooks.

    The reference app is built by :func:`create_celery_app`; a user's own app is
    pointed at the stack's Redis (its broker and backend settings) as well. Settings
    the kit cannot honour (a retry delay past the visibility timeout, a malformed
    rate limit) are refused here, at start-up, not at the first failure.
    """
    retry.validate(settings)
    rate_limits(settings)
    conf = broker_settings(settings)
    app.conf.update(conf)
    # Celery's conf.result_backend prefers CELERY_RESULT_BACKEND from the environment (which
    # `up` gives every child, for apps that hard-code another backend): the class wins here.
    app.backend_cls = conf["result_backend"]
    bind(app, settings)
    importlib.import_module(DIAGNOSTICS_MODULE)
    app.loader.import_default_modules()
    app.finalize(auto=True)
    validate_tasks(app, settings)
    poison.install(app)
    hooks.install(app)
    jsonlog.install(settings)
    compat.apply()
    return app


def validate_tasks(app: Celery, settings: Settings) -> None:
    """Refuse task-level overrides the broker would break (once the tasks are imported)."""
    for task in app.tasks.values():
        delays = getattr(task, "retry_delays_s", None)
        if delays:
            retry.validate(settings, delays, source=f"retry_delays_s of task {task.name}")
        if isinstance(task, StackTask):
            rate_for(settings, task)


def import_app(path: str) -> Celery:
    """Import ``module:attr`` and check that it is a Celery app."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise SettingsError(f"STACK_CELERY_APP must look like module:attr, got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SettingsError(
            f"STACK_CELERY_APP={path!r}: cannot import {module_name!r} ({exc}); "
            "check the module path and PYTHONPATH"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, Celery):
        raise SettingsError(f"STACK_CELERY_APP={path!r}: {attr!r} is not a Celery app")
    return app


def load_app(settings: Settings) -> Celery:
    """The app the settings name: the reference app, or the user's app rebound."""
    if settings.celery_app == REFERENCE_APP:
        return create_celery_app(settings)
    return install_stack(import_app(settings.celery_app), settings)
