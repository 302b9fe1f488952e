"""pytest fixtures for a real Celery stack: Redis, the app bound to it, real workers.

Installed through the ``pytest11`` entry point, so any project that installs
celery-stack has them. Every fixture can be overridden by one of the same name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from stack import queues
from stack.celery_app import load_app
from stack.connection import redis_client
from stack.redis_server import ContainerRedisServer, LocalRedisServer, RedisServer
from stack.settings import Settings, settings_env
from stack.worker import WorkerProcess

TEST_RETRY_DELAYS = "0.2,0.4,0.6"  # the seeds' minutes, shrunk: tests never wait minutes
TEST_VISIBILITY_TIMEOUT_S = "30"


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def make_redis_server(settings: Settings, data_dir: Path) -> RedisServer:
    """The Redis backend the settings ask for (auto: a container where Docker answers)."""
    backend = settings.redis_backend
    if backend == "auto":
        backend = "docker" if docker_engine_answers() else "local"
    if backend == "docker":
        return ContainerRedisServer(image=settings.redis_image, fsync="always")
    return LocalRedisServer(data_dir=data_dir, fsync="always")


@pytest.fixture(scope="session")
def stack_base_settings() -> Settings:
    """Settings from the environment, before the harness binds them to its Redis."""
    return Settings.load()


@pytest.fixture(scope="session")
def stack_redis(
    stack_base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A running Redis for this session (one per xdist worker): url, stop/start/restart/kill."""
    server = make_redis_server(stack_base_settings, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        remove = getattr(server, "remove", None)
        if remove is not None:
            remove()
        else:
            server.kill()


@pytest.fixture
def stack_settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings (e.g. {"STACK_RATE_LIMITS": "x=5/s"})."""
    return {}


@pytest.fixture
def stack_settings(
    stack_redis: RedisServer,
    stack_base_settings: Settings,
    stack_settings_overrides: dict[str, Any],
    worker_id: str,
) -> Settings:
    """Test settings: bound to the test Redis, test-speed retries, per-xdist-worker names."""
    env = {
        **settings_env(stack_base_settings),
        "REDIS_URL": stack_redis.url,
        "STACK_RETRY_DELAYS": TEST_RETRY_DELAYS,
        "STACK_VISIBILITY_TIMEOUT": TEST_VISIBILITY_TIMEOUT_S,
        "STACK_KEY_PREFIX": f"stack-{worker_id}:",
        "STACK_QUEUE_PREFIX": f"{worker_id}.",
        **{k: str(v) for k, v in stack_settings_overrides.items()},
    }
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    return Settings.load(environ=env)


@pytest.fixture
def stack_app(stack_settings: Settings, stack_redis: RedisServer) -> Iterator[Celery]:
    """The app under test bound to the test Redis, on an empty database."""
    stack_redis.start()  # a test before may have stopped or killed it
    client = redis_client(stack_settings)
    client.flushdb()
    client.close()
    app = load_app(stack_settings)
    yield app
    app.close()


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def stack_worker(
    stack_app: Celery, stack_settings: Settings, request: pytest.FixtureRequest
) -> Iterator[WorkerFactory]:
    """Start real worker subprocesses: ``stack_worker(queues=..., concurrency=..., pool=...)``."""
    started: list[WorkerProcess] = []

    def start(
        queues_: Sequence[str] | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        extra_args: Sequence[str] = (),
        wait: bool = True,
        **kwargs: Any,
    ) -> WorkerProcess:
        logical = kwargs.pop("queues", None) or queues_ or queues.QUEUES
        worker = WorkerProcess(
            app=stack_app,
            env=settings_env(stack_settings),
            queues=[queues.queue_name(stack_settings, q) for q in logical],
            concurrency=concurrency,
            pool=pool,
            extra_args=extra_args,
            log_path=Path(tempfile.mkstemp(prefix="stack-worker-", suffix=".log")[1]),
        )
        started.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in started:
        worker.stop()
    request.node.stash[_WORKERS] = started


_WORKERS = pytest.StashKey[list[WorkerProcess]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of the workers a failed test started to its report."""
    report = yield
    if report.when == "teardown":
        workers = item.stash.get(_WORKERS, [])
        failed = any(getattr(r, "failed", False) for r in item.stash.get(_REPORTS, []))
        if failed or report.failed:
            for worker in workers:
                report.sections.append((f"worker {worker.hostname} log", worker.log_tail(200)))
        for worker in workers:
            worker.log_path.unlink(missing_ok=True)
    else:
        item.stash.setdefault(_REPORTS, []).append(report)
    return report


_REPORTS = pytest.StashKey[list[Any]]()


def pytest_report_header(config: pytest.Config) -> str:
    backend = os.environ.get("STACK_REDIS_BACKEND", "auto")
    image = os.environ.get("STACK_REDIS_IMAGE", "redis:7")
    return f"celery-stack: Redis backend {backend} (image {image})"
