"""Exactly one beat dispatches, even when two are started on the same Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack.settings import settings_env

pytestmark = pytest.mark.integration

WAIT_S = 30.0


def start_beat(env: dict[str, str], data_dir: Path) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "beat.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "stack.celery_app",
            "beat",
            "-S",
            "stack.beat:LockedScheduler",
            "--schedule",
            str(data_dir / "celerybeat-schedule"),
            "--loglevel",
            "INFO",
        ],
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def schedule_opened(data_dir: Path) -> bool:
    return any(data_dir.glob("celerybeat-schedule*"))


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {WAIT_S} s")


def test_a_second_beat_stands_by_until_the_first_stops(stack_app, stack_settings, tmp_path):
    env = settings_env(stack_settings)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first = start_beat(env, first_dir)
    second = None
    try:
        wait_for(lambda: schedule_opened(first_dir), "the first beat opened its schedule")
        second = start_beat(env, second_dir)
        wait_for(
            lambda: "standing by" in (second_dir / "beat.log").read_text(),
            "the second beat said it stands by",
        )
        assert not schedule_opened(second_dir)
        assert second.poll() is None

        first.send_signal(signal.SIGTERM)
        first.wait(WAIT_S)
        wait_for(lambda: schedule_opened(second_dir), "the second beat took over")
        assert "acquired" in (second_dir / "beat.log").read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
