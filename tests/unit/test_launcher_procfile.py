from pathlib import Path

import pytest

from stack.errors import SettingsError
from stack.launcher.procfile import load_procfile, parse_procfile
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


STACK = ["redis", "api", "worker", "beat", "flower"]


def settings(**env: str) -> Settings:
    return Settings.load(environ={"STACK_DATA_DIR": "/tmp/stack-unit", **env})


def test_the_repo_procfile_has_one_line_per_service_in_start_order():
    assert list(load_procfile(REPO_PROCFILE)) == STACK


def test_procfile_lines_run_without_the_launcher_thanks_to_defaults():
    lines = load_procfile(REPO_PROCFILE)
    assert "${API_PORT:-8001}" in lines["api"]
    assert "${FLOWER_PORT:-5555}" in lines["flower"]
    assert "${STACK_DATA_DIR:-.stack}" in lines["beat"]


def test_the_dev_worker_skips_mingle_and_gossip_but_keeps_heartbeats_for_flower():
    worker = load_procfile(REPO_PROCFILE)["worker"]
    assert "--without-mingle" in worker and "--without-gossip" in worker
    assert "--without-heartbeat" not in worker


def test_parse_procfile_keeps_file_order_and_ignores_comments():
    text = "# a comment\nweb: serve --port 1\n\nworker: work\n"
    assert parse_procfile(text) == {"web": "serve --port 1", "worker": "work"}


def test_a_duplicate_process_name_is_a_settings_error():
    with pytest.raises(SettingsError, match="unique"):
        parse_procfile("web: a\nweb: b\n")


def test_a_missing_procfile_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(SettingsError, match=r"nope.*--procfile"):
        load_procfile(tmp_path / "nope")


def test_an_empty_procfile_is_refused(tmp_path):
    path = tmp_path / "Procfile"
    path.write_text("# nothing\n")
    with pytest.raises(SettingsError, match="no `name: command` line"):
        load_procfile(path)
