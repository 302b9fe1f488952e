"""The API's fast publish: a reference-app task into Redis in one pipelined round trip.

``submit()`` goes through ``send_task``: a thread-pool hop from the event loop,
a producer from the pool, then one round trip for the message, one for the
metrics counter and one for the ``task-sent`` event. Here Celery still builds
the message (``app.amqp.create_task_message``, so its headers are Celery's own
and a stock worker consumes it), and one non-transactional pipeline on
``redis.asyncio`` sends the ``LPUSH`` of kombu's Redis envelope to the
priority list, the ``submitted`` counter and the ``task-sent`` event together.
The task id is answered only once Redis has replied to the ``LPUSH``.

Only for the reference app with ``STACK_EXECUTION=celery`` on a plain
``redis://`` broker (:meth:`FastPublisher.handles`); anything else
(a user's app and its own routing, direct execution, TLS, sentinel, a global
key prefix) goes through ``submit()`` unchanged. ``before_task_publish`` receivers
run as with ``send_task``; ``after_task_publish`` is not sent: the one receiver
in this process, the metrics counter, is written in the pipeline instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio
from celery import Celery, signals
from celery.events import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps

from stack.arguments import check_depth
from stack.connection import REDIS_ERRORS, ssl_options, unavailable
from stack.context import context_of
from stack.errors import UnknownTask
from stack.metrics.recorder import SEP
from stack.queues import PRIORITY_SEPARATOR, Priority, is_reference
from stack.settings import Settings
from stack.submit import destination

RETRY_INTERVAL_S = 0.2  # as the app's task_publish_retry_policy
PERSISTENT, TRANSIENT = 2, 1  # AMQP delivery modes: task messages persist, events do not


class FastPublisher:
    """One per Celery app and event loop: reuses its connections for every publish."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings: Settings = context_of(app).settings
        self.hostname = anon_nodename()
        self._client: redis.asyncio.Redis[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handles(self) -> bool:
        """Whether this fast path publishes exactly what ``submit()`` would."""
        options = self.app.conf.broker_transport_options or {}
        return (
            is_reference(self.app)
            and self.settings.execution == "celery"
            and self.settings.broker_url.startswith("redis://")  # rediss://: not tested yet
            and not options.get("global_keyprefix")
            and self.app.conf.task_serializer == "json"
        )

    def client(self) -> redis.asyncio.Redis[bytes]:
        """The client of the running loop (a redis.asyncio connection is bound to its loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            timeout = self.settings.publish_timeout_s
            password = self.settings.redis_password
            self._client = redis.asyncio.Redis.from_url(
                self.settings.broker_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                decode_responses=False,
                password=password.get_secret_value() if password else None,
                **ssl_options(self.settings),
            )
            self._loop = loop
        return self._client

    async def publish(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        priority: str | int | Priority = Priority.NORMAL,
        queue: str | None = None,
    ) -> str:
        """As :func:`stack.submit.submit` for the reference app; BrokerUnavailable when Redis
        has not stored the message within the publish timeout."""
        if name not in self.app.tasks:
            raise UnknownTask(name)
        check_depth(args, kwargs or {})
        level = Priority.parse(priority)
        physical = destination(self.app, self.settings, name, queue)
        task_id = str(uuid.uuid4())
        commands = self._commands(name, list(args), dict(kwargs or {}), task_id, physical, level)
        deadline = time.monotonic() + self.settings.publish_timeout_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._send(commands)
                return task_id
            except redis.ConnectionError as exc:  # never sent, or no reply: kombu retries too
                if time.monotonic() + RETRY_INTERVAL_S >= deadline:
                    raise self._unavailable(exc) from exc
                await asyncio.sleep(RETRY_INTERVAL_S)
            except (TimeoutError, *REDIS_ERRORS) as exc:  # type: ignore[misc]
                raise self._unavailable(exc) from exc

    async def _send(self, commands: list[tuple[str, ...]]) -> None:
        pipe = self.client().pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = await pipe.execute(raise_on_error=False)
        if isinstance(replies[0], Exception):  # the LPUSH itself: the task is not queued
            raise replies[0]

    def _unavailable(self, exc: BaseException) -> Exception:
        timeout = self.settings.publish_timeout_s
        return unavailable(
            exc, self.settings.broker_url, f"within {timeout:g} s: the task was not queued"
        )

    def _commands(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        task_id: str,
        physical: str,
        level: Priority,
    ) -> list[tuple[str, ...]]:
        """LPUSH of the message first, then the counter and the event (as send_task orders)."""
        app, task = self.app, self.app.tasks[name]
        headers, properties, body, sent_event = app.amqp.create_task_message(
            task_id,
            name,
            args,
            kwargs,
            reply_to=app.thread_oid,
            time_limit=task.time_limit,
            soft_time_limit=task.soft_time_limit,
            create_sent_event=app.conf.task_send_sent_event,
            ignore_result=None,
        )
        signals.before_task_publish.send(
            sender=name,
            body=body,
            exchange="",
            routing_key=physical,
            headers=headers,
            properties=properties,
            declare=[],
            retry_policy=None,
        )
        properties = {**properties, "delivery_mode": PERSISTENT, "priority": level.value}
        message = self._envelope(body, headers, properties, "", physical)
        key = physical if level.value == 0 else f"{physical}{PRIORITY_SEPARATOR}{level.value}"
        commands: list[tuple[str, ...]] = [("LPUSH", key, message)]
        context = context_of(app)
        if self.settings.metrics_enabled:
            counter = context.metrics.counter_key("submitted")
            commands.append(("HINCRBY", counter, f"{name}{SEP}{physical}", "1"))
        if sent_event:
            commands.append(self._sent_event(sent_event, physical))
        return commands

    def _sent_event(self, fields: dict[str, Any], physical: str) -> tuple[str, ...]:
        """The ``task-sent`` event Flower shows, on the fanout channel kombu publishes to."""
        exchange = str(self.app.conf.event_exchange)
        event = Event(
            "task-sent",
            hostname=self.hostname,
            utcoffset=utcoffset(),
            pid=os.getpid(),
            clock=self.app.clock.forward(),
            **fields,
            queue=physical,
            exchange="",
            routing_key=physical,
        )
        properties = {"delivery_mode": TRANSIENT, "priority": 0}
        headers = {"hostname": self.hostname}
        envelope = self._envelope(event, headers, properties, exchange, "task.sent")
        db = self.client().connection_pool.connection_kwargs.get("db", 0)
        return ("PUBLISH", f"/{db}.{exchange}/task.sent", envelope)

    @staticmethod
    def _envelope(
        body: Any,
        headers: dict[str, Any],
        properties: dict[str, Any],
        exchange: str,
        routing_key: str,
    ) -> str:
        """kombu's Redis message: the serialized body in base64, its routing and a tag."""
        content_type, encoding, data = serialize(body, serializer="json")
        raw = data.encode() if isinstance(data, str) else data
        return str(
            dumps(
                {
                    "body": base64.b64encode(raw).decode(),
                    "content-encoding": encoding,
                    "content-type": content_type,
                    "headers": headers,
                    "properties": {
                        **properties,
                        "delivery_info": {"exchange": exchange, "routing_key": routing_key},
                        "body_encoding": "base64",
                        "delivery_tag": str(uuid.uuid4()),
                    },
                }
            )
        )


def publisher_for(app: Celery) -> FastPublisher:
    """The app's one FastPublisher (kept on its Celery app, like its other clients)."""
    publisher: FastPublisher | None = getattr(app, "_stack_fast_publisher", None)
    if publisher is None:
        publisher = FastPublisher(app)
        app._stack_fast_publisher = publisher
    return publisher
