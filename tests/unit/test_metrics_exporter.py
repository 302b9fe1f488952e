from prometheus_client.core import HistogramMetricFamily

from stack.metrics.exporter import _histogram
from stack.metrics.recorder import (
    RUNTIME_BUCKETS_S,
    SEP,
)


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
