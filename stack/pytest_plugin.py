"""pytest fixtures for a real Celery stack: Redis, the app bound to it, real workers.

Installed through the ``pytest11`` entry point, so any project that installs
celery-stack has them. Each fixture can be overridden piece by piece by one of
the same name in a conftest.py:

- ``stack_backend_choice`` (session): which Redis backend runs, decided once.
- ``stack_redis`` (session): a running Redis (one per xdist worker).
- ``stack_base_settings`` (session): settings from the environment and ini.
- ``stack_settings_overrides``: ``{ENV_VAR: value}`` applied on top (override per module),
  or per test with the marker ``@pytest.mark.stack_settings(ENV_VAR=value, ...)``.
- ``stack_settings``: the settings tests and workers use (test Redis, fast retries).
- ``stack_app``: the app under test bound to the test Redis, on an empty database.
- ``stack_worker``: factory of real worker subprocesses, stopped after the test.
- ``stack_dead_letters``: the dead-letter store bound to the test Redis.
- ``stack_sentinel``: a master, a replica and three sentinels for one test; a module
  overriding ``stack_redis`` with it runs every fixture above over ``sentinel://``.

This module is an edge: it reads os.environ (settings, testcontainers knobs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
from celery import Celery
from pydantic import AliasChoices

from stack.app_factory import REFERENCE_APP, load_app
from stack.connection import redis_client
from stack.context import context_of
from stack.deadletter import DeadLetterStore
from stack.discovery import worker_queues
from stack.errors import SettingsError
from stack.harness.backend_choice import (
    BackendChoice,
    choose_backend,
    make_redis_server,
    use_testcontainers_defaults,
)
from stack.harness.redis_servers import RedisServer
from stack.harness.sentinel_servers import SentinelCluster
from stack.harness.worker_process import WorkerProcess
from stack.queues import QUEUES, physical_names
from stack.settings import Settings, settings_env

TEST_RETRY_DELAYS = "0.2,0.4,0.6"  # the seeds' minutes, shrunk: tests never wait minutes
TEST_VISIBILITY_TIMEOUT_S = "30"  # above every test retry delay, short enough to recover in tests
WORKER_LOG_LINES = 200  # of each worker's log, attached to a failed test's report
INI_CELERY_APP = "stack_celery_app"
SETTINGS_MARKER = "stack_settings"
WORKERINPUT_CHOICE = "stack_redis_backend"  # how the xdist controller hands its choice over

WorkerFactory = Callable[..., WorkerProcess]

_CHOICE = pytest.StashKey[BackendChoice]()
_WORKERS = pytest.StashKey[list[WorkerProcess]]()


# ---------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_CELERY_APP,
        "module:attr of the Celery app the stack_* fixtures test (STACK_CELERY_APP wins)",
        default="",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # testcontainers reads its knobs from the environment: set our defaults once,
    # before it is first imported; values the user exported win.
    use_testcontainers_defaults(os.environ)
    config.addinivalue_line(
        "markers",
        f"{SETTINGS_MARKER}(**env): settings for this test's stack, e.g. "
        "STACK_VISIBILITY_TIMEOUT=3 (on top of stack_settings_overrides)",
    )


def base_settings(config: pytest.Config) -> Settings:
    """Settings from the environment; the ini option names the app unless the env does."""
    app = str(config.getini(INI_CELERY_APP) or "")
    if app and "STACK_CELERY_APP" not in os.environ:
        return Settings.load(STACK_CELERY_APP=app)
    return Settings.load()


def backend_choice(config: pytest.Config) -> BackendChoice:
    """The Redis backend of this run, computed once (an xdist worker gets the controller's)."""
    if _CHOICE not in config.stash:
        shipped = getattr(config, "workerinput", {}).get(WORKERINPUT_CHOICE)
        if shipped is not None:
            choice = BackendChoice.from_dict(shipped)
        else:
            try:
                choice = choose_backend(base_settings(config))
            except SettingsError as exc:
                choice = BackendChoice("local", "invalid settings", error=str(exc))
        config.stash[_CHOICE] = choice
    return config.stash[_CHOICE]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker uses the backend the controller reported."""
    node.workerinput[WORKERINPUT_CHOICE] = backend_choice(node.config).as_dict()


def pytest_report_header(config: pytest.Config) -> str:
    return f"celery-stack: {backend_choice(config).describe()}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of the workers a failed test started to its report."""
    report = yield
    if report.failed:
        for worker in item.stash.get(_WORKERS, []):
            report.sections.append(
                (f"worker {worker.hostname} log", worker.log_tail(WORKER_LOG_LINES))
            )
    return report


# ---------------------------------------------------------------- fixtures


def xdist_worker_id(config: pytest.Config) -> str:
    """``gw0``, ``gw1``... under pytest-xdist, ``master`` otherwise (xdist not required)."""
    return str(getattr(config, "workerinput", {}).get("workerid", "master"))


@pytest.fixture(scope="session")
def stack_backend_choice(pytestconfig: pytest.Config) -> BackendChoice:
    """Which Redis backend runs (see the session header)."""
    return backend_choice(pytestconfig)


@pytest.fixture(scope="session")
def stack_base_settings(pytestconfig: pytest.Config) -> Settings:
    """Settings from the environment, before the harness binds them to its Redis."""
    return base_settings(pytestconfig)


@pytest.fixture(scope="session")
def stack_redis(
    stack_backend_choice: BackendChoice, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """A running Redis for this session (one per xdist worker): url, stop/start/restart/kill.

    A backend forced by STACK_REDIS_BACKEND that cannot run makes every test using it
    error out: never a silent fallback.
    """
    server = make_redis_server(stack_backend_choice, tmp_path_factory.mktemp("redis"))
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
def stack_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    """A Redis that fails over (master, replica, three sentinels), SIGKILLed after the test."""
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.kill()


@pytest.fixture
def stack_settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings (e.g. {"STACK_RATE_LIMITS": "x=5/s"})."""
    return {}


@pytest.fixture
def stack_settings(
    stack_redis: RedisServer,
    stack_base_settings: Settings,
    stack_settings_overrides: dict[str, Any],
    request: pytest.FixtureRequest,
) -> Settings:
    """Test settings: bound to the test Redis, test-speed retries, per-xdist-worker names."""
    worker_id = xdist_worker_id(request.config)
    marked: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(SETTINGS_MARKER))):
        marked.update(marker.kwargs)  # the closest marker wins
    env = {
        **settings_env(stack_base_settings),
        "REDIS_URL": stack_redis.url,
        **getattr(stack_redis, "settings_environ", dict)(),  # a SentinelCluster's master name
        "STACK_RETRY_DELAYS": TEST_RETRY_DELAYS,
        "STACK_VISIBILITY_TIMEOUT": TEST_VISIBILITY_TIMEOUT_S,
        "STACK_KEY_PREFIX": f"stack-{worker_id}:",
        "STACK_QUEUE_PREFIX": f"{worker_id}.",
        **{k: str(v) for k, v in {**stack_settings_overrides, **marked}.items()},
    }
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    return Settings.load(environ=env)


@pytest.fixture
def stack_app(stack_settings: Settings, stack_redis: RedisServer) -> Iterator[Celery]:
    """The app under test bound to the test Redis, on an empty database."""
    stack_redis.start()  # a test before may have stopped or killed it; no-op when running
    client = redis_client(stack_settings)
    try:
        client.flushdb()
    finally:
        client.close()
    app = load_app(stack_settings)
    yield app
    context_of(app).close()
    app.close()
    forget_broker_connections(app)


def forget_broker_connections(app: Celery) -> None:
    """Close kombu's process-wide connection pools and make ``app`` build new ones.

    Celery apps share those pools (keyed by URL) and a user's app object lives
    across tests: after a test killed or restarted Redis, the next test must not
    inherit dead sockets ("Connection closed by server" on its first call). The
    app's cached pool references are dropped as Celery does after a fork.
    """
    kombu.pools.reset()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def stack_dead_letters(stack_app: Celery) -> DeadLetterStore:
    """The DeadLetterStore of the app under test (same Redis, same key prefix)."""
    return context_of(stack_app).dead_letters


@pytest.fixture(scope="session")
def stack_worker_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty env file: workers take every setting from their environment, not ./.env."""
    path = tmp_path_factory.mktemp("stack-env") / "empty.env"
    path.touch()
    return path


def worker_environ(
    settings: Settings, env_file: Path, environ: Mapping[str, str], path: Sequence[str]
) -> dict[str, str]:
    """A worker's whole environment: ours minus every settings variable, plus ``settings``.

    Dropping the variables first matters: a CELERY_BROKER_URL exported in the shell
    would otherwise point the worker away from the test Redis. PYTHONPATH carries
    this process's sys.path, so the worker imports the user's app module as we did.
    """
    child = {k: v for k, v in environ.items() if k.upper() not in _settings_variables()}
    child.update(settings_env(settings))
    child["STACK_ENV_FILE"] = str(env_file)
    child["PYTHONPATH"] = os.pathsep.join(p for p in path if p and Path(p).is_dir())
    return child


def _settings_variables() -> set[str]:
    names = {"STACK_ENV_FILE"}
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
    return names


def physical_queues(
    settings: Settings, names: Sequence[str] | None, app: Celery | None = None
) -> list[str] | None:
    """Queues a worker consumes: the reference app's logical names get the per-worker
    prefix; a user app's queue names are its own (None: every queue ``app`` sends to, as
    :func:`stack.discovery.worker_queues` reads them; without an app, Celery's default)."""
    if settings.celery_app != REFERENCE_APP:
        if names:
            return list(names)
        return worker_queues(app) if app is not None else None
    return physical_names(settings, names or QUEUES)


@pytest.fixture
def stack_worker(
    stack_app: Celery,
    stack_settings: Settings,
    stack_worker_env_file: Path,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[WorkerFactory]:
    """Start real worker subprocesses: ``stack_worker(queues=..., concurrency=..., pool=...)``.

    Every worker is stopped after the test; a failed test's report carries their logs.
    """
    started: list[WorkerProcess] = []
    request.node.stash[_WORKERS] = started
    env = worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)

    def start(
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        extra_args: Sequence[str] = (),
        wait: bool = True,
    ) -> WorkerProcess:
        physical = physical_queues(stack_settings, queues, stack_app)
        worker = WorkerProcess(
            app=stack_app,
            env=env,
            inherit_env=False,
            queues=physical or [],
            concurrency=concurrency,
            pool=pool,
            extra_args=extra_args,
            log_path=tmp_path / f"worker-{len(started) + 1}.log",
        )
        started.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in started:
        worker.kill()  # SIGKILL, node and children: ~0.03 s where a cold shutdown takes ~2 s
