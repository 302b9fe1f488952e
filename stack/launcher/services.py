"""Service: one process `celery-stack up` runs, and the rules over a list of them.

The Procfile (honcho's format) says *how* to start each process; a
:class:`Service` adds what honcho lacks: the readiness probe, the URL, the
ports to check up front and the services it needs first. The profiles
(:mod:`stack.launcher.profiles`) build the list; this module orders it, checks
its ports and gives each process its environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from stack.checks.probes import Probe
from stack.errors import PortInUse
from stack.redis_command import port_is_free
from stack.settings import URL_VARIABLES, Settings, settings_env

REDIS = "redis"

# The stack's secrets, each with every variable that carries it (Flower reads its own
# FLOWER_* names; a Redis URL may carry the password too, see _strip).
API_KEY = "STACK_API_KEY"
REDIS_PASSWORD = "STACK_REDIS_PASSWORD"
FLOWER_BASIC_AUTH = "STACK_FLOWER_BASIC_AUTH"
FLOWER_COOKIE_SECRET = "STACK_FLOWER_COOKIE_SECRET"
SECRET_VARIABLES: Mapping[str, tuple[str, ...]] = {
    API_KEY: (API_KEY,),
    REDIS_PASSWORD: (REDIS_PASSWORD,),
    FLOWER_BASIC_AUTH: (FLOWER_BASIC_AUTH, "FLOWER_BASIC_AUTH"),
    FLOWER_COOKIE_SECRET: (FLOWER_COOKIE_SECRET, "FLOWER_COOKIE_SECRET"),
}
ALL_SECRETS = frozenset(SECRET_VARIABLES)
# Which service gets which secret in its environment: only what it uses. A Procfile line
# of your own is not in this table and gets every secret (we cannot know what it needs).
SERVICE_SECRETS: Mapping[str, frozenset[str]] = {
    REDIS: frozenset(),  # redis-server reads requirepass from a 0600 file in the data dir
    "api": frozenset({API_KEY, REDIS_PASSWORD}),
    "worker": frozenset({REDIS_PASSWORD}),
    "beat": frozenset({REDIS_PASSWORD}),
    "flower": frozenset({FLOWER_BASIC_AUTH, FLOWER_COOKIE_SECRET, REDIS_PASSWORD}),
}
# What a child of `up` reads instead of `.env` / STACK_ENV_FILE: the launcher read that
# file once and hands each child its share, so a child must not read every secret again.
LAUNCHED_ENV_FILE = "launched.env"


@dataclass(frozen=True)
class Port:
    """A port a service will listen on, and the variable that moves it."""

    number: int
    variable: str
    host: str = "127.0.0.1"


class Reclaimer(Protocol):
    """Gives back what a dead instance of a service held (a worker's unacked messages).

    Called in the probe pool when the restart is decided, so its imports overlap the
    backoff and the new instance's start: nothing is paid for at launch.
    """

    def reclaim(self, since: float, until: float) -> str:
        """Reclaim what the instance alive from ``since`` to ``until`` (epoch s) held.

        Returns one log line for the launcher (empty: nothing to say)."""
        ...


@dataclass(frozen=True)
class Service:
    """One process of the stack: how to start it and how to know it is ready.

    ``external`` marks a service that already runs elsewhere (a Redis that
    answered before we started): it is probed, never started or stopped.
    ``reclaim``, when set, runs each time the service is restarted after a death.
    """

    name: str
    command: str
    probe: Probe
    url: str = ""
    ports: tuple[Port, ...] = ()
    requires: tuple[str, ...] = ()
    external: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    reclaim: Reclaimer | None = None
    secrets: frozenset[str] | None = None  # None: SERVICE_SECRETS by name (else every one)

    @property
    def allowed_secrets(self) -> frozenset[str]:
        """The secrets (SECRET_VARIABLES names) this process gets in its environment."""
        if self.secrets is not None:
            return self.secrets
        return SERVICE_SECRETS.get(self.name, ALL_SECRETS)


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
    """The environment of every Procfile process: ours, the settings, unbuffered Python.

    For a ``service``, only the secrets SERVICE_SECRETS grants it, and no `.env` to
    read them all again from.
    """
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
        env = _strip(env, ALL_SECRETS - service.allowed_secrets)
        env["STACK_ENV_FILE"] = launched_env_file()
    return env


def launched_env_file() -> str:
    return str(resources.files("stack") / "data" / LAUNCHED_ENV_FILE)


def _strip(env: Mapping[str, str], denied: frozenset[str]) -> dict[str, str]:
    """``env`` without the variables of the ``denied`` secrets (Settings reads any case);
    without the Redis password, Redis URLs lose theirs too."""
    names = {v.upper() for secret in denied for v in SECRET_VARIABLES[secret]}
    kept = {k: v for k, v in env.items() if k.upper() not in names}
    if REDIS_PASSWORD in denied:
        for key, value in kept.items():
            if key.upper() in URL_VARIABLES:
                kept[key] = _without_password(value)
    return kept


def _without_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return ""  # not a URL Settings would load either: pass nothing that might be a secret
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))
