"""`celery-stack load`: Locust, headless, in a subprocess; gates judged, reports written.

Locust monkey-patches its process with gevent, so it never runs in the CLI's
process: we build its command line (its own options plus ours), let its
``quitting`` listener judge the gates and write a verdict JSON, and print that
verdict as a table. With ``start=True`` the stack comes up first through the
launcher (``celery-stack up --json``, in a subprocess) and goes down after.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from stack.connection import REDIS_ERRORS, redis_client, unavailable
from stack.errors import LoadTestFailed, ServiceFailed
from stack.launcher.services import child_env
from stack.loadtest.gates import Gates, Verdict
from stack.loadtest.profiles import DEFAULT_PROFILE, load_profile
from stack.settings import Settings

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SHAPEFILE = Path(__file__).with_name("shape.py")
CSV_PREFIX = "stats"  # Locust writes stats_stats.csv, stats_failures.csv, ... next to ours
HTML_REPORT = "report.html"
VERDICT_FILE = "verdict.json"
LOCUST_LOG = "locust.log"
STACK_LOG = "stack.log"
START_SERVICES = "redis,api,worker"  # what a load needs: beat and Flower only take CPU
STARTUP_GRACE_S = 60.0  # Locust's import and spawn, and writing reports, beyond --run-time
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
LOG_TAIL_LINES = 30
TARGET_CHECK_TIMEOUT_S = 3.0  # the API and Redis answer in milliseconds when they run
_TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_run_time(text: str) -> float:
    """Seconds in Locust's format: ``20s``, ``1m30s``, ``2h`` or plain seconds; above 0,
    because Locust reads a run time of 0 as "no limit" and a CI load would never end."""
    text = text.strip()
    match = _TIMESPAN.match(text)
    if text.isdigit():
        total = int(text)
    elif text and match is not None:
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        total = hours * 3600 + minutes * 60 + seconds
    else:
        raise ValueError(f"expected a run time like 20s, 1m30s or 2h, got {text!r}")
    if total <= 0:
        raise ValueError(
            f"expected a run time above 0 like 20s, 1m30s or 2h, got {text!r} "
            "(Locust would run without a limit)"
        )
    return float(total)


@dataclass(frozen=True)
class LoadOptions:
    """What `celery-stack load` was asked; Locust's option names where Locust has one."""

    users: int = 20
    spawn_rate: float = 10.0
    run_time: str = "20s"
    profile: str = DEFAULT_PROFILE
    report_dir: Path = Path("reports/load")
    host: str | None = None  # None: the local API on API_PORT
    gates: Gates = field(default_factory=Gates)
    locustfile: Path = LOCUSTFILE
    start: bool = False
    procfile: Path = Path("Procfile")  # what --start runs (the launcher's Procfile)
    verbose: bool = False

    @property
    def run_time_s(self) -> float:
        return parse_run_time(self.run_time)


def default_host(settings: Settings) -> str:
    """The local API: loopback always (a load test never leaves the machine by default)."""
    return f"http://127.0.0.1:{settings.api_port}"


def locust_command(settings: Settings, options: LoadOptions) -> list[str]:
    """The Locust command line: headless, bounded in time, reports in the report dir."""
    report = options.report_dir.resolve()
    files = [str(options.locustfile)]
    if load_profile(options.profile).shape.kind != "constant":
        files.append(str(SHAPEFILE))
    gates = options.gates
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ",".join(files),
        "--headless",
        "--users",
        str(options.users),
        "--spawn-rate",
        f"{options.spawn_rate:g}",
        "--run-time",
        options.run_time,
        "--host",
        options.host or default_host(settings),
        "--csv",
        str(report / CSV_PREFIX),
        "--html",
        str(report / HTML_REPORT),
        "--only-summary",
        "--stack-profile",
        options.profile,
        "--verdict-file",
        str(report / VERDICT_FILE),
        "--max-p95-ms",
        f"{gates.max_p95_ms:g}",
        "--max-p99-ms",
        f"{gates.max_p99_ms:g}",
        "--max-fail-ratio",
        f"{gates.max_fail_ratio:g}",
        "--min-tasks-per-s",
        f"{gates.min_tasks_per_s:g}",
    ]
    if gates.max_final_depth is not None:
        command += ["--max-final-depth", str(gates.max_final_depth)]
    return command


def run_load(
    settings: Settings,
    options: LoadOptions,
    environ: Mapping[str, str],
    output: TextIO | None = None,
) -> tuple[int, Verdict]:
    """Run one load test; return (exit code, verdict). 1 means a gate was crossed."""
    out = output or sys.stdout
    load_profile(options.profile)  # a bad profile fails here, before anything starts
    try:
        parse_run_time(options.run_time)  # like the profile: before anything starts
    except ValueError as exc:
        raise LoadTestFailed(f"run time: {exc}") from None
    report = options.report_dir.resolve()
    report.mkdir(parents=True, exist_ok=True)
    (report / VERDICT_FILE).unlink(missing_ok=True)
    env = child_env(settings, environ)
    with _stack(settings, options, env, report) if options.start else contextlib.nullcontext():
        check_targets(settings, options)
        code = _run_locust(locust_command(settings, options), env, options, report)
    verdict_path = report / VERDICT_FILE
    if not verdict_path.is_file():
        raise LoadTestFailed(
            f"Locust exited with code {code} and wrote no verdict; its output:\n"
            + _tail(report / LOCUST_LOG)
        )
    verdict = Verdict.from_dict(json.loads(verdict_path.read_text(encoding="utf-8")))
    if not options.verbose:
        print(summary_table(verdict, report), file=out)
    return (0 if verdict.passed and code == 0 else 1), verdict


