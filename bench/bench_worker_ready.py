"""How long the harness's WorkerProcess takes from spawn to "answers a ping addressed to it".

One Redis; N starts of the reference worker (prefork, concurrency 1, the
fixture's fast-start flags), stopped warm after each. Baseline in the same run,
starts alternated: the time until the same worker's log says "ready." (Celery's
own line, which comes before the worker answers the ping the harness waits for).

Target (issue 14): median under 0.25 s.

    python bench/bench_worker_ready.py [--starts 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from bench import draining
from stack.app_factory import load_app
from stack.harness.worker_process import WorkerProcess
from stack.settings import Settings

TARGET_S = 0.25
POLL_S = 0.005


def one_start(app: Any, env: dict[str, str], log: Any, queue: str) -> tuple[float, float]:
    """(seconds to ready as the harness waits for it, seconds to Celery's "ready." line)."""
    worker = WorkerProcess(app=app, env=env, queues=[queue], log_path=log)
    started = time.perf_counter()
    worker.start(wait=False)
    while not worker._logged_ready():
        if not worker.alive:
            raise SystemExit(f"the worker exited:\n{worker.log_tail()}")
        time.sleep(POLL_S)
    logged = time.perf_counter() - started
    worker.wait_ready()
    ready = time.perf_counter() - started
    worker.stop()
    return ready, logged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with draining.scratch_redis("bench-ready-") as (server, tmp):
        environ = {"REDIS_URL": server.url, "STACK_QUEUE_PREFIX": "bench-ready."}
        settings = Settings.load(environ=environ)
        app = load_app(settings)
        env = {**environ, "PYTHONPATH": str(draining.ROOT)}
        readies, logs = [], []
        for n in range(args.starts):
            ready, logged = one_start(app, env, tmp / f"worker-{n}.log", "bench-ready.default")
            readies.append(ready)
            logs.append(logged)
        app.close()
    results = {
        "starts": args.starts,
        "ready_median_s": statistics.median(readies),
        "logged_ready_median_s": statistics.median(logs),
        "ready_s": [round(x, 3) for x in readies],
        "load_average": os.getloadavg(),
        "target_s": TARGET_S,
    }
    results["met"] = results["ready_median_s"] < TARGET_S
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"load average {' '.join(f'{x:.2f}' for x in results['load_average'])}")
        print(
            f"WorkerProcess ready (answers ping), median of {args.starts}: "
            f"{results['ready_median_s']:.3f} s; Celery's 'ready.' line: "
            f"{results['logged_ready_median_s']:.3f} s; ratio "
            f"{results['ready_median_s'] / results['logged_ready_median_s']:.2f}x"
        )
        print(f"target < {TARGET_S} s: {'met' if results['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
