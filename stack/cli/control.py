"""`celery-stack ps | restart | stop | start | logs | scale`: a running `up`, from another terminal.

Each asks the launcher of the data dir (STACK_DATA_DIR) over its control socket
(:mod:`stack.launcher.control`); with no launcher there, each says so and exits 1.
`restart` and `start` wait until the service is ready again (gated like at launch).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import Any

from stack.cli.output import print_json
from stack.settings import Settings

WAIT_POLL_S = 0.1
STACK_CHECK_S = 1.0  # `logs -f` asks this often whether the stack still runs


def _call(settings: Settings, action: str, names: list[str], count: int | None = None) -> Any:
    from stack.launcher.control import Command, call

    return call(settings.data_dir, Command(action, tuple(names), count))


def _rows(settings: Settings) -> list[dict[str, Any]]:
    return list(_call(settings, "ps", [])["services"])


def cmd_ps(settings: Settings, args: argparse.Namespace) -> int:
    rows = _rows(settings)
    if args.json:
        print_json(rows)
    else:
        print(render_ps(rows))
    return 0


def render_ps(rows: list[dict[str, Any]]) -> str:
    headers = ("service", "state", "pid", "uptime", "restarts", "rss", "url")
    cells = [
        (
            row["name"],
            row["state"],
            "-" if row["pid"] is None else str(row["pid"]),
            "-" if row["uptime_s"] is None else f"{row['uptime_s']:.0f} s",
            str(row["restarts"]),
            "-" if row["rss_bytes"] is None else f"{row['rss_bytes'] / 2**20:.0f} MB",
            row["url"] or "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *cells]
    )


def _wait_ready(settings: Settings, names: list[str], before: dict[str, int | None]) -> int:
    """Until each service runs a new process that is ready (0), or one failed (1)."""
    deadline = time.monotonic() + settings.ready_timeout_s + settings.shutdown_timeout_s
    started = time.monotonic()
    waiting = set(names)
    while waiting and time.monotonic() < deadline:
        rows = {row["name"]: row for row in _rows(settings)}
        for name in sorted(waiting):
            row = rows.get(name)
            if row is None:
                waiting.discard(name)
            elif row["state"] == "failed":
                print(f"{name} failed to start: see `celery-stack logs {name}`", file=sys.stderr)
                return 1
            elif row["state"] == "ready" and row["pid"] != before.get(name):
                print(f"{name} ready (pid {row['pid']}) after {time.monotonic() - started:.2f} s")
                waiting.discard(name)
        if waiting:
            time.sleep(WAIT_POLL_S)
    if waiting:
        print(f"not ready in time: {', '.join(sorted(waiting))}", file=sys.stderr)
        return 1
    return 0


def _act(settings: Settings, action: str, names: list[str], wait: bool) -> int:
    before = {row["name"]: row["pid"] for row in _rows(settings)}
    done = list(_call(settings, action, names)["names"])
    print(f"{action}: {', '.join(done)}")
    return _wait_ready(settings, done, before) if wait else 0


def cmd_restart(settings: Settings, args: argparse.Namespace) -> int:
    return _act(settings, "restart", args.names, wait=not args.no_wait)


def cmd_stop(settings: Settings, args: argparse.Namespace) -> int:
    return _act(settings, "stop", args.names, wait=False)


def cmd_start(settings: Settings, args: argparse.Namespace) -> int:
    return _act(settings, "start", args.names, wait=not args.no_wait)


def cmd_scale(settings: Settings, args: argparse.Namespace) -> int:
    from stack.launcher.scaling import parse_scale

    counts = parse_scale([args.spec])
    for group, count in counts.items():
        before = {row["name"]: row["pid"] for row in _rows(settings)}
        names = list(_call(settings, "scale", [group], count)["names"])
        print(f"{group}: {count} (now {', '.join(names) or 'none'})")
        new = [name for name in names if name not in before]
        if new and not args.no_wait and _wait_ready(settings, new, before):
            return 1
    return 0


def cmd_logs(settings: Settings, args: argparse.Namespace) -> int:
    from stack.errors import StackError
    from stack.launcher.procfile import SYSTEM
    from stack.launcher.service_logs import follow, last_lines, log_path

    known = [row["name"] for row in _rows(settings)]
    names = args.names or known
    unknown = [n for n in names if n not in known and n != SYSTEM]
    if unknown:
        raise StackError(
            f"no service is named {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    paths = {log_path(settings.data_dir, name): name for name in names}
    width = max(len(n) for n in names)
    prefix = len(names) > 1
    for path, name in paths.items():
        for line in last_lines(path, args.lines):
            print(f"{name.ljust(width)} | {line}" if prefix else line, flush=True)
    if not args.follow:
        return 0
    for path, line in follow(list(paths), _while_running(settings)):
        print(f"{paths[path].ljust(width)} | {line}" if prefix else line, flush=True)
    return 0


def _while_running(settings: Settings) -> Iterator[bool]:
    """True while the stack answers (asked every STACK_CHECK_S), then False once."""
    from stack.launcher.control import ControlError, NoStack

    checked = time.monotonic()
    while True:
        if time.monotonic() - checked >= STACK_CHECK_S:
            checked = time.monotonic()
            try:
                _rows(settings)
            except NoStack:
                yield False
                return
            except ControlError:  # stopping: its last lines are still to come
                pass
        yield True


def add_control(sub: Any) -> None:
    from stack.cli.arguments import bounded_int

    p = sub.add_parser("ps", help="the running stack's services: state, pid, uptime, RSS, URL")
    p.add_argument("--json", action="store_true", help="one JSON list of the services")
    p.set_defaults(handler=cmd_ps)
    for name, handler, text in (
        ("restart", cmd_restart, "restart services warmly (running tasks finish first)"),
        ("stop", cmd_stop, "stop services warmly; they stay down until `start`"),
        ("start", cmd_start, "start stopped or failed services again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("names", nargs="+", metavar="NAME", help="service names (see `ps`)")
        if name != "stop":
            p.add_argument("--no-wait", action="store_true", help="do not wait until ready")
        p.set_defaults(handler=handler)
    p = sub.add_parser("logs", help="a running stack's service logs (kept in the data dir)")
    p.add_argument("names", nargs="*", metavar="NAME", help="services (default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument(
        "-n", "--lines", type=bounded_int(0), default=20, help="last N lines (default 20)"
    )
    p.set_defaults(handler=cmd_logs)
    p = sub.add_parser("scale", help="run N copies of a worker line: scale worker=3")
    p.add_argument("spec", metavar="NAME=N", help="e.g. worker=3 (0 stops every copy)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for new copies' ping")
    p.set_defaults(handler=cmd_scale)
