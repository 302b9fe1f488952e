"""The launcher: a Procfile run through honcho's pieces, gated on readiness.

honcho's ``Manager`` starts everything at once, has no readiness hook and kills
everything 5 s after the first exit. We keep its Procfile parser, its
``Process`` (one shell child in its own session, output as events) and its
``Printer``, and add: Redis first, every other service started once what it
needs is ready, one table when all are, and a stop that gives workers a warm
shutdown (SIGTERM to the main process only: a prefork pool child dies on
SIGTERM) for ``shutdown_timeout_s`` before the whole process group is killed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, get_args

from honcho.colour import get_colours
from honcho.printer import Message, Printer
from honcho.process import Process

from stack.checks.probes import RedisPing, safe_check, safe_close, safe_warm
from stack.errors import ServiceFailed
from stack.launcher.process_tree import ProcessTree
from stack.launcher.procfile import DEFAULT_PROCFILE, SYSTEM, load_procfile
from stack.launcher.profiles import build_services
from stack.launcher.services import REDIS, Service, check_ports, child_env, stop_waves
from stack.launcher.table import render_json, render_table, row_of
from stack.settings import Profile, Settings

TICK_S = 0.02  # main-loop period: event latency and probe cadence
PROBE_INTERVAL_S = 0.05  # between two checks of one service's probe
TAIL_LINES = 30  # log lines kept per service, shown when it fails
KILL_WAIT_S = 5.0  # a SIGKILLed process is reaped in milliseconds; never wait forever
# timeout(1) and some wrappers signal the child and then its group: one keypress, two
# deliveries. Only a signal this long after the first means "kill now".
REPEAT_SIGNAL_S = 0.5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # HUP: the terminal closed


class State(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    EXTERNAL = "external"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    KILLED = "killed"


@dataclass
class Running:
    """A service's life inside one launch."""

    service: Service
    state: State = State.PENDING
    process: Any = None
    pid: int | None = None
    tree: Any = None
    returncode: int | None = None
    started_at: float | None = None
    ready_after_s: float | None = None
    stopping_at: float | None = None
    last_probe_at: float = 0.0
    probe: Future[bool] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    @property
    def up(self) -> bool:
        return self.state in (State.READY, State.EXTERNAL)

    @property
    def exited(self) -> bool:
        return self.returncode is not None


