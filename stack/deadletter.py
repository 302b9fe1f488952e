"""Dead letters: the DeadLetter record and the store the worker, API and CLI share (a pure store:
replaying a record is `stack.submit.replay`, rendering one is the CLI's).

On Redis, Celery simply acks a failed task: it is gone. Here a task that
failed for good (retries exhausted, an error never retried, a hard time limit,
a worker lost too often) is recorded once, with what is needed to understand
and replay it. The store owns the ``<key_prefix>deadletter:`` keys:

* ``records``  hash: record id -> record JSON
* ``index``    zset: record id -> time added (Redis clock), newest last
* ``tasks``    hash: task id -> record id (one record per task id: exactly once)
* ``replays``  hash: record id -> its one replay, JSON ``{task_id, state, claimed_at, at}``:
  ``claimed`` while one caller publishes it, ``replayed`` once published (exactly once)
* ``by:name:<task>``, ``by:error:<type>``  zsets like ``index`` (a filtered page); ``facets``: keys
"""

from __future__ import annotations

import json
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel, Field

from stack.connection import SOCKET_TIMEOUT_S
from stack.errors import DeadLetterNotFound
from stack.settings import Settings

MAX_TRACEBACK_CHARS = 20_000  # enough for any real traceback; bounds a runaway one
DEFAULT_PAGE_SIZE = 50

# A record's facet zsets (ARGV[6]: their prefix; KEYS[5]: the set of their keys).
FACETS_LUA = """
local function facets(record)
  return {ARGV[6] .. 'name:' .. record['name'], ARGV[6] .. 'error:' .. record['exception_type']}
end
local function unfacet(record, id)
  for _, key in ipairs(facets(record)) do
    redis.call('ZREM', key, id)
    if redis.call('EXISTS', key) == 0 then redis.call('SREM', KEYS[5], key) end
  end
end
"""

# Insert a record once per task id, then apply retention (age first, then count).
ADD_LUA = """
-- KEYS[1]  records hash   KEYS[2]  index zset   KEYS[3]  tasks hash   KEYS[4]  replays hash
-- KEYS[5]  facets set
-- ARGV[1]  record id      ARGV[2]  task id      ARGV[3]  record JSON
-- ARGV[4]  max entries    ARGV[5]  max age (s)  ARGV[6]  facet key prefix
-- Returns {record id, created (1|0), records removed by retention}
local existing = redis.call('HGET', KEYS[3], ARGV[2])
if existing then return {existing, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
FACETS_LUA
for _, key in ipairs(facets(cjson.decode(ARGV[3]))) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('SADD', KEYS[5], key)
end
local function remove(ids)
  for _, id in ipairs(ids) do
    local json = redis.call('HGET', KEYS[1], id)
    if json then
      local record = cjson.decode(json)
      local task_id = record['task_id']
      if redis.call('HGET', KEYS[3], task_id) == id then redis.call('HDEL', KEYS[3], task_id) end
      redis.call('HDEL', KEYS[1], id)
      unfacet(record, id)
    end
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
  end
  return #ids
end
local cutoff = '(' .. (now - tonumber(ARGV[5]))
local removed = remove(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff))
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then removed = removed + remove(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) end
return {ARGV[1], 1, removed}
""".replace("FACETS_LUA", FACETS_LUA)

# Delete one record, its task-id entry and its replay; 0 when the id is unknown.
DELETE_LUA = """
-- KEYS as ADD's   ARGV[1]  record id   ARGV[6]  facet key prefix (ARGV[2..5] unused)
FACETS_LUA
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return 0 end
local record = cjson.decode(json)
local task_id = record['task_id']
if redis.call('HGET', KEYS[3], task_id) == ARGV[1] then redis.call('HDEL', KEYS[3], task_id) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
unfacet(record, ARGV[1])
return 1
""".replace("FACETS_LUA", FACETS_LUA)

# Remove every record and every facet zset; returns how many records there were.
PURGE_LUA = """
-- KEYS as ADD's
local count = redis.call('ZCARD', KEYS[2])
for _, key in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', key) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return count
"""

