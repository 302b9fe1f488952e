"""Redis Sentinel: every part of the stack over sentinel://, and a master lost mid-batch.

Every test here runs on its own master + replica + three sentinels (the
``stack_sentinel`` fixture, standing in for ``stack_redis``), so REDIS_URL is
the sentinel list and STACK_SENTINEL_MASTER names the master.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.connection import redis_client
from stack.harness.sentinel_servers import SentinelCluster
from stack.launcher.ha import SENTINEL_PORT_OFFSET
from stack.pytest_plugin import worker_environ
from stack.queues import physical_names, priority_lists, queue_name
from stack.ratelimit import Rate, RateLimiter
from stack.redis_command import free_port, port_is_free
from stack.settings import Settings, settings_env
from tests.integration.helpers import wait_until
from tests.integration.test_beat_lock import schedule_opened, start_beat, wait_for
from tests.integration.test_up import Up, flower_sees_alive, poll_status

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60
BATCH = 300
KILL_AFTER_SUCCEEDED = 40  # the master dies with most of the batch still to run
SETTLE_S = 120.0
HA_NODES = ["redis-master", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]
SUBMIT_GAP_S = 0.03  # the batch takes ~10 s to submit: the master dies while it goes in


@pytest.fixture
def stack_redis(stack_sentinel: SentinelCluster) -> SentinelCluster:
    """Every stack_* fixture of this module runs over the sentinels."""
    return stack_sentinel


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


@pytest.fixture
def cli_env(stack_app, stack_settings, stack_worker_env_file) -> dict[str, str]:
    return worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)


# ---------------------------------------------------------------- healthy


def test_the_api_submits_and_reports_a_task_over_sentinel(stack_app, stack_settings, stack_worker):
    stack_worker(concurrency=1)
    with TestClient(create_app(stack_settings, stack_app)) as client:
        posted = client.post("/tasks", json={"name": "diagnostics.echo", "args": ["over HA"]})
        assert posted.status_code in (200, 201, 202), posted.text
        task_id = posted.json()["task_id"]

        def done() -> bool:
            return client.get(f"/task-status/{task_id}").json()["status"] == "success"

        wait_until(done, 30, "the echo to succeed")
        assert client.get(f"/task-status/{task_id}").json()["result"] == "over HA"
        assert client.get("/ready").status_code == 200


def test_cli_status_doctor_submit_and_dlq_work_over_sentinel(cli_env, stack_worker):
    stack_worker(concurrency=1)

    status = cli(cli_env, "status", "--json")
    doctor = cli(cli_env, "doctor", "--json")
    submitted = cli(cli_env, "submit", "diagnostics.always_fail", "--wait", "30")
    dead = cli(cli_env, "dlq", "list", "--json")

    assert status.returncode == 0, status.stdout + status.stderr
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert json.loads(doctor.stdout)["ok"] is True
    assert submitted.returncode == 1, submitted.stdout + submitted.stderr
    assert dead.returncode == 0, dead.stderr
    assert "diagnostics.always_fail" in dead.stdout


def test_a_cluster_with_master_and_sentinel_passwords_runs_a_task_end_to_end(
    tmp_path, stack_settings, stack_worker_env_file
):
    cluster = SentinelCluster(tmp_path / "pw", password="master-pw", sentinel_password="sent-pw")
    cluster.start()
    worker = None
    try:
        settings = Settings.load(
            environ={
                **settings_env(stack_settings),
                "REDIS_URL": cluster.url,
                **cluster.settings_environ(),
            }
        )
        env = worker_environ(settings, stack_worker_env_file, os.environ, sys.path)
        command = [sys.executable, "-m", "celery", "-A", "stack.celery_app", "worker", "-c", "1"]
        worker = subprocess.Popen(
            [
                *command,
                "--without-mingle",
                "--without-gossip",
                "-Q",
                ",".join(physical_names(settings)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.log").open("wb"),
        )
        run = cli(env, "submit", "diagnostics.echo", "--args", '["locked"]', "--wait", "45")
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        cluster.kill()

    assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "worker.log").read_text()
    assert "locked" in run.stdout


def test_the_beat_lock_lets_one_beat_dispatch_over_sentinel(stack_app, stack_settings, tmp_path):
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
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        wait_for(lambda: schedule_opened(second_dir), "the second beat took over")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_the_rate_limiter_spaces_grants_over_sentinel(stack_app, stack_settings):
    limiter = RateLimiter(redis_client(stack_settings), stack_settings)
    rate = Rate.parse("2/s")

    first, second = limiter.acquire("ha", rate), limiter.acquire("ha", rate)

    assert first.granted and not second.granted
    assert second.at_s - first.at_s == pytest.approx(rate.interval_s, abs=0.05)


def ha_base_port() -> int:
    """A master port whose replica (+1) and sentinel (+20000..+20002) ports are free too."""
    for _ in range(200):
        port = free_port()
        ports = [port, port + 1, *(port + SENTINEL_PORT_OFFSET + n for n in range(3))]
        if ports[-1] < 65536 and all(port_is_free(p) for p in ports):
            return port
    raise AssertionError("no free set of ports for the ha profile")


@pytest.fixture
def up_ha(tmp_path):
    """`up --profile ha` on a free set of ports, every process killed after the test."""
    stack = Up(tmp_path, "--profile", "ha", REDIS_URL=f"redis://127.0.0.1:{ha_base_port()}/0")
    yield stack
    stack.cleanup()


def test_up_profile_ha_gates_master_replica_sentinels_then_serves_every_part_over_them(up_ha):
    stack = up_ha
    table = stack.wait_ready()
    names = [s["name"] for s in table["services"]]
    assert names == [*HA_NODES, "api", "worker", "beat", "flower"]
    assert {s["state"] for s in table["services"]} == {"ready"}

    with httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=10) as client:
        accepted = client.post("/tasks", json={"name": "diagnostics.echo", "args": ["ha"]})
        assert accepted.status_code == 202, accepted.text
        done = poll_status(client, accepted.json()["status_url"], {"success", "failure"})
        assert (done["status"], done["result"]) == ("success", "ha")
    worker = table["services"][names.index("worker")]["url"]
    assert flower_sees_alive(stack.flower_port, worker), "Flower never saw the worker"

    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, stack.log[-4000:]
    assert "Connected to sentinel://" in stack.log


# ---------------------------------------------------------------- bad settings


def test_a_sentinel_url_without_a_master_name_is_refused_naming_the_setting(cli_env):
    env = {k: v for k, v in cli_env.items() if k != "STACK_SENTINEL_MASTER"}

    run = cli(env, "status")

    assert run.returncode != 0
    assert "STACK_SENTINEL_MASTER" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"REDIS_URL": "sentinel://127.0.0.1:1;sentinel://127.0.0.1:2"}, "sentinel"),
        ({"STACK_SENTINEL_MASTER": "no-such-master"}, "STACK_SENTINEL_MASTER"),
    ],
    ids=["unreachable-sentinels", "unknown-master"],
)
def test_a_bad_sentinel_setting_is_a_clear_error_without_traceback(cli_env, change, named):
    run = cli({**cli_env, **change}, "doctor")

    assert run.returncode != 0
    assert named in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_a_wrong_sentinel_password_fails_where_the_sentinels_require_one(tmp_path, cli_env):
    cluster = SentinelCluster(tmp_path / "locked", sentinel_password="right")
    cluster.start()
    try:
        env = {**cli_env, "REDIS_URL": cluster.url, "STACK_SENTINEL_PASSWORD": "wrong"}
        run = cli(env, "doctor")
        good = cli({**env, "STACK_SENTINEL_PASSWORD": "right"}, "dlq", "list")
    finally:
        cluster.kill()

    assert run.returncode != 0
    assert "STACK_SENTINEL_PASSWORD" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert good.returncode == 0, good.stdout + good.stderr


# ---------------------------------------------------------------- chaos


LOST_CAUSE = (
    "acked by the old master but not yet replicated when it was SIGKILLed (replication is "
    "asynchronous): min-replicas-to-write/min-replicas-max-lag on the master bound the window, "
    "a WAIT 1 after each publish closes it"
)


def lost_report(batch, accounting) -> str:
    """Each task neither succeeded nor dead-lettered: where it is, or why it is gone."""
    lost = set(batch.submitted) - accounting.succeeded - accounting.dead_lettered
    client = redis_client(batch.settings)
    try:
        queued = b"".join(
            b"".join(client.lrange(name, 0, -1))
            for name in priority_lists(queue_name(batch.settings, "default"))
        )
        unacked = b"".join(client.hvals("unacked"))
    finally:
        client.close()
    lines = []
    for task_id in sorted(lost):
        where = (
            "still queued"
            if task_id.encode() in queued
            else "unacked (back after the visibility timeout)"
            if task_id.encode() in unacked
            else f"no trace: {LOST_CAUSE}"
        )
        lines.append(f"{task_id} ({accounting.states.get(task_id)}): {where}")
    return f"{accounting.summary()}\nlost:\n  " + "\n  ".join(lines)


@pytest.mark.chaos
@pytest.mark.stack_settings(STACK_VISIBILITY_TIMEOUT=3, STACK_PUBLISH_TIMEOUT=15)
def test_a_master_killed_mid_batch_fails_over_and_every_task_is_accounted_for(
    stack_sentinel, stack_settings, stack_app, stack_worker, batch
):
    stack_worker(concurrency=2)
    stack_worker(concurrency=2)
    refused: list[str] = []
    submitting = threading.Thread(
        target=submit_batch, args=(stack_app, stack_settings, batch, refused)
    )
    submitting.start()
    batch.wait_until(lambda a: len(a.succeeded) >= KILL_AFTER_SUCCEEDED, timeout_s=60)
    submitted_before_kill = len(batch.submitted)

    killed = stack_sentinel.kill_master()
    failover_s = stack_sentinel.wait_for_new_master(killed)
    submitting.join(SETTLE_S)

    assert not submitting.is_alive(), "the submitter never finished"
    assert submitted_before_kill < BATCH, "the whole batch was in before the kill"
    try:
        accounting = batch.settle(timeout_s=SETTLE_S)
    except AssertionError:
        raise AssertionError(lost_report(batch, batch.account())) from None
    print(
        f"sentinel chaos: {accounting.summary()}, refused {len(refused)}, "
        f"failover {failover_s:.2f} s"
    )
    assert len(batch.submitted) == BATCH, refused[-3:]
    accounting.assert_every_task_accounted_for()
    accounting.assert_no_effect_applied_twice()


def submit_batch(app, settings, batch, refused: list[str]) -> None:
    """POST BATCH records to the API, spread over seconds; a 503 is retried (with a new id)."""
    with TestClient(create_app(settings, app)) as client:
        while len(batch.submitted) < BATCH:
            token = uuid.uuid4().hex
            body = {"name": "diagnostics.record", "args": [token], "kwargs": {"seconds": 0.02}}
            answer = client.post("/tasks", json=body)
            if answer.status_code == 503:
                refused.append(answer.text)
                time.sleep(0.2)
                continue
            assert answer.status_code in (200, 201, 202), answer.text
            batch.add(answer.json()["task_id"], token)
            time.sleep(SUBMIT_GAP_S)
