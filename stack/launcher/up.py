"""`celery-stack up`: from the Procfile to a supervised stack that leaves no orphan.

Before anything starts: the Procfile is checked line by line, a stale stack
left in the data dir by a launcher that died (and whose watchdog died too)
is stopped, and every port is checked. Then the launcher runs with a
watchdog beside it and a state file listing every process it starts.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO, get_args

from honcho.printer import Message, Printer

from stack.checks.probes import RedisPing
from stack.launcher.manager import STOP_SIGNALS, Launcher
from stack.launcher.procfile import DEFAULT_PROCFILE, SYSTEM, load_procfile
from stack.launcher.profiles import build_services
from stack.launcher.services import REDIS, check_ports
from stack.launcher.state import LaunchState, Proc, reap, stale_states
from stack.launcher.watchdog import Watchdog
from stack.settings import Profile, Settings

WATCHDOG_WAIT_S = 10.0  # a stale stack's own watchdog still reaping: let it finish first
WATCHDOG_POLL_S = 0.05


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
    1 when a service had to be killed; raises SettingsError (a bad Procfile line,
    a bad restart setting) and PortInUse before anything starts, and
    ServiceFailed (with the service's last log lines) after stopping the rest.
    """
    chosen = profile or settings.profile
    if chosen != settings.profile and chosen in get_args(Profile):  # children see STACK_PROFILE
        settings = settings.model_copy(update={"profile": chosen})
    lines = {**load_procfile(procfile), **(commands or {})}
    printer = _printer(chosen, output or (sys.stderr if as_json else sys.stdout), colour)
    reap_stale(settings.data_dir, lambda text: _say(printer, text))
    wanted = REDIS in lines and (not only or REDIS in only)
    running = wanted and RedisPing(settings).check()  # a Redis already there: use it
    services = build_services(settings, lines, chosen, only, redis_running=running)
    check_ports(services)
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # not before: a refusal leaves nothing
    state = LaunchState.create(settings.data_dir)
    launcher = Launcher(
        settings,
        services,
        os.environ if environ is None else environ,
        printer,
        table_output=sys.stdout if output is None else output,
        as_json=as_json,
        state=state,
    )
    watchdog = Watchdog.start(state.path)
    state.watchdog = Proc.of(watchdog.pid)
    state.save()
    for service in services:
        if service.external:
            launcher.say(f"{service.name} already answers at {service.url}: using it")
    previous = {s: signal.signal(s, launcher.request_stop) for s in STOP_SIGNALS}
    try:
        return launcher.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        state.remove()  # first: a launcher killed right here leaves the watchdog nothing to do
        watchdog.release()


def reap_stale(data_dir: Path, say: Callable[[str], None]) -> None:
    """Stop what a dead launcher left running in ``data_dir`` (only pid + start time matches)."""
    for state in stale_states(data_dir):
        _wait_for_its_watchdog(state)
        leftovers = state.leftovers()
        if leftovers:
            names = ", ".join(sorted(r.name for r in state.services.values() if r.main.live()))
            say(
                f"found a stale stack in {data_dir}: its launcher (pid {state.launcher.pid}) is "
                f"gone but {len(leftovers)} of its processes still run ({names or 'descendants'})"
                "; stopping them"
            )
            started = time.monotonic()
            reap(state)
            say(f"stale stack stopped in {time.monotonic() - started:.2f} s")
        state.remove()


def _wait_for_its_watchdog(state: LaunchState) -> None:
    """A watchdog still reaping (its launcher died a moment ago) finishes on its own."""
    deadline = time.monotonic() + WATCHDOG_WAIT_S
    while state.watchdog is not None and state.path.exists() and time.monotonic() < deadline:
        if state.watchdog.live() is None:
            return
        time.sleep(WATCHDOG_POLL_S)


def _say(printer: Printer, text: str) -> None:
    printer.write(Message("line", text + "\n", datetime.datetime.now(), SYSTEM, None))


def _printer(profile: str, output: TextIO, colour: bool) -> Printer:
    """Production output is one JSON object per line (log shippers parse it)."""
    if profile == "production":
        from stack.jsonlog import JsonLinePrinter

        return JsonLinePrinter(output, colour=False, prefix=False)
    return Printer(output, colour=colour)
