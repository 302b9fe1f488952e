"""Dead letters: the DeadLetter record and the store the worker, API and CLI share (a pure store:
replaying a record is `stack.submit.replay`, rendering one is the CLI's).

On Redis, Celery simply acks a failed task: it is gone. Here a task that
failed for good (retries exhausted, an error never retried, a hard time limit,
a worker lost too often) is recorded once, with what is needed to understand
and replay it. The store owns the ``<key_prefix>deadletter:`` keys:

* ``records``  hash: record id -> record JSON
* ``index``    zset: record id -> time added (Redis clock), newest last
* ``tasks``    hash: task id -> record id (one record per task id: exactly once)
"""

from __future__ import annotations

import json
import traceback
import uuid
from typing import Any

import redis
from pydantic import BaseModel, Field

from stack.errors import DeadLetterNotFound
from stack.settings import Settings

MAX_TRACEBACK_CHARS = 20_000  # enough for any real traceback; bounds a runaway one
DEFAULT_PAGE_SIZE = 50
REPLAY_WATCH_ATTEMPTS = 10  # optimistic-lock retries when two replays race on one record

# Insert a record once per task id, then apply retention (age first, then count).
ADD_LUA = """
-- KEYS[1]  records hash   KEYS[2]  index zset   KEYS[3]  tasks hash
-- ARGV[1]  record id      ARGV[2]  task id      ARGV[3]  record JSON
-- ARGV[4]  max entries    ARGV[5]  max age (s)
-- Returns {record id, created (1|0), records removed by retention}
local existing = redis.call('HGET', KEYS[3], ARGV[2])
if existing then return {existing, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
local function remove(ids)
  for _, id in ipairs(ids) do
    local json = redis.call('HGET', KEYS[1], id)
    if json then
      local task_id = cjson.decode(json)['task_id']
      if redis.call('HGET', KEYS[3], task_id) == id then redis.call('HDEL', KEYS[3], task_id) end
      redis.call('HDEL', KEYS[1], id)
    end
    redis.call('ZREM', KEYS[2], id)
  end
  return #ids
end
local cutoff = '(' .. (now - tonumber(ARGV[5]))
local removed = remove(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff))
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then removed = removed + remove(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) end
return {ARGV[1], 1, removed}
"""

# Delete one record and its task-id entry; 0 when the id is unknown.
DELETE_LUA = """
-- KEYS[1]  records hash   KEYS[2]  index zset   KEYS[3]  tasks hash
-- ARGV[1]  record id
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return 0 end
local task_id = cjson.decode(json)['task_id']
if redis.call('HGET', KEYS[3], task_id) == ARGV[1] then redis.call('HDEL', KEYS[3], task_id) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class Replay(BaseModel):
    """One replay of a record: the new task id it was published as."""

    task_id: str
    at: float


class DeadLetter(BaseModel):
    """A task that failed for good: what ran, where, how it failed, and how often."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    task_id: str
    name: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str  # logical queue name, e.g. "default"
    priority: str  # named level, e.g. "normal"
    exception_type: str
    exception_message: str
    traceback: str = ""
    reason: str  # why it was not retried: "gave up after 4 attempts", "worker lost 4 times", ...
    attempts: int
    first_failure_at: float
    last_failure_at: float
    worker: str | None = None  # hostname of the worker that saw the last failure
    replays: list[Replay] = Field(default_factory=list)

    @staticmethod
    def describe(exc: BaseException) -> tuple[str, str, str]:
        """(type, message, traceback) of an exception, the type as an importable path."""
        cls = type(exc)
        name = cls.__qualname__
        if cls.__module__ != "builtins":
            name = f"{cls.__module__}.{name}"
        text = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
        return name, str(exc), text

    def to_json(self) -> str:
        """The stored form; arguments JSON cannot carry are kept as their repr."""
        return json.dumps(self.model_dump(), default=repr)

    @property
    def error(self) -> str:
        """One line for a status answer: the exception and why it was not retried."""
        short = self.exception_type.rpartition(".")[2]
        return f"{short}: {self.exception_message} ({self.reason})"


class DeadLetterStore:
    """The dead letters of one stack (one Redis, one key prefix), with bounded retention."""

    def __init__(self, client: redis.Redis[bytes], settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        prefix = f"{settings.key_prefix}deadletter:"
        self.records_key = f"{prefix}records"
        self.index_key = f"{prefix}index"
        self.tasks_key = f"{prefix}tasks"
        self._add = client.register_script(ADD_LUA)
        self._delete = client.register_script(DELETE_LUA)

    @property
    def keys(self) -> list[str]:
        return [self.records_key, self.index_key, self.tasks_key]

    def add(self, record: DeadLetter) -> tuple[str, bool]:
        """Store ``record`` unless its task id already has one; return (record id, created)."""
        record_id, created, _ = self._add(
            keys=self.keys,
            args=[
                record.id,
                record.task_id,
                record.to_json(),
                self.settings.dead_letter_max_entries,
                self.settings.dead_letter_max_age_s,
            ],
        )
        return _text(record_id), bool(created)

    def count(self) -> int:
        return int(self.redis.zcard(self.index_key))

    def page(self, offset: int = 0, limit: int = DEFAULT_PAGE_SIZE) -> list[DeadLetter]:
        """Records newest first, ``limit`` of them from ``offset``."""
        if limit <= 0:
            return []
        ids = self.redis.zrevrange(self.index_key, offset, offset + limit - 1)
        if not ids:
            return []
        raw = self.redis.hmget(self.records_key, ids)
        return [DeadLetter.model_validate_json(item) for item in raw if item is not None]

    def get(self, record_id: str) -> DeadLetter:
        raw = self.redis.hget(self.records_key, record_id)
        if raw is None:
            raise DeadLetterNotFound(record_id)
        return DeadLetter.model_validate_json(raw)

    def find_by_task(self, task_id: str) -> DeadLetter | None:
        """The record of task ``task_id``, or None when it was not dead-lettered."""
        record_id = self.redis.hget(self.tasks_key, task_id)
        if record_id is None:
            return None
        raw = self.redis.hget(self.records_key, record_id)
        return None if raw is None else DeadLetter.model_validate_json(raw)

    def note_replay(self, record_id: str, replay: Replay) -> None:
        """Append ``replay`` to the record's history (optimistic lock; a deleted record is left)."""
        for _ in range(REPLAY_WATCH_ATTEMPTS):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(self.records_key)
                    raw = self.redis.hget(self.records_key, record_id)
                    if raw is None:  # deleted meanwhile: nothing left to annotate
                        return
                    record = DeadLetter.model_validate_json(raw)
                    record.replays.append(replay)
                    pipe.multi()
                    pipe.hset(self.records_key, record_id, record.to_json())
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def delete(self, record_id: str) -> None:
        if not self._delete(keys=self.keys, args=[record_id]):
            raise DeadLetterNotFound(record_id)

    def purge(self) -> int:
        """Remove every record; return how many there were."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zcard(self.index_key)
        pipe.delete(*self.keys)
        count, _ = pipe.execute()
        return int(count)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
