"""JSON logs: one object per line, with the service, the level and the task id where there is one.

Log shippers (Cloud Logging, Loki, Elasticsearch) parse these without a
regex. ``STACK_LOG_FORMAT=json`` turns it on in every process of the stack:
the worker and beat (through Celery's ``setup_logging`` signal, so Celery
does not install its own handler), Flower (run with ``--logging=none`` so
tornado adds none), and the API (uvicorn's ``--log-config``, see
:func:`uvicorn_log_config`). Under the launcher, :class:`JsonLinePrinter`
wraps what is not JSON already (redis-server's own lines, the launcher's).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from celery import signals
from honcho.printer import Message, Printer

from stack.settings import Settings

# Celery's loggers for a task's "received" (its arguments) and "succeeded" (its result) lines.
TASK_DATA_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
TASK_DATA_FIELDS = frozenset({"args", "kwargs", "return_value"})
REDACTED = "<redacted>"
QUIET_LOGGERS = ("httpx", "httpcore")  # one INFO line per HTTP request (readiness probes)
# LogRecord attributes that are not user extras.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "data"}


class JsonFormatter(logging.Formatter):
    """A LogRecord as one JSON object: time, level, service, logger, message, task."""

    def __init__(self, service: str = "celery-stack") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_task_fields(record))
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _task_fields(record: logging.LogRecord) -> dict[str, str]:
    """The task a line is about: the one running here, or the one Celery's trace names."""
    from celery._state import get_current_task

    task = get_current_task()
    if task is not None and getattr(task.request, "id", None):
        return {"task_id": str(task.request.id), "task_name": str(task.name)}
    data = getattr(record, "data", None)  # celery.app.trace: "Task x[id] succeeded ..."
    if isinstance(data, dict) and data.get("id"):
        return {"task_id": str(data["id"]), "task_name": str(data.get("name", ""))}
    return {}


def configure(service: str, level: int | str = logging.INFO) -> None:
    """The root logger writes JSON lines to stderr, nothing else."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


class RedactTaskData(logging.Filter):
    """Leaves task arguments and results out of Celery's task lines (STACK_LOG_REDACT).

    Celery logs "received" with the arguments and "succeeded" with the return value, in
    the record's args and its ``data`` extra; both are replaced by REDACTED. The task's
    name and id stay, so a line can still be traced to the task's status.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and TASK_DATA_FIELDS & set(record.args):
            redacted = {k: REDACTED if k in TASK_DATA_FIELDS else v for k, v in record.args.items()}
            record.args = redacted
            if isinstance(getattr(record, "data", None), dict):
                record.data = redacted
        return True


def redact_task_data() -> None:
    """Put the filter on the loggers Celery writes task data with (once per process)."""
    for name in TASK_DATA_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTaskData) for f in logger.filters):
            logger.addFilter(RedactTaskData())


def install(settings: Settings) -> None:
    """Redact task data from logs when STACK_LOG_REDACT (default in production) says so, and
    log JSON in every process that builds a stack app, when STACK_LOG_FORMAT=json."""
    if settings.redacts_logs:
        redact_task_data()
    if settings.log_format != "json":
        return
    configure(settings.service_name)

    def on_setup_logging(loglevel: Any = None, **_: Any) -> None:
        configure(settings.service_name, loglevel or logging.INFO)

    # A connected receiver makes Celery skip its own logging set-up (worker, beat).
    signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid="stack.jsonlog")


def uvicorn_log_config(service: str = "api", level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn: its loggers and the root, as JSON."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "stack.jsonlog.JsonFormatter", "service": service}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            name: {"handlers": [], "level": level, "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class JsonLinePrinter(Printer):
    """honcho's Printer for the production profile: every output line a JSON object.

    A line that is a JSON object already passes unchanged (its ``service`` is
    the process's own); anything else is wrapped with the Procfile name as service.
    """

    def write(self, message: Message) -> None:
        if message.type != "line":
            raise RuntimeError('Printer can only process messages of type "line"')
        data = message.data
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        for line in text.splitlines():
            if not line.strip():
                continue
            print(_as_json_line(line, message), file=self.output, flush=True)


def _as_json_line(line: str, message: Message) -> str:
    if line.startswith("{"):
        try:
            if isinstance(json.loads(line), dict):
                return line
        except ValueError:
            pass
    when = message.time or datetime.now(UTC)
    return json.dumps(
        {
            "time": when.astimezone(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "service": (message.name or "system").strip(),
            "message": line,
        }
    )
