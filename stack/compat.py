"""Workarounds for upstream bugs, each with how it shows and when to remove it.

Applied once, when stack.celery_app is imported (so in every worker, beat and API).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual as kombu_virtual

logger = logging.getLogger(__name__)

_PATCHED = "_stack_restore_guard"


def guard_restore_after_teardown() -> None:
    """Don't crash the worker restoring unacked messages on a torn-down connection.

    Celery 5.7's consumer, on a broker connection loss, ``collect()``s the
    connection (which detaches its transport) and then ``close()``s it; the
    close re-queues the channel's unacked messages and needs a new Redis
    client, built from the detached transport's ``client`` (None):
    ``AttributeError: 'NoneType' object has no attribute 'hostname'`` escapes
    as an "Unrecoverable error" and the worker stops consuming. Seen by
    tests/integration/test_chaos_redis.py on a Redis restart (about 1 run in 3).
    Nothing can be restored over a connection that is gone; with acks_late the
    messages stay in Redis's unacked hash and come back after the visibility
    timeout, as they would after a killed worker. tests/integration/test_compat.py
    fails once kombu no longer has the bug: then remove this.
    """
    qos: Any = kombu_redis.QoS
    if getattr(qos, _PATCHED, False):
        return
    original = qos.restore_unacked

    @functools.wraps(original)
    def restore_unacked(self: Any, client: Any = None) -> Any:
        transport = getattr(self.channel, "connection", None)
        if client is None and transport is not None and transport.client is None:
            logger.warning(
                "broker connection already torn down: %d unacked message(s) will come "
                "back after the visibility timeout",
                len(self._delivered),
            )
            return None
        return original(self, client)

    qos.restore_unacked = restore_unacked
    setattr(qos, _PATCHED, True)


def _torn_down(channel: Any) -> bool:
    transport = getattr(channel, "connection", None)
    return transport is None or getattr(transport, "client", None) is None


def guard_ack_after_teardown() -> None:
    """Don't crash the worker acking a message of a channel torn down by a reconnect.

    Same Celery 5.7 teardown as above, later: a pool child finishes a task whose
    message came over the old channel, and the ack (or reject) runs there after the
    consumer reconnected: ``AttributeError: 'NoneType' object has no attribute
    'client'`` stops the worker ("Unrecoverable error") and the batch is left
    unconsumed. Seen by tests/integration/test_chaos_redis.py (about 1 run in 15).
    Only the channel's own bookkeeping is cleared: the message stays in Redis's
    unacked hash and comes back after the visibility timeout (at-least-once, as
    after a killed worker).
    """
    qos: Any = kombu_redis.QoS
    if getattr(qos.ack, _PATCHED, False):
        return
    forget: Any = kombu_virtual.QoS.ack  # local state only, no Redis call
    original_ack, original_reject = qos.ack, qos.reject

    @functools.wraps(original_ack)
    def ack(self: Any, delivery_tag: Any) -> Any:
        if _torn_down(self.channel):
            logger.warning(TORN_DOWN_ACK)
            return forget(self, delivery_tag)
        return original_ack(self, delivery_tag)

    @functools.wraps(original_reject)
    def reject(self: Any, delivery_tag: Any, requeue: bool = False) -> Any:
        if _torn_down(self.channel):
            logger.warning(TORN_DOWN_ACK)
            return forget(self, delivery_tag)
        return original_reject(self, delivery_tag, requeue)

    for patched in (ack, reject):
        setattr(patched, _PATCHED, True)
    qos.ack, qos.reject = ack, reject


TORN_DOWN_ACK = (
    "ack on a torn-down broker connection: the message comes back after the visibility timeout"
)


def apply() -> None:
    guard_restore_after_teardown()
    guard_ack_after_teardown()
