"""stack_redis as users rely on it: data survives restart and kill, a forced backend that
cannot run errors loudly, and containers a killed run left behind are cleaned up."""

import contextlib
import os
import socket
import subprocess

import pytest
import redis

from stack.connection import redis_client
from stack.harness.backend_choice import (
    HARNESS_LABEL,
    OWNER_LABEL,
    docker_client,
    remove_orphan_containers,
)
from tests.integration.helpers import run_pytest, write_project

pytestmark = pytest.mark.integration


def test_data_survives_a_restart_and_a_kill_at_the_same_url(stack_redis, stack_app, stack_settings):
    client = redis_client(stack_settings)
    client.set("before-restart", "kept")
    stack_redis.restart()
    assert client.get("before-restart") == b"kept"

    client.set("before-kill", "kept too")  # AOF with fsync always: on disk before the reply
    stack_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    stack_redis.start()

    assert client.get("before-kill") == b"kept too"
    client.close()


def test_a_forced_backend_that_cannot_run_errors_every_test_that_needs_redis(tmp_path):
    project = write_project(
        tmp_path,
        {
            "tests/test_needs_redis.py": """
                def test_needs_redis(stack_redis):
                    pass


                def test_needs_nothing():
                    pass
            """,
        },
    )

    run = run_pytest(
        project, STACK_REDIS_BACKEND="docker", STACK_REDIS_IMAGE="celery-stack/no-such-image:0"
    )
    output = run.stdout + run.stderr

    assert "celery-stack: Redis backend docker" in output and "UNAVAILABLE" in output, output
    assert "1 passed, 1 error" in output, output
    assert "skipped" not in output
    assert run.returncode == 1


def test_containers_left_by_a_killed_run_are_removed_and_live_ones_kept(stack_backend_choice):
    if stack_backend_choice.backend != "docker":
        pytest.skip("needs the docker backend (CI runs it)")
    dead = subprocess.Popen(["true"])
    dead.wait()
    with docker_client() as client:

        def labelled(pid):
            owner = f"{socket.gethostname()}:{pid}"
            labels = {HARNESS_LABEL: "redis", OWNER_LABEL: owner}
            return client.containers.create(stack_backend_choice.image, labels=labels).id

        orphan, live = labelled(dead.pid), labelled(os.getpid())
        try:
            remove_orphan_containers()

            # (another session on this Docker host may have removed the orphan first)
            left = {
                c.id for c in client.containers.list(all=True, filters={"label": HARNESS_LABEL})
            }
            assert orphan not in left
            assert live in left
        finally:
            for container_id in (orphan, live):
                with contextlib.suppress(Exception):
                    client.containers.get(container_id).remove(force=True)
