from datetime import UTC, datetime
from types import SimpleNamespace

from stack.metrics.hooks import _queue_wait_s
from stack.metrics.recorder import (
    SENT_AT_HEADER,
)


def test_queue_wait_counts_from_publish():
    request = SimpleNamespace(**{SENT_AT_HEADER: 100.0, "eta": None})
    assert _queue_wait_s(request, 102.5) == 2.5


def test_queue_wait_of_a_countdown_task_counts_from_its_eta():
    eta = datetime.fromtimestamp(110.0, UTC).isoformat()
    request = SimpleNamespace(**{SENT_AT_HEADER: 100.0, "eta": eta})
    assert _queue_wait_s(request, 111.0) == 1.0


def test_queue_wait_is_unknown_without_the_publish_stamp():
    assert _queue_wait_s(SimpleNamespace(eta=None), 5.0) is None