class Launcher:
    """Runs a list of services: start in dependency order, watch, stop them all.

    Seams (as in honcho): ``_process_ctor`` builds honcho Processes, ``_clock``
    tells time, ``_tree_ctor`` wraps a pid to signal its tree; tests replace them.
    """

    def __init__(
        self,
        settings: Settings,
        services: Sequence[Service],
        environ: Mapping[str, str],
        printer: Printer,
        table_output: TextIO | None = None,
        as_json: bool = False,
    ) -> None:
        self.settings = settings
        self.running = {s.name: Running(s) for s in services}
        self.environ = environ
        self.printer = printer
        self.printer.width = max([len(SYSTEM), *(len(s.name) for s in services)])
        self.table_output = table_output or printer.output
        self.as_json = as_json
        self.events: queue.Queue[Message] = queue.Queue()
        self.failure: str | None = None
        self.forced: list[str] = []
        self.stop_signal: int | None = None
        self.hurry = False
        self.stop_requested_at = 0.0
        self.started = 0.0
        self._colours = get_colours()
        self._clock: Callable[[], float] = time.monotonic
        self._process_ctor: Callable[..., Any] = Process
        self._tree_ctor: Callable[[int], Any] = ProcessTree
        self._probes = ThreadPoolExecutor(max_workers=max(1, len(services)))

    # --- the loop ---------------------------------------------------------------

    def run(self) -> int:
        """Start, wait for a signal or a failure, stop everything. 0: clean stop."""
        self.started = self._clock()
        for r in self.running.values():
            if r.service.external:
                r.state = State.EXTERNAL
            self._probes.submit(safe_warm, r.service.probe)
        table_shown = False
        try:
            while self.stop_signal is None and self.failure is None:
                self._pump(TICK_S)
                self._advance()
                if not table_shown and all(r.up for r in self.running.values()):
                    table_shown = True
                    self._show_table()
        finally:
            self.stop()
            self._probes.shutdown(wait=False, cancel_futures=True)
            for r in self.running.values():
                safe_close(r.service.probe)
        if self.failure is not None:
            raise ServiceFailed(self.failure)
        if self.forced:
            why = (
                "on a second signal"
                if self.hurry
                else f"after {self.settings.shutdown_timeout_s:g} s (raise STACK_SHUTDOWN_TIMEOUT)"
            )
            self.say(f"killed {why}: {', '.join(self.forced)}")
            return 1
        return 0

    def _advance(self) -> None:
        now = self._clock()
        for r in self.running.values():
            if r.state is State.PENDING and all(
                self.running[name].up for name in r.service.requires
            ):
                self._start(r)
            elif r.state is State.STARTING:
                self._check_starting(r, now)
            elif r.state is State.READY and r.exited:
                self._fail(r, f"{r.service.name} exited (rc={r.returncode}) while running")

    def _check_starting(self, r: Running, now: float) -> None:
        name, probe = r.service.name, r.service.probe
        if r.exited:
            self._fail(r, f"{name} exited (rc={r.returncode}) during start-up")
        elif r.probe is not None and r.probe.done():
            ok = r.probe.result()
            r.probe = None
            if ok:
                r.state = State.READY
                r.ready_after_s = now - self.started
                if r.tree is not None:
                    r.tree.refresh()
                self.say(f"{name} ready ({probe.description}) after {r.ready_after_s:.2f} s")
        elif now - (r.started_at or now) > self.settings.ready_timeout_s:
            self._fail(
                r,
                f"{name} did not become ready within {self.settings.ready_timeout_s:g} s "
                f"(waiting for {probe.description}: {probe.problem}); "
                "raise STACK_READY_TIMEOUT if the machine is just slow",
            )
        elif r.probe is None and now - r.last_probe_at >= PROBE_INTERVAL_S:
            r.last_probe_at = now
            r.probe = self._probes.submit(safe_check, probe)

    def _start(self, r: Running) -> None:
        service = r.service
        env = child_env(self.settings, self.environ, service)
        r.process = self._process_ctor(
            service.command, name=service.name, colour=next(self._colours), env=env
        )
        r.state, r.started_at = State.STARTING, self._clock()
        thread = threading.Thread(
            target=r.process.run, args=(self.events,), name=f"up-{service.name}", daemon=True
        )
        thread.start()
        self._wait_for_pid(r)

    def _wait_for_pid(self, r: Running) -> None:
        """The 'start' event carries the pid; a stop must never miss a started process."""
        while r.pid is None and not r.exited:
            self._pump(TICK_S)

    def _pump(self, timeout_s: float) -> None:
        """Print every pending output line and record starts and exits."""
        try:
            message = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return
        while True:
            self._handle(message)
            try:
                message = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: Message) -> None:
        r = self.running.get(message.name)
        if r is None:
            return
        if message.type == "line":
            text = (
                message.data.decode("utf-8", "replace")
                if isinstance(message.data, bytes)
                else str(message.data)
            )
            r.tail.append(text.rstrip("\n"))
            observe = getattr(r.service.probe, "observe", None)
            if observe is not None and r.state is State.STARTING:
                observe(text)
            self._write(message)
        elif message.type == "start":
            r.pid = int(message.data["pid"])
            r.tree = self._tree_ctor(r.pid)
        elif message.type == "stop":
            r.returncode = int(message.data["returncode"])
            if r.state is State.STOPPING:
                r.state = State.STOPPED
                took = self._clock() - (r.stopping_at or self._clock())
                self.say(f"{r.service.name} stopped (rc={r.returncode}) after {took:.2f} s")
            elif self.stop_signal is None and r.state is not State.FAILED:
                self.say(f"{r.service.name} exited (rc={r.returncode})")

    def _fail(self, r: Running, reason: str) -> None:
        r.state = State.FAILED
        tail = "\n".join(f"  {line}" for line in r.tail) or "  (no output)"
        self.failure = f"{reason}; its last {len(r.tail)} log lines:\n{tail}"
        self.say(reason)

    # --- stopping -----------------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        """SIGINT/SIGTERM: stop gracefully; a second one, a moment later, kills at once."""
        now = self._clock()
        if self.stop_signal is None:
            self.stop_signal, self.stop_requested_at = signum, now
        elif now - self.stop_requested_at > REPEAT_SIGNAL_S:
            self.hurry = True
        if self.failure is not None:
            self.hurry = True

    def stop(self) -> None:
        """Dependents first, Redis last; each wave gets the warm-shutdown timeout."""
        if self.stop_signal is not None:
            self.say(f"{signal.Signals(self.stop_signal).name} received: stopping")
        for wave in stop_waves([r.service for r in self.running.values()]):
            members = [self.running[name] for name in wave]
            self._stop_wave([r for r in members if r.pid is not None and not r.service.external])

    def _stop_wave(self, members: list[Running]) -> None:
        for r in members:
            if not r.exited and r.tree is not None:
                if r.state is not State.FAILED:
                    r.state = State.STOPPING
                r.stopping_at = self._clock()
                r.tree.refresh()
                r.tree.signal(signal.SIGTERM, False)
        deadline = self._clock() + self.settings.shutdown_timeout_s
        while any(not r.exited for r in members) and self._clock() < deadline and not self.hurry:
            self._pump(TICK_S)
        for r in members:
            if not r.exited:
                r.state = State.KILLED
                self.forced.append(r.service.name)
            if r.tree is not None:  # the whole tree, even when the main process exited
                r.tree.signal(signal.SIGKILL, True)
        reaped_by = self._clock() + KILL_WAIT_S
        while any(not r.exited for r in members) and self._clock() < reaped_by:
            self._pump(TICK_S)

    # --- output ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        self._write(Message("line", text + "\n", datetime.datetime.now(), SYSTEM, None))

    def _write(self, message: Message) -> None:
        """A closed terminal or pipe must not stop us from stopping the stack."""
        with contextlib.suppress(OSError, ValueError):
            self.printer.write(message)

    def rows(self) -> list[dict[str, Any]]:
        return [
            row_of(r.service, r.state.value, r.pid, r.ready_after_s) for r in self.running.values()
        ]

    def _show_table(self) -> None:
        total = self._clock() - self.started
        text = render_json(self.rows(), total) if self.as_json else render_table(self.rows(), total)
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.table_output, flush=True)


