"""The one helpers module of the integration tests.

Accounting: submit a batch of tasks (`diagnostics.record` for chaos tests), then
prove that every one ended up succeeded or dead-lettered, and that none applied
its effect twice; waiting for a condition; and running pytest on a project of
its own, as its developers would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery, states

from stack.connection import redis_client
from stack.context import context_of
from stack.deadletter import DeadLetterStore
from stack.settings import Settings
from stack.submit import submit
from stack.tasks.diagnostics import EFFECTS_KEY, PIDS_KEY, RUNS_KEY

SETTLE_POLL_S = 0.1
POLL_S = 0.05
INNER_RUN_TIMEOUT_S = 120
# Variables of this run that must not leak into a project's own pytest run.
NOT_INHERITED = ("PYTEST_", "STACK_CELERY_APP", "PYTHONPATH", "REDIS_URL", "CELERY_")


@dataclass
class Accounting:
    """Where every submitted task ended up."""

    submitted: dict[str, str]  # task id -> token
    states: dict[str, str]  # task id -> Celery state (PENDING when no result yet)
    dead_lettered: set[str]
    runs: dict[str, int]  # token -> executions started
    effects: dict[str, int]  # token -> effects applied
    pids: dict[str, int]  # token -> pid of the process that started it last

    @property
    def succeeded(self) -> set[str]:
        return {tid for tid, state in self.states.items() if state == "SUCCESS"}

    @property
    def settled(self) -> bool:
        """Every task succeeded, or is dead-lettered with its FAILURE recorded by Celery."""
        failed = {tid for tid in self.dead_lettered if self.states.get(tid) == states.FAILURE}
        return self.succeeded | failed == set(self.submitted)

    @property
    def in_flight(self) -> dict[str, int]:
        """Tasks started but without a result yet: task id -> pid of the process running it."""
        return {
            tid: self.pids[token]
            for tid, token in self.submitted.items()
            if self.runs.get(token)
            and self.states[tid] not in states.READY_STATES
            and tid not in self.dead_lettered
            and token in self.pids
        }

    @property
    def reruns(self) -> int:
        """Executions beyond the first, summed over tokens (redeliveries that ran)."""
        return sum(max(0, n - 1) for n in self.runs.values())

    def summary(self) -> str:
        pending = set(self.submitted) - self.succeeded - self.dead_lettered
        by_state: dict[str, int] = {}
        for tid in pending:
            by_state[self.states.get(tid, "PENDING")] = by_state.get(self.states[tid], 0) + 1
        return (
            f"submitted {len(self.submitted)}, succeeded {len(self.succeeded)}, "
            f"dead-lettered {len(self.dead_lettered)}, unaccounted {len(pending)} {by_state}, "
            f"reruns {self.reruns}"
        )

    def assert_every_task_accounted_for(self) -> None:
        """succeeded + dead-lettered = submitted, and no task is both."""
        assert not (self.succeeded & self.dead_lettered), self.summary()
        assert len(self.succeeded) + len(self.dead_lettered) == len(self.submitted), self.summary()

    def assert_no_effect_applied_twice(self) -> None:
        """Every succeeded task applied its effect exactly once; none applied it twice."""
        twice = {token: n for token, n in self.effects.items() if n > 1}
        assert not twice, f"effects applied more than once: {twice}"
        missing = [
            self.submitted[tid]
            for tid in self.succeeded
            if not self.effects.get(self.submitted[tid])
        ]
        assert not missing, f"succeeded without their effect: {missing}"


@dataclass
class Batch:
    """Tasks submitted by one test, and how to read back where they ended up."""

    app: Celery
    settings: Settings
    dead_letters: Any = None  # a DeadLetterStore, when the test wants dead letters counted
    submitted: dict[str, str] = field(default_factory=dict)

    def submit_records(self, count: int, seconds: float = 0.05, **options: Any) -> list[str]:
        """Submit ``count`` `diagnostics.record` tasks; return their ids."""
        ids = []
        for _ in range(count):
            token = uuid.uuid4().hex
            task_id = submit(
                self.app, "diagnostics.record", [token], {"seconds": seconds}, **options
            )
            self.submitted[task_id] = token
            ids.append(task_id)
        return ids

    def add(self, task_id: str, token: str | None = None) -> str:
        """Count a task submitted some other way (its token: the id itself if none)."""
        self.submitted[task_id] = token or task_id
        return task_id

    def results(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """The result-backend record of each task (None: no result yet)."""
        client = redis_client(self.settings)
        try:
            keys = [self.app.backend.get_key_for_task(tid).decode() for tid in ids]
            raw = client.mget(keys) if keys else []
        finally:
            client.close()
        return {
            tid: json.loads(value) if value else None for tid, value in zip(ids, raw, strict=True)
        }

    def worker_of(self, task_id: str) -> str | None:
        """The hostname of the worker that stored the task's result."""
        meta = self.results([task_id])[task_id]
        return None if meta is None else meta.get("worker")

    def account(self) -> Accounting:
        ids = list(self.submitted)
        states = {
            tid: meta["status"] if meta else "PENDING" for tid, meta in self.results(ids).items()
        }
        client = redis_client(self.settings)
        try:
            prefix = self.settings.key_prefix
            runs = {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}{RUNS_KEY}").items()}
            effects = {
                k.decode(): int(v) for k, v in client.hgetall(f"{prefix}{EFFECTS_KEY}").items()
            }
            pids = {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}{PIDS_KEY}").items()}
        finally:
            client.close()
        dead = set()
        if self.dead_letters is not None:
            dead = {tid for tid in ids if self.dead_letters.find_by_task(tid) is not None}
        return Accounting(dict(self.submitted), states, dead, runs, effects, pids)

    def settle(self, timeout_s: float = 45.0) -> Accounting:
        """Wait until every task succeeded or was dead-lettered; fail naming what is missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            accounting = self.account()
            if accounting.settled or time.monotonic() > deadline:
                break
            time.sleep(SETTLE_POLL_S)
        assert accounting.settled, f"not settled after {timeout_s:g} s: {accounting.summary()}"
        return accounting

    def wait_until(
        self, condition: Callable[[Accounting], bool], timeout_s: float = 20.0
    ) -> Accounting:
        """Poll the accounting until ``condition`` holds (e.g. some tasks done)."""
        deadline = time.monotonic() + timeout_s
        while True:
            accounting = self.account()
            if condition(accounting):
                return accounting
            assert time.monotonic() < deadline, f"condition not met: {accounting.summary()}"
            time.sleep(SETTLE_POLL_S / 2)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


def wait_accounted(
    app: Celery, store: DeadLetterStore, task_ids: list[str], timeout_s: float = 60
) -> Accounting:
    """Wait until every task succeeded or was dead-lettered; return the accounting."""
    batch = Batch(app, context_of(app).settings, store)
    for task_id in task_ids:
        batch.add(task_id)
    return batch.settle(timeout_s)


def write_project(root: Path, files: Mapping[str, str]) -> Path:
    """Write a project's files (dedented) under ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def run_pytest(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``project`` in its own process, as its developers would run it.

    Its own process group: on a timeout, the group is killed, the workers it
    started included (a killed pytest cannot stop them itself).
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rA",
        str(project / "tests"),
    ]
    with subprocess.Popen(
        command,
        cwd=project,
        env={**inherited, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=INNER_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += f"\n[killed after {INNER_RUN_TIMEOUT_S} s]"
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
