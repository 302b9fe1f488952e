"""API submit (`POST /tasks`) against raw `apply_async` publishing, on one Redis.

One run, one fresh `redis-server` on a free loopback port, no worker (the
queue only grows; it is flushed between phases). The API runs as it does in
the dev stack: `uvicorn --factory stack.api:create_app`, one process.

- At the target rate (open loop, 500 requests/s for --seconds): achieved rate,
  and latency p50/p99 measured from each request's *scheduled* time, so a
  stalled sender is charged for the requests it delays.
- Flat out (closed loop): the highest rate each path sustains, for context.
- CPU ms per request: the publishing process's CPU (raw) against the API
  server's (API), the figure a loaded machine disturbs least.

Targets (issues 5 and 14): API submit >= 0.9x raw publish, API p99 < 20 ms at 500/s.
The API's POST /tasks publishes on its event loop (stack.publish), raw is
``apply_async`` in one thread; the load average is printed with the figures.

    python bench/bench_submit.py [--rate 500] [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import psutil
from pydantic import AliasChoices

from stack.app_factory import create_celery_app
from stack.connection import redis_client
from stack.harness.redis_servers import LocalRedisServer
from stack.launcher.services import child_env
from stack.redis_command import free_port
from stack.settings import Settings

TARGET_RATE = 500.0  # requests/s, issue 5
TARGET_RATIO = 0.9  # API submit rate / raw publish rate
TARGET_P99_MS = 20.0
WARMUP = 200  # requests per path before any clock starts (imports, pools, JIT-free warm caches)
FLAT_OUT_REQUESTS = 2000
FLAT_OUT_CONCURRENCY = 8  # HTTP requests in flight when flat out; raw publish is one thread
HTTP_CONNECTIONS = 64  # enough that the open-loop sender never waits for a connection
API_START_TIMEOUT_S = 30.0
TASK = "diagnostics.echo"


def clean_environ() -> dict[str, str]:
    """The shell's environment without any stack setting: the bench chooses its own."""
    names = {
        str(alias.choices[0]).upper()
        for field in Settings.model_fields.values()
        if isinstance(alias := field.validation_alias, AliasChoices)
    }
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