def _printer(profile: str, output: TextIO, colour: bool) -> Printer:
    """Production output is one JSON object per line (log shippers parse it)."""
    if profile == "production":
        from stack.jsonlog import JsonLinePrinter

        return JsonLinePrinter(output, colour=False, prefix=False)
    return Printer(output, colour=colour)


def run(
    settings: Settings,
    procfile: Path = DEFAULT_PROCFILE,
    profile: str | None = None,
    only: Sequence[str] | None = None,
    commands: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    as_json: bool = False,
    colour: bool = True,
    output: TextIO | None = None,
) -> int:
    """`celery-stack up`: run the Procfile until SIGINT/SIGTERM.

    ``commands`` adds or overrides Procfile lines. Returns 0 after a clean stop,
    1 when a service had to be killed; raises PortInUse before anything starts
    and ServiceFailed (with the service's last log lines) after stopping the rest.
    """
    import sys

    chosen = profile or settings.profile
    if chosen != settings.profile and chosen in get_args(Profile):  # children see STACK_PROFILE
        settings = settings.model_copy(update={"profile": chosen})
    lines = {**load_procfile(procfile), **(commands or {})}
    wanted = REDIS in lines and (not only or REDIS in only)
    running = wanted and RedisPing(settings).check()  # a Redis already there: use it
    services = build_services(settings, lines, chosen, only, redis_running=running)
    check_ports(services)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_output = output or (sys.stderr if as_json else sys.stdout)
    launcher = Launcher(
        settings,
        services,
        os.environ if environ is None else environ,
        _printer(chosen, log_output, colour),
        table_output=sys.stdout if output is None else output,
        as_json=as_json,
    )
    for service in services:
        if service.external:
            launcher.say(f"{service.name} already answers at {service.url}: using it")
    previous = {s: signal.signal(s, launcher.request_stop) for s in STOP_SIGNALS}
    try:
        return launcher.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
