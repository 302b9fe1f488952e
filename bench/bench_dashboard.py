"""First load of the dashboard's dead-letter page with 10,000 dead letters stored.

One run, one fresh `redis-server` on a free loopback port, the API served by
uvicorn in a subprocess (as `up` runs it). The store is filled with N records
of a realistic size (a traceback of ~2 KB each). A *first load* is what a
browser with no cookie does to show the page: ``GET /ui`` (the page, its
session cookie), its script and stylesheet, then the first page of dead letters
(``GET /ui/api/dead-letters``), one after the other on a fresh connection
(a browser fetches the two assets in parallel: this is the slower bound).

The baseline, in the same run: ``GET /dead-letters`` (the public JSON of the
same page). Also reported: a filtered listing, which reads every record.

    python bench/bench_dashboard.py [--records 10000] [--rounds 20] [--json]

Target (issue 13): the first load under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack.connection import redis_client  # noqa: E402
from stack.deadletter import DeadLetter, DeadLetterStore  # noqa: E402
from stack.harness.redis_servers import LocalRedisServer  # noqa: E402
from stack.redis_command import free_port  # noqa: E402
from stack.settings import Settings  # noqa: E402

TARGET_MS = 300.0
PAGE = 25  # the dashboard's page size
TRACEBACK = "Traceback (most recent call last):\n" + '  File "x.py", line 1, in f\n' * 60


def fill(store: DeadLetterStore, count: int) -> None:
    for n in range(count):
        store.add(
            DeadLetter(
                task_id=f"bench-{n}",
                name="files.process_csv" if n % 10 == 0 else "diagnostics.always_fail",
                args=[f"value-{n}"],
                kwargs={"path": f"upload-{n}.csv"},
                queue="default",
                priority="normal",
                exception_type="stack.errors.InvalidInput",
                exception_message=f"no such upload {n}",
                traceback=TRACEBACK,
                reason="never retried",
                attempts=1,
                first_failure_at=time.time(),
                last_failure_at=time.time(),
            )
        )


def start_api(settings: Settings, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--factory", "stack.api:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(settings.api_port)]
    command += ["--log-level", "warning", "--no-access-log"]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{settings.api_port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the API did not start; its log:\n{log.read_text()}")


def timed(action: Callable[[httpx.Client], None], base: str, rounds: int) -> list[float]:
    """Each round on a fresh client: no cookie, no kept-alive connection."""
    samples = []
    for _ in range(rounds):
        with httpx.Client(base_url=base) as client:
            started = time.perf_counter()
            action(client)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def first_load(client: httpx.Client) -> None:
    for path in ("/ui", "/ui/static/dashboard.js", "/ui/static/dashboard.css"):
        client.get(path).raise_for_status()
    page = client.get("/ui/api/dead-letters", params={"offset": 0, "limit": PAGE})
    page.raise_for_status()
    assert len(page.json()["items"]) == PAGE


def baseline(client: httpx.Client) -> None:
    client.get("/dead-letters", params={"offset": 0, "limit": PAGE}).raise_for_status()


def filtered(client: httpx.Client) -> None:
    page = client.get("/ui/api/dead-letters", params={"name": "files.process_csv", "limit": PAGE})
    page.raise_for_status()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def run(records: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        redis_server = LocalRedisServer(data_dir=Path(tmp))
        redis_server.start()
        environ = {
            "REDIS_URL": redis_server.url,
            "API_PORT": str(free_port()),
            "STACK_KEY_PREFIX": "bench:",
            "STACK_QUEUE_PREFIX": "bench.",
            "STACK_DEAD_LETTER_MAX_ENTRIES": str(max(records, 10_000)),
            "STACK_DATA_DIR": tmp,
        }
        settings = Settings.load(environ=environ)
        client = redis_client(settings)
        api = None
        try:
            started = time.perf_counter()
            fill(DeadLetterStore(client, settings), records)
            fill_s = time.perf_counter() - started
            env = {**os.environ, **environ, "PYTHONPATH": str(ROOT)}
            api = start_api(settings, env, Path(tmp) / "api.log")
            base = f"http://127.0.0.1:{settings.api_port}"
            timed(first_load, base, 3)  # warm the API process (imports, template compile)
            results = {
                "records": records,
                "stored_mb": round(int(client.info("memory")["used_memory"]) / 1e6, 1),
                "fill_s": round(fill_s, 2),
                "first_load": summary(timed(first_load, base, rounds)),
                "baseline_json_page": summary(timed(baseline, base, rounds)),
                "filtered_listing": summary(timed(filtered, base, max(3, rounds // 4))),
            }
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=10)
            client.close()
            redis_server.stop()
    first, base_ms = results["first_load"]["median_ms"], results["baseline_json_page"]["median_ms"]
    results["ratio_to_baseline"] = round(first / base_ms, 2)
    results["target_ms"] = TARGET_MS
    results["met"] = results["first_load"]["p95_ms"] < TARGET_MS
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    results = run(options.records, options.rounds)
    if options.json:
        print(json.dumps(results, indent=2))
        return 0 if results["met"] else 1
    first, base = results["first_load"], results["baseline_json_page"]
    print(f"{results['records']} dead letters stored ({results['stored_mb']} MB in Redis)")
    print(
        f"first load of the dead-letter page: median {first['median_ms']} ms, "
        f"p95 {first['p95_ms']} ms, max {first['max_ms']} ms (target < {TARGET_MS:g} ms)"
    )
    print(
        f"baseline GET /dead-letters (same page, JSON): median {base['median_ms']} ms; "
        f"ratio first load / baseline = {results['ratio_to_baseline']}"
    )
    filt = results["filtered_listing"]
    print(f"filtered listing (by task name, one facet zset): median {filt['median_ms']} ms")
    print("target met" if results["met"] else "TARGET MISSED")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
