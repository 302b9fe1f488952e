"""Capacity of one Redis: commands and Redis CPU per task, the ceiling, workers it serves.

A throwaway Redis, the reference stack as shipped (stack.celery_app: events,
STARTED state, extended results, metrics) and one real worker (prefork,
concurrency 2). N `diagnostics.echo` tasks go through the stack's submit path
(stack.submit.submit, what the API and the CLI call), then the worker drains them.
Redis's ``INFO commandstats`` and ``INFO cpu`` are read before and after each
phase (submit, drain, and an idle worker for the baseline); this script's own
polling commands are subtracted. The ceiling: one Redis runs commands on one
core, so tasks/s = 1 CPU-second / Redis CPU per task; cross-checked with
``redis-benchmark`` ops/s divided by commands per task.

    python bench/bench_capacity.py [--tasks 2000] [--idle-s 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import draining  # noqa: E402
from stack.app_factory import load_app  # noqa: E402
from stack.harness.worker_process import WorkerProcess  # noqa: E402
from stack.queues import UNACKED_KEY, physical_name, priority_lists  # noqa: E402
from stack.settings import Settings  # noqa: E402
from stack.submit import submit  # noqa: E402

QUEUE_PREFIX = "bench-cap."
POLL_S = 0.05  # slow polls: few commands of our own to subtract
DRAIN_TIMEOUT_S = 300.0
WORKER_CONCURRENCY = 2  # the bench's worker; projections scale to STACK_WORKER_CONCURRENCY
BENCH_COMMANDS = "ping,set,get,lpush,rpop,hset"  # redis-benchmark's cross-check
BENCH_REQUESTS = 100_000
BENCH_CLIENTS = 50


def commandstats(client: redis.Redis[bytes]) -> dict[str, tuple[int, float]]:
    """command -> (calls, microseconds spent) since the last reset."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"]))
        for name, v in stats.items()
    }


def redis_cpu_s(client: redis.Redis[bytes]) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def phase(client: redis.Redis[bytes], run: Any) -> tuple[Counter[str], float, float, float]:
    """Run ``run()``; (calls per command, command µs, Redis CPU s, wall s) it cost Redis."""
    client.config_resetstat()
    cpu_before, started = redis_cpu_s(client), time.perf_counter()
    own = run() or Counter()
    wall = time.perf_counter() - started
    cpu = redis_cpu_s(client) - cpu_before
    stats = commandstats(client)
    stats.pop("info", None)  # ours: the reads above
    stats.pop("config|resetstat", None)
    calls = Counter({name: calls for name, (calls, _) in stats.items()})
    calls.subtract(own)
    usec = sum(us for _, us in stats.values())
    return +calls, usec, cpu, wall


