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

import json
import statistics
import sys
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import draining  # noqa: E402
from stack.app_factory import load_app  # noqa: E402
from stack.metrics.exporter import exposition  # noqa: E402
from stack.settings import Settings  # noqa: E402

TARGET_COST = 0.10  # issue 6: metrics + events may cost at most 10 % of the drain rate
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
    worker = draining.idle_worker(app, env, logs / f"{name}.log")
    try:
        draining.queue_tasks(app, "diagnostics.echo", queue, tasks, numbered=True)
        cpu_before = cpu_s([worker.pid, redis_pid])
        elapsed = draining.drain_s(app, client, queue, worker, name)
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
    args = draining.parse_args(__doc__, tasks=2000, rounds=3)
    with draining.scratch_redis("bench-metrics-") as (server, tmp):
        assert server.process is not None
        redis_pid = server.process.pid
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        cpus: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_ in range(args.rounds):
            for name in draining.rotated(list(VARIANTS), round_):
                rate, cpu = drain(name, args.tasks, server.url, tmp, redis_pid)
                rates[name].append(rate)
                cpus[name].append(cpu)
        scrape = scrape_ms(server.url, args.tasks, tmp, redis_pid)

    median, report = draining.rates_report(args, rates)
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    cost = 1 - median["on"] / median["off"]
    cpu_cost = cpu["on"] / cpu["off"] - 1
    report |= {
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
    draining.print_rates(report, median, width=4)
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
