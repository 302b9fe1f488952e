"""Locust users for a celery-stack: through the HTTP API and straight into Celery.

Run by ``celery-stack load`` or by plain Locust::

    locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 20s --host http://127.0.0.1:8001

Request types in the statistics: ``POST /tasks`` and ``GET /task-status/[id]``
(HTTP), ``ENQUEUE`` (``submit()`` until Redis stored the message) and ``E2E``
(submit until the result exists; names start with ``http`` or ``celery``).
Gates (``--max-p95-ms`` ...) are judged when Locust quits and set its exit
code. This file is an edge: it reads the settings from the environment.

Gevent: Locust monkey-patches the process, so redis-py and kombu sockets yield
to the hub; Celery results are awaited through ``ResultWatcher`` (pub/sub, one
greenlet), never ``AsyncResult.get()``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import redis
from celery import Celery
from locust import FastHttpUser, User, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from stack.app_factory import load_app
from stack.connection import redis_client
from stack.errors import LoadTestFailed, StackError
from stack.loadtest.depth import DEPTH_INTERVAL_S, DepthLog
from stack.loadtest.gates import E2E, ENQUEUE, Gates, Verdict, evaluate, measure, summary_rows
from stack.loadtest.profiles import (
    DEFAULT_PROFILE,
    LoadProfile,
    TaskMix,
    UserKind,
    load_profile,
    misfits,
)
from stack.loadtest.watcher import ResultWatcher, TaskFailed
from stack.queues import queue_depths
from stack.settings import Settings
from stack.submit import submit

__all__ = ["ApiTaskUser", "CeleryTaskUser"]

log = logging.getLogger("celery-stack.load")

POLL_BACKOFF = 1.5  # HTTP status polls slow down by this factor ...
POLL_MAX_S = 0.5  # ... up to this interval, so polling never dominates the API's load
TERMINAL_HTTP = {"success": True, "failure": False, "dead_lettered": False}


# --- command line: gates and profile, also settable by environment variables ----------


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("celery-stack", "task mix and pass/fail gates")
    group.add_argument(
        "--stack-profile",
        default=DEFAULT_PROFILE,
        env_var="STACK_LOAD_PROFILE",
        help="load profile: a built-in name (mixed, diagnostics, step, spike) or a .toml/.json",
    )
    gates = Gates()
    for option, default, kind, help_ in (
        ("--max-p95-ms", gates.max_p95_ms, float, "end-to-end p95 latency limit"),
        ("--max-p99-ms", gates.max_p99_ms, float, "end-to-end p99 latency limit"),
        ("--max-fail-ratio", gates.max_fail_ratio, float, "failed requests / all requests"),
        ("--min-tasks-per-s", gates.min_tasks_per_s, float, "completed tasks per second"),
        ("--max-final-depth", None, int, "tasks waiting at the end (default: the users)"),
    ):
        group.add_argument(
            option,
            type=kind,
            default=default,
            env_var="STACK_LOAD_" + option.removeprefix("--").replace("-", "_").upper(),
            help=f"gate: {help_} (default {default})",
        )
    group.add_argument(
        "--verdict-file",
        default=None,
        env_var="STACK_LOAD_VERDICT_FILE",
        help="write the gates' verdict as JSON here (default: next to --csv files)",
    )


# --- the run's shared state --------------------------------------------------------


@dataclass
class LoadRun:
    """Everything a run shares: settings, profile, app, watcher, depth samples."""

    settings: Settings
    profile: LoadProfile
    gates: Gates
    app: Celery | None = None
    watcher: ResultWatcher | None = None
    depth: DepthLog = field(default_factory=DepthLog)
    sampler: gevent.Greenlet | None = None
    started: float | None = None
    stopped: float | None = None
    peak_users: int = 0
    rng: random.Random = field(default_factory=random.Random)


def run_of(environment: Environment) -> LoadRun:
    """The run's state, which ``_prepare`` put on Locust's environment (Locust's own hook)."""
    run = environment.stack_load
    if not isinstance(run, LoadRun):
        raise LoadTestFailed("the load run was not prepared: Locust's init event did not run")
    return run


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    """Build the run's state; a bad profile or settings ends Locust with the message, no trace."""
    try:
        _prepare(environment)
    except StackError as exc:
        raise SystemExit(f"celery-stack load: error: {exc}") from None


def _prepare(environment: Environment) -> None:
    options = environment.parsed_options
    settings = Settings.load()
    profile = load_profile(options.stack_profile if options else None)
    gates = (
        Gates(
            max_p95_ms=options.max_p95_ms,
            max_p99_ms=options.max_p99_ms,
            max_fail_ratio=options.max_fail_ratio,
            min_tasks_per_s=options.min_tasks_per_s,
            max_final_depth=options.max_final_depth,
        )
        if options
        else Gates()
    )
    run = LoadRun(settings, profile, gates)
    environment.stack_load = run
    kinds: tuple[tuple[type[User], UserKind], ...] = (
        (ApiTaskUser, "http"),
        (CeleryTaskUser, "celery"),
    )
    for user_class, kind in kinds:
        user_class.weight = profile.weight_of(kind)
        user_class.wait_time = between(*profile.think_time_s)
    environment.user_classes = [u for u in environment.user_classes if u.weight > 0]
    if not isinstance(environment.runner, MasterRunner):
        run.app = load_app(settings)
        _pay_lazy_imports(run.app)
        problems = misfits(profile, run.app.tasks)
        if problems:
            raise StackError(
                f"load profile {profile.name!r} does not fit the Celery app:\n  "
                + "\n  ".join(problems)
                + "\nfix the profile, pick another (e.g. the built-in diagnostics), "
                "or set STACK_CELERY_APP to the app that defines these tasks"
            )
        run.watcher = ResultWatcher(environment.events.request.fire, run.app, settings)


def _pay_lazy_imports(app: Celery) -> None:
    """Import the broker transport, the producer pool and the result backend now: Locust's
    --run-time clock starts with the first user, and a CPU-bound import in a greenlet blocks
    every user (on a loaded host, a 2 s run spent its whole budget importing)."""
    with app.connection_for_write() as connection:
        connection.transport  # noqa: B018 - the property imports and builds the transport
    app.amqp.producer_pool  # noqa: B018
    app.backend  # noqa: B018


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    run = run_of(environment)
    run.started, run.stopped = time.perf_counter(), None
    if run.watcher is not None:
        run.watcher.start(run.profile.result_timeout_s)
    if not isinstance(environment.runner, WorkerRunner):
        run.sampler = gevent.spawn(_sample_depth, environment, run)


def _sample_depth(environment: Environment, run: LoadRun) -> None:
    """Record the summed queue depth every DEPTH_INTERVAL_S until the test stops."""
    client = redis_client(run.settings)
    try:
        while True:
            _take_sample(environment, run, client)
            gevent.sleep(DEPTH_INTERVAL_S)
    finally:
        client.close()


def _take_sample(environment: Environment, run: LoadRun, client: redis.Redis[bytes]) -> None:
    runner = environment.runner
    run.peak_users = max(run.peak_users, runner.user_count if runner else 0)
    try:
        depths = queue_depths(client, run.settings)
    except redis.RedisError as exc:
        log.warning("queue depth not sampled: %s", exc)
        return
    run.depth.record(time.perf_counter() - (run.started or 0.0), depths)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    _finish_run(environment)


def _finish_run(environment: Environment) -> None:
    """Stop sampling with one last sample (the final depth); idempotent."""
    run = run_of(environment)
    if run.started is None or run.stopped is not None:
        return
    run.stopped = time.perf_counter()
    if run.sampler is not None:
        run.sampler.kill(block=True, timeout=2)
        run.sampler = None
        client = redis_client(run.settings)
        try:
            _take_sample(environment, run, client)
        finally:
            client.close()
    if run.watcher is not None:
        run.watcher.stop()


@events.quitting.add_listener
def _judge(environment: Environment, **_: Any) -> None:
    """Judge the gates and set Locust's exit code: 0 when every gate passed, else 1."""
    run: LoadRun | None = getattr(environment, "stack_load", None)
    if run is None or run.started is None or isinstance(environment.runner, WorkerRunner):
        return  # a worker's stats are the master's to judge; no test ran, nothing to judge
    _finish_run(environment)
    options = environment.parsed_options
    duration_s = (run.stopped or time.perf_counter()) - (run.started or time.perf_counter())
    entries = list(environment.stats.entries.values())
    depth = run.depth.summary()
    measures = measure(entries, duration_s, depth["end"])
    users = max(run.peak_users, getattr(options, "num_users", None) or 0)
    verdict = Verdict(
        measures=measures,
        results=evaluate(run.gates, measures, users),
        rows=summary_rows(entries, duration_s),
        depth=depth,
        info={
            "profile": run.profile.name,
            "users": users,
            "host": environment.host,
            "unfinished": len(run.watcher.pending) if run.watcher else 0,
        },
    )
    prefix = getattr(options, "csv_prefix", None)
    if prefix:
        run.depth.write_csv(Path(f"{prefix}_queue_depth.csv"))
    verdict_file = getattr(options, "verdict_file", None) or (
        f"{prefix}_verdict.json" if prefix else None
    )
    if verdict_file:
        Path(verdict_file).parent.mkdir(parents=True, exist_ok=True)
        Path(verdict_file).write_text(json.dumps(verdict.to_dict(), indent=2), encoding="utf-8")
    for result in verdict.results:
        (log.info if result.passed else log.error)(result.describe())
    environment.process_exit_code = 0 if verdict.passed else 1


# --- the users ---------------------------------------------------------------------


class ApiTaskUser(FastHttpUser):
    """Submits through ``POST /tasks`` and polls ``GET /task-status/{id}`` until it ends."""

    wait_time = between(0.0, 0.1)

    @task
    def submit_and_poll(self) -> None:
        run = run_of(self.environment)
        mix = run.profile.pick(run.rng)
        headers = (
            {"X-API-Key": run.settings.api_key.get_secret_value()} if run.settings.api_key else {}
        )
        started = time.perf_counter()
        body = {
            "name": mix.name,
            "args": mix.args,
            "kwargs": mix.kwargs,
            "priority": mix.priority,
            "queue": mix.queue,
        }
        with self.client.post(
            "/tasks", json=body, headers=headers, catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            task_id = response.json()["task_id"]
        if run.profile.wait_for_result:
            self._poll(run, task_id, mix, started, headers)

    def _poll(
        self, run: LoadRun, task_id: str, mix: TaskMix, started: float, headers: dict[str, str]
    ) -> None:
        interval = run.profile.poll_interval_s
        deadline = started + run.profile.result_timeout_s
        outcome: str | None = None
        while outcome is None:
            gevent.sleep(interval)
            interval = min(interval * POLL_BACKOFF, POLL_MAX_S)
            with self.client.get(
                f"/task-status/{task_id}",
                name="/task-status/[id]",
                headers=headers,
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                else:
                    status = response.json().get("status")
                    if status in TERMINAL_HTTP:
                        outcome = status
                        ok, error = TERMINAL_HTTP[status], response.json().get("error")
            if outcome is None and time.perf_counter() > deadline:
                outcome, ok, error = (
                    "timeout",
                    False,
                    f"no result within {run.profile.result_timeout_s:g} s",
                )
        self.environment.events.request.fire(
            request_type=E2E,
            name=f"http {mix.label}",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=None if ok else TaskFailed(f"{outcome}: {error}"),
            context={},
        )


class CeleryTaskUser(User):
    """Publishes with ``stack.submit.submit`` (no HTTP); times enqueue and end to end apart."""

    wait_time = between(0.0, 0.1)

    @task
    def submit_and_wait(self) -> None:
        run = run_of(self.environment)
        assert run.app is not None and run.watcher is not None
        mix = run.profile.pick(run.rng)
        name = f"celery {mix.label}"
        started = time.perf_counter()
        try:
            task_id = submit(run.app, mix.name, mix.args, mix.kwargs, mix.priority, mix.queue)
        except StackError as exc:
            self._fire(ENQUEUE, name, started, exc)
            return
        self._fire(ENQUEUE, name, started, None)
        done = run.watcher.track(task_id, name, started)
        if run.profile.wait_for_result:
            done.wait()

    def _fire(self, kind: str, name: str, started: float, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exc,
            context={},
        )
