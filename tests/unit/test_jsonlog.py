"""JSON log lines: one object per record, with service, level, extras and the exception."""

from __future__ import annotations

import json
import logging

from stack.jsonlog import JsonFormatter, RedactTaskData
from stack.settings import Settings


def record(**extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "stack.test", "levelno": 30, "levelname": "WARNING"})
    rec.msg, rec.args = "%d tasks waiting", (3,)
    rec.__dict__.update(extra)
    return rec


def test_a_record_is_one_json_object_with_service_level_logger_and_message():
    line = JsonFormatter("worker").format(record())
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["service"] == "worker" and entry["level"] == "warning"
    assert entry["logger"] == "stack.test" and entry["message"] == "3 tasks waiting"


def test_extras_are_kept_and_celerys_trace_data_names_the_task():
    data = {"id": "t-1", "name": "files.process_csv"}
    entry = json.loads(JsonFormatter().format(record(queue="default", data=data)))
    assert entry["queue"] == "default"
    assert entry["task_id"] == "t-1" and entry["task_name"] == "files.process_csv"


def test_an_exception_travels_in_the_same_line():
    rec = record()
    try:
        raise ValueError("bad row")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: bad row" in entry["exception"]


def test_task_arguments_and_results_are_redacted_but_the_task_stays_traceable():
    data = {"id": "t-1", "name": "shop.charge", "args": "['4242 4242']", "kwargs": "{}"}
    rec = logging.makeLogRecord({"name": "celery.worker.strategy", "levelno": 20})
    rec.msg, rec.args, rec.data = "Task %(name)s[%(id)s] received %(args)s", data, data

    assert RedactTaskData().filter(rec)

    assert rec.getMessage() == "Task shop.charge[t-1] received <redacted>"
    assert "4242" not in JsonFormatter().format(rec)


def test_redaction_follows_the_profile_unless_set():
    assert Settings.load(environ={"STACK_PROFILE": "production"}).redacts_logs
    assert not Settings.load(environ={}).redacts_logs
    assert Settings.load(environ={"STACK_LOG_REDACT": "true"}).redacts_logs
