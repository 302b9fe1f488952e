"""Direct execution (``STACK_EXECUTION=direct|auto``): the seeds' rollback plan, without Celery.

A task submitted in direct mode never enters Redis: its function runs in the
submitting process, on a small thread pool (the API's requests return at once;
the CLI waits for it, or the interpreter's exit does), called as a plain
function. What that means, and what it does not have:

* no queue, no worker, no Redis: the task runs where it was submitted;
* once: no retry, no dead letter, no rate limit, no time limit (Celery's
  machinery is not in the path), exactly like the seeds' ``use_celery=False``;
* its status (``processing``, then ``success`` with the result or ``failure``
  with the error) lives in this process's memory, for the last
  :data:`MAX_RUNS` tasks: ``/task-status`` and ``submit --wait`` read it there,
  another process (a second API worker) does not see it, and a restart forgets it.

``auto`` uses Celery while the broker answers a PING and falls back to this,
logging a warning each time (:func:`broker_answers`).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from celery import Celery

from stack.connection import REDIS_ERRORS, redis_client
from stack.errors import SettingsError
from stack.settings import Settings

logger = logging.getLogger(__name__)

MAX_RUNS = 10_000  # statuses kept in memory, oldest dropped first
THREADS = 4  # tasks running at once in one process
PING_TIMEOUT_S = 0.5  # auto: a broker that does not answer this fast is down for this submit


@dataclass(frozen=True)
class Run:
    """One direct run as a status reader needs it."""

    status: str  # processing | success | failure
    result: Any = None
    error: str | None = None

    @property
    def info(self) -> Any:
        """What a result backend stores beside the state: the result, or the error."""
        return self.result if self.status == "success" else self.error


class Runs:
    """The statuses of this process's direct runs (thread-safe, bounded)."""

    def __init__(self, limit: int = MAX_RUNS) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def put(self, task_id: str, run: Run) -> None:
        with self._lock:
            self._runs[task_id] = run
            self._runs.move_to_end(task_id)
            while len(self._runs) > self._limit:
                self._runs.popitem(last=False)

    def get(self, task_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(task_id)


RUNS = Runs()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="stack-direct")
        return _pool


def refuse_in_production(settings: Settings) -> None:
    """Preflight refuses it at start; this refuses it in a process started another way."""
    if settings.profile == "production":
        raise SettingsError(
            f"STACK_EXECUTION={settings.execution} is refused in production: unset it "
            "(tasks go through Celery, with retries and dead letters)"
        )


def start(
    app: Celery,
    settings: Settings,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    task_id: str,
) -> str:
    """Run task ``name`` in this process (on the pool); its status is ``processing`` at once."""
    refuse_in_production(settings)
    RUNS.put(task_id, Run("processing"))
    _executor().submit(_run, app, name, list(args), dict(kwargs), task_id)
    return task_id


def _run(app: Celery, name: str, args: list[Any], kwargs: dict[str, Any], task_id: str) -> None:
    task = app.tasks[name]
    try:
        result = task(*args, **kwargs)  # a plain call: the task's function, no Celery lifecycle
    except Exception as exc:  # the task's own error is its outcome, as a worker would record
        message = str(exc)
        error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        RUNS.put(task_id, Run("failure", error=error))
        logger.warning("direct run of %s[%s] failed: %s", name, task_id, error)
        logger.debug("%s", traceback.format_exc())
        return
    RUNS.put(task_id, Run("success", result=result))


def broker_answers(settings: Settings) -> bool:
    """``auto``: whether the broker answers a PING within PING_TIMEOUT_S."""
    client = redis_client(settings, socket_timeout_s=PING_TIMEOUT_S)
    try:
        return bool(client.ping())
    except REDIS_ERRORS:
        return False
    finally:
        client.close()
