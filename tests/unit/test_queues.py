import pytest

from stack import queues
from stack.errors import UnknownQueue
from stack.queues import Priority
from stack.settings import Settings


def test_normal_is_the_default_priority_not_celerys_zero():
    assert queues.DEFAULT_PRIORITY is Priority.NORMAL
    assert Priority.NORMAL.value == 6


def test_priority_levels_sit_on_kombus_redis_steps_with_critical_first():
    assert [p.value for p in Priority] == queues.PRIORITY_STEPS
    assert sorted(Priority, key=lambda p: p.value)[0] is Priority.CRITICAL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", Priority.CRITICAL),
        ("LOW", Priority.LOW),
        (3, Priority.HIGH),
        (4, Priority.NORMAL),
        (None, Priority.NORMAL),
    ],
)
def test_priority_parses_names_and_raw_steps(value, expected):
    parsed = Priority.from_step(value) if value is None else Priority.parse(value)
    assert parsed is expected


def test_an_unknown_priority_lists_the_levels():
    with pytest.raises(ValueError, match="critical, high, normal, low"):
        Priority.parse("urgent")


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("files.process_csv", "file_processing"),
        ("queries.run_query", "query_processing"),
        ("maintenance.health_check", "maintenance"),
        ("diagnostics.echo", "default"),
    ],
)
def test_tasks_route_to_their_workload_queue(task, queue):
    assert queues.route_for(task) == queue


def test_queue_names_carry_the_isolation_prefix():
    settings = Settings.load(environ={"STACK_QUEUE_PREFIX": "gw1."})
    assert queues.queue_name(settings, "default") == "gw1.default"
    assert queues.task_routes(settings)["files.*"] == {"queue": "gw1.file_processing"}


def test_an_unknown_queue_is_refused_with_the_known_ones():
    with pytest.raises(UnknownQueue, match="default, file_processing"):
        queues.queue_name(Settings.load(environ={}), "urgent")


def test_depth_counts_every_priority_list_of_a_queue():
    assert queues.priority_lists("q") == ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]
