"""Container healthchecks: `celery-stack health SERVICE`, exit 0 when the service serves.

The same probes `celery-stack up` gates on, asked from inside the service's
container (compose ``healthcheck``, Kubernetes ``exec`` probes). The worker's
proves consumption (a Celery ping through the broker answered by this very
worker), not just a live process (celery #8030).
"""

from __future__ import annotations

import socket

from stack.checks.probes import BeatLockHeld, HttpOk, Probe, RedisPing, WorkerPing, safe_close
from stack.errors import SettingsError
from stack.settings import Settings

SERVICES = ("redis", "api", "worker", "beat", "flower")


def default_worker_hostname() -> str:
    """The Procfile's and the compose file's worker name: ``worker@<host>``."""
    return f"worker@{socket.gethostname()}"


def probe_for(settings: Settings, service: str, hostname: str | None = None) -> Probe:
    if service == "redis":
        return RedisPing(settings)
    if service == "api":
        return HttpOk(f"http://127.0.0.1:{settings.api_port}/health")
    if service == "flower":
        return HttpOk(f"http://127.0.0.1:{settings.flower_port}/healthcheck")
    if service == "worker":
        return WorkerPing(settings, hostname or default_worker_hostname())
    if service == "beat":
        return BeatLockHeld(settings)
    raise SettingsError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)}")


def healthy(settings: Settings, service: str, hostname: str | None = None) -> tuple[bool, str]:
    """(healthy, what was checked or what is wrong)."""
    probe = probe_for(settings, service, hostname)
    ok = probe.check()
    safe_close(probe)
    return ok, probe.description if ok else probe.problem
