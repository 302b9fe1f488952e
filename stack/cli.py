"""`celery-stack ...`: thin subcommands delegating to the modules that own the work.

Settings are read once here (the edge) and passed in. A StackError prints its
message and exits 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from stack.errors import StackError
from stack.settings import Settings


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# --- submit -------------------------------------------------------------------


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    from stack.celery_app import load_app
    from stack.submit import submit

    app = load_app(settings)
    task_id = submit(
        app,
        args.name,
        args=json.loads(args.args),
        kwargs=json.loads(args.kwargs),
        priority=args.priority,
        queue=args.queue,
    )
    if args.wait is not None:
        from celery.exceptions import TimeoutError as ResultTimeout

        from stack.status import task_status

        with contextlib.suppress(ResultTimeout):  # not done yet: report where it stands
            app.AsyncResult(task_id).get(timeout=args.wait, propagate=False)
        status = task_status(app, task_id)  # the API's shape and vocabulary
        outcome = status.result if status.error is None else status.error
        _print_json(status.model_dump()) if args.json else print(
            f"{task_id} {status.status} {outcome!r}"
        )
    else:
        _print_json({"task_id": task_id}) if args.json else print(task_id)
    return 0


def _add_submit(sub: Any) -> None:
    p = sub.add_parser("submit", help="submit a task by name and print its id")
    p.add_argument("name", help="task name, e.g. diagnostics.echo")
    p.add_argument("--args", default="[]", help="JSON list of positional arguments")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    p.add_argument("--priority", default="normal", choices=["critical", "high", "normal", "low"])
    p.add_argument("--queue", default=None, help="queue (default: the task's route)")
    p.add_argument(
        "--wait", type=float, default=None, metavar="SECONDS", help="wait for the result"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_submit)


# --- up / redis -------------------------------------------------------------------


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from stack.launcher import run

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    return run(
        settings,
        procfile=Path(args.procfile),
        profile=args.profile,
        only=only,
        environ=os.environ,
        as_json=args.json,
        colour=not args.no_color,
    )


def _add_up(sub: Any) -> None:
    p = sub.add_parser("up", help="start the dev stack from the Procfile, gated on readiness")
    p.add_argument("--procfile", default="Procfile", help="the Procfile to run")
    p.add_argument(
        "--profile", default=None, choices=["dev", "production"], help="default: STACK_PROFILE"
    )
    p.add_argument("--only", default=None, help="comma-separated Procfile names to run")
    p.add_argument(
        "--json", action="store_true", help="print the ready table as one JSON line (logs: stderr)"
    )
    p.add_argument("--no-color", action="store_true", help="no ANSI colours in the logs")
    p.set_defaults(handler=cmd_up)


def cmd_redis(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from stack.services import redis_foreground_command

    command = redis_foreground_command(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.execv(command[0], command)  # redis-server takes our pid: signals reach it directly
    return 1  # pragma: no cover - execv does not return


def _add_redis(sub: Any) -> None:
    p = sub.add_parser(
        "redis", help="run Redis in the foreground on REDIS_URL's port, AOF in STACK_DATA_DIR"
    )
    p.set_defaults(handler=cmd_redis)


# --- load -----------------------------------------------------------------------


def _run_time(text: str) -> str:
    from stack.loadtest.runner import parse_run_time

    parse_run_time(text)  # argparse turns the ValueError into a usage error
    return text


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

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
    code, verdict = run_load(
        settings, options, os.environ, output=sys.stderr if args.json else sys.stdout
    )
    if args.json:
        _print_json(verdict.to_dict())
    for result in verdict.results:
        if not result.passed:
            print(f"celery-stack load: {result.describe()}", file=sys.stderr)
    return code


def _add_load(sub: Any) -> None:
    from stack.loadtest.gates import Gates

    gates = Gates()
    p = sub.add_parser(
        "load",
        help="run Locust headless against the stack; exit 1 when a gate is crossed",
        description="Load the stack through the API and straight into Celery, judge the "
        "gates, write an HTML report and CSV stats. Targets the local API unless --host.",
    )
    p.add_argument("-u", "--users", type=int, default=20, help="peak number of users")
    p.add_argument("-r", "--spawn-rate", type=float, default=10.0, help="users started per second")
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
    g.add_argument("--max-p95-ms", type=float, default=gates.max_p95_ms, help="end-to-end p95")
    g.add_argument("--max-p99-ms", type=float, default=gates.max_p99_ms, help="end-to-end p99")
    g.add_argument(
        "--max-fail-ratio", type=float, default=gates.max_fail_ratio, help="failed/all requests"
    )
    g.add_argument(
        "--min-tasks-per-s", type=float, default=gates.min_tasks_per_s, help="completed tasks/s"
    )
    g.add_argument(
        "--max-final-depth",
        type=int,
        default=None,
        help="tasks waiting in the queues at the end (default: --users)",
    )
    p.set_defaults(handler=cmd_load)


# --- dlq ------------------------------------------------------------------------


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from stack import deadletter
    from stack.celery_app import load_app
    from stack.errors import BrokerUnavailable
    from stack.status import REDIS_ERRORS
    from stack.task import dead_letters_of

    app = load_app(settings)
    store = dead_letters_of(app)
    try:
        if args.action == "list":
            records, total = store.page(args.offset, args.limit), store.count()
            if args.json:
                _print_json({"total": total, "items": [r.model_dump() for r in records]})
            else:
                print(deadletter.render_records(records, total))
        elif args.action == "show":
            record = store.get(args.id)
            if args.json:
                _print_json(record.model_dump())
            else:
                print(deadletter.render_record(record))
        elif args.action == "replay":
            return _dlq_replay(store, app, args)
        elif args.action == "delete":
            store.delete(args.id)
            _print_json({"deleted": args.id}) if args.json else print(f"deleted {args.id}")
        elif args.action == "purge":
            return _dlq_purge(store, args)
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(
            f"Redis did not answer ({exc}); is it running? Check REDIS_URL"
        ) from exc
    return 0


def _dlq_replay(store: Any, app: Any, args: argparse.Namespace) -> int:
    from stack.deadletter import replay_all

    if args.all == (args.id is not None):
        print("celery-stack: error: dlq replay takes one record id, or --all", file=sys.stderr)
        return 2
    pairs = replay_all(store, app) if args.all else [(args.id, store.replay(args.id, app))]
    if args.json:
        _print_json([{"record_id": r, "task_id": t} for r, t in pairs])
    else:
        for record_id, task_id in pairs:
            print(f"replayed {record_id} as task {task_id}")
        print(f"{len(pairs)} replayed")
    return 0


def _dlq_purge(store: Any, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "celery-stack: error: dlq purge needs --yes when not run from a terminal",
                file=sys.stderr,
            )
            return 1
        answer = input(f"Delete all {store.count()} dead letters? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    removed = store.purge()
    _print_json({"purged": removed}) if args.json else print(f"purged {removed} dead letters")
    return 0


def _add_dlq(sub: Any) -> None:
    p = sub.add_parser("dlq", help="inspect, replay and purge the dead-letter queue")
    actions = p.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="dead letters, newest first")
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--limit", type=int, default=50)
    show = actions.add_parser("show", help="every field of one dead letter, with its traceback")
    show.add_argument("id", help="dead-letter record id")
    replay = actions.add_parser(
        "replay", help="republish to the original queue and priority under a new task id"
    )
    replay.add_argument("id", nargs="?", default=None, help="dead-letter record id")
    replay.add_argument("--all", action="store_true", help="every record not replayed yet")
    delete = actions.add_parser("delete", help="remove one dead letter")
    delete.add_argument("id", help="dead-letter record id")
    purge = actions.add_parser("purge", help="remove every dead letter (asks first)")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask")
    for action in (ls, show, replay, delete, purge):
        action.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_dlq)


# --- status ---------------------------------------------------------------------


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from stack.celery_app import load_app
    from stack.overview import queue_overview, render_overview

    overview = queue_overview(load_app(settings), workers=True, ping_timeout_s=args.timeout)
    _print_json(overview.model_dump()) if args.json else print(render_overview(overview))
    return 0


def _add_status(sub: Any) -> None:
    p = sub.add_parser(
        "status", help="queue depths, unacked messages, dead letters, workers answering ping"
    )
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for worker pings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_status)


# --- parser ---------------------------------------------------------------------

# --- health -----------------------------------------------------------------------


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    from stack.healthcheck import healthy

    ok, detail = healthy(settings, args.service, args.hostname)
    print(f"{args.service}: {'healthy' if ok else 'unhealthy'} ({detail})")
    return 0 if ok else 1


def _add_health(sub: Any) -> None:
    from stack.healthcheck import SERVICES

    p = sub.add_parser("health", help="container healthcheck: exit 0 when SERVICE serves")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--hostname", default=None, help="worker: its node name (default worker@HOST)")
    p.set_defaults(handler=cmd_health)


# --- api, preflight (containers) ------------------------------------------------------


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import os
    import shutil

    from stack.production import uvicorn_command

    command = uvicorn_command(settings, host=args.host)
    os.execv(shutil.which(command[0]) or command[0], command)  # uvicorn takes our pid
    return 1  # pragma: no cover - execv does not return


def _add_api(sub: Any) -> None:
    p = sub.add_parser(
        "api", help="run the production API: uvicorn, STACK_API_WORKERS processes, JSON logs"
    )
    p.add_argument("--host", default=None, help="listen address (default API_HOST)")
    p.set_defaults(handler=cmd_api)


def cmd_preflight(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from stack.preflight import preflight

    warned = preflight(settings, os.environ, probe_redis=not args.no_redis)
    print(f"preflight: the {settings.profile} profile may start ({len(warned)} warnings)")
    return 0


def _add_preflight(sub: Any) -> None:
    p = sub.add_parser(
        "preflight",
        help="check every security setting (production: exit 1 listing each unsafe item)",
    )
    p.add_argument("--no-redis", action="store_true", help="skip the Redis auth probe")
    p.set_defaults(handler=cmd_preflight)


# --- doctor -----------------------------------------------------------------------


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from stack.doctor import render_report, run_doctor

    report = run_doctor(settings, os.environ)
    _print_json(report.as_dict()) if args.json else print(render_report(report))
    return 0 if report.ok else 1


def _add_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check settings, Redis, workers and a real task round trip; each problem with its fix",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_doctor)


SUBCOMMANDS = [
    _add_submit,
    _add_up,
    _add_redis,
    _add_load,
    _add_dlq,
    _add_status,
    _add_health,
    _add_api,
    _add_preflight,
    _add_doctor,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-stack", description="Run, test and load a Celery + Redis stack."
    )
    parser.add_argument(
        "--env-file", default=None, help="read settings from this file (must exist)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(env_file=args.env_file)
        return int(args.handler(settings, args))
    except StackError as exc:
        print(f"celery-stack: error: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"celery-stack: error: --args/--kwargs must be JSON ({exc})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
