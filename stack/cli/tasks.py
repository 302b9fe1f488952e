"""`celery-stack submit` and `status`: send a task, see the queues it lands in."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from stack.cli.arguments import json_list, json_object, positive_seconds
from stack.cli.output import print_json
from stack.errors import TaskNotDone
from stack.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from stack.checks.overview import QueueOverview
    from stack.task_status import TaskStatus

WAIT_POLL_S = 0.1
FINAL_STATUSES = ("success", "failure", "dead_lettered")


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    from stack.app_factory import load_app
    from stack.submit import submit

    app = load_app(settings)
    task_id = submit(
        app, args.name, args=args.args, kwargs=args.kwargs, priority=args.priority, queue=args.queue
    )
    if args.wait is None:
        print_json({"task_id": task_id}) if args.json else print(task_id)
        return 0
    status = wait_for_status(app, task_id, args.wait)
    outcome = status.result if status.error is None else status.error
    print_json(status.model_dump()) if args.json else print(
        f"{task_id} {status.status} {outcome!r}"
    )
    if status.status == "success":
        return 0
    if status.status in FINAL_STATUSES:
        raise TaskNotDone(f"task {task_id} ended {status.status}: {status.error}")
    raise TaskNotDone(
        f"task {task_id} is still {status.status} after {args.wait:g} s (it keeps going): "
        f"poll GET /task-status/{task_id}, or wait longer with --wait"
    )


def wait_for_status(app: Celery, task_id: str, wait_s: float) -> TaskStatus:
    """Poll the task's status (the API's shape) until it is final or ``wait_s`` have passed.

    Polling, not ``AsyncResult.get()``: that subscribes to the result channel, and an
    unfinished AsyncResult then unsubscribes from ``__del__`` at interpreter exit,
    printing an "Exception ignored" traceback.
    """
    from stack.task_status import task_status

    deadline = time.monotonic() + wait_s
    while True:
        status = task_status(app, task_id)
        left = deadline - time.monotonic()
        if status.status in FINAL_STATUSES or left <= 0:
            return status
        time.sleep(min(WAIT_POLL_S, left))


def add_submit(sub: Any) -> None:
    p = sub.add_parser("submit", help="submit a task by name and print its id")
    p.add_argument("name", help="task name, e.g. diagnostics.echo")
    p.add_argument("--args", type=json_list, default=[], help="JSON list of positional arguments")
    p.add_argument(
        "--kwargs", type=json_object, default={}, help="JSON object of keyword arguments"
    )
    p.add_argument("--priority", default="normal", choices=["critical", "high", "normal", "low"])
    p.add_argument("--queue", default=None, help="queue (default: the task's route)")
    p.add_argument(
        "--wait",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="wait for the result; exit 1 unless the task succeeded in time",
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
    p.add_argument(
        "--timeout", type=positive_seconds, default=1.0, help="seconds to wait for worker pings"
    )
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
    for name in overview.unconsumed or ():
        lines.append(
            f"WARNING: {name} holds {overview.queues[name]} message(s) but no worker consumes "
            "it: they wait for ever (start a worker with -Q including it)"
        )
    if overview.unconsumed is None:
        lines.append("could not ask the workers which queues they consume")
    return "\n".join(lines)
