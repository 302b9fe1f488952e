"""Probes: the one question `up` asks of each service, "are you ready yet?".

A probe is a small object with ``check() -> bool`` that never raises and never
blocks for more than about a second; ``problem`` keeps the last reason it said
no, so a timeout message says what was still missing. The launcher polls them
and the start-up benchmark polls the same ones from outside honcho.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import redis

from stack.connection import SOCKET_TIMEOUT_S, redact, redis_client

if TYPE_CHECKING:
    import httpx
    from celery import Celery

    from stack.settings import Settings

PROBE_TIMEOUT_S = 1.0  # a probe is re-run every tick: keep each one short
POLL_PING_TIMEOUT_S = (
    0.25  # polled every tick: a miss costs this long; a ready worker answers in ms
)
GRACE_S = 0.5  # a service without a probe is "ready" once it stayed up this long


class Probe(Protocol):
    """What the launcher needs of a readiness probe."""

    @property
    def description(self) -> str: ...

    @property
    def problem(self) -> str: ...

    def warm(self) -> None:
        """Pay slow imports early, while Redis starts, so the first check is quick."""

    def check(self) -> bool: ...


def safe_warm(probe: Any) -> None:
    """The launcher's calls (from its thread pool) never raise: a probe must not take it down."""
    with contextlib.suppress(Exception):  # check() will say what is wrong
        probe.warm()


