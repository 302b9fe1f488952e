import stat
from pathlib import Path

import pytest

from stack.errors import ServiceFailed
from stack.redis_command import (
    REDIS_CONFIG,
    config_quoted,
    private_data_dir,
    redis_foreground_command,
    redis_line,
)
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


STACK = ["redis", "api", "worker", "beat", "flower"]


def settings(**env: str) -> Settings:
    return Settings.load(environ={"STACK_DATA_DIR": "/tmp/stack-unit", **env})


def test_the_redis_line_serves_the_url_port_with_aof_in_the_data_dir(tmp_path):
    command = redis_foreground_command(
        Settings.load(
            environ={"REDIS_URL": "redis://127.0.0.1:6400/0", "STACK_DATA_DIR": str(tmp_path)}
        )
    )
    joined = " ".join(command)
    assert "--port 6400" in joined and "--appendonly yes" in joined
    assert f"--dir {tmp_path}" in joined and "--bind 127.0.0.1" in joined


def test_the_redis_line_refuses_a_remote_url_it_could_not_serve():
    with pytest.raises(ServiceFailed, match=r"redis\.example\.com:6379.*REDIS_URL"):
        redis_foreground_command(settings(REDIS_URL="redis://redis.example.com:6379/0"))


PASSWORD = 'pa ss"word\\with-odd-characters'


def test_a_password_goes_into_a_0600_config_in_a_0700_data_dir_never_onto_argv(tmp_path):
    data = tmp_path / "data"
    command = redis_foreground_command(
        Settings.load(environ={"STACK_DATA_DIR": str(data), "STACK_REDIS_PASSWORD": PASSWORD})
    )
    assert PASSWORD not in " ".join(command) and "--requirepass" not in command
    config = data / REDIS_CONFIG
    assert str(config) in command
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_text() == f'requirepass "{config_quoted(PASSWORD)}"\n'


def test_the_config_quotes_every_byte_that_could_end_the_argument():
    quoted = config_quoted('a"b\\c d\ne')
    assert quoted == "a\\x22b\\x5cc\\x20d\\x0ae"
    assert not set('"\\ \n') & set(quoted.replace("\\x", ""))


def test_the_redis_line_runs_redis_server_under_umask_077(tmp_path):
    line = redis_line(Settings.load(environ={"STACK_DATA_DIR": str(tmp_path / "d")}))
    assert line.startswith("umask 077 && exec ") and "redis-server" in line
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


def test_an_aof_left_world_readable_by_an_earlier_redis_is_narrowed(tmp_path):
    data = tmp_path / "d"
    aof = data / "appendonlydir"
    aof.mkdir(parents=True, mode=0o755)
    (aof / "appendonly.aof.1.incr.aof").write_text("")
    (aof / "appendonly.aof.1.incr.aof").chmod(0o644)
    (data / "appendonly.aof").write_text("")  # Redis 6 writes one file
    (data / "appendonly.aof").chmod(0o644)
    data.chmod(0o755)
    private_data_dir(Settings.load(environ={"STACK_DATA_DIR": str(data)}))
    assert stat.S_IMODE(data.stat().st_mode) == stat.S_IMODE(aof.stat().st_mode) == 0o700
    assert stat.S_IMODE((aof / "appendonly.aof.1.incr.aof").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "appendonly.aof").stat().st_mode) == 0o600
