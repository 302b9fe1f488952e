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
from pathlib import Path
from typing import Protocol

from stack.checks.probes import Probe
from stack.errors import PortInUse
from stack.redis_command import port_is_free
from stack.settings import Settings, settings_env

REDIS = "redis"


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