def safe_close(probe: Any) -> None:
    close = getattr(probe, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def safe_check(probe: Any) -> bool:
    try:
        return bool(probe.check())
    except Exception as exc:  # a probe must never take the launcher down
        with contextlib.suppress(AttributeError):
            probe.problem = f"{type(exc).__name__}: {exc}"
        return False


@dataclass
class RedisProbe(ABC):
    """A probe that asks the broker's Redis one question (``ask``) on a client of its own."""

    settings: Settings
    problem: str = "not checked yet"
    socket_timeout_s: ClassVar[float] = PROBE_TIMEOUT_S

    def warm(self) -> None:  # noqa: B027 - nothing to pay for early: the client is made per check
        """Nothing slow to import: the Redis client is made per check."""

    def check(self) -> bool:
        client = redis_client(self.settings, socket_timeout_s=self.socket_timeout_s)
        try:
            return self.ask(client)
        except (redis.RedisError, OSError) as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            client.close()

    @abstractmethod
    def ask(self, client: redis.Redis[bytes]) -> bool:
        """True when ready; else False with ``problem`` set (Redis errors are caught for it)."""


@dataclass
class RedisPing(RedisProbe):
    """Redis answers PING (with the password the settings give)."""

    @property
    def description(self) -> str:
        return f"PING {redact(self.settings.broker_url)}"

    def ask(self, client: redis.Redis[bytes]) -> bool:
        return bool(client.ping())


@dataclass
class HttpOk:
    """An HTTP GET answers 200.

    One client per probe: ``httpx.get`` builds a client (and its TLS context)
    per call, ~20 ms of CPU, which polling would take from the starting services.
    """

    url: str
    problem: str = "not checked yet"
    _client: httpx.Client | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def description(self) -> str:
        return f"GET {self.url} answering 200"

    def warm(self) -> None:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(timeout=PROBE_TIMEOUT_S)

    def check(self) -> bool:
        import httpx

        self.warm()
        assert self._client is not None
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            return False
        if response.status_code != 200:
            self.problem = f"HTTP {response.status_code}"
            return False
        return True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass
class WorkerPing:
    """The worker with this hostname answers a Celery ping: it consumes, not just lives."""

    settings: Settings
    hostname: str
    problem: str = "not checked yet"
    _app: Celery | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def description(self) -> str:
        return f"celery ping to {self.hostname}"

    def warm(self) -> None:
        with self._lock:  # warm() and the first check() may run in two threads
            if self._app is None:
                from stack.app_factory import load_app  # Celery and the app: ~0.4 s

                self._app = load_app(self.settings)  # ~0.4 s of imports, off the main thread

    def check(self) -> bool:
        self.warm()
        assert self._app is not None
        from stack.checks.readiness import ping_workers  # imports Celery: not at launcher start

        try:
            replies = ping_workers(self._app, POLL_PING_TIMEOUT_S, destination=[self.hostname])
        except Exception as exc:  # kombu/redis errors while Redis or the worker is starting
            self.problem = f"{type(exc).__name__}: {exc}"
            return False
        if self.hostname in replies:
            return True
        self.problem = f"no ping reply from {self.hostname} yet"
        return False

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


@dataclass
class FileWritten:
    """A file matching ``pattern`` in ``directory`` was written after ``since`` (epoch s).

    Beat has no port: it is up once it opened and synced its schedule database
    (whose suffix depends on the dbm module, hence the pattern).
    """

    directory: Path
    pattern: str
    since: float = field(default_factory=time.time)
    problem: str = "not checked yet"

    @property
    def description(self) -> str:
        return f"{self.directory / self.pattern} written"

    def warm(self) -> None:
        pass

    def check(self) -> bool:
        # mtime granularity can round down: allow one second of slack.
        for path in self.directory.glob(self.pattern):
            try:
                if path.stat().st_mtime >= self.since - 1.0:
                    return True
            except FileNotFoundError:
                continue
        self.problem = f"no {self.pattern} in {self.directory} written since start"
        return False


@dataclass
class StayedUp:
    """No probe of its own: ready once the process stayed up ``grace_s`` seconds."""

    grace_s: float = GRACE_S
    clock: Callable[[], float] = time.monotonic
    problem: str = "not checked yet"
    _first: float | None = field(default=None, init=False, repr=False)

    @property
    def description(self) -> str:
        return f"process alive for {self.grace_s:g} s"

    def warm(self) -> None:
        pass

    def check(self) -> bool:
        now = self.clock()
        if self._first is None:
            self._first = now
        if now - self._first >= self.grace_s:
            return True
        self.problem = "just started"
        return False


@dataclass
class LogLine:
    """The service printed a line containing ``text`` (the launcher feeds its output in)."""

    text: str
    problem: str = "not seen yet"
    _seen: bool = field(default=False, init=False, repr=False)

    @property
    def description(self) -> str:
        return f"log line {self.text!r}"

    def warm(self) -> None:
        pass

    def observe(self, line: str) -> None:
        if self.text in line:
            self._seen = True

    def check(self) -> bool:
        if not self._seen:
            self.problem = f"no line with {self.text!r} yet"
        return self._seen


@dataclass
class AnyOf:
    """Ready when any of ``probes`` is (beat: its schedule file, or its start-up line
    when a custom scheduler keeps no file)."""

    probes: tuple[Probe, ...]
    problem: str = "not checked yet"

    @property
    def description(self) -> str:
        return " or ".join(probe.description for probe in self.probes)

    def warm(self) -> None:
        for probe in self.probes:
            probe.warm()

    def observe(self, line: str) -> None:
        for probe in self.probes:
            observe = getattr(probe, "observe", None)
            if observe is not None:
                observe(line)

    def check(self) -> bool:
        if any(probe.check() for probe in self.probes):
            return True
        self.problem = "; ".join(probe.problem for probe in self.probes)
        return False


@dataclass
class BeatLockHeld(RedisProbe):
    """Some beat holds the stack's beat lock (a standing-by beat is healthy too)."""

    socket_timeout_s: ClassVar[float] = SOCKET_TIMEOUT_S  # asked once (a healthcheck), not polled

    @property
    def lock(self) -> str:
        from stack.beat import lock_key  # the lock's owner; imports celery.beat

        return lock_key(self.settings)

    @property
    def description(self) -> str:
        return f"beat lock {self.lock} held"

    def ask(self, client: redis.Redis[bytes]) -> bool:
        if client.exists(self.lock):
            return True
        self.problem = "no beat holds the lock: is a beat running?"
        return False
