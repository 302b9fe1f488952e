"""The plugin's pure pieces: worker environment and queue names."""

import os

from stack.pytest_plugin import physical_queues, worker_environ
from stack.settings import Settings


def test_a_worker_does_not_inherit_a_broker_url_exported_in_the_shell(tmp_path):
    settings = Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:7000/0"})
    shell = {"CELERY_BROKER_URL": "redis://prod:6379/0", "HOME": "/root", "stack_key_prefix": "x"}

    env = worker_environ(settings, tmp_path / "empty.env", shell, [])

    assert "CELERY_BROKER_URL" not in env
    assert "stack_key_prefix" not in env
    assert env["REDIS_URL"] == "redis://127.0.0.1:7000/0"
    assert env["HOME"] == "/root"


def test_a_worker_reads_no_dotenv_and_imports_from_the_test_process_path(tmp_path):
    settings = Settings.load(environ={})
    project = tmp_path / "project"
    project.mkdir()

    env = worker_environ(settings, tmp_path / "empty.env", {}, ["", str(project), "/nonexistent"])

    assert env["STACK_ENV_FILE"] == str(tmp_path / "empty.env")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(project)]


def test_reference_app_queues_are_logical_names_with_the_worker_prefix():
    settings = Settings.load(environ={"STACK_QUEUE_PREFIX": "gw1."})

    assert physical_queues(settings, ["default"]) == ["gw1.default"]
    assert physical_queues(settings, None) == [
        "gw1.default",
        "gw1.file_processing",
        "gw1.query_processing",
        "gw1.maintenance",
    ]


def test_a_user_apps_queues_are_its_own_and_none_means_its_defaults():
    settings = Settings.load(environ={"STACK_CELERY_APP": "shop.celery_app:app"})

    assert physical_queues(settings, ["orders"]) == ["orders"]
    assert physical_queues(settings, None) is None


def test_a_user_apps_worker_consumes_every_queue_the_app_sends_to_by_default():
    """Celery's default worker consumes only `celery` (or task_queues): a routed task of the
    app would stay PENDING. None now means what discovery reads from the app."""
    from celery import Celery

    settings = Settings.load(environ={"STACK_CELERY_APP": "shop.celery_app:app"})
    app = Celery("shop", set_as_current=False)
    app.conf.task_routes = {"shop.mail.*": {"queue": "mail"}}

    assert physical_queues(settings, None, app) == ["celery", "mail"]
    assert physical_queues(settings, ["mail"], app) == ["mail"]


def test_the_plugin_is_registered_through_the_pytest11_entry_point():
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}

    assert plugins.get("celery_stack") == "stack.pytest_plugin"


def test_test_settings_ignore_a_broker_url_exported_in_the_shell(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://production:6379/0")

    settings = Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:7000/0"})

    assert settings.broker_url == "redis://127.0.0.1:7000/0"
