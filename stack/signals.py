"""Signals of the reliability kit, for metrics and logs (Celery's dispatch, sender = task name).

Connect a receiver like any Celery signal::

    from stack import signals

    @signals.task_dead_lettered.connect
    def count(sender: str, record, **kwargs): ...

Receivers run in the process that emits: a worker's pool child for every
signal, except ``task_dead_lettered`` for a hard time limit, which the worker's
main process emits. A receiver that raises is logged and ignored.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

# A failed attempt will run again after ``countdown_s`` (``attempt``: the one that failed, from 1).
task_retry_scheduled = Signal(
    name="stack.task_retry_scheduled",
    providing_args={"task_id", "attempt", "countdown_s", "exception"},
)

# A task failed for good and its DeadLetter ``record`` was stored (``record.reason`` says why).
task_dead_lettered = Signal(name="stack.task_dead_lettered", providing_args={"record"})

# The global rate limit deferred a task by ``wait_s`` (not a failure, not a retry).
task_rate_limited = Signal(name="stack.task_rate_limited", providing_args={"task_id", "wait_s"})
