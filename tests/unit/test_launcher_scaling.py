"""Scale arguments and scaled copies of a worker line (pure functions)."""

import pytest

from stack.checks.probes import StayedUp, WorkerPing
from stack.errors import SettingsError
from stack.launcher.scaling import group_of, index_of, instance, parse_scale, scaled
from stack.launcher.services import Service
from stack.settings import Settings

SETTINGS = Settings.load(environ={})


def worker() -> Service:
    return Service(
        "worker",
        "celery worker --hostname ${STACK_WORKER_HOSTNAME}",
        WorkerPing(SETTINGS, "worker-1@box"),
        "worker-1@box",
        requires=("redis",),
        env={"STACK_WORKER_HOSTNAME": "worker-1@box", "STACK_WORKER_QUEUES": "default"},
    )


def services() -> list[Service]:
    return [Service("redis", "redis-server", StayedUp()), worker()]


def test_scale_arguments_read_honcho_and_docker_spellings():
    assert parse_scale(["worker=3"]) == {"worker": 3}
    assert parse_scale(["worker=3,other=2", " w2 = 0 "]) == {"worker": 3, "other": 2, "w2": 0}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("worker", "write NAME=N"),
        ("=3", "write NAME=N"),
        ("worker=-1", "expected a whole number from 0 to 64"),
        ("worker=three", "expected a whole number from 0 to 64"),
        ("worker=1000", "expected a whole number from 0 to 64"),
        ("worker=", "expected a whole number"),
    ],
)
def test_a_bad_scale_argument_names_what_it_got_and_the_form(value, says):
    with pytest.raises(SettingsError, match=says):
        parse_scale([value])


def test_each_copy_is_its_own_node_gated_on_a_ping_to_that_name():
    copy = instance(worker(), 2, host="box")
    assert copy.name == "worker.2" and copy.url == "worker.2@box"
    assert isinstance(copy.probe, WorkerPing) and copy.probe.hostname == "worker.2@box"
    assert copy.env["STACK_WORKER_HOSTNAME"] == "worker.2@box"
    assert copy.env["STACK_WORKER_QUEUES"] == "default"
    assert copy.requires == ("redis",) and copy.command == worker().command
    assert (group_of("worker.2"), index_of("worker.2")) == ("worker", 2)
    assert (group_of("worker"), index_of("worker")) == ("worker", 1)


def test_scaled_replaces_the_line_by_its_copies_in_place():
    names = [s.name for s in scaled(services(), {"worker": 3}, host="box")]
    assert names == ["redis", "worker.1", "worker.2", "worker.3"]
    assert [s.name for s in scaled(services(), {"worker": 0})] == ["redis"]


def test_scaling_a_non_worker_or_unknown_line_is_refused_naming_what_can_be():
    with pytest.raises(
        SettingsError, match=r"'redis' is not a Celery worker line.*scalable: worker"
    ):
        scaled(services(), {"redis": 2})
    with pytest.raises(SettingsError, match=r"no service is named 'wrk' \(known: redis, worker\)"):
        scaled(services(), {"wrk": 2})
