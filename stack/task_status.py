"""TaskStatus: what happened to a task, in the seed's shape, for the API and the CLI alike.

Celery's states are mapped onto the seed's vocabulary in one table; a task that
ended in the dead letters is looked up in the dead-letter store, because Celery
itself only knows it as FAILURE.

A result is whatever the task returned, stored by kombu's JSON (which writes
NaN and Infinity, unlike JSON): :func:`wire_value` makes it something every JSON
reader takes, so ``/task-status`` always answers (a NaN used to come back as
null, a lone surrogate as a 500).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from celery import Celery
from pydantic import BaseModel

from stack import direct
from stack.connection import translated
from stack.context import context_of

StatusName = Literal["pending", "processing", "success", "failure", "retrying", "dead_lettered"]

# Celery state -> the seed's status. RECEIVED/STARTED need task_track_started (on).
STATE_TO_STATUS: dict[str, StatusName] = {
    "PENDING": "pending",
    "RECEIVED": "processing",
    "STARTED": "processing",
    "RETRY": "retrying",
    "SUCCESS": "success",
    "FAILURE": "failure",
    "REVOKED": "failure",
    "REJECTED": "failure",
    "IGNORED": "failure",
}


class TaskStatus(BaseModel):
    """The seed's shape; ``status`` is one of StatusName."""

    task_id: str
    status: StatusName
    result: Any = None
    error: str | None = None


NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}  # proto3's JSON names


def wire_value(value: Any) -> Any:
    """``value`` with every NaN, Infinity and -Infinity as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers; null would lose them).

    Everything else is unchanged: strings with lone surrogates stay, for the API
    writes them as ``\\ud800`` escapes, which JSON does carry faithfully.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return NON_FINITE[str(value)]
    if isinstance(value, dict):
        return {key: wire_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(item) for item in value]
    return value


def status_of_state(state: str) -> StatusName:
    """The seed's status for a Celery state (unknown custom states count as processing)."""
    return STATE_TO_STATUS.get(state.upper(), "processing")


def describe_error(info: Any) -> str | None:
    """An exception stored by the result backend as ``Type: message``."""
    if info is None:
        return None
    if isinstance(info, BaseException):
        message = str(info)
        name = type(info).__name__
        return f"{name}: {message}" if message else name
    return str(info)


def build_status(task_id: str, state: str, info: Any, dead_letter_error: str | None) -> TaskStatus:
    """Pure mapping from what the backend stored to the seed's shape."""
    if dead_letter_error is not None:
        return TaskStatus(task_id=task_id, status="dead_lettered", error=dead_letter_error)
    status = status_of_state(state)
    if status == "success":
        return TaskStatus(task_id=task_id, status=status, result=wire_value(info))
    if status in ("failure", "retrying"):
        return TaskStatus(task_id=task_id, status=status, error=describe_error(info))
    return TaskStatus(task_id=task_id, status=status)


def task_status(app: Celery, task_id: str) -> TaskStatus:
    """Read a task's status from the result backend (and the dead-letter store).

    An id Celery never saw is ``pending``, as in Celery: the backend cannot tell
    "queued" from "unknown". Raises BrokerUnavailable when Redis does not answer.
    A task run directly (STACK_EXECUTION=direct or auto) is read from this process's
    memory (:mod:`stack.direct`); in direct mode Redis is never asked.
    """
    context = context_of(app)
    if context.settings.execution != "celery":
        run = direct.RUNS.get(task_id)
        if run is not None:  # ran in this process (STACK_EXECUTION=direct, or auto's fallback)
            return build_status(task_id, run.status.upper(), run.info, None)
        if context.settings.execution == "direct":  # no Redis to ask: as Celery, unknown
            return TaskStatus(task_id=task_id, status="pending")
    with translated(context.settings.result_backend, "the status query", "CELERY_RESULT_BACKEND"):
        # The result first: a worker stores the dead letter before Celery records FAILURE, so
        # a FAILURE read here always finds its dead letter (the other order could miss both).
        meta = app.backend.get_task_meta(task_id, cache=False)  # one read: state, info agree
        record = context.dead_letters.find_by_task(task_id)
    dead = None if record is None else record.error
    return build_status(task_id, str(meta["status"]), meta.get("result"), dead)
