"""`celery-stack load`: Locust headless against the stack, judged by gates.

Nothing here imports Locust: it monkey-patches whatever imports it, and the CLI
process must stay unpatched (the runner starts Locust in a child process).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from argparse import ArgumentTypeError
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stack.cli.arguments import bounded_float, bounded_int
from stack.cli.output import print_json
from stack.settings import Settings


def _run_time(text: str) -> str:
    """Checked here (a usage error, exit 2) and passed on as written: Locust reads it too."""
    from stack.loadtest.runner import parse_run_time

    try:
        parse_run_time(text)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None
    return text


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    from stack.loadtest.gates import Gates
    from stack.loadtest.runner import LOCUSTFILE, LoadOptions, run_load

    options = LoadOptions(
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time=args.run_time,
        profile=args.profile,
        report_dir=Path(args.report_dir),
        host=args.host,
        gates=Gates(
            max_p95_ms=args.max_p95_ms,
            max_p99_ms=args.max_p99_ms,
            max_fail_ratio=args.max_fail_ratio,
            min_tasks_per_s=args.min_tasks_per_s,
            max_final_depth=args.max_final_depth,
        ),
        locustfile=Path(args.locustfile) if args.locustfile else LOCUSTFILE,
        start=args.start,
        procfile=Path(args.procfile),
        verbose=args.verbose,
    )
    with load_progress(options.run_time_s, args.verbose):
        code, verdict = run_load(
            settings, options, os.environ, output=sys.stderr if args.json else sys.stdout
        )
    if args.json:
        print_json(verdict.to_dict())
    for result in verdict.results:
        if not result.passed:
            print(f"celery-stack load: {result.describe()}", file=sys.stderr)
    return code


@contextlib.contextmanager
def load_progress(run_time_s: float, verbose: bool) -> Iterator[None]:
    """The run time elapsing, as a bar on stderr, for a person at a terminal (not with
    --verbose: Locust's own output streams there); on a pipe, nothing."""
    if verbose or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    stop = threading.Event()
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"load ({run_time_s:g} s run time)", total=run_time_s)
        started = time.monotonic()

        def tick() -> None:
            while not stop.wait(0.2):
                bar.update(task, completed=min(run_time_s, time.monotonic() - started))

        thread = threading.Thread(target=tick, name="load-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(1.0)


def add_load(sub: Any) -> None:
    from stack.loadtest.gates import Gates

    gates = Gates()
    p = sub.add_parser(
        "load",
        help="run Locust headless against the stack; exit 1 when a gate is crossed",
        description="Load the stack through the API and straight into Celery, judge the "
        "gates, write an HTML report and CSV stats. Targets the local API unless --host.",
    )
    p.add_argument("-u", "--users", type=bounded_int(1), default=20, help="peak number of users")
    p.add_argument(
        "-r",
        "--spawn-rate",
        type=bounded_float(0, low_open=True),
        default=10.0,
        help="users started per second",
    )
    p.add_argument("-t", "--run-time", type=_run_time, default="20s", help="e.g. 20s, 1m30s")
    p.add_argument(
        "--profile",
        default="mixed",
        help="built-in (mixed, diagnostics, step, spike) or a .toml/.json profile file",
    )
    p.add_argument("--report-dir", default="reports/load", help="HTML report, CSV, verdict")
    p.add_argument("--host", default=None, help="API base URL (default: http://127.0.0.1:API_PORT)")
    p.add_argument("--start", action="store_true", help="start the stack first (celery-stack up)")
    p.add_argument("--procfile", default="Procfile", help="the Procfile --start runs")
    p.add_argument("--locustfile", default=None, help="your own locustfile (default: ours)")
    p.add_argument("-v", "--verbose", action="store_true", help="stream Locust's own output")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    g = p.add_argument_group("gates (a crossed gate exits 1 and names itself)")
    ms, ratio, rate = bounded_float(0, low_open=True), bounded_float(0, 1), bounded_float(0)
    g.add_argument("--max-p95-ms", type=ms, default=gates.max_p95_ms, help="end-to-end p95")
    g.add_argument("--max-p99-ms", type=ms, default=gates.max_p99_ms, help="end-to-end p99")
    g.add_argument(
        "--max-fail-ratio", type=ratio, default=gates.max_fail_ratio, help="failed/all requests"
    )
    g.add_argument(
        "--min-tasks-per-s", type=rate, default=gates.min_tasks_per_s, help="completed tasks/s"
    )
    g.add_argument(
        "--max-final-depth",
        type=bounded_int(0),
        default=None,
        help="tasks waiting in the queues at the end (default: --users)",
    )
    p.set_defaults(handler=cmd_load)
