"""No-op drain rate with the reliability kit against bare Celery, and the rate limiter's cost.

One run, one Redis: a worker (prefork, concurrency 2, prefetch 1, acks_late,
json) starts idle; N no-op tasks are queued; the clock starts when the worker
is told to consume them (``add_consumer``) and stops when the queue and the
unacked hash are both empty. Variants alternate round by round so the shared
machine's noise hits both alike; the median of each is reported.

* bare:      Celery's Task                      (bench.drain_apps:bare_app)
* kit:       StackTask, same configuration       (bench.drain_apps:kit_app)
* reference: the reference stack as shipped     (stack.celery_app: + task events,
             STARTED state, extended results, metrics); issue 14: >= 0.9x bare
* reference-no-events: the same, STACK_TASK_EVENTS=false; issue 14: >= 1.0x bare

Then the rate limiter's cost per acquire (one Lua call) against a Redis PING.

    python bench/bench_drain.py [--tasks 2000] [--rounds 3] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import draining  # noqa: E402
from bench.drain_apps import NOOP, REDIS_URL_VARIABLE  # noqa: E402
from stack.ratelimit import Rate, RateLimiter  # noqa: E402
from stack.settings import Settings  # noqa: E402

TARGET_RATIO = 1.0  # issue 3: the kit must not slow the drain down
TARGET_EVENTS_ON = 0.9  # issue 14: the reference stack as shipped, against bare Celery
TARGET_EVENTS_OFF = 1.0  # issue 14: the same with STACK_TASK_EVENTS=false
NO_EVENTS = "reference-no-events"
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
    Variant(NO_EVENTS, "stack.celery_app:app", "diagnostics.echo", "bench-ref.default"),
]


def load_app(variant: Variant) -> Celery:
    if variant.name.startswith("reference"):
        from stack.app_factory import load_app as load_reference

        return load_reference(Settings.load(environ=reference_env(variant)))
    from bench import drain_apps

    return drain_apps.make_app(kit=variant.name == "kit")


def reference_env(variant: Variant) -> dict[str, str]:
    return {
        "REDIS_URL": os.environ[REDIS_URL_VARIABLE],
        "STACK_QUEUE_PREFIX": "bench-ref.",
        "STACK_TASK_EVENTS": "false" if variant.name == NO_EVENTS else "true",
    }


def drain(variant: Variant, tasks: int, client: redis.Redis[bytes], logs: Path) -> float:
    """Tasks per second for one variant's worker to drain ``tasks`` queued no-ops."""
    client.flushdb()
    app = load_app(variant)
    reference = variant.name.startswith("reference")
    env = reference_env(variant) if reference else {}
    idle = "bench-ref.maintenance" if reference else draining.IDLE_QUEUE
    log = logs / f"{variant.name}.log"
    worker = draining.idle_worker(app, env, log, variant.app_path, idle)
    try:
        draining.queue_tasks(app, variant.task, variant.queue, tasks)
        return tasks / draining.drain_s(app, client, variant.queue, worker, variant.name)
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
    args = draining.parse_args(__doc__, tasks=2000, rounds=3)
    with draining.scratch_redis("bench-drain-") as (server, tmp):
        os.environ[REDIS_URL_VARIABLE] = server.url
        client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
        try:
            rates: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
            for round_ in range(args.rounds):
                for variant in draining.rotated(VARIANTS, round_):
                    rates[variant.name].append(drain(variant, args.tasks, client, tmp))
            costs = {**limiter_costs(client), **lifecycle_us()}
        finally:
            client.close()

    median, report = draining.rates_report(args, rates)
    report |= {
        "ratio_kit_to_bare": round(median["kit"] / median["bare"], 3),
        "ratio_reference_to_bare": round(median["reference"] / median["bare"], 3),
        "ratio_reference_no_events_to_bare": round(median[NO_EVENTS] / median["bare"], 3),
        "load_average": os.getloadavg(),
        "target_ratio": TARGET_RATIO,
        **{k: round(v, 1) for k, v in costs.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    draining.print_rates(report, median, width=len(NO_EVENTS))
    print(f"  kit / bare        = {report['ratio_kit_to_bare']:.3f} (target >= {TARGET_RATIO})")
    on, off = report["ratio_reference_to_bare"], report["ratio_reference_no_events_to_bare"]
    print(f"  reference / bare  = {on:.3f} (task events on; target >= {TARGET_EVENTS_ON})")
    print(f"  {NO_EVENTS} / bare = {off:.3f} (target >= {TARGET_EVENTS_OFF})")
    print(f"  load average {' '.join(f'{x:.2f}' for x in report['load_average'])}")
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
