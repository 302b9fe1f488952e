"""One-shot lines (migrations, fixtures): run to completion before the stack starts.

A `release:` line (Heroku's convention) and every ``up --once NAME`` run, one
after the other in Procfile order, with the environment every Procfile
process gets and their output under their own name. A non-zero exit stops
the launch: `up` exits non-zero with the line's last log lines. They run
before the launcher, so before the stack's Redis: a line needing Redis gets
it from a Redis that already answers (``celery-stack redis`` in another shell).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from honcho.printer import Message, Printer

from stack.checks.probes import StayedUp
from stack.errors import ServiceFailed
from stack.launcher.restart import describe_exit
from stack.launcher.running import Running, State
from stack.launcher.services import Service, child_env
from stack.settings import Settings

TAIL_LINES = 30
KILL_WAIT_S = 5.0


@dataclass(frozen=True)
class Done:
    """A one-shot line that ran to completion: the table shows it as `done`."""

    name: str
    pid: int
    took_s: float


def run_once(
    settings: Settings,
    lines: Mapping[str, str],
    names: Sequence[str],
    environ: Mapping[str, str],
    printer: Printer,
    say: Callable[[str], None],
) -> list[Done]:
    """Run each of ``names`` to completion; ServiceFailed (with its tail) at the first failure."""
    done = []
    for name in names:
        say(f"{name}: one-shot line, running it to completion before the others start")
        started = time.monotonic()
        pid, returncode, tail = _run(settings, name, lines[name], environ, printer)
        took = time.monotonic() - started
        if returncode != 0:
            shown = "\n".join(f"  {line}" for line in tail) or "  (no output)"
            raise ServiceFailed(
                f"one-shot line {name!r} exited ({describe_exit(returncode)}) after {took:.2f} s, "
                f"so nothing else started; its last {len(tail)} log lines:\n{shown}"
            )
        say(f"{name} done (rc=0) in {took:.2f} s")
        done.append(Done(name, pid, took))
    return done


def _run(
    settings: Settings,
    name: str,
    command: str,
    environ: Mapping[str, str],
    printer: Printer,
) -> tuple[int, int, deque[str]]:
    env = child_env(settings, environ, Service(name, command, StayedUp()))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(  # its own session: Ctrl-C stops it through us, group and all
        command,
        shell=True,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            text = raw.decode("utf-8", "replace")
            tail.append(text.rstrip("\n"))
            with contextlib.suppress(OSError, ValueError):
                printer.write(Message("line", text, datetime.datetime.now(), name, None))
        return process.pid, process.wait(), tail
    finally:
        if process.poll() is None:  # interrupted: nothing of it may outlive the launch
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(KILL_WAIT_S)


def mark_done(running: Mapping[str, Running], done: Sequence[Done]) -> None:
    """The launcher shows a finished one-shot as `done` and never starts it again."""
    for finished in done:
        r = running[finished.name]
        r.state, r.pid, r.returncode = State.DONE, finished.pid, 0
        r.ready_after_s = finished.took_s
