from pathlib import Path

import pytest

from stack.errors import SettingsError
from stack.launcher.procfile import load_procfile
from stack.launcher.profiles import build_services
from stack.settings import Settings

REPO_PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


STACK = ["redis", "api", "worker", "beat", "flower"]


def settings(**env: str) -> Settings:
    return Settings.load(environ={"STACK_DATA_DIR": "/tmp/stack-unit", **env})


def test_only_drops_the_dependencies_it_leaves_out():
    services = build_services(settings(), load_procfile(REPO_PROCFILE), only=["worker", "beat"])
    assert [(s.name, s.requires) for s in services] == [("worker", ()), ("beat", ())]


def test_only_with_an_unknown_name_lists_what_the_procfile_has():
    with pytest.raises(SettingsError, match=r"nginx.*redis, api, worker, beat, flower"):
        build_services(settings(), load_procfile(REPO_PROCFILE), only=["nginx"])


def test_an_unknown_profile_is_a_settings_error():
    with pytest.raises(SettingsError, match="profile 'staging'"):
        build_services(settings(), load_procfile(REPO_PROCFILE), profile="staging")
