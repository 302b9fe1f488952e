"""Drain-rate cost of metrics + task events: the reference stack with them on against off.

One run, one Redis, the same reference app (``stack.celery_app:app``) and
worker settings (prefork, concurrency 2, prefetch 1, acks_late, json); the
variants differ only in ``STACK_METRICS`` and ``STACK_TASK_EVENTS``:

* off: no metrics, no task events
* on:  metrics counted in Redis (buffered in each pool child, one pipeline
       per flush) and Celery task events (what Flower reads)
* metrics, events: each half of "on" alone, to say which one costs what

A worker starts idle; N no-op tasks (``diagnostics.echo``) are queued; the
clock starts when the worker is told to consume them (``add_consumer``) and
stops when the queue and the unacked hash are both empty. Variants alternate
round by round (order rotated) so the shared machine's noise hits both; the
median of each is reported, with the cost ``1 - on/off`` (target < 10 %).
Then what one scrape of ``/metrics`` costs to build after those runs.

    python bench/bench_metrics.py [--tasks 2000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack.celery_app import load_app  # noqa: E402
from stack.exporter import exposition  # noqa: E402
from stack.queues import UNACKED_KEY, Priority, priority_lists  # noqa: E402
from stack.redis_server import LocalRedisServer  # noqa: E402
from stack.settings import Settings  # noqa: E402
from stack.worker import WorkerProcess  # noqa: E402

TARGET_COST = 0.10  # issue 6: metrics + events may cost at most 10 % of the drain rate
IDLE_QUEUE = "bench.idle"  # the worker starts on it, so nothing drains before the clock
POLL_S = 0.002
DRAIN_TIMEOUT_S = 300.0
SCRAPES = 50
VARIANTS = {
    "off": {"STACK_METRICS": "false", "STACK_TASK_EVENTS": "false"},
    "on": {"STACK_METRICS": "true", "STACK_TASK_EVENTS": "true"},
    # The two halves of "on", to say which one costs what:
    "metrics": {"STACK_METRICS": "true", "STACK_TASK_EVENTS": "false"},
    "events": {"STACK_METRICS": "false", "STACK_TASK_EVENTS": "true"},
}


def variant_env(name: str, redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "STACK_QUEUE_PREFIX": f"bench-{name}.",
        "STACK_KEY_PREFIX": f"bench-{name}:",
        **VARIANTS[name],
    }


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes and their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def drain(name: str, tasks: int, redis_url: str, logs: Path, redis_pid: int) -> tuple[float, float]:
    """(tasks per second, CPU ms per task of worker + Redis) to drain ``tasks`` queued no-ops.

    CPU time is the steadier figure on a shared machine: other load stretches the
    wall clock, not the work done per task.
    """
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = variant_env(name, redis_url)
    app = load_app(Settings.load(environ=env))
    queue = f"bench-{name}.default"
    worker = WorkerProcess(
        app=app,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        queues=[IDLE_QUEUE],
        concurrency=2,
        extra_args=("--loglevel", "WARNING"),
        log_path=logs / f"{name}.log",
    )
    worker.start()
    try:
        with app.producer_or_acquire() as producer:
            for n in range(tasks):
                app.send_task(
                    "diagnostics.echo",
                    args=[n],
                    queue=queue,
                    priority=Priority.NORMAL.value,
                    producer=producer,
                )
        lists = priority_lists(queue)
        cpu_before = cpu_s([worker.pid, redis_pid])
        started = time.perf_counter()
        app.control.add_consumer(queue, destination=[worker.hostname], reply=True)
        deadline = started + DRAIN_TIMEOUT_S
        while sum(client.llen(k) for k in lists) or client.hlen(UNACKED_KEY):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name}: not drained in {DRAIN_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - started
        cpu_ms = (cpu_s([worker.pid, redis_pid]) - cpu_before) * 1000 / tasks
        return tasks / elapsed, cpu_ms
    finally:
        worker.stop()
        app.close()
        client.close()


def scrape_ms(redis_url: str, tasks: int, logs: Path, redis_pid: int) -> float:
    """Milliseconds to build one /metrics exposition of a stack that ran ``tasks`` tasks."""
    drain("on", tasks, redis_url, logs, redis_pid)  # leaves its counters and histograms in place
    app = load_app(Settings.load(environ=variant_env("on", redis_url)))
    try:
        exposition(app)  # warm the connection
        started = time.perf_counter()
        for _ in range(SCRAPES):
            exposition(app)
        return (time.perf_counter() - started) / SCRAPES * 1000
    finally:
        app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        server = LocalRedisServer(data_dir=Path(tmp))
        server.start()
        try:
            assert server.process is not None
            redis_pid = server.process.pid
            rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
            cpus: dict[str, list[float]] = {name: [] for name in VARIANTS}
            names = list(VARIANTS)
            for round_ in range(args.rounds):
                shift = round_ % len(names)  # rotate the order: neither always goes first
                for name in names[shift:] + names[:shift]:
                    rate, cpu = drain(name, args.tasks, server.url, Path(tmp), redis_pid)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
            scrape = scrape_ms(server.url, args.tasks, Path(tmp), redis_pid)
        finally:
            server.kill()

    median = {name: statistics.median(values) for name, values in rates.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    cost = 1 - median["on"] / median["off"]
    cpu_cost = cpu["on"] / cpu["off"] - 1
    report = {
        "tasks": args.tasks,
        "rounds": args.rounds,
        "drain_tasks_per_s": {k: round(v, 1) for k, v in median.items()},
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "ratio_on_to_off": round(median["on"] / median["off"], 3),
        "cost": round(cost, 3),
        "cost_by_part": {
            part: round(1 - median[part] / median["off"], 3) for part in ("metrics", "events")
        },
        "target_cost": TARGET_COST,
        "cpu_ms_per_task": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_cost": round(cpu_cost, 3),
        "scrape_ms": round(scrape, 2),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"no-op drain, {args.tasks} tasks, median of {args.rounds} rounds (tasks/s):")
    for name in rates:
        print(f"  {name:<4} {median[name]:8.1f}   rounds: {report['all_rounds'][name]}")
    print(
        f"  on / off = {report['ratio_on_to_off']:.3f}: metrics + events cost "
        f"{cost * 100:.1f} % of the drain rate (target < {TARGET_COST * 100:.0f} %); "
        f"metrics alone {report['cost_by_part']['metrics'] * 100:.1f} %, "
        f"events alone {report['cost_by_part']['events'] * 100:.1f} %"
    )
    print("CPU of worker (main + pool) and Redis per task, median (ms):")
    for name in cpus:
        print(f"  {name:<4} {cpu[name]:8.3f}   rounds: {[round(x, 3) for x in cpus[name]]}")
    print(f"  metrics + events cost {cpu_cost * 100:.1f} % more CPU per task", end="")
    print(
        " (metrics alone "
        + ", events alone ".join(
            f"{(cpu[p] / cpu['off'] - 1) * 100:+.1f} %" for p in ("metrics", "events")
        )
        + ")"
    )
    print(f"one /metrics scrape after {args.tasks} tasks: {scrape:.2f} ms to build")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
