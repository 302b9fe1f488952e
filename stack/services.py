"""Services: what `celery-stack up` runs, built from a Procfile and the settings.

The Procfile (honcho's format) says *how* to start each process; a
:class:`Service` adds what honcho lacks: the readiness probe, the URL, the
ports to check up front and the services it needs first. A profile is a
function from (settings, Procfile commands) to services, so the production
profile can reuse the dev one and override commands.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from stack.errors import PortInUse, ServiceFailed, SettingsError
from stack.probes import (
    AnyOf,
    FileWritten,
    HttpOk,
    LogLine,
    Probe,
    RedisPing,
    StayedUp,
    WorkerPing,
    redact_url,
)
from stack.queues import QUEUES, queue_name
from stack.redis_server import find_redis_binary, port_is_free, redis_args
from stack.settings import Settings

DEFAULT_PROCFILE = Path("Procfile")
BEAT_SCHEDULE = "celerybeat-schedule"
BEAT_STARTED = "beat: Starting..."  # logged at INFO once beat runs, whatever its scheduler
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
REDIS = "redis"
# The stock Redis lines: `up` runs the redis-server they would exec, minus a Python start.
STOCK_REDIS_LINES = ("python -m stack redis", "celery-stack redis")


@dataclass(frozen=True)
class Port:
    """A port a service will listen on, and the variable that moves it."""

    number: int
    variable: str
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Service:
    """One process of the stack: how to start it and how to know it is ready.

    ``external`` marks a service that already runs elsewhere (a Redis that
    answered before we started): it is probed, never started or stopped.
    """

    name: str
    command: str
    probe: Probe
    url: str = ""
    ports: tuple[Port, ...] = ()
    requires: tuple[str, ...] = ()
    external: bool = False
    env: Mapping[str, str] = field(default_factory=dict)


# --- the Procfile -----------------------------------------------------------------


def parse_procfile(text: str) -> dict[str, str]:
    """Process name -> command, in file order (honcho's own parser)."""
    from honcho.environ import parse_procfile as honcho_parse

    try:
        processes = honcho_parse(text).processes
    except AssertionError as exc:  # honcho asserts unique names
        raise SettingsError(f"Procfile: {exc}") from None
    return dict(processes)


def load_procfile(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(
            f"cannot read Procfile {str(path)!r} ({exc.strerror}): run `celery-stack up` "
            "from the project root or pass --procfile"
        ) from None
    processes = parse_procfile(text)
    if not processes:
        raise SettingsError(f"Procfile {str(path)!r} has no `name: command` line")
    return processes


# --- Redis ---------------------------------------------------------------------------


def redis_variable(settings: Settings) -> str:
    """The variable that names the broker's Redis (what to change when its port is taken)."""
    return "CELERY_BROKER_URL" if settings.celery_broker_url else "REDIS_URL"


def redis_password(settings: Settings) -> str | None:
    if settings.redis_password is not None:
        return settings.redis_password.get_secret_value()
    return urlsplit(settings.broker_url).password


def local_redis_port(settings: Settings) -> int:
    """The port of the broker's Redis, which must be on this machine for us to start it."""
    parts = urlsplit(settings.broker_url)
    if (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise ServiceFailed(
            f"Redis at {parts.hostname}:{parts.port or 6379} does not answer and is not on this "
            f"machine, so `up` cannot start it: start it, or set {redis_variable(settings)} "
            "to redis://127.0.0.1:6379/0 to let `up` run a local one"
        )
    return parts.port or 6379


def redis_foreground_command(settings: Settings, config: Path | None = None) -> list[str]:
    """`celery-stack redis`: a redis-server logging to stdout, AOF in the data dir.

    With ``config``, that file sets the password (``requirepass``), off the command line.
    """
    port = local_redis_port(settings)
    data_dir = settings.data_dir.resolve()
    return [
        find_redis_binary(),
        *([str(config)] if config else []),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--logfile",
        "",
        *redis_args(port, None if config else redis_password(settings), "everysec"),
    ]


def redis_answers(settings: Settings) -> bool:
    """Is a Redis already serving the broker URL? (Then `up` uses it and skips the line.)"""
    probe = RedisPing(settings)
    return probe.check()


# --- the dev profile ---------------------------------------------------------------------


def worker_hostname() -> str:
    """Unique per launch, so the readiness ping proves *our* worker consumes."""
    return f"worker-{os.getpid()}@{socket.gethostname()}"


def dev_services(
    settings: Settings,
    commands: Mapping[str, str],
    redis_running: bool = False,
    hostname: str | None = None,
) -> list[Service]:
    """The dev stack: Redis first, every other process needs it, in Procfile order.

    Known names get their probe and URL; any other Procfile line is run too and
    counts as ready once it stayed up for a moment.
    """
    hostname = hostname or worker_hostname()
    host = settings.api_host
    needs_redis = (REDIS,) if REDIS in commands else ()
    data_dir = settings.data_dir.resolve()
    services = []
    for name, command in commands.items():
        service: Service
        if name == REDIS:
            if command.strip() in STOCK_REDIS_LINES and not redis_running:
                command = shlex.join(redis_foreground_command(settings))
            ports = (
                ()
                if redis_running
                else (Port(local_redis_port(settings), redis_variable(settings)),)
            )
            service = Service(
                name,
                command,
                RedisPing(settings),
                redact_url(settings.broker_url),
                ports=ports,
                external=redis_running,
            )
        elif name == "api":
            base = f"http://{host}:{settings.api_port}"
            service = Service(
                name,
                command,
                HttpOk(f"{base}/health"),
                f"{base}/docs",
                ports=(Port(settings.api_port, "API_PORT", host),),
                requires=needs_redis,
            )
        elif name == "worker":
            queues = ",".join(queue_name(settings, q) for q in QUEUES)
            service = Service(
                name,
                command,
                WorkerPing(settings, hostname),
                hostname,
                requires=needs_redis,
                env={"STACK_WORKER_HOSTNAME": hostname, "STACK_WORKER_QUEUES": queues},
            )
        elif name == "beat":
            service = Service(
                name,
                command,
                AnyOf((FileWritten(data_dir, f"{BEAT_SCHEDULE}*"), LogLine(BEAT_STARTED))),
                str(data_dir / BEAT_SCHEDULE),
                requires=needs_redis,
            )
        elif name == "flower":
            base = f"http://127.0.0.1:{settings.flower_port}"
            service = Service(
                name,
                command,
                HttpOk(f"{base}/healthcheck"),
                f"{base}/",
                ports=(Port(settings.flower_port, "FLOWER_PORT"),),
                requires=needs_redis,
            )
        else:
            service = Service(name, command, StayedUp(), requires=needs_redis)
        services.append(service)
    return services


ProfileBuilder = Callable[[Settings, Mapping[str, str], bool], list[Service]]


# profile name -> builder. The production profile registers itself here.
def _dev(settings: Settings, commands: Mapping[str, str], running: bool) -> list[Service]:
    from stack.preflight import warn_once  # dev only warns (one line) about what production refuses

    warn_once(settings)
    return dev_services(settings, commands, running)


PROFILES: dict[str, ProfileBuilder] = {"dev": _dev}


def _production(settings: Settings, commands: Mapping[str, str], running: bool) -> list[Service]:
    from stack.production import production_services  # it builds on this module

    return production_services(settings, commands, running)


PROFILES["production"] = _production


def build_services(
    settings: Settings,
    commands: Mapping[str, str],
    profile: str = "dev",
    only: Sequence[str] | None = None,
    redis_running: bool = False,
) -> list[Service]:
    """The services of ``profile``, restricted to ``only`` (dependencies outside it dropped)."""
    builder = PROFILES.get(profile)
    if builder is None:
        raise SettingsError(
            f"profile {profile!r} is not available (known: {', '.join(sorted(PROFILES))})"
        )
    if only:
        unknown = sorted(set(only) - set(commands))
        if unknown:
            raise SettingsError(
                f"--only names {', '.join(unknown)}, which the Procfile does not define "
                f"(it has {', '.join(commands)})"
            )
        commands = {name: cmd for name, cmd in commands.items() if name in only}
    services = builder(settings, commands, redis_running)
    names = {service.name for service in services}
    return [
        Service(
            s.name,
            s.command,
            s.probe,
            s.url,
            s.ports,
            tuple(r for r in s.requires if r in names),
            s.external,
            s.env,
        )
        for s in services
    ]


# --- ordering and ports ------------------------------------------------------------------


def stop_waves(services: Sequence[Service]) -> list[list[str]]:
    """Stop order: dependents first (API, worker, beat, Flower together), Redis last."""
    remaining = {s.name: set(s.requires) for s in services}
    order = [s.name for s in services]
    waves = []
    while remaining:
        needed = {r for reqs in remaining.values() for r in reqs if r in remaining}
        wave = [name for name in order if name in remaining and name not in needed]
        if not wave:  # a cycle: stop the rest together
            wave = [name for name in order if name in remaining]
        waves.append(wave)
        for name in wave:
            del remaining[name]
    return waves


def check_ports(
    services: Sequence[Service], is_free: Callable[[int, str], bool] = port_is_free
) -> None:
    """Refuse up front, naming the port and its variable, before anything starts."""
    for service in services:
        if service.external:
            continue
        for port in service.ports:
            if not is_free(port.number, port.host):
                raise PortInUse(service.name, port.number, port.variable)


def child_env(
    settings: Settings, environ: Mapping[str, str], service: Service | None = None
) -> dict[str, str]:
    """The environment of every Procfile process: ours, the settings, unbuffered Python."""
    from stack.settings import settings_env

    venv_bin = str(Path(sys.executable).parent)
    path = environ.get("PATH", os.defpath)
    env = {
        **environ,
        **settings_env(settings),
        "API_HOST": settings.api_host,
        "API_PORT": str(settings.api_port),
        "FLOWER_PORT": str(settings.flower_port),
        "STACK_DATA_DIR": str(settings.data_dir.resolve()),
        "PYTHONUNBUFFERED": "1",
        # `celery`, `uvicorn` and `python` in the Procfile are the ones of our interpreter.
        "PATH": path if path.split(os.pathsep)[0] == venv_bin else venv_bin + os.pathsep + path,
    }
    if service is not None:
        env.update(service.env)
    return env
