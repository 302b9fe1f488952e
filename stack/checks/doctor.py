"""`celery-stack doctor`: is this stack able to run a task, and if not, what to do about it.

Checks in the order a task needs them: settings and the Celery app, Redis
(answers, version, eviction policy, persistence), workers (answer ping, consume
which queues), a real ``diagnostics.echo`` round trip, then the maintenance
heartbeat and the dead letters. Each problem comes with its fix. ``fail`` is for
what stops tasks from running (the exit code says so); ``warn`` for what loses
them later or needs a look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from stack import app_factory, queues
from stack.checks.overview import queue_names
from stack.checks.readiness import WORKER_PING_TIMEOUT_S, active_queues, ping_redis, ping_workers
from stack.connection import REDIS_ERRORS, redact, redis_client
from stack.context import context_of
from stack.deadletter import DeadLetterStore
from stack.errors import StackError
from stack.preflight import check_settings
from stack.settings import Settings
from stack.submit import submit
from stack.tasks.maintenance import HEARTBEAT_TTL_S, last_heartbeat

Level = Literal["ok", "warn", "fail", "skip"]

REDIS_TIMEOUT_S = 2.0  # a Redis that takes longer to answer PING is as good as down
ROUND_TRIP_TIMEOUT_S = 10.0  # an idle worker runs echo in milliseconds; a busy one may queue it
ECHO_TASK = "diagnostics.echo"
SAFE_EVICTION_POLICY = "noeviction"  # any other policy may drop queued messages under memory

# Redis vanishing half-way (or submit's BrokerUnavailable): reported, never a traceback.
DURING_CHECKS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, StackError)

START_REDIS = "start Redis (`celery-stack redis` or `celery-stack up`) or fix REDIS_URL"
START_WORKER = "start one: `celery -A stack.celery_app worker` (or `celery-stack up`)"


@dataclass(frozen=True)
class Check:
    """One finding: its level, what was seen, and the fix when it is not ok."""

    name: str
    level: Level
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(check.level == "fail" for check in self.checks)

    def add(self, *checks: Check) -> None:
        self.checks.extend(checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}


def check_config(settings: Settings, environ: Mapping[str, str]) -> list[Check]:
    """The settings in effect, and every unsafe one (errors fail only in production)."""
    summary = (
        f"profile {settings.profile}, broker {redact(settings.broker_url)}, "
        f"results {redact(settings.result_backend)}, app {settings.celery_app}"
    )
    checks = [Check("settings", "ok", summary)]
    for finding in check_settings(settings, environ):
        level: Level = (
            "fail" if finding.severity == "error" and settings.profile == "production" else "warn"
        )
        checks.append(Check(f"setting {finding.variable}", level, finding.problem, finding.fix))
    return checks


def check_redis_server(client: redis.Redis[bytes], label: str) -> list[Check]:
    """PING, then version, eviction policy and persistence from INFO (works on managed Redis)."""
    started = time.perf_counter()
    problem = ping_redis(client)
    if problem is not None:
        return [Check(label, "fail", f"does not answer PING ({problem})", START_REDIS)]
    ping_ms = (time.perf_counter() - started) * 1000
    info = client.info()
    version = str(info.get("redis_version", "?"))
    policy = str(info.get("maxmemory_policy", "?"))
    aof = bool(int(info.get("aof_enabled", 0)))
    checks = [
        Check(
            label,
            "ok",
            f"PONG in {ping_ms:.1f} ms (Redis {version})",
            data={"version": version, "ping_ms": round(ping_ms, 3)},
        )
    ]
    if policy != SAFE_EVICTION_POLICY:
        checks.append(
            Check(
                f"{label} eviction",
                "warn",
                f"maxmemory-policy is {policy}: under memory pressure Redis may evict "
                "queued tasks and results",
                f"CONFIG SET maxmemory-policy {SAFE_EVICTION_POLICY} (and set it in redis.conf)",
            )
        )
    if not aof:
        checks.append(
            Check(
                f"{label} persistence",
                "warn",
                "AOF is off: queued tasks are lost when Redis restarts",
                "CONFIG SET appendonly yes (and set it in redis.conf); `celery-stack up` does",
            )
        )
    return checks


def consumed_queues(app: Celery, settings: Settings, timeout_s: float) -> dict[str, list[str]]:
    """Worker hostname -> the app's queues it consumes, by the names the app shows them
    (the reference app's logical names); other queues are dropped."""
    shown = {physical: name for name, physical in queue_names(app).items()}
    return {
        host: sorted(shown[q] for q in queue_list if q in shown)
        for host, queue_list in active_queues(app, timeout_s).items()
    }


def check_workers(app: Celery, settings: Settings) -> tuple[list[Check], list[str]]:
    """Workers answering ping, and which of the app's queues nobody consumes (with how many
    messages wait there for ever)."""
    workers = ping_workers(app, WORKER_PING_TIMEOUT_S)
    if not workers:
        detail = f"no worker answered ping within {WORKER_PING_TIMEOUT_S:g} s"
        return [Check("workers", "fail", detail, START_WORKER)], []
    by_worker = consumed_queues(app, settings, WORKER_PING_TIMEOUT_S)
    consumed = sorted({q for names in by_worker.values() for q in names})
    checks = [
        Check(
            "workers",
            "ok",
            f"{len(workers)} answered ping: "
            + "; ".join(f"{host} ({', '.join(by_worker.get(host, []))})" for host in workers),
            data={"workers": {host: by_worker.get(host, []) for host in workers}},
        )
    ]
    names = queue_names(app)
    idle = [q for q in names if q not in consumed]
    if idle:
        client = context_of(app).redis
        depths = queues.queue_depths(client, settings, {q: names[q] for q in idle})
        held = {q: n for q, n in depths.items() if n}
        detail = f"no worker consumes {', '.join(idle)}: tasks routed there wait forever"
        if held:
            holding = ", ".join(f"{q} holds {n} message(s)" for q, n in held.items())
            detail += f" ({holding} with no consumer)"
        checks.append(
            Check(
                "queues",
                "warn",
                detail,
                f"start a worker with -Q {','.join(names[q] for q in idle)}",
                data={"unconsumed": idle, "holding": held},
            )
        )
    return checks, consumed


def check_round_trip(app: Celery, consumed: list[str]) -> Check:
    """Submit diagnostics.echo at critical priority and time it until its result is back."""
    default = queues.DEFAULT_QUEUE if queues.is_reference(app) else str(app.conf.task_default_queue)
    queue = default if default in consumed else consumed[0]
    token = f"doctor-{time.time_ns()}"
    started = time.perf_counter()
    task_id = submit(app, ECHO_TASK, args=[token], priority="critical", queue=queue)
    result = app.AsyncResult(task_id)
    try:
        value = result.get(timeout=ROUND_TRIP_TIMEOUT_S, propagate=False)
    except (CeleryTimeout, *REDIS_ERRORS) as exc:
        return Check(
            "round trip",
            "fail",
            f"{ECHO_TASK} on {queue} did not finish in {ROUND_TRIP_TIMEOUT_S:g} s ({exc!r})",
            "workers answer ping but run nothing: check their logs and `celery-stack status` "
            "(a backlog, a stuck task, a worker on another Redis DB?)",
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    result.forget()
    if value != token:
        return Check("round trip", "fail", f"{ECHO_TASK} answered {value!r}, not the token")
    return Check(
        "round trip",
        "ok",
        f"{ECHO_TASK} on {queue} came back in {elapsed_ms:.0f} ms",
        data={"queue": queue, "elapsed_ms": round(elapsed_ms, 1)},
    )


def check_housekeeping(app: Celery, client: redis.Redis[bytes], settings: Settings) -> list[Check]:
    """The beat-driven health check's heartbeat, and the dead letters waiting for a look."""
    checks = []
    if "maintenance.health_check" in app.tasks:
        beat = last_heartbeat(client, settings)
        if beat is None:
            checks.append(
                Check(
                    "beat",
                    "warn",
                    f"no maintenance.health_check ran in the last {HEARTBEAT_TTL_S} s",
                    "start beat: `celery -A stack.celery_app beat` (or `celery-stack up`) and a "
                    "worker consuming the maintenance queue",
                )
            )
        else:
            age = time.time() - float(beat.get("at", 0))
            checks.append(
                Check("beat", "ok", f"last health check {age:.0f} s ago by {beat.get('worker')}")
            )
    dead = DeadLetterStore(client, settings).count()
    if dead:
        checks.append(
            Check(
                "dead letters",
                "warn",
                f"{dead} task(s) failed for good",
                "inspect with `celery-stack dlq list`, replay with `celery-stack dlq replay`",
            )
        )
    else:
        checks.append(Check("dead letters", "ok", "none"))
    return checks


def run_doctor(
    settings: Settings,
    environ: Mapping[str, str],
    load_app: Callable[[Settings], Celery] = app_factory.load_app,
) -> Report:
    """Every check; later ones are skipped when what they need already failed."""
    report = Report(check_config(settings, environ))
    try:
        app = load_app(settings)
    except StackError as exc:
        report.add(Check("celery app", "fail", str(exc), "fix STACK_CELERY_APP"))
        return report
    if ECHO_TASK not in app.tasks:
        report.add(Check("celery app", "fail", f"{ECHO_TASK} is not registered"))
        return report
    client = redis_client(settings, socket_timeout_s=REDIS_TIMEOUT_S)
    try:
        report.add(*check_redis_server(client, "redis"))
        if settings.result_backend != settings.broker_url:
            backend = redis_client(settings, settings.result_backend, REDIS_TIMEOUT_S)
            try:
                report.add(*check_redis_server(backend, "result backend"))
            finally:
                backend.close()
        if not report.ok:
            report.add(Check("workers", "skip", "Redis is down"))
            return report
        try:
            worker_checks, consumed = check_workers(app, settings)
            report.add(*worker_checks)
            if consumed:
                report.add(check_round_trip(app, consumed))
            else:
                reason = (
                    "no worker consumes our queues"
                    if worker_checks[0].level == "ok"
                    else ("no worker")
                )
                report.add(Check("round trip", "skip", reason))
            report.add(*check_housekeeping(app, client, settings))
        except DURING_CHECKS as exc:
            report.add(Check("redis", "fail", f"stopped answering during the checks ({exc})"))
    finally:
        client.close()
        app.close()
    return report
