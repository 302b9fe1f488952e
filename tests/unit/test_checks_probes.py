import os
import time

from stack.checks.probes import AnyOf, FileWritten, HttpOk, LogLine, RedisPing, StayedUp
from stack.connection import redact
from stack.redis_command import free_port
from stack.settings import Settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stayed_up_is_ready_only_after_its_grace_period():
    clock = FakeClock()
    probe = StayedUp(grace_s=0.5, clock=clock)
    assert probe.check() is False
    clock.now += 0.4
    assert probe.check() is False
    clock.now += 0.1
    assert probe.check() is True


def test_a_schedule_file_from_an_earlier_run_does_not_count(tmp_path):
    stale = tmp_path / "celerybeat-schedule"
    stale.write_text("old")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    probe = FileWritten(tmp_path, "celerybeat-schedule*", since=time.time())
    assert probe.check() is False
    assert "celerybeat-schedule*" in probe.problem
    stale.write_text("rewritten by beat")
    assert probe.check() is True


def test_a_log_line_probe_is_ready_once_the_line_was_seen():
    probe = LogLine("beat: Starting...")
    probe.observe("celery beat v5 is starting.")
    assert probe.check() is False
    probe.observe("[INFO/MainProcess] beat: Starting...")
    assert probe.check() is True


def test_any_of_is_ready_when_one_probe_is_and_reports_every_reason_otherwise(tmp_path):
    line = LogLine("ready!")
    probe = AnyOf((FileWritten(tmp_path, "nothing*"), line))
    assert probe.check() is False
    assert "nothing*" in probe.problem and "ready!" in probe.problem
    probe.observe("all ready!")
    assert probe.check() is True


def test_redis_ping_says_why_not_when_nothing_listens():
    port = free_port()
    probe = RedisPing(Settings.load(environ={"REDIS_URL": f"redis://127.0.0.1:{port}/0"}))
    assert probe.check() is False
    assert "ConnectionError" in probe.problem


def test_http_ok_says_why_not_when_nothing_listens():
    probe = HttpOk(f"http://127.0.0.1:{free_port()}/health")
    assert probe.check() is False
    assert "ConnectError" in probe.problem


def test_urls_in_messages_never_show_the_password():
    assert redact("redis://:s3cret@127.0.0.1:6380/0") == "redis://:***@127.0.0.1:6380/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
