"""`celery-stack init`: put an existing Celery project on the stack (never overwriting a file)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from stack.settings import Settings


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from stack.cli.output import print_json
    from stack.scaffold import init_project

    with contextlib.redirect_stdout(sys.stderr):  # what the user's modules print on import
        outcome = init_project(Path(args.dir), args.app)
    if args.json:
        print_json(outcome.as_dict())
        return 0
    found = outcome.found
    print(f"celery-stack init: {found.ref}")
    print(f"  queues: {', '.join(found.queues.names)}")
    entries = len(found.periodic.entries)
    beat = "beat included" if found.periodic.needs_beat else "no beat line"
    print(f"  periodic tasks: {entries} ({beat})")
    smoke = found.smoke_task.name if found.smoke_task else "none without arguments"
    print(f"  smoke-test task: {smoke}")
    for name in outcome.written:
        print(f"wrote {name}")
    for name in outcome.kept:
        print(f"kept {name} (exists)")
    for note in outcome.notes:
        print(f"note: {note}")
    print("next: `celery-stack up` starts the stack; `python -m pytest tests` runs the smoke test")
    return 0


def add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a Procfile, .env.example, pytest settings, a smoke test, a load profile "
        "and a CI workflow for an existing Celery project (never overwrites)",
    )
    p.add_argument(
        "--app",
        default=None,
        metavar="MODULE[:ATTR]",
        help="the project's Celery app (default: found in the project's modules)",
    )
    p.add_argument("--dir", default=".", metavar="PATH", help="the project root (default: .)")
    p.add_argument("--json", action="store_true", help="print what was found, written and kept")
    p.set_defaults(handler=cmd_init)
