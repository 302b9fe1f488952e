from pathlib import Path

import pytest

from stack.errors import ServiceFailed
from stack.redis_command import redis_foreground_command
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
