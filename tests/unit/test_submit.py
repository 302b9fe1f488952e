"""submit()'s pure parts: the publish deadline, and refusals before Redis is touched."""

from __future__ import annotations

import pytest
from celery import Celery

from stack.arguments import MAX_ARGUMENT_DEPTH
from stack.context import bind
from stack.errors import ArgumentsTooDeep, SettingsError, UnknownQueue, UnknownTask
from stack.settings import Settings
from stack.submit import publish_deadline, submit


def offline_app() -> Celery:
    """An app bound to a Redis nobody listens on: any publish would fail."""
    app = Celery("offline", set_as_current=False)
    bind(app, Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))

    @app.task(name="offline.noop", shared=False)
    def noop() -> None:
        return None

    return app


def test_the_publish_retry_errback_gives_up_once_the_deadline_has_passed():
    errback = publish_deadline(timeout_s=0.0)
    with pytest.raises(ConnectionError):
        errback(ConnectionError("refused"), 0.2)


def test_the_publish_retry_errback_lets_kombu_retry_before_the_deadline():
    publish_deadline(timeout_s=60.0)(ConnectionError("refused"), 0.2)  # no raise: retry


def test_an_unknown_task_is_refused_without_touching_redis():
    with pytest.raises(UnknownTask, match=r"offline\.nope"):
        submit(offline_app(), "offline.nope")


def test_an_unknown_queue_is_refused_without_touching_redis():
    with pytest.raises(UnknownQueue, match=r"expected one of celery \('normal' is a priority"):
        submit(offline_app(), "offline.noop", queue="normal")


def test_the_reference_apps_unknown_queue_names_its_four():
    from stack.app_factory import create_celery_app

    app = create_celery_app(Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))
    with pytest.raises(UnknownQueue, match="expected one of default, file_processing"):
        submit(app, "diagnostics.echo", queue="normal")


def routed_app() -> tuple[Celery, list[dict[str, object]]]:
    """A user's app with a task queue=, a task_routes entry and a default queue of its own;
    send_task is recorded instead of published."""
    app = Celery("shop", set_as_current=False)
    app.conf.task_default_queue = "orders"
    app.conf.task_routes = {"shop.mail.*": {"queue": "mail"}}
    bind(app, Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"}))

    def noop() -> None:
        return None

    for name, queue in [("shop.total", None), ("shop.mail.send", None), ("shop.invoice", "pdf")]:
        app.task(name=name, shared=False, queue=queue)(noop)
    sent: list[dict[str, object]] = []

    class Sent:
        id = "t-1"

    def send_task(name: str, **options: object) -> Sent:
        sent.append({"name": name, **options})
        return Sent()

    app.send_task = send_task  # type: ignore[method-assign]
    return app, sent


QUEUE_ATTRIBUTE = "ignore::celery.exceptions.CDeprecationWarning"  # queue= on a task: 6.0 drops it


@pytest.mark.filterwarnings(QUEUE_ATTRIBUTE)
@pytest.mark.parametrize(
    ("task", "queue"),
    [("shop.total", "orders"), ("shop.mail.send", "mail"), ("shop.invoice", "pdf")],
)
def test_a_user_apps_task_goes_where_its_own_router_sends_it(task, queue):
    """route_for knows only the reference app's names: a user's task used to go to `default`,
    a queue its worker does not consume (PENDING for ever)."""
    app, sent = routed_app()
    submit(app, task)
    assert sent[-1]["queue"] == queue
    assert "routing_key" not in sent[-1]  # the app's Queue carries its own


@pytest.mark.filterwarnings(QUEUE_ATTRIBUTE)
def test_a_user_apps_explicit_queue_must_be_one_of_its_queues():
    app, sent = routed_app()
    submit(app, "shop.total", queue="mail")
    assert sent[-1]["queue"] == "mail"
    with pytest.raises(UnknownQueue, match="expected one of orders, mail, pdf"):
        submit(app, "shop.total", queue="default")


def test_an_app_the_factory_did_not_bind_is_a_clear_error():
    with pytest.raises(SettingsError, match="not bound to celery-stack"):
        submit(Celery("plain", set_as_current=False), "anything")


def test_arguments_nested_past_the_limit_are_refused_without_touching_redis():
    deep: object = "leaf"
    for _ in range(MAX_ARGUMENT_DEPTH + 1):
        deep = {"next": deep}
    with pytest.raises(ArgumentsTooDeep, match=r"argument args\[1\] nests deeper than"):
        submit(offline_app(), "offline.noop", args=[1, deep])
