"""`celery-stack ...`: thin subcommands delegating to the modules that own the work.

Settings are read once here (the edge) and passed in. A StackError prints its
message and exits 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
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
        result = app.AsyncResult(task_id).get(timeout=args.wait, propagate=False)
        value = {
            "task_id": task_id,
            "status": app.AsyncResult(task_id).state.lower(),
            "result": result,
        }
        _print_json(value) if args.json else print(f"{task_id} {value['status']} {result!r}")
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
    os.execv(command[0], command)  # redis-server takes our pid: signals reach it directly
    return 1  # pragma: no cover - execv does not return


def _add_redis(sub: Any) -> None:
    p = sub.add_parser(
        "redis", help="run Redis in the foreground on REDIS_URL's port, AOF in STACK_DATA_DIR"
    )
    p.set_defaults(handler=cmd_redis)


# --- parser ---------------------------------------------------------------------

SUBCOMMANDS = [_add_submit, _add_up, _add_redis]


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
