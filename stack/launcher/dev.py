"""The dev profile: each Procfile line with its readiness probe, URL and ports.

The stack's five known names (redis, api, worker, beat, flower) get a builder
each; any other Procfile line runs too and counts as ready once it stayed up
for a moment. Every process but Redis needs Redis first.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stack.checks.probes import (
    AnyOf,
    FileWritten,
    HttpOk,
    LogLine,
    RedisPing,
    StayedUp,
    WorkerPing,
)
from stack.connection import redact, url_with_password
from stack.launcher.reclaim import UnackedReclaimer
from stack.launcher.services import REDIS, Port, Service
from stack.queues import physical_names
from stack.redis_command import local_redis_port, redis_foreground_command, redis_variable
from stack.settings import Settings

BEAT_SCHEDULE = "celerybeat-schedule"
BEAT_STARTED = "beat: Starting..."  # logged at INFO once beat runs, whatever its scheduler
# The stock Redis lines: `up` runs the redis-server they would exec, minus a Python start.
STOCK_REDIS_LINES = ("python -m stack redis", "celery-stack redis")


@dataclass(frozen=True)
class Line:
    """One Procfile line as a builder sees it, with what the launch already knows."""

    name: str
    command: str
    settings: Settings
    redis_running: bool
    hostname: str
    requires: tuple[str, ...]


def worker_hostname() -> str:
    """Unique per launch, so the readiness ping proves *our* worker consumes."""
    return f"worker-{os.getpid()}@{socket.gethostname()}"


def redis_service(line: Line) -> Service:
    settings, running = line.settings, line.redis_running
    command = line.command
    if command.strip() in STOCK_REDIS_LINES and not running:
        command = shlex.join(redis_foreground_command(settings))
    ports = () if running else (Port(local_redis_port(settings), redis_variable(settings)),)
    return Service(
        line.name,
        command,
        RedisPing(settings),
        redact(settings.broker_url),
        ports=ports,
        external=running,
    )


def http_service(
    line: Line, host: str, port: int, variable: str, health: str, page: str
) -> Service:
    """A service that serves HTTP: ready when ``health`` answers 200; its URL is ``page``."""
    base = f"http://{host}:{port}"
    return Service(
        line.name,
        line.command,
        HttpOk(f"{base}{health}"),
        f"{base}{page}",
        ports=(Port(port, variable, host),),
        requires=line.requires,
    )


def api_service(line: Line) -> Service:
    settings = line.settings
    return http_service(line, settings.api_host, settings.api_port, "API_PORT", "/health", "/docs")


def worker_service(line: Line) -> Service:
    """Restarted after a death, it first gets back what its predecessor held unacked.

    It consumes STACK_WORKER_QUEUES: for a user's app, the queues discovery read from it
    (`up` sets them); unset, the reference app's four queues."""
    settings = line.settings
    queues = list(settings.worker_queues) if settings.worker_queues else physical_names(settings)
    return Service(
        line.name,
        line.command,
        WorkerPing(line.settings, line.hostname),
        line.hostname,
        requires=line.requires,
        env={"STACK_WORKER_HOSTNAME": line.hostname, "STACK_WORKER_QUEUES": ",".join(queues)},
        reclaim=UnackedReclaimer(line.settings, tuple(queues)),
    )


def beat_service(line: Line) -> Service:
    data_dir = line.settings.data_dir.resolve()
    return Service(
        line.name,
        line.command,
        AnyOf((FileWritten(data_dir, f"{BEAT_SCHEDULE}*"), LogLine(BEAT_STARTED))),
        str(data_dir / BEAT_SCHEDULE),
        requires=line.requires,
    )


def flower_service(line: Line) -> Service:
    port = line.settings.flower_port
    return http_service(line, "127.0.0.1", port, "FLOWER_PORT", "/healthcheck", "/")


def other_service(line: Line) -> Service:
    return Service(line.name, line.command, StayedUp(), requires=line.requires)


BUILDERS: dict[str, Callable[[Line], Service]] = {
    REDIS: redis_service,
    "api": api_service,
    "worker": worker_service,
    "beat": beat_service,
    "flower": flower_service,
}


def dev_services(
    settings: Settings,
    commands: Mapping[str, str],
    redis_running: bool = False,
    hostname: str | None = None,
) -> list[Service]:
    """The dev stack in Procfile order: Redis first, every other process needs it.

    Every process is given the stack's Redis as CELERY_BROKER_URL and CELERY_RESULT_BACKEND
    too: Celery prefers them to an app's own configuration, so a Procfile line running a
    user's app that hard-codes ``broker='amqp://...'`` uses the stack's Redis.
    """
    requires = (REDIS,) if REDIS in commands else ()
    host = hostname or worker_hostname()
    services = [
        BUILDERS.get(name, other_service)(
            Line(
                name,
                command,
                settings,
                redis_running,
                host,
                () if name == REDIS else requires,
            )
        )
        for name, command in commands.items()
    ]
    redirect = broker_env(settings)
    return [
        s if s.name == REDIS else dataclasses.replace(s, env={**redirect, **s.env})
        for s in services
    ]


def broker_env(settings: Settings) -> dict[str, str]:
    """The stack's Redis in Celery's own variables (not in production: there every line is
    the stack's own app, and the URL may carry the password into every environment)."""
    if settings.profile == "production":
        return {}
    return {
        "CELERY_BROKER_URL": url_with_password(settings.broker_url, settings),
        "CELERY_RESULT_BACKEND": url_with_password(settings.result_backend, settings),
    }
