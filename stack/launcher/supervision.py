"""What the launcher does on command: restart, stop, start, scale one service, and `ps`.

Commands come from any thread (the control socket's, a file watcher's) through
``post``/``request`` and are executed by the launcher's main loop, the only
thread that starts or signals a process. A restart is warm: SIGTERM to the
main process (Celery finishes its running tasks), then the service starts
again once it exited and is gated on readiness like at launch. A service
started on command that fails to start is marked ``failed`` and the rest of
the stack runs on; a later ``restart`` or ``start`` brings it back.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import psutil

from stack.errors import SettingsError
from stack.launcher.control import REPLY_TIMEOUT_S, Command, ControlError
from stack.launcher.restart import Budget, Rule
from stack.launcher.running import Running, State
from stack.launcher.scaling import group_of, index_of, instance, refuse, scalable
from stack.launcher.services import Reclaimer, Service
from stack.settings import Settings

DOWN = (State.STOPPED, State.EXITED, State.FAILED, State.KILLED, State.PENDING)


class Supervision:
    """The launcher's command side (a mixin of :class:`stack.launcher.manager.Launcher`)."""

    settings: Settings
    running: dict[str, Running]
    waves: dict[str, int]
    printer: Any
    _clock: Callable[[], float]
    _probes: ThreadPoolExecutor
    _commands: queue.Queue[tuple[Command, Future[dict[str, Any]]]]
    _closing: bool
    _templates: dict[str, Service]

    def say(self, text: str) -> None:  # pragma: no cover - the launcher's
        raise NotImplementedError

    # --- any thread ------------------------------------------------------------------

    def post(self, command: Command) -> None:
        """Queue ``command`` for the main loop (thread-safe; returns at once)."""
        self.request(command)

    def request(self, command: Command) -> Future[dict[str, Any]]:
        """Queue ``command``; the future holds the reply (ControlError when refused)."""
        future: Future[dict[str, Any]] = Future()
        if self._closing:
            future.set_exception(ControlError("the stack is stopping"))
        else:
            self._commands.put((command, future))
        return future

    def answer(self, command: Command) -> dict[str, Any]:
        """The control socket's handler: wait for the main loop's reply."""
        try:
            return self.request(command).result(REPLY_TIMEOUT_S)
        except FutureTimeout:
            raise ControlError("the launcher is busy (stopping?): try again") from None

    # --- the main loop ---------------------------------------------------------------

    def _drain_commands(self) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(self._execute(command))
            except (ControlError, SettingsError) as exc:
                future.set_exception(ControlError(str(exc)))

    def _refuse_pending(self) -> None:
        self._closing = True
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            future.set_exception(ControlError("the stack is stopping"))

    def _execute(self, command: Command) -> dict[str, Any]:
        if command.action == "ps":
            return {"ok": True, "services": self.ps_rows()}
        if command.action == "scale":
            assert command.count is not None
            return {"ok": True, "names": self._scale(command.names[0], command.count)}
        targets = self._targets(command.names)
        act = {"restart": self._restart, "stop": self._stop_one, "start": self._start_one}
        if command.action not in act:
            raise ControlError(f"unknown action {command.action!r}")
        for r in targets:
            act[command.action](r)
        return {"ok": True, "names": [r.service.name for r in targets]}

    def _targets(self, names: tuple[str, ...]) -> list[Running]:
        """The named services (a scaled group's name: every copy); ControlError listing names."""
        if not names:
            raise ControlError(f"name a service (known: {', '.join(self.running)})")
        found: dict[str, Running] = {}
        for name in names:
            matched = [r for n, r in self.running.items() if n == name or group_of(n) == name]
            if not matched:
                raise ControlError(
                    f"no service is named {name!r} (known: {', '.join(self.running)})"
                )
            found.update({r.service.name: r for r in matched})
        external = [n for n, r in found.items() if r.service.external]
        if external:
            raise ControlError(
                f"{', '.join(external)} runs outside this stack: not ours to control"
            )
        return list(found.values())

    def _restart(self, r: Running) -> None:
        r.manual = True
        if r.state in DOWN or r.state is State.RESTARTING:
            self._start_later(r)
        elif r.state is State.STOPPING:
            r.then_start = True
        else:
            self._warm_stop(r, then_start=True)
            self.say(f"{r.service.name}: restarting (warm: running tasks finish first)")

    def _stop_one(self, r: Running) -> None:
        r.then_start = False
        if r.state is State.RESTARTING or (r.state is State.PENDING and r.pid is None):
            r.state = State.STOPPED
        elif r.state not in DOWN and r.state is not State.STOPPING:
            self._warm_stop(r, then_start=False)
            self.say(f"{r.service.name}: stopping on request")

    def _start_one(self, r: Running) -> None:
        if r.state in DOWN and r.state is not State.PENDING:
            r.manual = True
            self._start_later(r)

    def _start_later(self, r: Running) -> None:
        """Started by ``_advance`` as soon as what it needs is up."""
        r.then_start = False
        r.state, r.restart_at = State.RESTARTING, self._clock()

    def _warm_stop(self, r: Running, then_start: bool) -> None:
        r.then_start, r.state, r.stopping_at = then_start, State.STOPPING, self._clock()
        if r.tree is not None and not r.exited:
            r.tree.refresh()
            r.tree.signal(signal.SIGTERM, False)

    def _supervise(self, r: Running, now: float) -> None:
        """Per tick, for a service stopping on command: kill when late, restart or forget."""
        if r.state is State.STOPPING and not r.exited:
            if now - (r.stopping_at or now) > self.settings.shutdown_timeout_s:
                self.say(
                    f"{r.service.name} did not stop within "
                    f"{self.settings.shutdown_timeout_s:g} s: killing it"
                )
                if r.tree is not None:
                    r.tree.signal(signal.SIGKILL, True)
                r.stopping_at = now  # once per timeout
        elif r.state in (State.STOPPED, State.STOPPING) and r.exited and r.stopping_at:
            r.state, r.stopping_at = State.STOPPED, None  # handled once
            if r.service.reclaim is not None:  # a warm stop can leave a prefetched message
                r.reclaim = self._probes.submit(
                    safe_reclaim, r.service.reclaim, r.spawned_wall, time.time()
                )
            if r.then_start:
                self._start_later(r)
        gone = r.state is State.STOPPED and (r.exited or r.pid is None)
        if r.removing and gone and r.reclaim is None:
            del self.running[r.service.name]

    # --- scaling ---------------------------------------------------------------------

    def _scale(self, group: str, count: int) -> list[str]:
        """Add copies ``group.k`` up to ``count`` or stop the highest-numbered ones warmly."""
        services = [r.service for r in self.running.values()]
        template = self._templates.get(group)
        if template is None:
            raise refuse(group, services)
        members = sorted(
            (r for n, r in self.running.items() if group_of(n) == group and not r.removing),
            key=lambda r: index_of(r.service.name),
        )
        for r in members[count:]:
            r.removing = True
            self._stop_one(r)
        used = {index_of(r.service.name) for r in members[:count]}
        index = 1
        for _ in range(count - len(members)):
            while index in used or f"{group}.{index}" in self.running:
                index += 1
            used.add(index)
            self._add(instance(template, index), template)
        self.say(f"{group}: scaling to {count}")
        return [
            r.service.name
            for r in self.running.values()
            if group_of(r.service.name) == group and not r.removing
        ]

    def _add(self, service: Service, template: Service) -> None:
        model = next((r for r in self.running.values() if r.service is template), None)
        budget = Budget(model.budget.rule) if model is not None else Budget(Rule())
        r = Running(service, budget, manual=True)
        self.running[service.name] = r
        self.waves[service.name] = self.waves.get(template.name, 0)
        self.printer.width = max(self.printer.width, len(service.name))
        self._start_later(r)

    def _remember_templates(self) -> None:
        for r in self.running.values():
            if scalable(r.service):
                self._templates.setdefault(group_of(r.service.name), r.service)

    # --- ps --------------------------------------------------------------------------

    def ps_rows(self) -> list[dict[str, Any]]:
        now = self._clock()
        rows = []
        for r in self.running.values():
            alive = r.pid is not None and not r.exited
            rows.append(
                {
                    "name": r.service.name,
                    "state": r.state.value,
                    "pid": r.pid if alive else None,
                    "uptime_s": round(now - r.spawned_at, 3) if alive and r.spawned_at else None,
                    "restarts": max(0, r.starts - 1),
                    "url": r.service.url,
                    "rss_bytes": _rss(r.pid) if alive and r.pid is not None else None,
                }
            )
        return rows


def _rss(pid: int) -> int | None:
    """Resident memory of the process and its descendants (a worker and its pool)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def safe_reclaim(reclaimer: Reclaimer, since: float, until: float) -> str:
    """A reclaim that failed is a log line, never a dead launcher."""
    try:
        return reclaimer.reclaim(since, until)
    except Exception as exc:  # Redis down, a worker's odd reply: the visibility timeout remains
        return (
            f"could not requeue what its predecessor held ({type(exc).__name__}: {exc}); "
            "Redis re-delivers it after the visibility timeout"
        )
