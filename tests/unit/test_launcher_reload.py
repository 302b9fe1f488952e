"""Reload on change: what is watched, what a change restarts, one restart per burst."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from stack.checks.probes import StayedUp
from stack.errors import SettingsError
from stack.launcher.reload import (
    DEFAULT_IGNORE,
    ReloadConfig,
    Watcher,
    describe,
    reload_config,
    reload_wanted,
    reloaded,
    restart_for,
)
from stack.launcher.services import Service


def config(root: Path, *ignore: str) -> ReloadConfig:
    return ReloadConfig((root,), DEFAULT_IGNORE + ignore, root / ".stack")


@pytest.mark.parametrize(
    "relative",
    ["app/tasks.py", "manage.py", "pkg/sub/deep.py"],
)
def test_a_python_file_of_the_project_is_watched(tmp_path, relative):
    assert config(tmp_path).watches(tmp_path / relative)


@pytest.mark.parametrize(
    "relative",
    [
        "README.md",  # not Python
        "app/tasks.pyc",
        ".venv/lib/python3.12/site-packages/celery/app.py",
        "venv/lib/x.py",
        "env/lib/python3.12/site-packages/x.py",
        "app/__pycache__/tasks.py",
        ".pytest_cache/x.py",
        ".mypy_cache/x.py",
        ".ruff_cache/x.py",
        ".git/hooks/x.py",
        ".stack/celerybeat-schedule.py",  # the data dir
    ],
)
def test_virtualenvs_caches_git_and_the_data_dir_are_not(tmp_path, relative):
    assert not config(tmp_path).watches(tmp_path / relative)


def test_a_file_outside_every_watched_path_is_not_watched(tmp_path):
    assert not config(tmp_path / "src").watches(tmp_path / "other" / "x.py")


def test_ignore_patterns_match_a_name_or_a_relative_path(tmp_path):
    watched = config(tmp_path, "migrations", "docs/*", "*_generated.py")
    assert not watched.watches(tmp_path / "app" / "migrations" / "0001.py")
    assert not watched.watches(tmp_path / "docs" / "conf.py")
    assert not watched.watches(tmp_path / "app" / "schema_generated.py")
    assert watched.watches(tmp_path / "app" / "tasks.py")


def test_config_defaults_to_the_project_root_and_reads_the_environment(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "lib").mkdir()
    default = reload_config({}, tmp_path, tmp_path / ".stack")
    assert default.paths == (tmp_path,)
    chosen = reload_config(
        {"STACK_RELOAD_PATHS": "src,lib", "STACK_RELOAD_IGNORE": "gen, tmp/"},
        tmp_path,
        tmp_path / ".stack",
    )
    assert chosen.paths == (tmp_path / "src", tmp_path / "lib")
    assert chosen.ignore[-2:] == ("gen", "tmp")
    flags = reload_config(
        {"STACK_RELOAD_PATHS": "src"}, tmp_path, tmp_path / ".stack", paths=["lib"]
    )
    assert flags.paths == (tmp_path / "lib",)  # the flag wins over the variable


def test_a_path_that_does_not_exist_is_an_error_naming_it_and_its_source(tmp_path):
    with pytest.raises(SettingsError, match=r"STACK_RELOAD_PATHS names 'nowhere', which does not"):
        reload_config({"STACK_RELOAD_PATHS": "nowhere"}, tmp_path, tmp_path / ".stack")
    (tmp_path / "file.py").write_text("")
    with pytest.raises(SettingsError, match=r"--reload-path names 'file.py', which is not a dir"):
        reload_config({}, tmp_path, tmp_path / ".stack", paths=["file.py"])


def test_an_absolute_ignore_pattern_is_an_error_saying_what_patterns_match(tmp_path):
    with pytest.raises(SettingsError, match="relative to a watched directory"):
        reload_config({}, tmp_path, tmp_path / ".stack", ignore=["/abs/path"])


def test_reload_is_on_in_dev_off_with_no_reload_and_refused_in_production():
    assert reload_wanted("dev", None) and reload_wanted("dev", True)
    assert not reload_wanted("dev", False)
    assert not reload_wanted("production", None)
    with pytest.raises(SettingsError, match="--reload is for the dev profile"):
        reload_wanted("production", True)


def service(name: str, external: bool = False) -> Service:
    return Service(name, "true", StayedUp(), external=external)


def test_a_change_restarts_the_workers_beat_and_api_never_redis_flower_or_a_one_shot():
    services = [service(n) for n in ("redis", "api", "worker", "beat", "flower", "release")]
    assert reloaded(services, once=("release",)) == ("api", "worker", "beat")
    assert reloaded([service("redis"), service("api", external=True)]) == ()
    copies = [service("worker.1"), service("worker.2"), service("api")]
    assert reloaded(copies) == ("worker", "api")  # the group: copies added later restart too


def test_only_a_watched_file_in_the_change_set_restarts_anything(tmp_path):
    names = ("api", "worker")
    watched = config(tmp_path)
    assert restart_for([tmp_path / "README.md"], watched, names) == ()
    assert restart_for([tmp_path / "README.md", tmp_path / "t.py"], watched, names) == names


def test_describe_shows_a_few_files_relative_to_the_project(tmp_path):
    files = [str(tmp_path / f"m{i}.py") for i in range(5)]
    assert describe(files, tmp_path) == "m0.py, m1.py, m2.py and 2 more"


def test_a_burst_of_saves_on_disk_is_one_restart_and_a_later_save_another(tmp_path):
    module = tmp_path / "tasks.py"
    module.write_text("VALUE = 0\n")
    calls: list[tuple[str, ...]] = []
    seen = threading.Event()

    def restart(names: tuple[str, ...]) -> None:
        calls.append(names)
        seen.set()

    watcher = Watcher(config(tmp_path), ("worker",), restart, lambda _text: None).start()
    try:
        time.sleep(0.5)  # the watch is set up
        for n in range(5):  # an editor saving, formatting, saving again
            module.write_text(f"VALUE = {n}\n")
            time.sleep(0.02)
        (tmp_path / "notes.md").write_text("not code")
        assert seen.wait(10), "no restart after the burst"
        time.sleep(1.0)  # a second restart for the same burst would come by now
        assert calls == [("worker",)]
        seen.clear()
        module.write_text("VALUE = 99\n")
        assert seen.wait(10), "no restart after the later save"
        assert calls == [("worker",), ("worker",)]
    finally:
        watcher.close()


def test_a_watch_that_cannot_start_is_a_log_line_and_the_stack_runs_on(tmp_path):
    said: list[str] = []
    gone = tmp_path / "removed-meanwhile"
    watcher = Watcher(config(gone), ("worker",), lambda _names: None, said.append).start()
    watcher.close()
    assert len(said) == 1 and "reload: cannot watch" in said[0] and "reload is off" in said[0]
