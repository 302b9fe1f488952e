"""The production profile: `celery-stack up --profile production` and `start_production.py`.

The dev profile's services, with production commands and defaults, behind
the preflight: every missing or unsafe setting is reported in one message
before anything starts. What changes against dev:

* Redis: password required (``requirepass``), AOF ``everysec``,
  ``noeviction``, bound to 127.0.0.1 (the ``celery-stack redis`` line), or an
  external ``REDIS_URL`` (``rediss://`` with CA and client certificates for
  broker and backend alike), which must refuse clients without the password.
* API: one uvicorn process per core (``STACK_API_WORKERS`` overrides), JSON logs.
* Worker: concurrency 4, each pool child recycled after
  ``MAX_TASKS_PER_CHILD`` tasks or past ``MAX_MEMORY_PER_CHILD_KB``, a soft
  shutdown timeout for running tasks.
* Beat: the Redis-locked scheduler (exactly one dispatches), state in the data dir.
* Flower: basic auth and an explicit cookie secret from the environment (never
  on the command line, where ``ps`` shows them), ``FLOWER_UNAUTHENTICATED_API`` refused,
  run through :mod:`stack.flower` so that its ``/metrics`` needs the basic auth too.
* Logs: one JSON object per line, with service, level and task id.

Each process gets only its own secrets (``SERVICE_SECRETS`` in
:mod:`stack.launcher.services`), Redis none: its password is in a 0600 file of the
0700 data dir, and its AOF is written under ``umask 077``.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from stack.launcher.dev import BEAT_SCHEDULE, dev_services, worker_hostname
from stack.launcher.services import REDIS, Service
from stack.preflight import check_redis_auth, check_settings, enforce
from stack.redis_command import private_data_dir, redis_line
from stack.settings import Settings, settings_env

PROFILE = "production"
WORKER_CONCURRENCY = 4  # the seeds' production figure ("Celery workers (4 concurrent)")
MAX_TASKS_PER_CHILD = 1000  # a leaking task library is reset every 1,000 tasks ...
MAX_MEMORY_PER_CHILD_KB = 512_000  # ... or once a child holds 500 MB resident
SOFT_SHUTDOWN_FRACTION = 0.8  # running tasks get most of the launcher's stop budget
UVICORN_LOG_CONFIG = "uvicorn-log.json"  # stack/data: uvicorn's loggers as JSON lines


def api_workers(settings: Settings) -> int:
    """STACK_API_WORKERS when given, else one process per core."""
    if "api_workers" in settings.model_fields_set:
        return settings.api_workers
    return max(1, os.cpu_count() or 1)


def production_overrides(settings: Settings) -> dict[str, str]:
    """Environment every production process gets: the profile's defaults where the
    operator set nothing, JSON logs always."""
    chosen = settings.model_fields_set
    defaults: dict[str, str] = {
        "STACK_PROFILE": PROFILE,
        "STACK_LOG_FORMAT": "json",
    }
    if "worker_concurrency" not in chosen:
        defaults["STACK_WORKER_CONCURRENCY"] = str(WORKER_CONCURRENCY)
    if "worker_max_tasks_per_child" not in chosen:
        defaults["STACK_WORKER_MAX_TASKS_PER_CHILD"] = str(MAX_TASKS_PER_CHILD)
    if "worker_max_memory_per_child_kb" not in chosen:
        defaults["STACK_WORKER_MAX_MEMORY_PER_CHILD"] = str(MAX_MEMORY_PER_CHILD_KB)
    if "worker_soft_shutdown_timeout_s" not in chosen:
        soft = settings.shutdown_timeout_s * SOFT_SHUTDOWN_FRACTION
        defaults["STACK_WORKER_SOFT_SHUTDOWN_TIMEOUT"] = f"{soft:g}"
    return defaults


def production_settings(settings: Settings) -> Settings:
    """The settings every production process will load (the launcher's own view of them)."""
    return Settings.load(
        environ={**settings_env(settings), **production_overrides(settings)}
    ).model_copy(update={"api_workers": api_workers(settings)})


def uvicorn_log_config_path() -> Path:
    return Path(str(resources.files("stack") / "data" / UVICORN_LOG_CONFIG))


def uvicorn_command(settings: Settings, host: str | None = None) -> list[str]:
    """The production API: several worker processes, JSON logs, no server banner."""
    return [
        "uvicorn",
        "--factory",
        "stack.api:create_app",
        "--host",
        host or settings.api_host,
        "--port",
        str(settings.api_port),
        "--workers",
        str(api_workers(settings)),
        "--log-config",
        str(uvicorn_log_config_path()),
        "--no-server-header",
    ]


def production_commands(settings: Settings, commands: Mapping[str, str]) -> dict[str, str]:
    """The Procfile's lines with the production versions of the stack's own services.

    Lines the Procfile does not have stay absent (``--only`` and custom Procfiles work).
    """
    data_dir = settings.data_dir.resolve()
    ours = {
        "api": shlex.join(uvicorn_command(settings)),
        "worker": (
            "celery -A stack.celery_app worker --hostname ${STACK_WORKER_HOSTNAME} "
            "-Q ${STACK_WORKER_QUEUES} --loglevel INFO --without-mingle --without-gossip"
        ),
        "beat": (
            f"mkdir -p {data_dir} && celery -A stack.celery_app beat "
            f"-S stack.beat:LockedScheduler --schedule {data_dir / BEAT_SCHEDULE} "
            "--loglevel INFO"
        ),
        "flower": (  # stack.flower: Celery's command line, Flower's /metrics behind its auth
            "python -m stack.flower -A stack.celery_app flower --address=127.0.0.1 "
            f"--port={settings.flower_port} --logging=none"
        ),
    }
    return {name: ours.get(name, command) for name, command in commands.items()}


def redis_command(settings: Settings) -> str:
    """The local production Redis: its password read from a 0600 file in the 0700 data
    dir (on its command line, `ps` would show it to every local user), its AOF 0600."""
    return redis_line(settings)


def flower_env(settings: Settings) -> dict[str, str]:
    """Flower reads FLOWER_* options from its environment: the secrets stay off argv."""
    env = {}
    if settings.flower_basic_auth is not None:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    if settings.flower_cookie_secret is not None:
        env["FLOWER_COOKIE_SECRET"] = settings.flower_cookie_secret.get_secret_value()
    return env


def production_services(
    settings: Settings, commands: Mapping[str, str], redis_running: bool = False
) -> list[Service]:
    """The production stack; raises InsecureSettings listing every unsafe item first.

    An already running (external) Redis is probed too: it must refuse a client
    that brings no password. A Redis we start gets ``requirepass`` by construction.
    """
    effective = production_settings(settings)
    findings = check_settings(effective, {})
    if redis_running:
        findings += check_redis_auth(effective)
    enforce(effective, findings)

    overrides = production_overrides(settings)
    services = dev_services(
        effective, production_commands(effective, commands), redis_running, worker_hostname()
    )
    private_data_dir(effective)  # 0700 before any process writes into it
    result = []
    for service in services:
        if service.name == REDIS and not service.external:  # ours: no secret in its env
            service = dataclasses.replace(service, command=redis_command(effective), secrets=None)
        env = {**service.env, **overrides, "STACK_SERVICE": service.name}
        if service.name == "flower":
            env.update(flower_env(effective))
        if service.name == REDIS:
            env.pop("STACK_LOG_FORMAT", None)  # redis-server logs its own way
        result.append(dataclasses.replace(service, env=env))
    return result
