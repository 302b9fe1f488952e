"""Running a Redis: a local binary or a container, with start/stop/restart/kill.

The launcher uses it for the dev stack, the pytest plugin for tests. Both
backends persist with AOF, so data survives ``restart()``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from stack.errors import RedisServerError
from stack.redis_command import Fsync, find_redis_binary, free_port, port_is_free, redis_args

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
DEFAULT_IMAGE = "redis:7"
CONTAINER_PORT = 6379  # inside the container; the host side is a free port on 127.0.0.1
READY_POLL_S = 0.05  # testcontainers polls every second by default; Redis is up in ms


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


class _OnLoopback(ABC):
    """What both backends share: a Redis on 127.0.0.1 at a port fixed at creation,
    so that ``restart()`` keeps the URL."""

    port: int
    password: str | None
    db: int

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{self.db}"

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class LocalRedisServer(_OnLoopback):
    """A `redis-server` child process on 127.0.0.1 with its data in ``data_dir``."""

    data_dir: Path
    port: int = 0
    password: str | None = None
    db: int = 0
    fsync: Fsync = "everysec"
    binary: str = field(default_factory=find_redis_binary)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

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

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class ContainerRedisServer(_OnLoopback):
    """Redis in a container through testcontainers, published on 127.0.0.1 only.

    The host port is fixed at creation so that ``restart()`` keeps the URL, and
    the container is kept across ``stop()``/``kill()`` so its AOF (in /data)
    survives; ``remove()`` deletes it. testcontainers' Ryuk is expected off
    (see stack.harness.backend_choice.TESTCONTAINERS_DEFAULTS): whoever starts one removes it.
    """

    image: str = DEFAULT_IMAGE
    port: int = 0
    password: str | None = None
    db: int = 0
    fsync: Fsync = "everysec"
    labels: Mapping[str, str] = field(default_factory=dict)
    container: Any = field(default=None, init=False, repr=False)

    @property
    def description(self) -> str:
        return f"testcontainers Redis (image {self.image}) on 127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """Passed explicitly: an image made by `docker import` has no command of its own."""
        return [
            "redis-server",
            "--protected-mode",
            "no",  # clients come through the Docker bridge, not loopback
            "--dir",
            "/data",
            *redis_args(CONTAINER_PORT, self.password, self.fsync),
        ]

    def start(self) -> None:
        if self.container is not None:
            self._restart_container()
            return
        from testcontainers.community.redis import PingWaitStrategy, RedisContainer

        container = RedisContainer(self.image, password=self.password)
        container.with_command(self.command())
        # Bound to loopback only, on a port chosen here (testcontainers' with_bind_ports
        # takes no host address; docker-py's (ip, port) form does).
        container.ports[f"{CONTAINER_PORT}/tcp"] = ("127.0.0.1", self.port)
        container.with_kwargs(labels=dict(self.labels))
        container.waiting_for(
            PingWaitStrategy()
            .with_poll_interval(READY_POLL_S)
            .with_startup_timeout(int(READY_TIMEOUT_S))
        )
        try:
            container.start()
        except Exception as exc:  # docker.errors.*, testcontainers' and redis' errors
            with contextlib.suppress(Exception):
                container.stop()
            raise RedisServerError(
                f"could not start a Redis container from image {self.image!r} on port "
                f"{self.port} ({exc}); build one offline with docker/build-redis-image.sh "
                "and set STACK_REDIS_IMAGE, or set STACK_REDIS_BACKEND=local"
            ) from exc
        self.container = container

    def _restart_container(self) -> None:
        docker_container = self._docker()
        docker_container.reload()
        if docker_container.status != "running":
            try:
                docker_container.start()
            except Exception as exc:
                raise RedisServerError(
                    f"could not restart the Redis container {docker_container.short_id} "
                    f"on port {self.port} ({exc})"
                ) from exc
        wait_until_ready(self.url)

    def _docker(self) -> Any:
        return self.container.get_wrapped_container()

    def stop(self) -> None:
        """Graceful: `docker stop` sends SIGTERM, Redis flushes its AOF and exits."""
        if self.container is not None:
            self._docker().stop(timeout=int(STOP_TIMEOUT_S))

    def kill(self) -> None:
        """SIGKILL the Redis (the container stays, with its AOF, for ``start()``)."""
        if self.container is not None:
            self._docker().reload()
            if self._docker().status == "running":
                self._docker().kill()

    def remove(self) -> None:
        """Delete the container and its data."""
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.stop(force=True, delete_volume=True)
            self.container = None