# Claim the one replay of a record: of any number of concurrent callers, one publishes it.
CLAIM_REPLAY_LUA = """
-- KEYS[1]  records hash   KEYS[2]  replays hash
-- ARGV[1]  record id      ARGV[2]  task id to publish under   ARGV[3]  claim timeout (s)
-- Returns {state, task id}: 'missing' (no such record), 'claimed' (the caller publishes it now,
-- under that id), 'pending' (another caller is publishing it), 'replayed' (published already)
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return {'missing', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local task_id = ARGV[2]
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local replay = cjson.decode(held)
  if replay['state'] == 'replayed' then return {'replayed', replay['task_id']} end
  if now - replay['claimed_at'] < tonumber(ARGV[3]) then return {'pending', replay['task_id']} end
  task_id = replay['task_id']  -- its replayer died: take the claim over, under the same task id
else
  local earlier = cjson.decode(json)['replays']  -- replayed before claims existed
  if #earlier > 0 then return {'replayed', earlier[#earlier]['task_id']} end
end
local claim = {task_id = task_id, state = 'claimed', claimed_at = now}
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(claim))
return {'claimed', task_id}
"""

# The claimed replay was published: record it (1), or 0 when the claim is gone (record deleted).
COMMIT_REPLAY_LUA = """
-- KEYS[1]  records hash   KEYS[2]  replays hash
-- ARGV[1]  record id      ARGV[2]  task id it was published under
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
local replay = cjson.decode(held)
if replay['task_id'] ~= ARGV[2] then return 0 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
local t = redis.call('TIME')
replay['state'] = 'replayed'
replay['at'] = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(replay))
return 1
"""

