"""`celery-stack dlq list|show|replay|delete|purge`: the dead-letter queue from a shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stack.cli.output import print_json
from stack.settings import Settings


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
                print_json({"total": total, "items": [r.model_dump() for r in records]})
            else:
                print(deadletter.render_records(records, total))
        elif args.action == "show":
            record = store.get(args.id)
            if args.json:
                print_json(record.model_dump())
            else:
                print(deadletter.render_record(record))
        elif args.action == "replay":
            return _dlq_replay(store, app, args)
        elif args.action == "delete":
            store.delete(args.id)
            print_json({"deleted": args.id}) if args.json else print(f"deleted {args.id}")
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
        print_json([{"record_id": r, "task_id": t} for r, t in pairs])
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
    print_json({"purged": removed}) if args.json else print(f"purged {removed} dead letters")
    return 0


def add_dlq(sub: Any) -> None:
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
