"""Which Redis the test harness runs: a testcontainers container or a local binary.

``auto`` picks the container where a Docker engine answers AND the image is
usable (present locally, or pullable); otherwise the local ``redis-server``.
A forced backend that is unavailable is an error, never a silent fallback:
a CI that asked for Docker must not pass on something else.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from stack.errors import RedisServerError
from stack.harness.redis_servers import DEFAULT_IMAGE as DEFAULT_IMAGE
from stack.harness.redis_servers import ContainerRedisServer, LocalRedisServer, RedisServer
from stack.redis_command import Fsync, find_redis_binary
from stack.settings import Settings

Backend = Literal["docker", "local"]

OFFLINE_IMAGE = "celery-stack/redis:7-local"  # what docker/build-redis-image.sh builds
DOCKER_TIMEOUT_S = 3  # a Docker engine that answers at all answers a ping in milliseconds
HARNESS_LABEL = "celery-stack.harness"  # marks our containers: Ryuk is off, we clean up
OWNER_LABEL = "celery-stack.owner"  # "<host>:<pid>" of the process that started the container

# testcontainers' own knobs, as this harness needs them (a value already in the
# environment wins). Ryuk needs an image of its own (no registry: none); inside
# a container (/.dockerenv) testcontainers would otherwise reach for the bridge
# address, while our published ports are bound to 127.0.0.1.
TESTCONTAINERS_DEFAULTS = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TC_HOST": "127.0.0.1",
}


def use_testcontainers_defaults(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Put TESTCONTAINERS_DEFAULTS into ``environ`` where unset; return the values in force.

    testcontainers reads these when its config module is imported, so an
    already-imported config is updated too.
    """
    for name, value in TESTCONTAINERS_DEFAULTS.items():
        environ.setdefault(name, value)
    in_force = {name: environ[name] for name in TESTCONTAINERS_DEFAULTS}
    config_module = sys.modules.get("testcontainers.core.config")
    if config_module is not None:
        config = config_module.testcontainers_config
        config.ryuk_disabled = in_force["TESTCONTAINERS_RYUK_DISABLED"].lower() in ("1", "true")
        config.tc_host_override = in_force["TC_HOST"]
        config.connection_mode_override = config_module.ConnectionMode(
            in_force["TESTCONTAINERS_CONNECTION_MODE"]
        )
    return in_force


@dataclass(frozen=True)
class BackendChoice:
    """The backend the harness uses, and why; plain data so xdist can ship it to workers."""

    backend: Backend
    reason: str
    image: str | None = None  # docker: the image the containers run
    binary: str | None = None  # local: the redis-server that runs
    error: str | None = None  # set when the backend was forced but is unavailable

    def describe(self) -> str:
        if self.backend == "docker":
            where = f"testcontainers, image {self.image}"
        else:
            where = f"redis-server {self.binary}" if self.binary else "no redis-server chosen"
        state = f"UNAVAILABLE: {self.error}" if self.error else self.reason
        return f"Redis backend {self.backend} ({where}); {state}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendChoice:
        return cls(**data)

    def check(self) -> None:
        if self.error:
            raise RedisServerError(self.error)


@contextlib.contextmanager
def docker_client() -> Iterator[Any]:
    import docker

    client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
    try:
        yield client
    finally:
        client.close()


def docker_image(wanted: str) -> tuple[str | None, str | None]:
    """(image, None) for a usable image, else (None, why not).

    ``wanted`` is pulled if absent. In place of the default public image, the
    offline one (docker/build-redis-image.sh) is used when that is present
    and the public one cannot be had.
    """
    try:
        import docker
    except ImportError:
        return None, "the docker/testcontainers packages are missing: pip install testcontainers"
    try:
        with docker_client() as client:
            client.ping()
            if _image_present(client, wanted):
                return wanted, None
            try:
                client.images.pull(wanted)
                return wanted, None
            except docker.errors.DockerException as exc:
                pull_error = getattr(exc, "explanation", None) or str(exc)
            if wanted == DEFAULT_IMAGE and _image_present(client, OFFLINE_IMAGE):
                return OFFLINE_IMAGE, None
    except docker.errors.DockerException as exc:
        return (
            None,
            f"no Docker engine answers ({exc}); start dockerd or set STACK_REDIS_BACKEND=local",
        )
    return None, (
        f"image {wanted!r} is not present and cannot be pulled ({pull_error}); build one offline "
        f"with docker/build-redis-image.sh and set STACK_REDIS_IMAGE={OFFLINE_IMAGE}"
    )


def _image_present(client: Any, image: str) -> bool:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def local_problem() -> tuple[str | None, str | None]:
    """(binary, None) when a local Redis can run, else (None, why not)."""
    try:
        return find_redis_binary(), None
    except RedisServerError as exc:
        return None, str(exc)


def choose_backend(settings: Settings) -> BackendChoice:
    """Decide once per test session which Redis backend the settings ask for."""
    wanted = settings.redis_backend
    if wanted in ("auto", "docker"):
        image, problem = docker_image(settings.redis_image)
        if image is not None:
            reason = (
                "forced by STACK_REDIS_BACKEND" if wanted == "docker" else "a Docker engine answers"
            )
            if image != settings.redis_image:
                reason += f" ({settings.redis_image} unavailable: the offline image stands in)"
            return BackendChoice("docker", reason, image=image)
        if wanted == "docker":
            return BackendChoice(
                "docker",
                "STACK_REDIS_BACKEND=docker",
                image=settings.redis_image,
                error=f"STACK_REDIS_BACKEND=docker: {problem}",
            )
        auto_reason = f"auto: no container ({problem})"
    else:
        auto_reason = "STACK_REDIS_BACKEND=local"
    binary, missing = local_problem()
    return BackendChoice("local", auto_reason, binary=binary, error=missing)


def make_redis_server(
    choice: BackendChoice, data_dir: Path, fsync: Fsync = "always", port: int = 0
) -> RedisServer:
    """A server of the chosen backend, not started yet (raises if it is unavailable)."""
    choice.check()
    if choice.backend == "docker":
        assert choice.image is not None
        remove_orphan_containers()
        return ContainerRedisServer(
            image=choice.image,
            fsync=fsync,
            port=port,
            labels={HARNESS_LABEL: "redis", OWNER_LABEL: owner_tag(os.getpid())},
        )
    return LocalRedisServer(data_dir=data_dir, fsync=fsync, port=port)


def owner_tag(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def remove_orphan_containers() -> int:
    """Remove harness containers whose owning process on this host is gone (a killed run)."""
    import psutil

    removed = 0
    host = socket.gethostname()
    with docker_client() as client:
        for container in client.containers.list(all=True, filters={"label": HARNESS_LABEL}):
            owner_host, _, pid = container.labels.get(OWNER_LABEL, "").rpartition(":")
            if owner_host == host and pid.isdigit() and not psutil.pid_exists(int(pid)):
                with contextlib.suppress(Exception):
                    container.remove(force=True, v=True)
                    removed += 1
    return removed
