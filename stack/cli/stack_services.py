"""`celery-stack up`, `redis` and `api`: run the stack's processes.

`redis` and `api` exec their server so it takes our pid and signals reach it
directly (what a Procfile line or a container entrypoint needs).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from stack.settings import Settings


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from stack.launcher.scaling import parse_scale
    from stack.launcher.up import run

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    return run(
        settings,
        procfile=None if args.procfile is None else Path(args.procfile),
        profile=args.profile,
        only=only,
        environ=os.environ,
        as_json=args.json,
        colour=not args.no_color,
        app=args.app,
        scale=parse_scale(args.scale) if args.scale else None,
        reload=args.reload,
        reload_paths=args.reload_path,
        reload_ignore=args.reload_ignore,
        once=args.once,
    )


def add_up(sub: Any) -> None:
    p = sub.add_parser("up", help="start the dev stack from the Procfile, gated on readiness")
    p.add_argument("--procfile", default=None, help="the Procfile to run (default: ./Procfile)")
    p.add_argument(
        "--app",
        default=None,
        metavar="MODULE[:ATTR]",
        help="run this Celery app (Redis, API, a worker on its queues, beat if it has "
        "periodic tasks, Flower) without a Procfile; default STACK_CELERY_APP when there "
        "is no Procfile",
    )
    p.add_argument(
        "--profile",
        default=None,
        choices=["dev", "production", "ha"],
        help="default: STACK_PROFILE",
    )
    p.add_argument("--only", default=None, help="comma-separated Procfile names to run")
    p.add_argument(
        "--json", action="store_true", help="print the ready table as one JSON line (logs: stderr)"
    )
    p.add_argument("--no-color", action="store_true", help="no ANSI colours, no live status block")
    p.add_argument(
        "--scale",
        "-c",
        "--concurrency",
        action="append",
        metavar="NAME=N",
        help="run N copies of a worker line, each its own Celery node (worker.1@host, ...); "
        "honcho's -c worker=3 works too",
    )
    add_dev_loop(p)
    p.set_defaults(handler=cmd_up)


def add_dev_loop(p: Any) -> None:
    """Reload on change and one-shot lines (stack.launcher.reload, stack.launcher.once)."""
    p.add_argument(
        "--reload",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="restart the workers, beat and the API when a Python file of the project "
        "changes (default: on in the dev profile; refused in production)",
    )
    p.add_argument(
        "--reload-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory to watch (repeatable; default STACK_RELOAD_PATHS, else .)",
    )
    p.add_argument(
        "--reload-ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="a name or relative path pattern not to watch (repeatable; default "
        "STACK_RELOAD_IGNORE); virtualenvs, caches, .git and the data dir never are",
    )
    p.add_argument(
        "--once",
        action="append",
        default=[],
        metavar="NAME",
        help="run this Procfile line to completion before the others start (repeatable; "
        "a `release:` line always is)",
    )


def cmd_redis(settings: Settings, args: argparse.Namespace) -> int:
    from stack.redis_command import private_data_dir, redis_foreground_command

    command = redis_foreground_command(settings)
    private_data_dir(settings)
    os.umask(0o077)  # redis-server writes its AOF with our umask: owner only
    os.execv(command[0], command)  # redis-server takes our pid: signals reach it directly
    return 1  # pragma: no cover - execv does not return


def add_redis(sub: Any) -> None:
    p = sub.add_parser(
        "redis", help="run Redis in the foreground on REDIS_URL's port, AOF in STACK_DATA_DIR"
    )
    p.set_defaults(handler=cmd_redis)


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from stack.launcher.production import uvicorn_command

    command = uvicorn_command(settings, host=args.host)
    os.execv(shutil.which(command[0]) or command[0], command)  # uvicorn takes our pid
    return 1  # pragma: no cover - execv does not return


def add_api(sub: Any) -> None:
    p = sub.add_parser(
        "api", help="run the production API: uvicorn, STACK_API_WORKERS processes, JSON logs"
    )
    p.add_argument("--host", default=None, help="listen address (default API_HOST)")
    p.set_defaults(handler=cmd_api)
