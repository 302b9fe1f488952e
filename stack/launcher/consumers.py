"""Before `up` prints its table: the app's queues that no worker of the stack consumes.

A task sent to a queue nobody consumes stays PENDING for ever, with no error
anywhere. Once every service is ready, the launcher asks its own workers (by the
hostnames their readiness pinged) which queues they consume (``inspect
active_queues``, answered in milliseconds; ``limit`` stops the wait at the last
reply) and names each queue the app sends to that none of them consumes, with
where the app names it and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stack.discovery import unconsumed
from stack.settings import Settings

INSPECT_TIMEOUT_S = 2.0  # ready workers answer in ms; a busy machine may take a while


@dataclass(frozen=True)
class QueueCheck:
    """The queues the app sends to (queue -> where the app names it), against the queues
    the stack's workers (``hostnames``) consume."""

    settings: Settings
    queues: Mapping[str, Sequence[str]]
    hostnames: tuple[str, ...]
    timeout_s: float = INSPECT_TIMEOUT_S

    def __call__(self) -> list[str]:
        """One line per unconsumed queue (empty: every queue has a consumer)."""
        consumed = active_queues(self.settings, self.hostnames, self.timeout_s)
        return describe(self.queues, self.hostnames, consumed)


def describe(
    queues: Mapping[str, Sequence[str]],
    hostnames: Sequence[str],
    consumed: Mapping[str, Sequence[str]],
) -> list[str]:
    """The warning lines for ``consumed`` (worker hostname -> its queues); pure."""
    silent = [host for host in hostnames if host not in consumed]
    if silent:
        return [
            f"could not check which queues are consumed: {', '.join(silent)} did not answer "
            "`inspect active_queues`"
        ]
    taken = [name for names in consumed.values() for name in names]
    workers = ", ".join(f"{host} (-Q {','.join(consumed[host])})" for host in hostnames)
    return [
        f"queue {queue!r} is consumed by no worker of this stack ({workers}): tasks sent "
        f"there stay PENDING for ever (the app sends to it from {', '.join(queues[queue])}); "
        "add it to a worker's -Q"
        for queue in unconsumed(queues, taken)
    ]


def active_queues(
    settings: Settings, hostnames: Sequence[str], timeout_s: float
) -> dict[str, list[str]]:
    """Worker hostname -> the queue names it consumes, for the workers that answered."""
    from celery import Celery

    from stack.app_factory import broker_settings

    app = Celery("celery-stack-up", set_as_current=False)
    app.conf.update(broker_settings(settings))
    try:
        inspect = app.control.inspect(
            destination=list(hostnames), timeout=timeout_s, limit=len(hostnames)
        )
        replies: dict[str, Any] = inspect.active_queues() or {}
    finally:
        app.close()
    return {host: [str(q["name"]) for q in queues] for host, queues in replies.items()}
