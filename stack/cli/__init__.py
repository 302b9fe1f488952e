"""`celery-stack ...`: thin subcommands delegating to the modules that own the work.

Settings are read once here (the edge) and passed in. A StackError prints its
message and exits 1; bad usage exits 2.

Each subcommand module (named by its noun) pairs ``add_xxx(sub)`` with a handler
``cmd_xxx(settings, args) -> int``; add a subcommand by appending its ``add_xxx``
to SUBCOMMANDS. Handlers import the modules doing the work lazily, so ``--help``
stays fast and the CLI process never imports Locust.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stack.cli.checks import add_doctor, add_health, add_preflight
from stack.cli.control import add_control
from stack.cli.dead_letters import add_dlq
from stack.cli.init import add_init
from stack.cli.load import add_load
from stack.cli.output import print_json
from stack.cli.stack_services import add_api, add_redis, add_up
from stack.cli.tasks import add_status, add_submit
from stack.errors import StackError
from stack.settings import Settings

__all__ = ["SUBCOMMANDS", "build_parser", "main", "print_json"]

SUBCOMMANDS = [
    add_submit,
    add_up,
    add_redis,
    add_load,
    add_dlq,
    add_status,
    add_health,
    add_api,
    add_preflight,
    add_doctor,
    add_init,
    add_control,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-stack", description="Run, test and load a Celery + Redis stack."
    )
    parser.add_argument(
        "--env-file", default=None, help="read settings from this file (must exist)"
    )
    parser.add_argument(
        "-A",
        "--app",
        dest="stack_app",
        default=None,
        metavar="MODULE:ATTR",
        help="your Celery app for every subcommand (status, submit, dlq, doctor, load, ...); "
        "the same as STACK_CELERY_APP",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        app = {"STACK_CELERY_APP": args.stack_app} if args.stack_app else {}
        settings = Settings.load(env_file=args.env_file, **app)
        return int(args.handler(settings, args))
    except StackError as exc:
        print(f"celery-stack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
