"""The dev stack keeps its secrets off every command line and its data dir private."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import psutil
import pytest

from tests.integration.test_production import assert_the_data_dir_is_private
from tests.integration.test_up import Up

pytestmark = pytest.mark.integration

PASSWORD = "dev-redis-password-0123456789ab"


def test_dev_with_a_redis_password_shows_it_on_no_command_line_and_keeps_data_private(
    tmp_path,
):
    stack = Up(tmp_path, STACK_REDIS_PASSWORD=PASSWORD)
    try:
        table = stack.wait_ready()
        assert {s["state"] for s in table["services"]} == {"ready"}
        shown = []
        for process in psutil.process_iter():
            with contextlib.suppress(OSError):  # gone meanwhile
                cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
                if PASSWORD.encode() in cmdline:
                    shown.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        assert shown == []  # what `ps` shows every local user
        redis_pid = next(s["pid"] for s in table["services"] if s["name"] == "redis")
        redis_environ = Path(f"/proc/{redis_pid}/environ").read_bytes()
        assert PASSWORD.encode() not in redis_environ  # it reads its 0600 config file
        assert_the_data_dir_is_private(tmp_path / "data", "redis.conf")
        stack.process.send_signal(signal.SIGINT)
        assert stack.wait() == 0, stack.log[-4000:]
    finally:
        stack.cleanup()
