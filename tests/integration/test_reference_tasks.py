"""The seed guides' reference tasks, each run by a real worker on its own queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from stack.context import context_of
from stack.pytest_plugin import worker_environ
from stack.submit import submit
from stack.tasks.maintenance import heartbeat_key, last_heartbeat

pytestmark = pytest.mark.integration

RESULT_TIMEOUT_S = 30
CLI_TIMEOUT_S = 60


@pytest.fixture
def stack_settings_overrides(tmp_path) -> dict[str, str]:
    """A private data dir: the bundled database and uploads live there."""
    return {"STACK_DATA_DIR": str(tmp_path / "data")}


def run(app, name, *args, queue=None, **kwargs):
    """Submit through the one entry point and wait for the outcome."""
    task_id = submit(app, name, args=args, kwargs=kwargs, queue=queue)
    result = app.AsyncResult(task_id)
    value = result.get(timeout=RESULT_TIMEOUT_S, propagate=False)
    return result, value


def test_monitor_check_alerts_on_the_seeded_readings_below_their_threshold(stack_app, stack_worker):
    stack_worker(queues=["default"])

    result, value = run(stack_app, "monitoring.check_monitor", "monitor_123")

    assert result.state == "SUCCESS"
    assert value["status"] == "alerting"
    assert value["metrics_checked"] == 3
    assert [(a["metric"], a["kind"]) for a in value["alerts"]] == [("revenue_growth", "below_min")]


def test_monitor_check_of_a_healthy_snapshot_is_ok_and_unknown_monitors_fail_without_retry(
    stack_app, stack_worker
):
    stack_worker(queues=["default"])
    healthy = {"market_share": 0.2, "revenue_growth": 0.1, "churn_rate": 0.01}

    _, value = run(stack_app, "monitoring.check_monitor", "monitor_123", snapshot=healthy)
    unknown, error = run(stack_app, "monitoring.check_monitor", "monitor_999")

    assert (value["status"], value["alerts"]) == ("ok", [])
    assert unknown.state == "FAILURE"
    assert "unknown monitor 'monitor_999'" in str(error)
    assert unknown.retries == 0


def test_analysis_run_returns_statistics_of_numbers_and_text(stack_app, stack_worker):
    stack_worker(queues=["default"])
    request = {"values": [1, 2, 3, 4, 10], "text": "Celery runs tasks. Redis stores tasks!"}

    result, value = run(stack_app, "analysis.run_analysis", request, "user-7")

    assert result.state == "SUCCESS"
    assert value["user_id"] == "user-7"
    assert value["analysis"]["values"]["mean"] == 4.0
    assert value["analysis"]["values"]["median"] == 3.0
    assert value["analysis"]["text"]["sentences"] == 2
    assert value["analysis"]["text"]["top_words"][0] == ["tasks", 2]


def test_csv_runs_on_the_file_processing_queue_and_aggregates_its_columns(stack_app, stack_worker):
    stack_worker(queues=["file_processing"])  # nothing else consumes: proves the route
    csv_text = "region,units,price\nnorth,3,2.5\nsouth,5,\nwest,2,4.0\n"

    result, value = run(stack_app, "files.process_csv", csv_text=csv_text)

    assert result.state == "SUCCESS"
    assert value["row_count"] == 3
    assert value["columns"] == ["region", "units", "price"]
    assert value["numeric_columns"]["units"]["sum"] == 10
    assert value["numeric_columns"]["price"]["max"] == 4.0
    assert value["empty_cells"]["price"] == 1
    assert "region" not in value["numeric_columns"]


def test_csv_reads_an_upload_under_the_data_dir_and_refuses_paths_outside_it(
    stack_app, stack_settings, stack_worker
):
    stack_worker(queues=["file_processing"])
    uploads = stack_settings.data_dir / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "orders.csv").write_text("id,total\n1,9.5\n2,0.5\n")

    _, value = run(stack_app, "files.process_csv", path="orders.csv")
    escaped, error = run(stack_app, "files.process_csv", path="../../../../etc/passwd")

    assert (value["source"], value["row_count"]) == ("orders.csv", 2)
    assert value["numeric_columns"]["total"]["sum"] == 10.0
    assert escaped.state == "FAILURE"
    assert "outside the uploads directory" in str(error)


def test_a_ragged_csv_fails_at_once_naming_the_row_and_is_dead_lettered_not_retried(
    stack_app, stack_worker, stack_dead_letters
):
    stack_worker(queues=["file_processing"])

    result, error = run(stack_app, "files.process_csv", csv_text="a,b\n1,2\n3\n")

    assert result.state == "FAILURE"
    assert "row 3 has 1 fields, the header has 2" in str(error)
    assert result.retries == 0
    assert stack_dead_letters.find_by_task(result.id) is not None


def test_query_runs_on_the_query_processing_queue_against_the_bundled_database(
    stack_app, stack_worker
):
    stack_worker(queues=["query_processing"])
    sql = (
        "SELECT region, COUNT(*) AS sales FROM sales WHERE sold_on >= ? "
        "GROUP BY region ORDER BY region"
    )

    result, value = run(stack_app, "queries.run_query", sql, ["2025-01-01"])

    assert result.state == "SUCCESS"
    assert value["columns"] == ["region", "sales"]
    assert [row[0] for row in value["rows"]] == ["east", "north", "south", "west"]
    assert sum(row[1] for row in value["rows"]) == 60


def test_query_refuses_an_update_and_the_data_is_unchanged(stack_app, stack_worker):
    stack_worker(queues=["query_processing"])
    total = "SELECT SUM(quantity) FROM sales"
    _, before = run(stack_app, "queries.run_query", total)

    refused, error = run(stack_app, "queries.run_query", "UPDATE sales SET quantity = 0")
    sneaky, sneaky_error = run(
        stack_app, "queries.run_query", "WITH x AS (SELECT 1) DELETE FROM sales"
    )
    _, after = run(stack_app, "queries.run_query", total)

    assert refused.state == "FAILURE"
    assert "only read-only SELECT queries are allowed, refused an UPDATE" in str(error)
    assert sneaky.state == "FAILURE"
    assert "only reading is allowed" in str(sneaky_error)
    assert refused.retries == 0
    assert after["rows"] == before["rows"]


def test_cleanup_deletes_results_stored_without_expiry_once_they_are_past_it(
    stack_app, stack_settings, stack_worker
):
    stack_worker(queues=["default", "maintenance"])
    client = stack_app.backend.client
    past_expiry = timedelta(seconds=stack_settings.result_expires_s + 60)
    old_done = (datetime.now(UTC) - past_expiry).isoformat()
    young_done = datetime.now(UTC).isoformat()
    old_key = stack_app.backend.get_key_for_task("old-result")
    young_key = stack_app.backend.get_key_for_task("young-result")
    client.set(old_key, json.dumps({"status": "SUCCESS", "result": 1, "date_done": old_done}))
    client.set(young_key, json.dumps({"status": "SUCCESS", "result": 2, "date_done": young_done}))
    kept, _ = run(stack_app, "diagnostics.echo", "kept")  # an ordinary result, with its TTL

    result, counts = run(stack_app, "maintenance.cleanup_expired_results")

    assert result.state == "SUCCESS"
    assert (counts["deleted"], counts["expiry_set"]) == (1, 1)
    assert client.exists(old_key) == 0
    assert 0 < client.ttl(young_key) <= stack_settings.result_expires_s
    assert client.ttl(stack_app.backend.get_key_for_task(kept.id)) > 0  # untouched


def test_health_check_pings_redis_and_leaves_a_heartbeat_for_doctor(
    stack_app, stack_settings, stack_worker
):
    worker = stack_worker(queues=["maintenance"])

    result, record = run(stack_app, "maintenance.health_check")

    assert result.state == "SUCCESS"
    assert record["status"] == "ok"
    assert record["worker"] == worker.hostname
    assert last_heartbeat(context_of(stack_app).redis, stack_settings) == record
    assert context_of(stack_app).redis.ttl(heartbeat_key(stack_settings)) > 0


def test_the_cli_submits_a_query_waits_and_prints_the_apis_status_shape(
    stack_app, stack_settings, stack_worker, stack_worker_env_file
):
    stack_worker(queues=["query_processing"])
    env = worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)
    command = [sys.executable, "-m", "stack", "submit", "queries.run_query", "--wait", "30"]

    done = subprocess.run(
        [*command, "--args", '["SELECT COUNT(*) AS n FROM sales"]', "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    refused = subprocess.run(
        [*command, "--args", '["DROP TABLE sales"]'],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["status"], status["result"]["rows"], status["error"]) == (
        "success",
        [[60]],
        None,
    )
    assert " dead_lettered " in refused.stdout
    assert "refused a DROP statement" in refused.stdout
