"""`celery-stack dlq list|show|replay|delete|purge`: the dead-letter queue from a shell."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from stack.cli.arguments import bounded_int
from stack.cli.output import print_json
from stack.settings import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX, Settings

if TYPE_CHECKING:
    from stack.deadletter import DeadLetter


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from stack.app_factory import load_app
    from stack.connection import translated
    from stack.context import context_of

    app = load_app(settings)
    store = context_of(app).dead_letters
    with translated(settings.broker_url, f"`dlq {args.action}`"):
        if args.action == "list":
            records, total = store.page(args.offset, args.limit), store.count()
            if args.json:
                print_json({"total": total, "items": [r.model_dump() for r in records]})
            else:
                print(render_records(records, total))
        elif args.action == "show":
            record = store.get(args.id)
            print_json(record.model_dump()) if args.json else print(render_record(record))
        elif args.action == "replay":
            return _dlq_replay(app, args)
        elif args.action == "delete":
            store.delete(args.id)
            print_json({"deleted": args.id}) if args.json else print(f"deleted {args.id}")
        elif args.action == "purge":
            return _dlq_purge(store, args)
    return 0


def _dlq_replay(app: Any, args: argparse.Namespace) -> int:
    from stack.submit import Replayed, replay_all, replay_record

    if args.all == (args.id is not None):
        print("celery-stack: error: dlq replay takes one record id, or --all", file=sys.stderr)
        return 2
    if args.all:
        with replay_progress() as on_each:
            pairs = replay_all(app, on_each)
        done = [Replayed(record_id, task_id, True) for record_id, task_id in pairs]
    else:
        done = [replay_record(app, args.id)]
    if args.json:
        print_json(
            [{"record_id": r.record_id, "task_id": r.task_id, "created": r.created} for r in done]
        )
    else:
        for r in done:
            before = "" if r.created else " (already, by an earlier replay)"
            print(f"replayed {r.record_id} as task {r.task_id}{before}")
        print(f"{sum(r.created for r in done)} replayed")
    return 0


@contextlib.contextmanager
def replay_progress() -> Iterator[Callable[[int, int], None] | None]:
    """A bar on stderr while `dlq replay --all` runs, for a person at a terminal; on a pipe,
    nothing (the per-record lines that follow say it all)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("replaying dead letters", total=None)

        def on_each(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield on_each


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
    print_json({"purged": removed}) if args.json else print(f"purged {removed} dead letters")
    return 0


def add_dlq(sub: Any) -> None:
    p = sub.add_parser("dlq", help="inspect, replay and purge the dead-letter queue")
    actions = p.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="dead letters, newest first")
    ls.add_argument(
        "--offset",
        type=bounded_int(0, PAGE_OFFSET_MAX),
        default=0,
        help=f"newest records to skip (0 to {PAGE_OFFSET_MAX:,})",
    )
    ls.add_argument(
        "--limit",
        type=bounded_int(1, PAGE_LIMIT_MAX),
        default=50,
        help=f"records to show (1 to {PAGE_LIMIT_MAX})",
    )
    show = actions.add_parser("show", help="every field of one dead letter, with its traceback")
    show.add_argument("id", help="dead-letter record id")
    replay = actions.add_parser(
        "replay", help="republish to the original queue and priority under a new task id, once"
    )
    replay.add_argument("id", nargs="?", default=None, help="dead-letter record id")
    replay.add_argument(
        "--all", action="store_true", help="every record not replayed (nor being replayed) yet"
    )
    delete = actions.add_parser("delete", help="remove one dead letter")
    delete.add_argument("id", help="dead-letter record id")
    purge = actions.add_parser("purge", help="remove every dead letter (asks first)")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask")
    for action in (ls, show, replay, delete, purge):
        action.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_dlq)


def render_records(records: list[DeadLetter], total: int) -> str:
    """One line per record, newest first, for `celery-stack dlq list`."""
    if not records:
        return f"no dead letters (of {total})"
    lines = [f"{'id':<32}  {'when (UTC)':<19}  {'task':<24}  {'queue/priority':<20}  error"]
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.last_failure_at))
        where = f"{r.queue}/{r.priority}"
        replayed = f" [replayed x{len(r.replays)}]" if r.replays else ""
        lines.append(f"{r.id:<32}  {when:<19}  {r.name:<24}  {where:<20}  {r.error}{replayed}")
    lines.append(f"{len(records)} shown of {total}")
    return "\n".join(lines)


def render_record(record: DeadLetter) -> str:
    """Every field of one record, for `celery-stack dlq show`."""
    fields = record.model_dump(exclude={"traceback", "replays"})
    width = max(len(k) for k in fields)
    lines = [f"{key:<{width}}  {value}" for key, value in fields.items()]
    lines += [f"{'replays':<{width}}  {r.task_id} at {r.at:.3f}" for r in record.replays]
    return "\n".join([*lines, "", record.traceback.rstrip()])
