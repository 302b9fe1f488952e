"""The `celery-stack load` runner's pure parts: Locust's command line, run times, the summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stack.loadtest.gates import Gates, Verdict, evaluate, measure
from stack.loadtest.runner import (
    LOCUSTFILE,
    SHAPEFILE,
    LoadOptions,
    locust_command,
    parse_run_time,
    summary_table,
)
from stack.settings import Settings


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def settings() -> Settings:
    return Settings.load(environ={"API_PORT": "8123", "API_HOST": "0.0.0.0"})


def test_the_default_host_is_the_local_api_on_loopback(settings):
    command = locust_command(settings, LoadOptions())
    assert option(command, "--host") == "http://127.0.0.1:8123"


def test_a_host_given_by_the_user_is_used_as_is(settings):
    command = locust_command(settings, LoadOptions(host="http://api.example:9000"))
    assert option(command, "--host") == "http://api.example:9000"


def test_locust_runs_headless_with_its_own_option_names_and_reports(settings, tmp_path):
    opts = LoadOptions(users=7, spawn_rate=3.5, run_time="1m", report_dir=tmp_path)
    command = locust_command(settings, opts)
    assert command[:3] == [sys.executable, "-m", "locust"]
    assert "--headless" in command
    assert (option(command, "--users"), option(command, "--spawn-rate")) == ("7", "3.5")
    assert option(command, "--run-time") == "1m"
    assert option(command, "--html") == str(tmp_path.resolve() / "report.html")
    assert option(command, "--csv") == str(tmp_path.resolve() / "stats")


def test_every_gate_is_passed_to_locust(settings):
    gates = Gates(max_p95_ms=100, max_p99_ms=200, max_fail_ratio=0.5, min_tasks_per_s=3)
    command = locust_command(settings, LoadOptions(gates=gates))
    assert option(command, "--max-p95-ms") == "100"
    assert option(command, "--max-p99-ms") == "200"
    assert option(command, "--max-fail-ratio") == "0.5"
    assert option(command, "--min-tasks-per-s") == "3"
    assert "--max-final-depth" not in command  # Locust's side defaults it to the users
    with_depth = locust_command(settings, LoadOptions(gates=Gates(max_final_depth=5)))
    assert option(with_depth, "--max-final-depth") == "5"


def test_a_profile_with_a_shape_adds_the_shape_file(settings):
    assert option(locust_command(settings, LoadOptions()), "-f") == str(LOCUSTFILE)
    shaped = option(locust_command(settings, LoadOptions(profile="step")), "-f")
    assert shaped == f"{LOCUSTFILE},{SHAPEFILE}"


@pytest.mark.parametrize(
    ("text", "seconds"), [("20s", 20), ("1m30s", 90), ("2h", 7200), ("45", 45), ("3m", 180)]
)
def test_run_times_are_read_in_locusts_format(text, seconds):
    assert parse_run_time(text) == seconds


@pytest.mark.parametrize("text", ["", "20x", "s", "1.5s", "-3"])
def test_a_malformed_run_time_is_refused(text):
    with pytest.raises(ValueError, match="run time like 20s"):
        parse_run_time(text)


@pytest.mark.parametrize("text", ["0", "00", "0s", "0m0s", "0h"])
def test_a_run_time_of_zero_is_refused_because_locust_would_never_stop(text):
    with pytest.raises(ValueError, match=r"above 0 .* without a limit"):
        parse_run_time(text)


def test_the_summary_shows_each_gate_with_its_result():
    measures = measure([], duration_s=5.0, final_depth=4)
    verdict = Verdict(measures, evaluate(Gates(), measures, users=2), depth={"end": 4})
    text = summary_table(verdict, Path("/r"))
    assert "--min-tasks-per-s  FAIL" in text
    assert "--max-final-depth  FAIL" in text
    assert "report: /r/report.html" in text


def test_the_cli_side_never_imports_locust_or_gevent():
    """Locust monkey-patches whatever imports it: the CLI process must stay unpatched."""
    code = (
        "import sys, stack.cli, stack.loadtest.runner, stack.loadtest.depth;"
        "stack.cli.build_parser();"
        "print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
