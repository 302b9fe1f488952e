"""`celery-stack load` against a real stack: Redis, a real worker, the API served by uvicorn.

Short runs (a few users for a few seconds): they prove the gates, the reports
and the exit codes, not the stack's speed (that is bench/).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from stack.api.app import create_app
from stack.launcher.services import child_env
from stack.loadtest.gates import E2E, ENQUEUE, Gates
from stack.loadtest.runner import HTML_REPORT, LoadOptions, run_load
from stack.redis_command import free_port, port_is_free

pytestmark = pytest.mark.integration

RUN_TIME = "4s"  # Locust counts spawning in it: leave a loaded host some room
USERS = 4
SERVER_START_TIMEOUT_S = 15.0


@pytest.fixture
def api_url(stack_app, stack_settings) -> Iterator[str]:
    """The real API for the app under test, served by uvicorn in a thread on a free port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(stack_settings, stack_app), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def options(report_dir: Path, host: str, **overrides) -> LoadOptions:
    values = {
        "users": USERS,
        "spawn_rate": USERS,
        "run_time": RUN_TIME,
        "profile": "diagnostics",
        "report_dir": report_dir,
        "host": host,
    }
    return LoadOptions(**{**values, **overrides})


def environ() -> dict[str, str]:
    """The child's base environment: PATH only, so the developer's own REDIS_URL cannot leak."""
    return {"PATH": os.environ.get("PATH", os.defpath)}


def test_a_load_on_a_healthy_stack_passes_every_gate_and_writes_reports(
    stack_settings, stack_worker, api_url, tmp_path
):
    stack_worker(concurrency=2)
    code, verdict = run_load(stack_settings, options(tmp_path, api_url), environ())
    assert code == 0, [r.describe() for r in verdict.results]
    assert (tmp_path / HTML_REPORT).stat().st_size > 0
    assert (tmp_path / "stats_stats.csv").is_file()
    with (tmp_path / "stats_queue_depth.csv").open() as file:
        samples = list(csv.DictReader(file))
    assert samples and samples[0].keys() >= {"elapsed_s", "total", "default"}
    kinds = {(row["type"], row["name"]) for row in verdict.rows}
    assert {(ENQUEUE, "celery"), (E2E, "celery"), (E2E, "http"), ("POST", "/tasks")} <= kinds
    assert verdict.measures.completed > 0


def test_an_impossible_gate_exits_non_zero_and_names_it(
    stack_settings, stack_worker, api_url, tmp_path
):
    stack_worker(concurrency=2)
    command = [sys.executable, "-m", "stack", "load", "--users", str(USERS), "--spawn-rate", "4"]
    command += ["--run-time", RUN_TIME, "--profile", "diagnostics", "--host", api_url]
    command += ["--report-dir", str(tmp_path), "--max-p95-ms", "0.001"]
    result = subprocess.run(
        command,
        env=child_env(stack_settings, environ()),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gate --max-p95-ms crossed: threshold 0.001 ms, measured" in result.stderr
    assert (tmp_path / HTML_REPORT).is_file()


def test_a_stack_with_no_worker_fails_the_completed_rate_gate(stack_settings, api_url, tmp_path):
    code, verdict = run_load(stack_settings, options(tmp_path, api_url), environ())
    assert code == 1
    crossed = {r.gate for r in verdict.results if not r.passed}
    assert "--min-tasks-per-s" in crossed
    assert verdict.measures.completed == 0
    assert (tmp_path / HTML_REPORT).is_file()


def test_an_open_loop_backlog_fails_the_final_depth_gate(stack_settings, api_url, tmp_path):
    profile = tmp_path / "open.toml"
    profile.write_text(
        "user_weights = { celery = 1 }\nwait_for_result = false\nthink_time_s = [0.0, 0.01]\n"
        '[[tasks]]\nname = "diagnostics.echo"\n'
    )
    gates = Gates(min_tasks_per_s=0, max_p95_ms=1e9, max_p99_ms=1e9, max_final_depth=10)
    code, verdict = run_load(
        stack_settings,
        options(tmp_path, api_url, profile=str(profile), run_time=RUN_TIME, gates=gates),
        environ(),
    )
    assert code == 1
    crossed = {r.gate: r for r in verdict.results if not r.passed}
    assert "--max-final-depth" in crossed
    assert crossed["--max-final-depth"].measured > 10


def test_load_with_start_brings_the_stack_up_loads_it_and_stops_it(tmp_path):
    """`--start` runs the launcher (redis, api, worker on free ports) around the load."""
    procfile = Path(__file__).parents[2] / "Procfile"
    redis_port, api_port = free_port(), free_port()
    env = {
        **environ(),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "API_PORT": str(api_port),
        "FLOWER_PORT": str(free_port()),
        "STACK_DATA_DIR": str(tmp_path / "data"),
        "STACK_QUEUE_PREFIX": "start.",
    }
    command = [sys.executable, "-m", "stack", "load", "--start", "--procfile", str(procfile)]
    command += [
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        RUN_TIME,
        "--profile",
        "diagnostics",
    ]
    command += ["--report-dir", str(tmp_path / "report")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--min-tasks-per-s  pass" in result.stdout
    assert (tmp_path / "report" / HTML_REPORT).is_file()
    assert port_is_free(redis_port) and port_is_free(api_port), "the stack was left running"
