"""The dev profile: each Procfile line with its readiness probe, URL and ports.

The stack's five known names (redis, api, worker, beat, flower) get a builder
each; any other Procfile line runs too and counts as ready once it stayed up
for a moment. Every process but Redis needs Redis first.
"""

from __future__ import annotations

import dataclasses
import os
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
from stack.launcher.celery_lines import (
    HOSTNAME_OPTIONS,
    celery_line,
    expand_hostname,
    with_hostname,
)
from stack.launcher.reclaim import UnackedReclaimer
from stack.launcher.services import ALL_SECRETS, REDIS, Port, Service
from stack.queues import physical_names
from stack.redis_command import local_redis_port, redis_line, redis_variable
from stack.settings import Settings

BEAT_SCHEDULE = "celerybeat-schedule"
BEAT_STARTED = "beat: Starting..."  # logged at INFO once beat runs, whatever its scheduler
BEAT_BANNER = "celery beat v"  # printed at any log level as beat starts
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
    """The stock line runs our redis-server (password from a 0600 file, AOF 0600, no
    secret in its environment); a line of your own runs as written, with every secret."""
    settings, running = line.settings, line.redis_running
    command = line.command
    secrets: frozenset[str] | None = ALL_SECRETS
    if command.strip() in STOCK_REDIS_LINES and not running:
        command, secrets = redis_line(settings), None
    ports = () if running else (Port(local_redis_port(settings), redis_variable(settings)),)
    return Service(
        line.name,
        command,
        RedisPing(settings),
        redact(settings.broker_url),
        ports=ports,
        external=running,
        secrets=secrets,
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
    settings = line.settings  # its URL in the table: the dashboard (the docs are at /docs)
    return http_service(line, settings.api_host, settings.api_port, "API_PORT", "/health", "/ui")


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
    """Ready once its schedule file is written, or it logged its start (INFO) or printed its
    banner (any log level: a user's beat line may keep Celery's WARNING)."""
    data_dir = line.settings.data_dir.resolve()
    probes = (
        FileWritten(data_dir, f"{BEAT_SCHEDULE}*"),
        LogLine(BEAT_STARTED),
        LogLine(BEAT_BANNER),
    )
    parsed = celery_line(line.command)
    own = parsed.option("-s", "--schedule") if parsed is not None else None
    schedule = own if own is not None and "$" not in own else str(data_dir / BEAT_SCHEDULE)
    return Service(line.name, line.command, AnyOf(probes), schedule, requires=line.requires)


def flower_service(line: Line) -> Service:
    """Ready when /healthcheck answers on its port: the line's own --port when it names one."""
    parsed = celery_line(line.command)
    given = parsed.option("--port") if parsed is not None else None
    if given is not None and given.isdigit():
        variable = f"the --port of Procfile line {line.name!r}"
        return http_service(line, "127.0.0.1", int(given), variable, "/healthcheck", "/")
    port = line.settings.flower_port
    return http_service(line, "127.0.0.1", port, "FLOWER_PORT", "/healthcheck", "/")


def user_worker_service(line: Line) -> Service:
    """A user's own worker line: gated on a ping to its node name, given one when it has none
    (Celery's default celery@host would not tell two workers, or a stale one, apart)."""
    parsed = celery_line(line.command)
    given = parsed.option(*HOSTNAME_OPTIONS) if parsed is not None else None
    command = line.command
    if given is None:
        hostname = f"{line.name}-{os.getpid()}@{socket.gethostname()}"
        command = with_hostname(command, hostname)
    else:
        expanded = expand_hostname(given)
        if expanded is None:  # an environment variable picks it: only the process knows
            return other_service(line)
        hostname = expanded
    probe = WorkerPing(line.settings, hostname)
    return Service(line.name, command, probe, hostname, requires=line.requires)


def builder_for(name: str, command: str) -> Callable[[Line], Service]:
    """The stack's names keep their builders (a `worker` line without the stack's hostname
    variable is a user's worker); any other line running Celery is gated by what it runs."""
    if name == "worker" and "STACK_WORKER_HOSTNAME" not in command:
        return user_worker_service if celery_line(command) is not None else other_service
    if name in BUILDERS:
        return BUILDERS[name]
    parsed = celery_line(command)
    if parsed is None:
        return other_service
    return {
        "worker": user_worker_service,
        "beat": beat_service,
        "flower": flower_service,
    }[parsed.subcommand]


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
        builder_for(name, command)(
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
