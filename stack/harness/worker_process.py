"""WorkerProcess: one real `celery worker` subprocess that can be started, pinged and broken.

The pytest plugin hands these out; crash and shutdown tests need real prefork
processes, acks and signals, which an in-thread solo worker cannot show.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from celery import Celery

from stack.checks.readiness import ping_workers
from stack.errors import ServiceFailed

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PING_REPLY_S = 0.3  # a worker on an idle machine replies in milliseconds ...
PING_REPLY_MAX_S = 3.0  # ... on a loaded one, in seconds: each ping waits longer
READY_POLL_S = 0.02  # how often the log is read for Celery's "<hostname> ready." line
PING_ANYWAY_AFTER_S = 5.0  # a log without that line (other log level or wording): ping anyway
FAST_START = ("--without-mingle", "--without-gossip", "--without-heartbeat")  # ~1 s saved

_names = itertools.count(1)


@dataclass
class WorkerProcess:
    """A `celery -A <app> worker` subprocess with its log in a file."""

    app: Celery
    env: Mapping[str, str]
    queues: Sequence[str]
    concurrency: int = 1
    pool: str = "prefork"
    app_path: str = "stack.celery_app"
    extra_args: Sequence[str] = ()
    inherit_env: bool = True  # False: ``env`` is the child's whole environment
    hostname: str = field(
        default_factory=lambda: f"stack-worker-{os.getpid()}-{next(_names)}@127.0.0.1"
    )
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(suffix=".log", prefix="worker-")[1])
    )
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app_path,
            "worker",
            "--hostname",
            self.hostname,
            *(("--queues", ",".join(self.queues)) if self.queues else ()),  # none: the app's
            "--concurrency",
            str(self.concurrency),
            "--pool",
            self.pool,
            "--loglevel",
            "INFO",
            *FAST_START,
            *self.extra_args,
        ]

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceFailed(f"worker {self.hostname} is not running")
        return self.process.pid

    def start(self, wait: bool = True) -> WorkerProcess:
        base = dict(os.environ) if self.inherit_env else {}
        env = {**base, **self.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until the worker answers a ping addressed to it (not just: the process lives).

        Pings start once its log says it is ready (or after PING_ANYWAY_AFTER_S):
        a ping sent earlier only waits out its reply timeout.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        reply_s = PING_REPLY_S
        while time.monotonic() < deadline:
            if not self.alive:
                raise ServiceFailed(
                    f"worker {self.hostname} exited during start-up:\n{self.log_tail()}"
                )
            if not self._logged_ready() and time.monotonic() - started < PING_ANYWAY_AFTER_S:
                time.sleep(READY_POLL_S)
                continue
            # limit=1: back as soon as this one worker answers, not after the whole reply_s.
            if ping_workers(self.app, reply_s, destination=[self.hostname], limit=1):
                return
            # A late reply to an earlier ping is dropped: on a starved CPU, wait longer.
            reply_s = min(PING_REPLY_MAX_S, reply_s * 1.5)
        raise ServiceFailed(
            f"worker {self.hostname} did not answer ping in {timeout_s:g} s:\n{self.log_tail()}"
        )

    def _logged_ready(self) -> bool:
        return f"{self.hostname} ready." in self.log_text()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        """Pids of the pool's live child processes (a killed one the main process has not
        reaped yet is a zombie: not counted)."""
        return [child.pid for child in self._child_processes() if _alive(child)]

    def _child_processes(self) -> list[psutil.Process]:
        if self.process is None:
            return []
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole node, pool children included, as a lost machine would.

        Its unacked tasks stay in Redis until the visibility timeout re-delivers them.
        """
        children = self._child_processes()
        self._signal(signal.SIGKILL)
        _kill_all(children)
        self.wait()

    def kill_child(self, pid: int | None = None) -> int:
        """SIGKILL pool child ``pid`` (None: any one); the main process replaces it.

        Returns the pid, once that process is dead. The task it ran (acks_late) is re-queued.
        """
        children = self.children()
        if pid is None and children:
            pid = children[0]
        if pid is None or pid not in children:
            raise ServiceFailed(
                f"worker {self.hostname} has no live pool child {pid or ''} to kill "
                f"(children: {children})"
            )
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
        return pid

    def terminate(self) -> None:
        """Warm shutdown: running tasks finish, then the worker exits."""
        self._signal(signal.SIGTERM)

    def quit(self) -> None:
        """Cold shutdown: running tasks are abandoned (and, with acks_late, re-queued)."""
        self._signal(signal.SIGQUIT)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        if self.process is None:
            return 0
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S, warm: bool = True) -> None:
        """Warm (or cold) shutdown, then SIGKILL the node and its children if it overstays."""
        children = self._child_processes()
        if self.alive:
            self._signal(signal.SIGTERM if warm else signal.SIGQUIT)
            try:
                self.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.wait()
        _kill_all(children)

    def _signal(self, signum: int) -> None:
        """Signal the node's main process only (Celery relays to its pool as it sees fit)."""
        if self.alive and self.process is not None:
            self.process.send_signal(signum)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Until ``pid`` is dead (a zombie its parent has not reaped yet counts): signals are async."""
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        while _alive(process) and time.monotonic() < deadline:
            time.sleep(0.005)


def _kill_all(processes: Sequence[psutil.Process]) -> None:
    """SIGKILL what is left of ``processes`` (psutil refuses a pid reused since)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