def check_targets(settings: Settings, options: LoadOptions) -> None:
    """Fail in a second, with the fix, when nothing answers (rather than after a whole run)."""
    profile = load_profile(options.profile)
    if profile.weight_of("http"):
        host = options.host or default_host(settings)
        try:
            httpx.get(f"{host.rstrip('/')}/health", timeout=TARGET_CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise LoadTestFailed(
                f"no API answers at {host} ({exc}): start the stack (celery-stack up, "
                "or load --start) or pass --host"
            ) from exc
    if profile.weight_of("celery"):
        client = redis_client(settings, socket_timeout_s=TARGET_CHECK_TIMEOUT_S)
        try:
            client.ping()
        except REDIS_ERRORS as exc:
            doing = "PING before the load run: start the stack (celery-stack up, or load --start)"
            raise unavailable(exc, settings.broker_url, doing) from exc
        finally:
            client.close()


def _run_locust(
    command: Sequence[str], env: Mapping[str, str], options: LoadOptions, report: Path
) -> int:
    """Locust in its own process; stopped by force if it outlives its run time."""
    limit_s = options.run_time_s + STARTUP_GRACE_S
    with (report / LOCUST_LOG).open("wb") as log:
        sink = None if options.verbose else log
        process = subprocess.Popen(command, env=dict(env), stdout=sink, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            raise LoadTestFailed(
                f"Locust did not stop within {limit_s:g} s (--run-time plus "
                f"{STARTUP_GRACE_S:g} s); killed it. Its log: {report / LOCUST_LOG}"
            ) from None
        finally:
            if process.poll() is None:  # KeyboardInterrupt: never leave Locust behind
                _stop(process)


@contextlib.contextmanager
def _stack(
    settings: Settings, options: LoadOptions, env: Mapping[str, str], report: Path
) -> Iterator[None]:
    """`celery-stack up --json` for the length of the load; its logs go to stack.log."""
    command = [sys.executable, "-m", "stack", "up", "--json", "--no-color", "--no-reload"]
    command += ["--only", START_SERVICES, "--procfile", str(options.procfile)]
    with (report / STACK_LOG).open("wb") as log:
        process = subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE, stderr=log)
        try:
            _wait_ready(process, settings, report)
            yield
        finally:
            _stop(process, signal.SIGTERM, settings.shutdown_timeout_s + STOP_GRACE_S)


def _wait_ready(process: subprocess.Popen[bytes], settings: Settings, report: Path) -> None:
    """The launcher prints one JSON line once every service is ready, or exits."""
    assert process.stdout is not None
    line = process.stdout.readline()  # the launcher fails by itself after its ready timeout
    try:
        ready = json.loads(line).get("ready") is True
    except ValueError:
        ready = False
    if not ready:
        process.wait(timeout=settings.shutdown_timeout_s + STOP_GRACE_S)
        raise ServiceFailed(
            f"the stack did not start (celery-stack up exited with {process.returncode}); "
            f"its log:\n" + _tail(report / STACK_LOG)
        )


def _stop(
    process: subprocess.Popen[Any], signum: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S
) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return "  (no log)"
    return "\n".join(f"  {line}" for line in text) or "  (empty log)"


# --- the summary -----------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i > 1 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return [fmt(headers), "-" * len(fmt(headers)), *(fmt(row) for row in rows)]


def summary_table(verdict: Verdict, report: Path) -> str:
    """Requests per type, queue depth, then one line per gate; the report files last."""
    m = verdict.measures
    lines = _table(
        ("type", "name", "requests", "fails", "p50 ms", "p95 ms", "p99 ms", "per s"),
        [
            (
                row["type"],
                row["name"],
                str(row["requests"]),
                str(row["failures"]),
                _ms(row["p50_ms"]),
                _ms(row["p95_ms"]),
                _ms(row["p99_ms"]),
                f"{row['per_s']:.1f}",
            )
            for row in verdict.rows
        ],
    )
    depth = verdict.depth
    lines.append("")
    lines.append(
        f"{m.completed} tasks completed in {m.duration_s:.1f} s ({m.tasks_per_s:.1f}/s), "
        f"{verdict.info.get('unfinished', 0)} Celery-user tasks without a result at the end; "
        f"queue depth start {depth.get('start')}, max {depth.get('max')}, "
        f"end {depth.get('end')}; profile {verdict.info.get('profile')}, "
        f"{verdict.info.get('users')} users"
    )
    lines.append("")
    lines += _table(
        ("gate", "result", "threshold", "measured"),
        [
            (
                r.gate,
                "pass" if r.passed else "FAIL",
                f"{r.threshold:g}{r.unit}",
                "n/a" if r.measured is None else f"{r.measured:.4g}{r.unit}",
            )
            for r in verdict.results
        ],
    )
    lines.append("")
    lines.append(f"report: {report / HTML_REPORT}; CSV: {report / CSV_PREFIX}_*.csv")
    return "\n".join(lines)
