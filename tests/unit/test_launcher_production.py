import json
import logging
from datetime import datetime

from honcho.printer import Message

from stack.jsonlog import JsonFormatter, JsonLinePrinter, uvicorn_log_config
from stack.launcher.production import (
    MAX_TASKS_PER_CHILD,
    WORKER_CONCURRENCY,
    api_workers,
    flower_env,
    production_commands,
    production_overrides,
    uvicorn_log_config_path,
)
from stack.settings import Settings

SECRET = "s3cr3t-but-long-enough-0123456789"


def load(**env: str) -> Settings:
    return Settings.load(environ=env)


def test_production_defaults_apply_where_the_operator_set_nothing():
    overrides = production_overrides(load())
    assert overrides["STACK_WORKER_CONCURRENCY"] == str(WORKER_CONCURRENCY)
    assert overrides["STACK_WORKER_MAX_TASKS_PER_CHILD"] == str(MAX_TASKS_PER_CHILD)
    assert overrides["STACK_LOG_FORMAT"] == "json"
    assert float(overrides["STACK_WORKER_SOFT_SHUTDOWN_TIMEOUT"]) > 0


def test_the_operators_own_values_win_over_production_defaults():
    overrides = production_overrides(load(STACK_WORKER_CONCURRENCY="8"))
    assert "STACK_WORKER_CONCURRENCY" not in overrides


def test_api_workers_default_to_one_per_core_unless_set(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert api_workers(load()) == 6
    assert api_workers(load(STACK_API_WORKERS="1")) == 1


def test_production_commands_replace_only_the_stacks_own_lines():
    commands = production_commands(
        load(), {"api": "uvicorn x", "beat": "celery beat", "mine": "python mine.py"}
    )
    assert "--workers" in commands["api"] and "--log-config" in commands["api"]
    assert "stack.beat:LockedScheduler" in commands["beat"]
    assert commands["mine"] == "python mine.py"
    assert set(commands) == {"api", "beat", "mine"}


def test_flower_secrets_go_to_its_environment_not_its_command_line():
    settings = load(STACK_FLOWER_BASIC_AUTH=f"ops:{SECRET}", STACK_FLOWER_COOKIE_SECRET=SECRET)
    assert flower_env(settings) == {
        "FLOWER_BASIC_AUTH": f"ops:{SECRET}",
        "FLOWER_COOKIE_SECRET": SECRET,
    }
    assert SECRET not in production_commands(settings, {"flower": "x"})["flower"]


def test_the_shipped_uvicorn_log_config_matches_the_code():
    assert json.loads(uvicorn_log_config_path().read_text()) == uvicorn_log_config()


def test_json_formatter_writes_one_object_with_service_and_level():
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "WARNING", "msg": "hello %s", "args": ("you",)}
    )
    line = JsonFormatter("worker").format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert (entry["service"], entry["level"], entry["message"]) == (
        "worker",
        "warning",
        "hello you",
    )


def test_json_formatter_takes_the_task_id_from_celerys_trace_data():
    record = logging.makeLogRecord(
        {"name": "celery.app.trace", "msg": "done", "data": {"id": "abc", "name": "t"}}
    )
    entry = json.loads(JsonFormatter("worker").format(record))
    assert (entry["task_id"], entry["task_name"]) == ("abc", "t")


def test_json_line_printer_wraps_plain_lines_and_keeps_json_ones(tmp_path):
    out = (tmp_path / "out").open("w+")
    printer = JsonLinePrinter(out, prefix=False)
    printer.write(
        Message(
            "line",
            b'{"service": "api", "level": "info"}\nplain text\n',
            datetime.now(),
            "redis",
            None,
        )
    )
    out.seek(0)
    first, second = (json.loads(line) for line in out.read().splitlines())
    assert first == {"service": "api", "level": "info"}
    assert (second["service"], second["message"]) == ("redis", "plain text")