def percentile_ms(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


CpuClock = Callable[[], float]


def api_cpu_clock(pid: int) -> CpuClock:
    """CPU seconds used so far by the API process and its uvicorn workers."""
    root = psutil.Process(pid)

    def clock() -> float:
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    return clock


def figures(
    latencies: list[float], elapsed_s: float, errors: int, cpu_s: float
) -> dict[str, float]:
    return {
        "cpu_ms_per_request": cpu_s / len(latencies) * 1000,
        "requests": len(latencies),
        "errors": errors,
        "rate_per_s": len(latencies) / elapsed_s,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


# --- raw apply_async ------------------------------------------------------------------


def raw_open_loop(settings: Settings, rate: float, count: int) -> dict[str, float]:
    app = create_celery_app(settings)
    task = app.tasks[TASK]
    for i in range(WARMUP):
        task.apply_async(args=[i])
    latencies = []
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        task.apply_async(args=[i])
        latencies.append(time.perf_counter() - due)
    elapsed = time.perf_counter() - start
    cpu_s = time.process_time() - cpu
    app.close()
    return figures(latencies, elapsed, 0, cpu_s)


def raw_flat_out(settings: Settings, count: int) -> dict[str, float]:
    app = create_celery_app(settings)
    task = app.tasks[TASK]
    for i in range(WARMUP):
        task.apply_async(args=[i])
    latencies = []
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(count):
        sent = time.perf_counter()
        task.apply_async(args=[i])
        latencies.append(time.perf_counter() - sent)
    elapsed = time.perf_counter() - start
    cpu_s = time.process_time() - cpu
    app.close()
    return figures(latencies, elapsed, 0, cpu_s)


# --- the API --------------------------------------------------------------------------


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams.

    httpx costs ~2 ms of CPU per request here, as much as the API itself: on a
    2-core machine the client would be what we measure. This one costs a few
    tenths of a millisecond. One request per connection at a time (no pipelining).
    """

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.size = connections
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def __aenter__(self) -> RawHttp:
        for _ in range(self.size):
            self.idle.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()

    async def post_task(self, i: int) -> int:
        """POST /tasks for diagnostics.echo(i); the HTTP status."""
        payload = json.dumps({"name": TASK, "args": [i]}).encode()
        head = (
            f"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        reader, writer = await self.idle.get()
        writer.write(head.encode() + payload)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.idle.put_nowait((reader, writer))
        return status


async def api_open_loop(port: int, rate: float, count: int, cpu: CpuClock) -> dict[str, float]:
    async with RawHttp(port, HTTP_CONNECTIONS) as client:
        await asyncio.gather(*(client.post_task(i) for i in range(WARMUP)))
        latencies: list[float] = []
        errors = 0

        async def one(i: int, due: float) -> None:
            nonlocal errors
            errors += await client.post_task(i) != 202
            latencies.append(time.perf_counter() - due)

        cpu_start = cpu()
        start = time.perf_counter()
        pending = []
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
        cpu_s = cpu() - cpu_start
    return figures(latencies, elapsed, errors, cpu_s)


async def api_flat_out(port: int, count: int, cpu: CpuClock) -> dict[str, float]:
    async with RawHttp(port, FLAT_OUT_CONCURRENCY) as client:
        await asyncio.gather(*(client.post_task(i) for i in range(WARMUP)))
        latencies: list[float] = []
        errors = 0
        numbers = iter(range(count))

        async def worker() -> None:
            nonlocal errors
            for i in numbers:
                sent = time.perf_counter()
                errors += await client.post_task(i) != 202
                latencies.append(time.perf_counter() - sent)

        cpu_start = cpu()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(FLAT_OUT_CONCURRENCY)))
        elapsed = time.perf_counter() - start
        cpu_s = cpu() - cpu_start
    return figures(latencies, elapsed, errors, cpu_s)


def start_api(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--factory", "stack.api:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(settings.api_port)]
    command += ["--workers", str(settings.api_workers)]
    command += ["--log-level", "warning", "--no-access-log"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=child_env(settings, clean_environ()), stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{settings.api_port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the API did not start; its log:\n{log.read_text()}")


# --- the run ----------------------------------------------------------------------------


def run(rate: float, seconds: float, api_workers: int, task_events: bool) -> dict[str, Any]:
    count = int(rate * seconds)
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        redis_server = LocalRedisServer(data_dir=Path(tmp))
        redis_server.start()
        settings = Settings.load(
            environ={
                "REDIS_URL": redis_server.url,
                "API_PORT": str(free_port()),
                "STACK_QUEUE_PREFIX": "bench.",
                "STACK_KEY_PREFIX": "bench:",
                "STACK_API_WORKERS": str(api_workers),
                "STACK_TASK_EVENTS": "true" if task_events else "false",
            }
        )
        client = redis_client(settings)
        api = start_api(settings, Path(tmp) / "api.log")
        api_cpu = api_cpu_clock(api.pid)
        try:
            results: dict[str, Any] = {}
            results["raw_at_target"] = raw_open_loop(settings, rate, count)
            client.flushdb()
            results["api_at_target"] = asyncio.run(
                api_open_loop(settings.api_port, rate, count, api_cpu)
            )
            client.flushdb()
            results["raw_flat_out"] = raw_flat_out(settings, FLAT_OUT_REQUESTS)
            client.flushdb()
            results["api_flat_out"] = asyncio.run(
                api_flat_out(settings.api_port, FLAT_OUT_REQUESTS, api_cpu)
            )
        finally:
            api.terminate()
            api.wait(timeout=10)
            client.close()
            redis_server.stop()
    at_target = results["api_at_target"]["rate_per_s"] / results["raw_at_target"]["rate_per_s"]
    flat_out = results["api_flat_out"]["rate_per_s"] / results["raw_flat_out"]["rate_per_s"]
    results["ratio_at_target"] = at_target
    results["ratio_flat_out"] = flat_out
    results["target"] = {"rate_per_s": rate, "ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS}
    results["load_average"] = os.getloadavg()
    results["api_workers"] = api_workers
    results["task_events"] = task_events
    results["met"] = {
        "ratio": at_target >= TARGET_RATIO,
        "p99": results["api_at_target"]["p99_ms"] < TARGET_P99_MS,
    }
    return results


def report(results: dict[str, Any]) -> str:
    rate = results["target"]["rate_per_s"]
    lines = [
        f"API: {results['api_workers']} uvicorn process(es); task events "
        f"{'on' if results['task_events'] else 'off'}; no worker consumes; one Redis; "
        f"load average {' '.join(f'{x:.2f}' for x in results['load_average'])} "
        f"on {os.cpu_count()} CPUs",
        f"{'path':<24}{'requests':>9}{'errors':>7}{'rate/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU ms/req':>11}",
    ]
    for key, label in (
        ("raw_at_target", f"raw apply_async @{rate:g}"),
        ("api_at_target", f"API POST /tasks @{rate:g}"),
        ("raw_flat_out", "raw apply_async max"),
        ("api_flat_out", "API POST /tasks max"),
    ):
        r = results[key]
        lines.append(
            f"{label:<24}{r['requests']:>9}{r['errors']:>7}{r['rate_per_s']:>9.0f}"
            f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['cpu_ms_per_request']:>11.2f}"
        )
    met = results["met"]
    lines.append(
        f"API/raw rate at {rate:g}/s: {results['ratio_at_target']:.2f}x "
        f"(target >= {TARGET_RATIO}x: {'met' if met['ratio'] else 'MISSED'}); "
        f"flat out: {results['ratio_flat_out']:.2f}x"
    )
    lines.append(
        f"API p99 at {rate:g}/s: {results['api_at_target']['p99_ms']:.2f} ms "
        f"(target < {TARGET_P99_MS:g} ms: {'met' if met['p99'] else 'MISSED'})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="requests/s, open loop")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each open-loop phase")
    parser.add_argument(
        "--api-workers", type=int, default=1, help="uvicorn worker processes (dev stack: 1)"
    )
    parser.add_argument(
        "--no-task-events",
        action="store_true",
        help="STACK_TASK_EVENTS=false on both paths (no task-sent event per publish)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    results = run(args.rate, args.seconds, args.api_workers, not args.no_task_events)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 1 if args.strict and not all(results["met"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
