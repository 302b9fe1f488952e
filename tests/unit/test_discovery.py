"""stack.discovery: queues, periodic tasks and tasks read from Celery apps built here."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
from celery import Celery
from kombu import Queue

from stack.discovery import (
    app_queues,
    callable_without_arguments,
    periodic,
    prepare,
    unconsumed,
    user_tasks,
    worker_queues,
)


def make_app(**conf: object) -> Celery:
    app = Celery(f"t{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(conf)
    return app


class Package:
    """A uniquely named package on sys.path: ``write(module, text)`` returns the dotted name."""

    def __init__(self, root: Path) -> None:
        self.name = f"pkg_{uuid.uuid4().hex[:8]}"
        (root / self.name).mkdir()
        (root / self.name / "__init__.py").write_text("")
        self.root = root

    def write(self, module: str, text: str) -> str:
        (self.root / self.name / f"{module}.py").write_text(textwrap.dedent(text))
        return f"{self.name}.{module}"

    def app(self, module: str) -> Celery:
        return importlib.import_module(f"{self.name}.{module}").app


@pytest.fixture
def package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    made = Package(tmp_path)
    yield made
    for loaded in [m for m in sys.modules if m.split(".")[0] == made.name]:
        del sys.modules[loaded]


# ---------------------------------------------------------------- queues


def test_a_bare_app_sends_everything_to_celerys_default_queue():
    found = app_queues(make_app())
    assert found.names == ("celery",)
    assert found.sources == {"celery": ("task_default_queue",)}
    assert found.declared is None and found.notes == ()


def test_task_default_queue_replaces_celery():
    assert worker_queues(make_app(task_default_queue="orders")) == ["orders"]


def test_declared_task_queues_come_after_the_default_queue_once_each():
    app = make_app(task_default_queue="b", task_queues=[Queue("a"), Queue("b"), Queue("c")])
    found = app_queues(app)
    assert found.names == ("b", "a", "c")
    assert found.declared == ("a", "b", "c")
    assert found.sources["b"] == ("task_default_queue", "task_queues")
    assert found.undeclared == ()


def test_task_queues_given_as_a_dict_of_options():
    app = make_app(task_queues={"video": {"exchange": "media"}, "image": {}})
    assert app_queues(app).declared == ("video", "image")


def test_routes_as_a_dict_name_every_queue_exact_glob_regex_and_plain_name():
    app = make_app(
        task_routes={
            "shop.tasks.invoice": {"queue": "billing"},
            "shop.mail.*": {"queue": "mail"},
            re.compile(r"(video|image)\.tasks\..*"): {"queue": "media"},
            "shop.tasks.report": "reports",
        }
    )
    found = app_queues(app)
    assert found.names == ("celery", "billing", "mail", "media", "reports")
    assert found.sources["mail"] == ("task_routes 'shop.mail.*'",)
    assert found.sources["media"] == (r"task_routes re '(video|image)\\.tasks\\..*'",)


def test_routes_as_a_list_of_dicts_and_of_ordered_pairs():
    app = make_app(
        task_routes=(
            {"a.x": {"queue": "qa"}},
            [("b.*", {"queue": "qb"}), (re.compile("c"), "qc")],
        )
    )
    found = app_queues(app)
    assert found.names == ("celery", "qa", "qb", "qc")
    assert found.sources["qa"] == ("task_routes[0] 'a.x'",)
    assert found.sources["qb"] == ("task_routes[1] 'b.*'",)


def test_a_route_to_a_kombu_queue_object_is_named_by_its_name():
    assert "fast" in app_queues(make_app(task_routes={"a": {"queue": Queue("fast")}})).names


def route_by_size(name, args, kwargs, options, task=None, **kw):
    return {"queue": "big" if args else "small"}


def test_router_functions_cannot_be_read_and_say_so():
    app = make_app(task_routes=[route_by_size, "shop.routers.Router", {"a": "qa"}])
    found = app_queues(app)
    assert found.names == ("celery", "qa")
    assert len(found.notes) == 2
    assert "route_by_size decides at publish time and cannot be read" in found.notes[0]
    assert "'shop.routers.Router'" in found.notes[1]
    assert all("-Q" in note for note in found.notes)


def test_a_route_with_only_an_exchange_names_no_queue():
    found = app_queues(make_app(task_routes={"a": {"exchange": "x", "routing_key": "y"}}))
    assert found.names == ("celery",)
    assert found.notes == (
        "task_routes 'a': route {'exchange': 'x', 'routing_key': 'y'} names no queue, skipped",
    )


def test_a_tasks_own_queue_option_and_a_beat_entrys_queue_are_named():
    app = make_app(
        beat_schedule={
            "nightly": {"task": "t.clean", "schedule": 60.0, "options": {"queue": "cron"}},
            "plain": {"task": "t.plain", "schedule": 60.0},
        }
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Celery 5.x: the queue task attribute is deprecated

        @app.task(shared=False, name="t.bake", queue="ovens")
        def bake():
            return 1

        app.finalize()
    found = app_queues(app)
    assert found.names == ("celery", "ovens", "cron")
    assert found.sources["ovens"] == ("task t.bake (queue=)",)
    assert found.sources["cron"] == ("beat_schedule['nightly'] options",)


def test_queues_routed_outside_declared_task_queues_are_kept_and_listed():
    app = make_app(
        task_default_queue="default",
        task_queues=[Queue("default")],
        task_routes={"x.*": {"queue": "extra"}},
    )
    found = app_queues(app)
    assert found.names == ("default", "extra")
    assert found.undeclared == ("extra",)


def test_unconsumed_names_the_apps_queues_no_worker_takes_in_the_apps_order():
    assert unconsumed(["celery", "icing", "ovens", "icing"], ["ovens", "other"]) == [
        "celery",
        "icing",
    ]
    assert unconsumed(("a",), {"a", "b"}) == []


# ---------------------------------------------------------------- periodic tasks


def test_a_static_beat_schedule_needs_beat():
    app = make_app(beat_schedule={"tick": {"task": "t.tick", "schedule": 5.0}})
    found = periodic(app)
    assert found.entries == {"tick": "t.tick"}
    assert found.needs_beat and found.notes == ()


def test_no_schedule_needs_no_beat():
    assert not periodic(make_app()).needs_beat


def test_add_periodic_task_in_on_after_configure_lands_in_beat_schedule_when_configured():
    app = Celery("periodic", set_as_current=False)

    @app.on_after_configure.connect
    def schedule(sender, **kwargs):
        sender.add_periodic_task(10.0, sender.signature("t.tick"), name="tick every 10 s")

    assert not app.configured
    found = periodic(app)  # reading app.conf loads the configuration: the signal fires
    assert found.entries == {"tick every 10 s": "t.tick"}
    assert app.conf.beat_schedule["tick every 10 s"]["schedule"] == 10.0


def test_add_periodic_task_in_on_after_finalize_lands_once_the_app_is_prepared():
    app = Celery("finalized", set_as_current=False)

    @app.on_after_finalize.connect
    def schedule(sender, **kwargs):
        sender.add_periodic_task(30.0, sender.signature("t.tock"), name="tock")

    assert prepare(app) == ()
    assert periodic(app).entries == {"tock": "t.tock"}


def test_a_handler_connected_in_a_task_module_is_never_called_and_is_named(package):
    # The celery #3589 trap: the task module is imported after the configuration
    # loaded, so on_after_configure has fired already; the real beat misses it too.
    tasks = f"{package.name}.tasks"
    package.write(
        "celery_app",
        f"""
        from celery import Celery
        app = Celery("late", include=["{tasks}"], set_as_current=False)
        """,
    )
    package.write(
        "tasks",
        f"""
        from {package.name}.celery_app import app

        @app.on_after_configure.connect
        def too_late(sender, **kwargs):
            sender.add_periodic_task(5.0, sender.signature("{tasks}.tick"), name="tick")

        @app.task(shared=False)
        def tick():
            return 1
        """,
    )
    app = package.app("celery_app")
    late = prepare(app)
    found = periodic(app, late)
    assert late == (f"{tasks}.too_late",)
    assert f"{tasks}.tick" in app.tasks
    assert found.entries == {} and not found.needs_beat
    assert "never calls it" in found.notes[0] and f"{tasks}.too_late" in found.notes[0]


def test_a_database_scheduler_needs_beat_without_entries():
    found = periodic(make_app(beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler"))
    assert found.needs_beat and found.entries == {}
    assert "keeps its own schedule" in found.notes[0]


def test_the_stacks_locked_scheduler_is_not_a_custom_schedule():
    assert periodic(make_app(beat_scheduler="stack.beat:LockedScheduler")).scheduler is None


# ---------------------------------------------------------------- tasks


def tasks_app() -> Celery:
    app = make_app(beat_schedule={"sweep": {"task": "shop.sweep", "schedule": 60.0}})

    @app.task(shared=False, name="shop.sweep")
    def sweep():
        return 0

    @app.task(shared=False, name="shop.total")
    def total(prices, discount=0):
        return sum(prices) - discount

    @app.task(shared=False, name="shop.ping", bind=True)
    def ping(self, value="pong", *args, **kwargs):
        return value

    @app.task(shared=False, name="shop.fire", ignore_result=True)
    def fire():
        return None

    @app.task(shared=False, name="shop.keyword")
    def keyword(*, when):
        return when

    @app.task(shared=False, name="diagnostics.echo")
    def echo(value=None):
        return value

    app.finalize()
    return app


def test_user_tasks_skip_celerys_and_the_stacks_and_read_required_arguments():
    infos = {t.name: t for t in user_tasks(tasks_app())}
    assert sorted(infos) == ["shop.fire", "shop.keyword", "shop.ping", "shop.sweep", "shop.total"]
    assert infos["shop.total"].required == ("prices",)
    assert infos["shop.ping"].required == ()  # a bound task's self is not an argument
    assert infos["shop.keyword"].required == ("when",)
    assert infos["shop.fire"].ignore_result
    assert infos["shop.sweep"].periodic and not infos["shop.ping"].periodic


def test_the_smoke_task_takes_no_argument_has_a_result_and_is_not_periodic_if_possible():
    tasks = user_tasks(tasks_app())
    assert callable_without_arguments(tasks).name == "shop.ping"
    periodic_only = [t for t in tasks if t.name in {"shop.sweep", "shop.fire", "shop.total"}]
    assert callable_without_arguments(periodic_only).name == "shop.sweep"
    assert callable_without_arguments([t for t in tasks if t.name == "shop.total"]) is None


def test_prepare_imports_the_include_modules_as_a_worker_does(package):
    package.write(
        "app",
        f"""
        from celery import Celery
        app = Celery("inc", include=["{package.name}.jobs"], set_as_current=False)
        """,
    )
    package.write(
        "jobs",
        f"""
        from {package.name}.app import app

        @app.task(shared=False)
        def work():
            return 1
        """,
    )
    app = package.app("app")
    assert f"{package.name}.jobs.work" not in app.tasks
    prepare(app)
    assert [t.name for t in user_tasks(app)] == [f"{package.name}.jobs.work"]


def test_worker_queues_of_an_imported_module(package):
    package.write(
        "routes",
        """
        from celery import Celery
        app = Celery("r", set_as_current=False)
        app.conf.task_routes = {"r.*": "fast"}
        """,
    )
    app = package.app("routes")
    prepare(app)
    assert worker_queues(app) == ["celery", "fast"]


def test_a_list_of_pairs_without_the_enclosing_tuple_is_reported_not_guessed():
    # Celery reads each pair as a router of its own; the docs wrap the list in a tuple.
    found = app_queues(make_app(task_routes=[("a.*", "qa")]))
    assert found.names == ("celery",)
    assert found.notes == (
        "task_routes[0]: 'a.*' is not a (pattern, route) pair, skipped",
        "task_routes[0]: 'qa' is not a (pattern, route) pair, skipped",
    )
