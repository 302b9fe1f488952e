"""`celery-stack submit` and `status`: send a task, see the queues it lands in."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import TYPE_CHECKING, Any

from stack.cli.output import print_json
from stack.settings import Settings

if TYPE_CHECKING:
    from stack.checks.overview import QueueOverview


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    from stack.app_factory import load_app
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

        from stack.task_status import task_status

        with contextlib.suppress(ResultTimeout):  # not done yet: report where it stands
            app.AsyncResult(task_id).get(timeout=args.wait, propagate=False)
        status = task_status(app, task_id)  # the API's shape and vocabulary
        outcome = status.result if status.error is None else status.error
        print_json(status.model_dump()) if args.json else print(
            f"{task_id} {status.status} {outcome!r}"
        )
    else:
        print_json({"task_id": task_id}) if args.json else print(task_id)
    return 0


def add_submit(sub: Any) -> None:
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


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from stack.app_factory import load_app
    from stack.checks.overview import queue_overview

    overview = queue_overview(load_app(settings), workers=True, ping_timeout_s=args.timeout)
    print_json(overview.model_dump()) if args.json else print(render_overview(overview))
    return 0


def add_status(sub: Any) -> None:
    p = sub.add_parser(
        "status", help="queue depths, unacked messages, dead letters, workers answering ping"
    )
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for worker pings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_status)


def render_overview(overview: QueueOverview) -> str:
    """A plain-text table: one line per queue, then the totals."""
    width = max(len(name) for name in [*overview.queues, "dead letters"])
    lines = [f"{'queue':<{width}}  waiting"]
    lines += [f"{name:<{width}}  {depth:>7}" for name, depth in overview.queues.items()]
    lines += [
        f"{'unacked':<{width}}  {overview.unacked:>7}",
        f"{'dead letters':<{width}}  {overview.dead_letters:>7}",
    ]
    if overview.workers is not None:
        names = ", ".join(overview.workers) or "none answered ping"
        lines.append(f"workers ({len(overview.workers)}): {names}")
    return "\n".join(lines)
