"""A service's life inside one launch: its state and what the loop knows of it."""

from __future__ import annotations

import dataclasses
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stack.launcher.restart import Budget
from stack.launcher.services import Service

TAIL_LINES = 30  # log lines kept per service (across restarts), shown when it fails


class State(StrEnum):
    """Where a service is in its life; the table shows the value."""

    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    EXTERNAL = "external"
    RESTARTING = "restarting"  # exited after ready: waiting out its backoff
    EXITED = "exited"  # ended cleanly after ready and its policy keeps it down
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    KILLED = "killed"
    DONE = "done"  # a one-shot line (stack.launcher.once) that ran to completion


@dataclass
class Running:
    """A service's life inside one launch."""

    service: Service
    budget: Budget
    readiness: Any = None  # the probe of this instance: the service's, renewed at each restart
    state: State = State.PENDING
    process: Any = None
    pid: int | None = None
    tree: Any = None
    colour: str | None = None  # the same colour across restarts
    returncode: int | None = None
    started_at: float | None = None
    spawned_wall: float = 0.0  # epoch s, for what a dead instance held (Redis scores by it)
    ready_after_s: float | None = None
    ever_ready: bool = False
    restart_at: float | None = None
    reclaim: Future[str] | None = None
    stopping_at: float | None = None
    last_probe_at: float = 0.0
    probe: Future[bool] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    # On command (control socket, reload): a start that fails marks it failed, the stack runs on.
    manual: bool = False
    then_start: bool = False  # stopping for a restart: start again once it exited
    removing: bool = False  # a scaled-down copy: forgotten once it exited
    starts: int = 0  # processes started (restarts: one less)
    spawned_at: float | None = None  # monotonic, of the current process (uptime)

    def __post_init__(self) -> None:
        if self.readiness is None:
            self.readiness = self.service.probe

    @property
    def up(self) -> bool:
        return self.state in (State.READY, State.EXTERNAL, State.DONE)

    @property
    def exited(self) -> bool:
        return self.returncode is not None


def renewed(probe: Any) -> Any:
    """The same probe as new, for a restarted process: what it saw of the dead one
    (a log line, a file written since the launch, a first check) must not count.

    Its own ``reset()`` when it has one; else a dataclass rebuilt from its init
    fields, where a field with a default factory (``FileWritten.since``) and
    every non-init field (``LogLine._seen``, ``StayedUp._first``) start afresh.
    """
    reset = getattr(probe, "reset", None)
    if callable(reset):
        reset()
        return probe
    if not dataclasses.is_dataclass(probe) or isinstance(probe, type):
        return probe
    kwargs = {}
    for f in dataclasses.fields(probe):
        if not f.init or f.default_factory is not dataclasses.MISSING:
            continue
        value = getattr(probe, f.name)
        if isinstance(value, tuple) and all(hasattr(v, "check") for v in value):
            value = tuple(renewed(v) for v in value)  # AnyOf's probes
        kwargs[f.name] = value
    return type(probe)(**kwargs)
