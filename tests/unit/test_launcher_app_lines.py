"""`up --app`: a user's app as Procfile lines; `up` with neither a Procfile nor an app; the
queues no worker consumes, said before the table."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from stack.checks.probes import WorkerPing
from stack.errors import SettingsError
from stack.launcher.app_lines import app_lines, app_settings, discover_app, with_redis
from stack.launcher.consumers import describe
from stack.launcher.procfile import parse_procfile
from stack.launcher.profiles import build_services
from stack.launcher.up import launch_lines, queue_check
from stack.settings import Settings


@pytest.fixture
def project(tmp_path):
    """A foreign project (amqp broker in its code, a queue of its own, beat or not) under a
    unique package name; sys.path and sys.modules restored after."""
    pkg = f"ledger_{uuid.uuid4().hex[:8]}"
    saved = list(sys.path)

    def write(schedule: bool = True) -> tuple[Path, str]:
        beat = (
            f'app.conf.beat_schedule = {{"tick": {{"task": "{pkg}.tick", "schedule": 1.0}}}}'
            if schedule
            else ""
        )
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(
            textwrap.dedent(f"""
                from celery import Celery

                app = Celery("{pkg}", broker="amqp://guest@localhost//", set_as_current=False)
                app.conf.task_routes = {{"{pkg}.reconcile": {{"queue": "reconciliation"}}}}
                {beat}


                @app.task(name="{pkg}.reconcile")
                def reconcile():
                    return True
            """)
        )
        return tmp_path, pkg

    yield write
    sys.path[:] = saved
    for name in [m for m in sys.modules if m.split(".")[0] == pkg]:
        del sys.modules[name]


def settings(**env: str) -> Settings:
    return Settings.load(environ={"STACK_DATA_DIR": "/tmp/stack-unit", **env})


def quiet(text: str) -> None:
    return None


def test_app_lines_run_the_users_app_on_its_own_queues_with_beat(project):
    root, pkg = project()
    found = discover_app(pkg, settings(), root)
    assert found.ref == f"{pkg}:app"
    launched = app_settings(settings(), found)
    assert launched.celery_app == f"{pkg}:app"
    assert launched.worker_queues == ("celery", "reconciliation")
    lines = app_lines(launched, found)
    assert list(lines) == ["redis", "api", "worker", "beat", "flower"]
    assert "-Q celery,reconciliation " in lines["worker"]
    assert all("celery -A stack.celery_app" in lines[n] for n in ("worker", "beat", "flower"))
    assert parse_procfile("\n".join(f"{k}: {v}" for k, v in lines.items())) == lines


def test_no_beat_line_without_periodic_tasks(project):
    root, pkg = project(schedule=False)
    found = discover_app(pkg, settings(), root)
    assert "beat" not in app_lines(app_settings(settings(), found), found)


def test_the_worker_consumes_the_discovered_queues_not_the_reference_four(project):
    """Before, the launcher always gave STACK_WORKER_QUEUES the four reference queues: a
    user's tasks on `celery` or `reconciliation` stayed PENDING."""
    root, pkg = project()
    lines, launched, _ = launch_lines(settings(), None, pkg, quiet, root)
    worker = {s.name: s for s in build_services(launched, lines)}["worker"]
    assert worker.env["STACK_WORKER_QUEUES"] == "celery,reconciliation"
    assert worker.env["CELERY_BROKER_URL"] == launched.broker_url  # over the app's amqp://


def test_stack_celery_app_runs_without_a_procfile(project):
    root, pkg = project()
    lines, launched, _ = launch_lines(
        settings(STACK_CELERY_APP=f"{pkg}:app"), None, None, quiet, root
    )
    assert "-Q celery,reconciliation " in lines["worker"]
    assert launched.celery_app == f"{pkg}:app"


def test_up_with_neither_a_procfile_nor_an_app_says_how_to_give_one(tmp_path):
    with pytest.raises(SettingsError) as caught:
        launch_lines(settings(), None, None, quiet, tmp_path)
    message = str(caught.value)
    assert "no Procfile in" in message and "--app MODULE[:ATTR]" in message
    assert "STACK_CELERY_APP" in message and "celery-stack init" in message


def test_a_user_procfile_without_a_redis_line_gets_the_stacks_redis_first():
    lines = with_redis({"jobs": "celery -A ledger worker"})
    assert list(lines) == ["redis", "jobs"]


def test_the_queue_check_names_each_queue_no_worker_consumes():
    queues = {"celery": ("task_default_queue",), "reconciliation": ("task_routes",)}
    lines = describe(queues, ["w1@h"], {"w1@h": ["celery"]})
    assert len(lines) == 1
    assert "queue 'reconciliation' is consumed by no worker" in lines[0]
    assert "w1@h (-Q celery)" in lines[0] and "from task_routes" in lines[0]
    assert describe(queues, ["w1@h"], {"w1@h": ["celery", "reconciliation"]}) == []
    assert "did not answer" in describe(queues, ["w1@h", "w2@h"], {"w1@h": ["celery"]})[0]


def test_the_queue_check_asks_the_stacks_own_workers(project):
    root, pkg = project()
    lines, launched, found = launch_lines(settings(), None, pkg, quiet, root)
    services = build_services(launched, lines)
    check = queue_check(launched, services, found)
    assert check is not None
    worker = next(s for s in services if isinstance(s.probe, WorkerPing))
    assert check.hostnames == (worker.probe.hostname,)
    assert list(check.queues) == ["celery", "reconciliation"]
