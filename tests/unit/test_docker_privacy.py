"""The compose stack keeps task data private: Flower's metrics guarded, Prometheus's
credentials in 0600 files (its entrypoint run here with the host's sh and awk)."""

import os
import stat
import subprocess
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
RUN = "/run/prometheus"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def test_compose_flower_runs_through_stack_flower():
    command = compose()["services"]["flower"]["command"]
    assert command[:6] == ["python", "-m", "stack.flower", "-A", "stack.celery_app", "flower"]


def test_prometheus_scrapes_the_api_with_the_key_and_flower_with_basic_auth_from_files():
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["celery-stack"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": f"{RUN}/api-key",
    }
    assert jobs["flower"]["basic_auth"]["password_file"] == f"{RUN}/flower-password"
    prometheus = compose()["services"]["prometheus"]
    assert prometheus["tmpfs"][0].startswith(f"{RUN}:mode=0700,")
    assert f"--config.file={RUN}/prometheus.yml" in prometheus["command"]


def test_the_prometheus_entrypoint_writes_0600_files_and_execs_without_the_secrets(tmp_path):
    shell, dash_c, script, name = compose()["services"]["prometheus"]["entrypoint"]
    assert (shell, dash_c) == ("/bin/sh", "-c")
    script = (
        script.replace("$$", "$")  # compose's escape
        .replace(RUN, str(tmp_path))
        .replace("/etc/prometheus/", f"{DOCKER}/prometheus/")
        .replace('exec /bin/prometheus "$@"', 'exec env "$@"')
    )
    env = {
        "PATH": os.environ["PATH"],
        "STACK_API_KEY": "the-api-key",
        "STACK_FLOWER_BASIC_AUTH": "o'ps:flower-pw,second:other-pw",
    }
    done = subprocess.run(
        ["sh", "-c", script, name], env=env, capture_output=True, text=True, check=True
    )
    assert "the-api-key" not in done.stdout and "flower-pw" not in done.stdout
    assert (tmp_path / "api-key").read_text() == "the-api-key"
    assert (tmp_path / "flower-password").read_text() == "flower-pw"
    for written in ("api-key", "flower-password", "prometheus.yml"):
        assert stat.S_IMODE((tmp_path / written).stat().st_mode) == 0o600
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    flower = next(job for job in config["scrape_configs"] if job["job_name"] == "flower")
    assert flower["basic_auth"]["username"] == "o'ps"
