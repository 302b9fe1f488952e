"""Shared by the reliability tests: wait for outcomes, and account for every task submitted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from celery import Celery

from stack.deadletter import DeadLetterStore

POLL_S = 0.05


@dataclass
class Accounting:
    submitted: int
    succeeded: list[str]
    dead_lettered: list[str]

    @property
    def balanced(self) -> bool:
        return len(self.succeeded) + len(self.dead_lettered) == self.submitted


def account(app: Celery, store: DeadLetterStore, task_ids: Iterable[str]) -> Accounting:
    """Which submitted tasks succeeded and which are in the dead letters (each counted once)."""
    ids = list(task_ids)
    succeeded, dead = [], []
    for task_id in ids:
        state = app.backend.get_task_meta(task_id, cache=False)["status"]
        record = store.find_by_task(task_id)
        if state == "SUCCESS" and record is None:
            succeeded.append(task_id)
        elif record is not None and state == "FAILURE":
            dead.append(task_id)
    return Accounting(len(ids), succeeded, dead)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


def wait_accounted(
    app: Celery, store: DeadLetterStore, task_ids: Iterable[str], timeout_s: float = 60
) -> Accounting:
    """Wait until every task succeeded or was dead-lettered; return the accounting."""
    ids = list(task_ids)
    wait_until(lambda: account(app, store, ids).balanced, timeout_s, f"{len(ids)} outcomes")
    return account(app, store, ids)