def redis_benchmark(url: str) -> dict[str, float]:
    """ops/s per command from redis-benchmark against ``url``'s server (empty if none)."""
    if shutil.which("redis-benchmark") is None:
        return {}
    parsed = redis.connection.parse_url(url)
    out = subprocess.run(
        [
            *("redis-benchmark", "-h", str(parsed.get("host", "127.0.0.1"))),
            *("-p", str(parsed.get("port", 6379)), "-n", str(BENCH_REQUESTS)),
            *("-c", str(BENCH_CLIENTS), "-t", BENCH_COMMANDS, "--csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rates = {}
    for line in out.stdout.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split(",")]
        rates[cells[0].split()[0].lower()] = float(cells[1])
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with draining.scratch_redis("bench-capacity-") as (server, tmp):
        env = {"REDIS_URL": server.url, "STACK_QUEUE_PREFIX": QUEUE_PREFIX}
        settings = Settings.load(environ=env)
        app = load_app(settings)
        client: redis.Redis[bytes] = redis.Redis.from_url(server.url)
        queue = physical_name(settings, "default")
        lists = priority_lists(queue)
        worker = WorkerProcess(  # idle on `maintenance` (nothing sends there) until told
            app=app,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            queues=[physical_name(settings, "maintenance")],
            concurrency=WORKER_CONCURRENCY,
            extra_args=("--loglevel", "WARNING"),
            log_path=tmp / "worker.log",
        ).start()
        try:
            idle = phase(client, lambda: time.sleep(args.idle_s))

            def submit_all() -> None:
                for n in range(args.tasks):
                    submit(app, "diagnostics.echo", [n])

            submitted = phase(client, submit_all)

            def drain() -> Counter[str]:
                polls = 0
                app.control.add_consumer(queue, destination=[worker.hostname], reply=True)
                deadline = time.perf_counter() + DRAIN_TIMEOUT_S
                while sum(client.llen(k) for k in lists) or client.hlen(UNACKED_KEY):
                    polls += 1
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"not drained in {DRAIN_TIMEOUT_S:g} s")
                    time.sleep(POLL_S)
                polls += 1
                return Counter({"llen": polls * len(lists), "hlen": polls})

            drained = phase(client, drain)
            benchmark = redis_benchmark(server.url)
        finally:
            worker.stop()
            client.close()
            app.close()

    report = capacity_report(args.tasks, idle, submitted, drained, benchmark, args.idle_s)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def capacity_report(
    tasks: int,
    idle: tuple[Counter[str], float, float, float],
    submitted: tuple[Counter[str], float, float, float],
    drained: tuple[Counter[str], float, float, float],
    benchmark: dict[str, float],
    idle_s: float,
) -> dict[str, Any]:
    idle_calls, _, idle_cpu, _ = idle
    idle_per_s = {k: v / idle_s for k, v in idle_calls.items()}
    drain_calls, drain_usec, drain_cpu, drain_wall = drained
    # The worker's idle chatter during the drain is not per-task cost: take it out.
    drain_tasks = Counter(
        {k: v - idle_per_s.get(k, 0) * drain_wall for k, v in drain_calls.items()}
    )
    per_task = {
        k: round(v / tasks, 3)
        for k, v in sorted((submitted[0] + +drain_tasks).items(), key=lambda kv: -kv[1])
    }
    commands_per_task = sum(per_task.values())
    cpu_per_task_s = (submitted[2] + drain_cpu - idle_cpu / idle_s * drain_wall) / tasks
    usec_per_task = (submitted[1] + drain_usec) / tasks
    ops_s = sorted(benchmark.values())
    median_ops_s = ops_s[len(ops_s) // 2] if ops_s else None
    return {
        "tasks": tasks,
        "commands_per_task": round(commands_per_task, 2),
        "per_command_per_task": per_task,
        "submit_commands_per_task": round(sum(submitted[0].values()) / tasks, 2),
        "redis_command_us_per_task": round(usec_per_task, 1),
        "redis_cpu_us_per_task": round(cpu_per_task_s * 1e6, 1),
        "ceiling_tasks_per_s_by_cpu": round(1 / cpu_per_task_s) if cpu_per_task_s > 0 else None,
        "redis_benchmark_ops_per_s": benchmark,
        "ceiling_tasks_per_s_by_benchmark": (
            round(median_ops_s / commands_per_task) if median_ops_s else None
        ),
        "worker_drain_tasks_per_s": round(tasks / drain_wall, 1),
        "worker_concurrency": WORKER_CONCURRENCY,
        "idle_worker_commands_per_s": round(sum(idle_per_s.values()), 2),
        "idle_worker_per_command_per_s": {k: round(v, 2) for k, v in idle_per_s.items()},
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"reference stack, {r['tasks']} diagnostics.echo tasks: submit path + one worker")
    print(f"  Redis commands per task   {r['commands_per_task']:8.2f}")
    print(f"    of which at submit      {r['submit_commands_per_task']:8.2f}")
    for name, n in r["per_command_per_task"].items():
        print(f"    {name:<22}{n:8.3f}")
    print(f"  Redis command time / task {r['redis_command_us_per_task']:8.1f} us (commandstats)")
    print(f"  Redis CPU / task          {r['redis_cpu_us_per_task']:8.1f} us (INFO cpu)")
    print(f"  idle worker               {r['idle_worker_commands_per_s']:8.2f} commands/s")
    print(f"  one worker's drain        {r['worker_drain_tasks_per_s']:8.1f} tasks/s (c=2, no-op)")
    print("ceiling of one Redis (one core):")
    print(f"  by Redis CPU per task     {r['ceiling_tasks_per_s_by_cpu']} tasks/s")
    if r["ceiling_tasks_per_s_by_benchmark"]:
        print(
            f"  by redis-benchmark        {r['ceiling_tasks_per_s_by_benchmark']} tasks/s "
            f"(median of {r['redis_benchmark_ops_per_s']} ops/s over commands per task)"
        )
    ceiling = r["ceiling_tasks_per_s_by_cpu"]
    print("workers one Redis serves (concurrency 4), by task duration:")
    for duration_s in (0.01, 0.1, 1.0):
        per_worker = min(4 / duration_s, r["worker_drain_tasks_per_s"] * 2)
        print(f"  {duration_s * 1000:6.0f} ms tasks: ~{ceiling / per_worker:8.0f} workers")


if __name__ == "__main__":
    raise SystemExit(main())
