"""What the drain benchmarks (bench_drain.py, bench_metrics.py) share.

A throwaway Redis, a worker started idle, N tasks queued, then the clock from
``add_consumer`` until the queue's priority lists and the unacked hash are
both empty; variants run in an order rotated round by round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery import Celery

from stack.harness.redis_servers import LocalRedisServer
from stack.harness.worker_process import WorkerProcess
from stack.queues import UNACKED_KEY, Priority, priority_lists

ROOT = Path(__file__).resolve().parents[1]
IDLE_QUEUE = "bench.idle"  # workers start on it, so nothing drains before the clock
POLL_S = 0.002
DRAIN_TIMEOUT_S = 300.0
T = TypeVar("T")


def parse_args(doc: str, tasks: int, rounds: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=tasks)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


@contextmanager
def scratch_redis(prefix: str) -> Iterator[tuple[LocalRedisServer, Path]]:
    """A started local Redis with its data (and room for worker logs) in a temporary dir."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = LocalRedisServer(data_dir=Path(tmp))
        server.start()
        try:
            yield server, Path(tmp)
        finally:
            server.kill()


def rotated(variants: list[T], round_: int) -> list[T]:
    """This round's order: no variant always goes first."""
    shift = round_ % len(variants)
    return variants[shift:] + variants[:shift]


def idle_worker(
    app: Celery,
    env: Mapping[str, str],
    log_path: Path,
    app_path: str = "stack.celery_app",
    idle_queue: str = IDLE_QUEUE,
) -> WorkerProcess:
    """A started worker (prefork, concurrency 2) that consumes only ``idle_queue``, on which
    nothing is published (the reference app refuses undeclared queues: one of its own)."""
    worker = WorkerProcess(
        app=app,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        queues=[idle_queue],
        concurrency=2,
        app_path=app_path,
        extra_args=("--loglevel", "WARNING"),
        log_path=log_path,
    )
    worker.start()
    return worker


def queue_tasks(app: Celery, task: str, queue: str, count: int, numbered: bool = False) -> None:
    """Queue ``count`` calls of ``task`` at normal priority (``numbered``: each gets its index)."""
    with app.producer_or_acquire() as producer:
        for n in range(count):
            app.send_task(
                task,
                args=[n] if numbered else None,
                queue=queue,
                priority=Priority.NORMAL.value,
                producer=producer,
            )


def drain_s(
    app: Celery, client: redis.Redis[bytes], queue: str, worker: WorkerProcess, label: str
) -> float:
    """Seconds from telling ``worker`` to consume ``queue`` until nothing is queued or unacked."""
    lists = priority_lists(queue)
    started = time.perf_counter()
    app.control.add_consumer(queue, destination=[worker.hostname], reply=True)
    deadline = started + DRAIN_TIMEOUT_S
    while sum(client.llen(k) for k in lists) or client.hlen(UNACKED_KEY):
        if time.perf_counter() > deadline:
            raise SystemExit(f"{label}: not drained in {DRAIN_TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    return time.perf_counter() - started


def rates_report(
    args: argparse.Namespace, rates: Mapping[str, list[float]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Each variant's median rate, and the report's head: the run's size and every round."""
    median = {name: statistics.median(values) for name, values in rates.items()}
    return median, {
        "tasks": args.tasks,
        "rounds": args.rounds,
        "drain_tasks_per_s": {k: round(v, 1) for k, v in median.items()},
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
    }


def print_rates(report: Mapping[str, Any], median: Mapping[str, float], width: int) -> None:
    print(f"no-op drain, {report['tasks']} tasks, median of {report['rounds']} rounds (tasks/s):")
    for name, rate in median.items():
        print(f"  {name:<{width}} {rate:8.1f}   rounds: {report['all_rounds'][name]}")
