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

from stack.app_factory import REFERENCE_APP
from stack.checks.probes import RedisPing, WorkerPing
from stack.connection import redact
from stack.discovery import DiscoveryError
from stack.errors import SettingsError
from stack.launcher.app_lines import (
    DiscoveredApp,
    app_lines,
    app_settings,
    discover_app,
    no_app_error,
    with_redis,
)
from stack.launcher.celery_lines import celery_line
from stack.launcher.consumers import QueueCheck
from stack.launcher.control import Command, ControlServer, socket_path
from stack.launcher.manager import STOP_SIGNALS, Launcher
from stack.launcher.once import mark_done, run_once
from stack.launcher.procfile import DEFAULT_PROCFILE, SYSTEM, load_procfile, one_shots
from stack.launcher.profiles import build_services
from stack.launcher.progress import Progress
from stack.launcher.reload import Watcher, reload_config, reload_wanted, reloaded
from stack.launcher.scaling import scaled
from stack.launcher.service_logs import ServiceLogs
from stack.launcher.services import REDIS, Service, check_ports
from stack.launcher.state import LaunchState, Proc, reap, stale_states
from stack.launcher.watchdog import Watchdog
from stack.queues import physical_names
from stack.redis_command import private_data_dir
from stack.settings import Profile, Settings

WATCHDOG_WAIT_S = 10.0  # a stale stack's own watchdog still reaping: let it finish first
WATCHDOG_POLL_S = 0.05


