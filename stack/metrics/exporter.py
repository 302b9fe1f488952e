"""The Prometheus exporter: a Collector that reads the stack's state from Redis at scrape time.

``GET /metrics`` on the API (any API process, on any host: they all read the
same Redis). Counters and histograms are the totals ``stack.metrics.recorder`` adds up;
gauges (queue depth over every priority list, unacked messages, dead letters,
workers up) are read live. If Redis does not answer, the scrape still succeeds
with ``celery_stack_redis_up 0``, so the alert fires instead of the scrape failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from celery import Celery
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from stack import queues
from stack.connection import REDIS_ERRORS
from stack.context import context_of
from stack.metrics.recorder import (
    EVENTS,
    HEARTBEAT_STALE_S,
    HISTOGRAMS,
    NAMESPACE,
    SEP,
    MetricsRecorder,
)

log = logging.getLogger(__name__)


class StackCollector:
    """A prometheus_client Collector reading the stack-wide state from Redis per scrape."""

    def __init__(self, app: Celery) -> None:
        self.context = context_of(app)
        self.settings = self.context.settings
        self.recorder: MetricsRecorder = self.context.metrics

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_redis_up", "1 when Redis answered this scrape, else 0."
        )
        try:
            families = list(self._families())
        except REDIS_ERRORS as exc:
            log.warning("metrics scrape: Redis did not answer (%s)", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        client = self.recorder.redis
        pipe = client.pipeline(transaction=False)
        for event in EVENTS:
            pipe.hgetall(self.recorder.counter_key(event))
        for name in HISTOGRAMS:
            pipe.hgetall(self.recorder.histogram_key(name))
        now = time.time()
        pipe.zremrangebyscore(self.recorder.workers_key, "-inf", now - WORKER_FORGET_S)
        pipe.zcount(self.recorder.workers_key, now - HEARTBEAT_STALE_S, "+inf")
        replies = iter(pipe.execute())
        # Queue state through its owners: depth over every priority list, unacked, dead letters.
        depths = queues.queue_depths(client, self.settings)
        unacked = queues.unacked_count(client)
        dead_letters = self.context.dead_letters.count()

        for event, help_text in EVENTS.items():
            family = CounterMetricFamily(
                f"{NAMESPACE}_tasks_{event}", help_text, labels=["task", "queue"]
            )
            for field, value in sorted(next(replies).items()):
                family.add_metric(field.decode().split(SEP), float(value))
            yield family
        for metric, help_text, buckets in HISTOGRAMS.values():
            yield _histogram(f"{NAMESPACE}_{metric}", help_text, buckets, next(replies))
        next(replies)  # forgotten workers

        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth",
            "Messages waiting in a queue, summed over its priority lists.",
            labels=["queue"],
        )
        for logical, count in depths.items():
            depth.add_metric([queues.physical_name(self.settings, logical)], count)
        yield depth
        yield _gauge("unacked_messages", "Messages delivered to workers, not yet acked.", unacked)
        yield _gauge("workers_up", "Workers whose heartbeat is fresh.", next(replies))
        yield _gauge("dead_letters", "Records in the dead-letter store.", dead_letters)


WORKER_FORGET_S = 86_400.0  # a heartbeat older than a day is dropped from the set


def _gauge(name: str, help_text: str, value: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{NAMESPACE}_{name}", help_text)
    family.add_metric([], float(value))
    return family


def _histogram(
    name: str, help_text: str, buckets: Sequence[float], fields: dict[bytes, bytes]
) -> HistogramMetricFamily:
    """Cumulative buckets per label set from the per-bucket counts stored in Redis."""
    counts: dict[tuple[str, str], list[int]] = {}
    sums: dict[tuple[str, str], float] = {}
    for raw, value in fields.items():
        task, queue, slot = raw.decode().split(SEP)
        if slot == "sum":
            sums[(task, queue)] = float(value)
        else:
            counts.setdefault((task, queue), [0] * (len(buckets) + 1))[int(slot)] += int(value)
    family = HistogramMetricFamily(name, help_text, labels=["task", "queue"])
    for labels, per_bucket in sorted(counts.items()):
        cumulative, running = [], 0
        for bound, count in zip([*map(str, buckets), "+Inf"], per_bucket, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family.add_metric(list(labels), cumulative, sum_value=sums.get(labels, 0.0))
    return family


def exposition(app: Celery) -> bytes:
    """The text format of every metric of the stack, as one scrape sees it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(app))
    return generate_latest(registry)
