"""No-op drain rate with the reliability kit against bare Celery, and the rate limiter's cost.

One run, one Redis: a worker (prefork, concurrency 2, prefetch 1, acks_late,
json) starts idle; N no-op tasks are queued; the clock starts when the worker
is told to consume them (``add_consumer``) and stops when the queue and the
unacked hash are both empty. Variants alternate round by round so the shared
machine's noise hits both alike; the median of each is reported.

* bare:      Celery's Task                      (bench.drain_apps:bare_app)
* kit:       StackTask, same configuration       (bench.drain_apps:kit_app)
* reference: the reference stack as shipped     (stack.celery_app: + task events,
             STARTED state, extended results, metrics) - for information

Then the rate limiter's cost per acquire (one Lua call) against a Redis PING.

    python bench/bench_drain.py [--tasks 3000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.drain_apps import NOOP, REDIS_URL_VARIABLE  # noqa: E402
from stack.queues import UNACKED_KEY, Priority, priority_lists  # noqa: E402
from stack.ratelimit import Rate, RateLimiter  # noqa: E402
from stack.redis_server import LocalRedisServer  # noqa: E402
from stack.settings import Settings  # noqa: E402
from stack.worker import WorkerProcess  # noqa: E402

TARGET_RATIO = 1.0  # issue 3: the kit must not slow the drain down
IDLE_QUEUE = "bench.idle"  # workers start on it, so nothing drains before the clock
POLL_S = 0.002
DRAIN_TIMEOUT_S = 300.0
ACQUIRES = 5000


@dataclass(frozen=True)
class Variant:
    name: str
    app_path: str  # for `celery -A`
    task: str
    queue: str


VARIANTS = [
    Variant("bare", "bench.drain_apps:bare_app", NOOP, "bench.bare"),
    Variant("kit", "bench.drain_apps:kit_app", NOOP, "bench.kit"),
    Variant("reference", "stack.celery_app:app", "diagnostics.echo", "bench-ref.default"),
]


def load_app(variant: Variant) -> Celery:
    if variant.name == "reference":
        from stack.celery_app import load_app as load_reference

        return load_reference(Settings.load(environ=reference_env()))
    from bench import drain_apps

    return drain_apps.make_app(kit=variant.name == "kit")


def reference_env() -> dict[str, str]:
    return {"REDIS_URL": os.environ[REDIS_URL_VARIABLE], "STACK_QUEUE_PREFIX": "bench-ref."}


def drain(variant: Variant, tasks: int, client: redis.Redis[bytes], logs: Path) -> float:
    """Tasks per second for one variant's worker to drain ``tasks`` queued no-ops."""
    client.flushdb()
    app = load_app(variant)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if variant.name == "reference":
        env.update(reference_env())
    worker = WorkerProcess(
        app=app,
        env=env,
        queues=[IDLE_QUEUE],
        concurrency=2,
        app_path=variant.app_path,
        extra_args=("--loglevel", "WARNING"),
        log_path=logs / f"{variant.name}.log",
    )
    worker.start()
    try:
        with app.producer_or_acquire() as producer:
            for _ in range(tasks):
                app.send_task(
                    variant.task,
                    queue=variant.queue,
                    priority=Priority.NORMAL.value,
                    producer=producer,
                )
        lists = priority_lists(variant.queue)
        started = time.perf_counter()
        app.control.add_consumer(variant.queue, destination=[worker.hostname], reply=True)
        deadline = started + DRAIN_TIMEOUT_S
        while sum(client.llen(k) for k in lists) or client.hlen(UNACKED_KEY):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{variant.name}: not drained in {DRAIN_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        return tasks / (time.perf_counter() - started)
    finally:
        worker.stop()
        app.close()


def per_call_us(call: Any, calls: int = ACQUIRES) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def lifecycle_us(calls: int = 200_000) -> dict[str, float]:
    """Microseconds per call of the task as the worker's tracer calls it, Task vs StackTask:
    the kit's whole per-task cost in the pool child when no limit applies and the
    message is not a redelivery (no Redis call on that path)."""
    from celery.app.trace import task_has_custom

    from bench import drain_apps

    costs = {}
    for name in ("bare", "kit"):
        task = drain_apps.make_app(kit=name == "kit").tasks[NOOP]
        task.push_request(
            id="bench",
            delivery_info={"routing_key": "q", "priority": 6, "redelivered": False},
            retries=0,
            called_directly=False,
            args=[],
            kwargs={},
        )
        call = task if task_has_custom(task, "__call__") else task.run
        costs[f"call_{name}_us"] = per_call_us(call, calls)
        task.pop_request()
    return costs


def limiter_costs(client: redis.Redis[bytes]) -> dict[str, float]:
    """Microseconds per PING, per granted acquire, per deferring acquire (one Lua call each)."""
    settings = Settings.load(environ={"REDIS_URL": os.environ[REDIS_URL_VARIABLE]})
    limiter = RateLimiter(client, settings)
    roomy, tight = Rate.parse("1000000/s"), Rate.parse("1/h")
    limiter.acquire("bench.tight", tight)  # from now on every acquire is deferred
    per_call_us(client.ping, 500)  # warm the connection and the script cache
    return {
        "ping_us": per_call_us(client.ping),
        "acquire_granted_us": per_call_us(lambda: limiter.acquire("bench.roomy", roomy)),
        "acquire_deferred_us": per_call_us(lambda: limiter.acquire("bench.tight", tight)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        server = LocalRedisServer(data_dir=Path(tmp))
        server.start()
        os.environ[REDIS_URL_VARIABLE] = server.url
        client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
        try:
            rates: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
            for round_ in range(args.rounds):
                shift = round_ % len(VARIANTS)  # rotate the order: no variant always goes first
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    rates[variant.name].append(drain(variant, args.tasks, client, Path(tmp)))
            costs = {**limiter_costs(client), **lifecycle_us()}
        finally:
            client.close()
            server.kill()

    median = {name: statistics.median(values) for name, values in rates.items()}
    report = {
        "tasks": args.tasks,
        "rounds": args.rounds,
        "drain_tasks_per_s": {k: round(v, 1) for k, v in median.items()},
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "ratio_kit_to_bare": round(median["kit"] / median["bare"], 3),
        "ratio_reference_to_bare": round(median["reference"] / median["bare"], 3),
        "target_ratio": TARGET_RATIO,
        **{k: round(v, 1) for k, v in costs.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"no-op drain, {args.tasks} tasks, median of {args.rounds} rounds (tasks/s):")
    for name in rates:
        print(f"  {name:<10} {median[name]:8.1f}   rounds: {report['all_rounds'][name]}")
    print(f"  kit / bare        = {report['ratio_kit_to_bare']:.3f} (target >= {TARGET_RATIO})")
    print(f"  reference / bare  = {report['ratio_reference_to_bare']:.3f} (for information)")
    print("task call as the tracer makes it (in-process, no Redis on the happy path):")
    print(f"  Task.__call__/run    {costs['call_bare_us']:7.2f} us")
    print(f"  StackTask.__call__   {costs['call_kit_us']:7.2f} us")
    print("rate limiter (sequential calls, one connection):")
    print(f"  Redis PING           {costs['ping_us']:7.1f} us")
    print(f"  acquire, granted     {costs['acquire_granted_us']:7.1f} us (one Lua call)")
    print(f"  acquire, deferred    {costs['acquire_deferred_us']:7.1f} us (one Lua call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
