from datetime import UTC, datetime
from types import SimpleNamespace

from prometheus_client.core import HistogramMetricFamily

from stack.metrics.exporter import _histogram
from stack.metrics.recorder import (
    RUNTIME_BUCKETS_S,
    SENT_AT_HEADER,
    SEP,
    _queue_wait_s,
    bucket_index,
)


def test_bucket_index_is_the_first_bound_that_holds_the_value():
    assert bucket_index((1, 5, 10), 0.5) == 0
    assert bucket_index((1, 5, 10), 1) == 0
    assert bucket_index((1, 5, 10), 7) == 2
    assert bucket_index((1, 5, 10), 11) == 3  # +Inf


def test_histogram_buckets_are_cumulative_per_label_set():
    fields = {
        f"t{SEP}q{SEP}0".encode(): b"2",
        f"t{SEP}q{SEP}3".encode(): b"1",
        f"t{SEP}q{SEP}{len(RUNTIME_BUCKETS_S)}".encode(): b"1",
        f"t{SEP}q{SEP}sum".encode(): b"700.5",
    }
    family = _histogram("x_seconds", "help", RUNTIME_BUCKETS_S, fields)
    assert isinstance(family, HistogramMetricFamily)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("x_seconds_bucket", str(RUNTIME_BUCKETS_S[0]))] == 2
    assert samples[("x_seconds_bucket", str(RUNTIME_BUCKETS_S[3]))] == 3
    assert samples[("x_seconds_bucket", "+Inf")] == 4
    assert samples[("x_seconds_count", None)] == 4
    assert samples[("x_seconds_sum", None)] == 700.5


def test_queue_wait_counts_from_publish():
    request = SimpleNamespace(**{SENT_AT_HEADER: 100.0, "eta": None})
    assert _queue_wait_s(request, 102.5) == 2.5


def test_queue_wait_of_a_countdown_task_counts_from_its_eta():
    eta = datetime.fromtimestamp(110.0, UTC).isoformat()
    request = SimpleNamespace(**{SENT_AT_HEADER: 100.0, "eta": eta})
    assert _queue_wait_s(request, 111.0) == 1.0


def test_queue_wait_is_unknown_without_the_publish_stamp():
    assert _queue_wait_s(SimpleNamespace(eta=None), 5.0) is None
