import json
import logging
import stat
from datetime import datetime
from pathlib import Path

from honcho.printer import Message

from stack.jsonlog import JsonFormatter, JsonLinePrinter, uvicorn_log_config
from stack.launcher.procfile import load_procfile
from stack.launcher.production import (
    MAX_TASKS_PER_CHILD,
    WORKER_CONCURRENCY,
    api_workers,
    flower_env,
    production_commands,
    production_overrides,
    production_services,
    uvicorn_log_config_path,
)
from stack.launcher.services import child_env
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"

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


def test_production_flower_runs_through_stack_flower_which_guards_its_metrics():
    flower = production_commands(load(), {"flower": "celery -A x flower"})["flower"]
    assert flower.startswith("python -m stack.flower -A stack.celery_app flower ")


def production_env(tmp_path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin",
        "STACK_DATA_DIR": str(tmp_path / "data"),
        "STACK_REDIS_PASSWORD": SECRET,
        "STACK_FLOWER_BASIC_AUTH": f"ops:{SECRET}2",
        "STACK_FLOWER_COOKIE_SECRET": f"{SECRET}3",
        "STACK_API_KEY": f"{SECRET}4",
    }


def test_production_redis_runs_from_a_private_data_dir_with_no_secret_in_sight(tmp_path):
    environ = production_env(tmp_path)
    settings = Settings.load(environ=environ)
    services = {s.name: s for s in production_services(settings, load_procfile(REPO_PROCFILE))}
    redis = services["redis"]
    assert redis.command.startswith("umask 077 && exec ") and SECRET not in redis.command
    env = child_env(settings, environ, redis)
    assert SECRET not in "\0".join(env.values())
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "redis.conf").stat().st_mode) == 0o600
    flower = child_env(settings, environ, services["flower"])
    assert flower["FLOWER_BASIC_AUTH"] == f"ops:{SECRET}2"
    assert "STACK_API_KEY" not in flower


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
