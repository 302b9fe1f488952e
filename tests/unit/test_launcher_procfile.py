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


# --- every line honcho would drop silently is an error naming its number and the fix ------


def bad_lines(text: str) -> str:
    with pytest.raises(SettingsError) as refused:
        parse_procfile(text)
    return str(refused.value)


def test_a_line_without_a_colon_is_an_error_naming_its_line_number():
    message = bad_lines("web: serve\nworker celery worker\n")
    assert "line 2: 'worker celery worker' has no colon: write it as `name: command`" in message


def test_a_space_in_a_process_name_is_an_error_suggesting_a_valid_name():
    message = bad_lines("my worker: celery worker\n")
    assert "line 1: process name 'my worker' contains a space" in message
    assert "(e.g. 'my_worker')" in message


def test_an_invalid_character_in_a_process_name_is_an_error():
    assert "line 1: process name 'web.1' contains '.'" in bad_lines("web.1: serve\n")


def test_an_empty_command_is_an_error_naming_the_process():
    message = bad_lines("web: serve\nworker:   \n")
    assert "line 2: process 'worker' has no command after the colon" in message


def test_an_indented_line_is_an_error_because_honcho_ignores_it():
    assert "line 1: '  web: serve' is indented" in bad_lines("  web: serve\n")


def test_the_launchers_own_log_prefix_system_is_refused_as_a_name():
    assert "line 1: process name 'system' is the launcher's own log prefix" in bad_lines(
        "system: echo hi\n"
    )


def test_every_bad_line_is_reported_at_once():
    message = bad_lines("a b: x\nweb:\nnocolon\n")
    assert "3 bad lines" in message
    assert all(f"line {n}:" in message for n in (1, 2, 3))


def test_a_command_may_contain_colons_and_crlf_line_ends_are_fine():
    text = "api: uvicorn stack.api:create_app --host 127.0.0.1\r\nweb:serve\r\n"
    assert parse_procfile(text) == {
        "api": "uvicorn stack.api:create_app --host 127.0.0.1",
        "web": "serve",
    }


def test_a_binary_procfile_is_a_clear_error_not_a_traceback(tmp_path):
    path = tmp_path / "Procfile"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00")
    with pytest.raises(SettingsError, match=r"is not UTF-8 text \(byte 0xff at offset 8\)"):
        load_procfile(path)


def test_a_procfile_with_nul_bytes_is_refused_as_not_text(tmp_path):
    path = tmp_path / "Procfile"
    path.write_bytes(b"web: serve\x00\x00\n")
    with pytest.raises(SettingsError, match="contains NUL bytes"):
        load_procfile(path)


def test_a_bad_procfile_names_its_path(tmp_path):
    path = tmp_path / "Procfile"
    path.write_text("web serve\n")
    with pytest.raises(SettingsError, match=rf"Procfile '{path}': 1 bad line"):
        load_procfile(path)
