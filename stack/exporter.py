"""The Prometheus exporter: a Collector that reads the stack's state from Redis at scrape time.

``GET /metrics`` on the API (any API process, on any host: they all read the
same Redis). Counters and histograms are the totals ``stack.metrics`` adds up;
gauges (queue depth over every priority list, unacked messages, dead letters,
workers up) are read live. If Redis does not answer, the scrape still succeeds
with ``celery_stack_redis_up 0``, so the alert fires instead of the scrape failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from stack import queues
from stack.metrics import (
    EVENTS,
    HEARTBEAT_STALE_S,
    HISTOGRAMS,
    NAMESPACE,
    SEP,
    MetricsRecorder,
)
from stack.task import redis_of, settings_of

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"  # kombu's Redis transport: delivered, not yet acked (ETA tasks too)


class StackCollector:
    """A prometheus_client Collector reading the stack-wide state from Redis per scrape."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings = settings_of(app)
        self.recorder = MetricsRecorder(redis_of(app), self.settings.key_prefix)

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_redis_up", "1 when Redis answered this scrape, else 0."
        )
        try:
            families = list(self._families())
        except redis.RedisError as exc:
            log.warning("metrics scrape: Redis did not answer (%s)", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        physical = [queues.queue_name(self.settings, q) for q in queues.QUEUES]
        pipe = self.recorder.redis.pipeline(transaction=False)
        for event in EVENTS:
            pipe.hgetall(self.recorder.counter_key(event))
        for name in HISTOGRAMS:
            pipe.hgetall(self.recorder.histogram_key(name))
        for queue in physical:
            for key in queues.priority_lists(queue):
                pipe.llen(key)
        pipe.hlen(UNACKED_KEY)
        now = time.time()
        pipe.zremrangebyscore(self.recorder.workers_key, "-inf", now - WORKER_FORGET_S)
        pipe.zcount(self.recorder.workers_key, now - HEARTBEAT_STALE_S, "+inf")
        replies = iter(pipe.execute())

        for event, help_text in EVENTS.items():
            family = CounterMetricFamily(
                f"{NAMESPACE}_tasks_{event}", help_text, labels=["task", "queue"]
            )
            for field, value in sorted(next(replies).items()):
                family.add_metric(field.decode().split(SEP), float(value))
            yield family
        for metric, help_text, buckets in HISTOGRAMS.values():
            yield _histogram(f"{NAMESPACE}_{metric}", help_text, buckets, next(replies))

        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth",
            "Messages waiting in a queue, summed over its priority lists.",
            labels=["queue"],
        )
        for queue in physical:
            depth.add_metric([queue], sum(int(next(replies)) for _ in queues.PRIORITY_STEPS))
        yield depth
        yield _gauge("unacked_messages", "Messages delivered to workers, not yet acked.", replies)
        next(replies)  # forgotten workers
        yield _gauge("workers_up", "Workers whose heartbeat is fresh.", replies)
        dead = GaugeMetricFamily(f"{NAMESPACE}_dead_letters", "Records in the dead-letter store.")
        dead.add_metric([], dead_letter_depth(self.app))
        yield dead


WORKER_FORGET_S = 86_400.0  # a heartbeat older than a day is dropped from the set


def _gauge(name: str, help_text: str, replies: Iterator[Any]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{NAMESPACE}_{name}", help_text)
    family.add_metric([], float(next(replies)))
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


def dead_letter_depth(app: Celery) -> int:
    """Records in the dead-letter store."""
    from stack.deadletter import DeadLetterStore

    return DeadLetterStore(redis_of(app), settings_of(app)).count()


def exposition(app: Celery) -> bytes:
    """The text format of every metric of the stack, as one scrape sees it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(app))
    return generate_latest(registry)


router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse, tags=["observability"])
def get_metrics(request: Request) -> Response:
    """Prometheus metrics of the whole stack (no API key: scrapers only read)."""
    body = exposition(request.app.state.celery)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