# The claimed replay could not be published: drop the claim (1), so a later replay publishes.
RELEASE_REPLAY_LUA = """
-- KEYS[1]  replays hash   ARGV[1]  record id   ARGV[2]  task id of the claim
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
local replay = cjson.decode(held)
if replay['task_id'] ~= ARGV[2] or replay['state'] ~= 'claimed' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""

# The states of a claim (CLAIM_REPLAY_LUA's answers, but 'missing').
CLAIMED, PENDING, REPLAYED = "claimed", "pending", "replayed"


@dataclass(frozen=True)
class ReplayClaim:
    """The answer to a claim: publish now (CLAIMED), wait (PENDING), or done (REPLAYED), with
    the one task id the record's replay is (to be) published under."""

    state: str
    task_id: str


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

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        """Read the stored form back with the json module that wrote it: pydantic's own parser
        refuses a lone surrogate's escape (``"\\ud800"``) and turns NaN into None."""
        return cls.model_validate(json.loads(raw))

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
        self.replays_key = f"{prefix}replays"
        self.facets_key = f"{prefix}facets"
        self.data_keys = [self.records_key, self.index_key, self.tasks_key, self.replays_key]
        self.facet_prefix = f"{prefix}by:"
        # A publish gives up after STACK_PUBLISH_TIMEOUT plus one socket timeout at most: a
        # claim older than twice that belongs to a replayer that died before it published.
        self.claim_timeout_s = 2 * settings.publish_timeout_s + SOCKET_TIMEOUT_S
        self._add = client.register_script(ADD_LUA)
        self._delete = client.register_script(DELETE_LUA)
        self._claim = client.register_script(CLAIM_REPLAY_LUA)
        self._commit = client.register_script(COMMIT_REPLAY_LUA)
        self._release = client.register_script(RELEASE_REPLAY_LUA)
        self._purge = client.register_script(PURGE_LUA)

    @property
    def keys(self) -> list[str]:
        return [*self.data_keys, self.facets_key]

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
                self.facet_prefix,
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
        return [r for r in self._load(ids) if r is not None]

    def matching(
        self, name: str = "", error: str = "", offset: int = 0, limit: int = DEFAULT_PAGE_SIZE
    ) -> tuple[int, list[DeadLetter]]:
        """(how many match, that page) of task ``name``'s records failed with ``error`` (full or
        last part of the type), newest first, "" any: a page of one facet zset, or ids combined."""
        groups = []
        if name:
            groups.append([f"{self.facet_prefix}name:{name}"])
        if error:
            groups.append(self._error_facets(error))
        if not groups:
            return self.count(), self.page(offset, limit)
        if len(groups) == 1 and len(groups[0]) == 1:
            key, total = groups[0][0], int(self.redis.zcard(groups[0][0]))
            ids = self.redis.zrevrange(key, offset, offset + limit - 1) if limit > 0 else []
        else:
            matched = self._combined(groups)
            total, ids = len(matched), matched[offset : offset + limit] if limit > 0 else []
        return total, [r for r in (self._load(ids) if ids else []) if r is not None]

    def _error_facets(self, error: str) -> list[str]:
        """The facet keys of exception type ``error``: its full name, or every type so named."""
        head = f"{self.facet_prefix}error:"
        keys = [_text(k) for k in self.redis.smembers(self.facets_key)]
        kinds = [k[len(head) :] for k in keys if k.startswith(head)]
        return [head + k for k in kinds if error in (k, k.rpartition(".")[2])]

    def _combined(self, groups: list[list[str]]) -> list[Any]:
        """Ids in every group (in any key of a group), newest first."""
        pipe = self.redis.pipeline(transaction=False)
        for key in [key for keys in groups for key in keys]:
            pipe.zrange(key, 0, -1, withscores=True)
        replies = iter(pipe.execute())
        found: dict[Any, float] | None = None  # member -> time added
        for keys in groups:
            union = {member: score for _ in keys for member, score in next(replies)}
            found = union if found is None else {m: s for m, s in found.items() if m in union}
        return sorted(found or {}, key=lambda m: (found or {})[m], reverse=True)

    def get(self, record_id: str) -> DeadLetter:
        record = self._load([record_id])[0]
        if record is None:
            raise DeadLetterNotFound(record_id)
        return record

    def find_by_task(self, task_id: str) -> DeadLetter | None:
        """The record of task ``task_id``, or None when it was not dead-lettered."""
        record_id = self.redis.hget(self.tasks_key, task_id)
        return None if record_id is None else self._load([record_id])[0]

    def _load(self, ids: list[Any]) -> list[DeadLetter | None]:
        """The records ``ids`` (None where absent), each with its replay, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.records_key, ids)
        pipe.hmget(self.replays_key, ids)
        raws, replays = pipe.execute()
        return [
            None if raw is None else _with_replay(DeadLetter.from_json(raw), replay)
            for raw, replay in zip(raws, replays, strict=True)
        ]

    def claim_replay(self, record_id: str, task_id: str) -> ReplayClaim:
        """Claim the record's one replay for publishing under ``task_id`` (atomic).

        CLAIMED: publish now (under the returned id: a claim taken over from a
        replayer that died keeps its id), then :meth:`commit_replay`, or
        :meth:`release_replay` when the publish failed. PENDING: another caller is
        publishing it. REPLAYED: it was. Raises DeadLetterNotFound.
        """
        state, claimed_id = self._claim(
            keys=[self.records_key, self.replays_key],
            args=[record_id, task_id, self.claim_timeout_s],
        )
        if _text(state) == "missing":
            raise DeadLetterNotFound(record_id)
        return ReplayClaim(state=_text(state), task_id=_text(claimed_id))

    def commit_replay(self, record_id: str, task_id: str) -> bool:
        """The claimed replay was published under ``task_id``: it is the record's replay now."""
        args = [record_id, task_id]
        return bool(self._commit(keys=[self.records_key, self.replays_key], args=args))

    def release_replay(self, record_id: str, task_id: str) -> bool:
        """The claimed replay was not published: drop the claim so a later replay can."""
        return bool(self._release(keys=[self.replays_key], args=[record_id, task_id]))

    def delete(self, record_id: str) -> None:
        args = [record_id, "", "", "", "", self.facet_prefix]
        if not self._delete(keys=self.keys, args=args):
            raise DeadLetterNotFound(record_id)

    def purge(self) -> int:
        """Remove every record; return how many there were."""
        return int(self._purge(keys=self.keys))


def _with_replay(record: DeadLetter, raw: bytes | None) -> DeadLetter:
    """``record`` with its published replay from the replays hash in its history."""
    if raw is None:
        return record
    replay = json.loads(raw)
    known = {r.task_id for r in record.replays}
    if replay.get("state") == "replayed" and replay["task_id"] not in known:
        record.replays.append(Replay(task_id=replay["task_id"], at=float(replay["at"])))
    return record


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
