"""The launch's state file: which processes one `up` started, so nothing outlives it.

Each launch writes ``<data dir>/launcher-<pid>.json``: the launcher, its
watchdog and every service's main process (its process group and session
leader) with the descendants seen, each as pid *and* start time, so a pid
reused by an unrelated process is never mistaken for ours. Two readers:

* the watchdog (:mod:`stack.launcher.watchdog`), when the launcher dies
  without stopping its services (SIGKILL, a crash): it reaps what the file lists;
* the next `up` on the same data dir, when the watchdog died too: a file whose
  launcher is gone is a stale stack, reaped before anything starts.

Reaping is the launcher's own stop in small: dependents first with a warm
SIGTERM, Redis last, then SIGKILL for whatever is left.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from stack.launcher.process_tree import ProcessTree

STATE_GLOB = "launcher-*.json"
START_TIME_TOLERANCE_S = 0.5  # same process: same start tick; a clock step can shift the epoch
REAP_GRACE_S = 1.5  # per stop wave: a warm SIGTERM, then SIGKILL (5 s for the whole stack)
REAP_POLL_S = 0.05
KILL_WAIT_S = 1.0  # a SIGKILLed process is gone in milliseconds
KILL_ROUNDS = 5  # a dying parent may fork once more: sweep until nothing is left


@dataclass(frozen=True)
class Proc:
    """A process as pid and start time (epoch seconds): the pair identifies it for good."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def live(self) -> psutil.Process | None:
        """The process, when this very one still runs (not a zombie, not a reused pid)."""
        try:
            process = psutil.Process(self.pid)
            same = abs(process.create_time() - self.started) < START_TIME_TOLERANCE_S
            if same and process.status() != psutil.STATUS_ZOMBIE:
                return process
        except psutil.Error:
            pass
        return None


@dataclass
class ServiceRecord:
    """One service's main process (the Procfile line's shell) and its descendants seen."""

    name: str
    wave: int  # stop order: 0 first (dependents), Redis last
    main: Proc
    seen: list[Proc] = field(default_factory=list)

    def processes(self) -> list[Proc]:
        return [self.main, *self.seen]

    def leftovers(self) -> list[psutil.Process]:
        """What still runs of it: recorded processes, their descendants and, while the main
        process is verified ours, every process of its session (an orphan re-parented away)."""
        found = {p.pid: p for p in _live_with_descendants(self.processes())}
        if self.main.live() is not None:
            found.update({p.pid: p for p in _session(self.main.pid) if p.pid not in found})
        return list(found.values())


@dataclass
class LaunchState:
    """What one launch started; saved on every change (atomically: a reader never sees half)."""

    path: Path
    launcher: Proc
    watchdog: Proc | None = None
    services: dict[str, ServiceRecord] = field(default_factory=dict)

    @classmethod
    def create(cls, data_dir: Path) -> LaunchState:
        me = Proc.of(os.getpid())
        assert me is not None  # we run
        return cls(data_dir / f"launcher-{me.pid}.json", me)

    def record(self, name: str, wave: int, pids: Iterable[int]) -> None:
        """A service's main pid (first) and the descendants it has now; older live ones stay."""
        found = [p for p in (Proc.of(pid) for pid in pids) if p is not None]
        if not found:
            return
        main, *seen = found
        old = self.services.get(name)
        kept = [p for p in old.processes() if p.live() is not None] if old else []
        merged = {p.pid: p for p in [*kept, *seen] if p != main}
        self.services[name] = ServiceRecord(name, wave, main, list(merged.values()))
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "launcher": asdict(self.launcher),
            "watchdog": asdict(self.watchdog) if self.watchdog else None,
            "services": [asdict(s) for s in self.services.values()],
        }
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(body))
        partial.replace(self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @classmethod
    def load(cls, path: Path) -> LaunchState | None:
        """The state in ``path``; None when it is gone or unreadable (never a traceback)."""
        try:
            body = json.loads(path.read_text())
            return cls(
                path,
                Proc(**body["launcher"]),
                Proc(**body["watchdog"]) if body.get("watchdog") else None,
                {s["name"]: _service(s) for s in body.get("services", [])},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def leftovers(self) -> list[psutil.Process]:
        """Every process of this launch that still runs."""
        return list({p.pid: p for r in self.services.values() for p in r.leftovers()}.values())


def _service(body: dict[str, Any]) -> ServiceRecord:
    return ServiceRecord(
        body["name"], int(body["wave"]), Proc(**body["main"]), [Proc(**p) for p in body["seen"]]
    )


def _live_with_descendants(procs: Iterable[Proc]) -> Iterator[psutil.Process]:
    for proc in procs:
        process = proc.live()
        if process is None:
            continue
        yield process
        with contextlib.suppress(psutil.Error):
            yield from process.children(recursive=True)


def _session(sid: int) -> Iterator[psutil.Process]:
    """Every process in session ``sid`` (a Procfile line runs in a session of its own)."""
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if pid != sid and os.getsid(pid) == sid:
                yield psutil.Process(pid)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap(state: LaunchState, grace_s: float = REAP_GRACE_S) -> list[str]:
    """Stop every process ``state`` lists, dependents first; the names of services found running.

    Only processes whose pid and start time match the record are signalled (and
    the descendants and session of those): a pid reused since is left alone.
    """
    stopped: list[str] = []
    for wave in sorted({r.wave for r in state.services.values()}):
        members = [r for r in state.services.values() if r.wave == wave]
        mains = [main for r in members if (main := r.main.live()) is not None]
        stopped += [r.name for r in members if r.main.live() is not None]
        # Found before the warm stop, while the mains vouch for their session: a child
        # re-parented when its parent exits is no one's descendant any more.
        before = _leftovers(members)
        for main in mains:
            ProcessTree(main.pid).signal(signal.SIGTERM, whole_group=False)  # warm stop
        find = functools.partial(_still_running, before, members)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and find():
            time.sleep(REAP_POLL_S)
        _kill_all(find, mains)
    return stopped


def _still_running(
    before: list[psutil.Process], records: list[ServiceRecord]
) -> list[psutil.Process]:
    found = {p.pid: p for p in [*before, *_leftovers(records)]}
    return [p for p in found.values() if _alive(p)]


def _leftovers(records: list[ServiceRecord]) -> list[psutil.Process]:
    return [p for r in records for p in r.leftovers()]


def _kill_all(find: Callable[[], list[psutil.Process]], groups: list[psutil.Process]) -> None:
    """SIGKILL what ``find`` finds (found first, while the mains still vouch for their
    session), the mains' process groups too, until nothing is left."""
    for round_ in range(KILL_ROUNDS):
        alive = find()
        if round_ == 0:
            for main in groups:
                if _alive(main):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(main.pid, signal.SIGKILL)  # verified ours just now
        if not alive:
            return
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()  # psutil refuses a pid that was reused meanwhile
        _wait_gone(alive, KILL_WAIT_S)


def _wait_gone(processes: list[psutil.Process], timeout_s: float) -> None:
    """Until none runs (a zombie counts as gone: it holds no port and no file)."""
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(REAP_POLL_S)


def stale_states(data_dir: Path) -> list[LaunchState]:
    """States in ``data_dir`` whose launcher is gone (a live one is another running `up`)."""
    states = []
    for path in sorted(data_dir.glob(STATE_GLOB)):
        state = LaunchState.load(path)
        if state is None:
            with contextlib.suppress(OSError):
                path.unlink()  # half a file from a crash mid-write: nothing to act on
            continue
        if state.launcher.live() is None:
            states.append(state)
    return states