def run(
    settings: Settings,
    procfile: Path | None = None,
    profile: str | None = None,
    only: Sequence[str] | None = None,
    commands: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    as_json: bool = False,
    colour: bool = True,
    output: TextIO | None = None,
    app: str | None = None,
    reload: bool | None = None,
    reload_paths: Sequence[str] = (),
    reload_ignore: Sequence[str] = (),
    once: Sequence[str] = (),
    scale: Mapping[str, int] | None = None,
) -> int:
    """`celery-stack up`: run the Procfile (or the app's lines) until SIGINT/SIGTERM.

    ``app`` (``--app MODULE[:ATTR]``) runs that Celery app without a Procfile (with
    ``procfile`` too: that Procfile, its children given the app); so does
    ``STACK_CELERY_APP`` when there is no ./Procfile (see :func:`launch_lines`).
    ``commands`` adds or overrides Procfile lines; ``scale`` runs N copies of a worker
    line (:mod:`stack.launcher.scaling`). Returns 0 after a clean stop,
    1 when a service had to be killed; raises SettingsError (a bad Procfile line,
    a bad restart setting) and PortInUse before anything starts, and
    ServiceFailed (with the service's last log lines) after stopping the rest.
    """
    chosen = profile or settings.profile
    if chosen != settings.profile and chosen in get_args(Profile):  # children see STACK_PROFILE
        settings = settings.model_copy(update={"profile": chosen})
    printer = _printer(chosen, output or (sys.stderr if as_json else sys.stdout), colour)
    procfile_lines, settings, found = launch_lines(
        settings, procfile, app, lambda text: _say(printer, text)
    )
    if REDIS not in procfile_lines:
        _say(printer, f"no redis line: the stack serves Redis at {redact(settings.broker_url)}")
    lines = {**with_redis(procfile_lines), **(commands or {})}
    firsts = one_shots(lines, once)
    env = os.environ if environ is None else environ
    watch = (
        reload_config(env, Path.cwd(), settings.data_dir, reload_paths, reload_ignore)
        if reload_wanted(chosen, reload)
        else None
    )
    reap_stale(settings.data_dir, lambda text: _say(printer, text))
    wanted = REDIS in lines and (not only or REDIS in only)
    running = wanted and RedisPing(settings).check()  # a Redis already there: use it
    services = build_services(settings, lines, chosen, only, redis_running=running)
    if scale:
        services = scaled(services, scale)
    check_ports(services)
    private_data_dir(settings)  # 0700; not before: a refusal leaves nothing
    done = run_once(settings, lines, firsts, env, printer, lambda text: _say(printer, text))
    board = Progress.over(printer, chosen, colour and not as_json)
    state = LaunchState.create(settings.data_dir)
    logs = ServiceLogs(settings.data_dir)
    launcher = Launcher(
        settings,
        services,
        env,
        printer,
        table_output=sys.stdout if output is None else output,
        as_json=as_json,
        state=state,
        before_table=board.closing(queue_check(settings, services, found)),
        logs=logs,
    )
    mark_done(launcher.running, done)
    board.start(launcher.rows)
    watcher = None
    if watch is not None:
        post = lambda names: launcher.post(Command("restart", names))  # noqa: E731
        watcher = Watcher(watch, reloaded(services, firsts), post, launcher.say).start()
    control = ControlServer.start(settings.data_dir, launcher.answer)
    if control is None:
        launcher.say(
            f"another `up` answers on {socket_path(settings.data_dir)}: `celery-stack ps` and "
            "the other control commands talk to that one"
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
        board.close()
        if watcher is not None:
            watcher.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        state.remove()  # first: a launcher killed right here leaves the watchdog nothing to do
        watchdog.release()
        if control is not None:
            control.close()
        logs.close()


def launch_lines(
    settings: Settings,
    procfile: Path | None,
    app: str | None,
    say: Callable[[str], None],
    root: Path | None = None,
) -> tuple[dict[str, str], Settings, DiscoveredApp | None]:
    """The lines to run, the launcher's settings, and the user's app when one is known.

    ``--app``: the app's lines (:mod:`stack.launcher.app_lines`), or the ``--procfile``
    given with it. Neither: ./Procfile when it exists, else the app STACK_CELERY_APP
    names, else an error saying how to name one. A user's app in STACK_CELERY_APP with
    a Procfile is read too, so its worker consumes the app's queues; an app that does
    not import then is a warning (the Procfile's lines may know better).
    """
    where = (root or Path.cwd()) / DEFAULT_PROCFILE
    explicit = procfile is not None
    if app is None and not explicit and not where.exists():
        if settings.celery_app == REFERENCE_APP:
            raise SettingsError(no_app_error(where.parent))
        app = settings.celery_app
    chosen = procfile if procfile is not None else where
    if app is None and settings.celery_app != REFERENCE_APP:
        try:
            found = discover_app(settings.celery_app, settings, root)
        except DiscoveryError as exc:
            say(f"STACK_CELERY_APP: {exc}; running the Procfile without its queues")
            return load_procfile(chosen), settings, None
        return load_procfile(chosen), app_settings(settings, found), found
    if app is None:
        lines = load_procfile(chosen)
        ref = procfile_app(lines)
        if ref is None:
            return lines, settings, None
        try:  # the Procfile's own app: its queues for the check, its tasks for the API
            found = discover_app(ref, settings, root)
        except DiscoveryError as exc:
            say(f"the Procfile's workers run -A {ref}, which cannot be read here ({exc})")
            return lines, settings, None
        return lines, app_settings(settings, found), found
    found = discover_app(app, settings, root)
    settings = app_settings(settings, found)
    for note in found.notes:
        say(f"{found.ref}: {note}")
    lines = load_procfile(chosen) if explicit else app_lines(settings, found)
    return lines, settings, found


def procfile_app(lines: dict[str, str]) -> str | None:
    """The one app (``-A``) the Procfile's Celery workers run, unless it is the stack's own."""
    apps = set()
    for command in lines.values():
        parsed = celery_line(command)
        if parsed is not None and parsed.subcommand == "worker" and parsed.app:
            apps.add(parsed.app)
    apps -= {"stack.celery_app", REFERENCE_APP}
    return apps.pop() if len(apps) == 1 else None


def queue_check(
    settings: Settings, services: list[Service], found: DiscoveredApp | None
) -> QueueCheck | None:
    """Compare the app's queues with what the stack's workers consume (None: nothing to
    compare: no worker we know the hostname of, or an app we could not read)."""
    hostnames = tuple(
        s.probe.hostname for s in services if isinstance(s.probe, WorkerPing) and not s.external
    )
    if not hostnames:
        return None
    if found is not None:
        queues = {name: found.queues.sources[name] for name in found.queues.names}
    elif settings.celery_app == REFERENCE_APP:
        queues = {name: ("the reference app",) for name in physical_names(settings)}
    else:
        return None
    return QueueCheck(settings, queues, hostnames)


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
