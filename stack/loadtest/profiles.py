"""Load profiles: which tasks the load users submit, on which queue and priority, in what shape.

A profile is a built-in name (``mixed``, ``diagnostics``, ``step``, ``spike``)
or a ``.toml`` / ``.json`` file with the same fields (see
``loadtests/profiles/``). The shape scales with ``--users`` and ``--run-time``,
so one profile serves a 20 s CI run and an hour-long soak alike.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stack.errors import ProfileError
from stack.queues import QUEUES

DEFAULT_PROFILE = "mixed"
UserKind = Literal["http", "celery"]
PriorityName = Literal["critical", "high", "normal", "low"]
BOTH_USER_KINDS: dict[UserKind, int] = {"http": 1, "celery": 1}


class TaskMix(BaseModel):
    """One entry of the task mix: a task, its arguments, where it goes, how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: PriorityName = "normal"
    queue: str | None = None  # logical queue; None: the task's route
    weight: int = Field(default=1, ge=1)

    @field_validator("queue")
    @classmethod
    def _known_queue(cls, value: str | None) -> str | None:
        if value is not None and value not in QUEUES:
            raise ValueError(f"unknown queue {value!r}: expected one of {', '.join(QUEUES)}")
        return value

    @property
    def label(self) -> str:
        """The request name in Locust's statistics: task and priority."""
        return f"{self.name} [{self.priority}]"


class Shape(BaseModel):
    """How many users run over time, as fractions of ``--users`` and ``--run-time``.

    ``constant``: all users for the whole run. ``step``: users rise in ``steps``
    equal steps. ``spike``: ``base_fraction`` of the users, and all of them from
    ``spike_start`` for ``spike_length`` (fractions of the run time).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["constant", "step", "spike"] = "constant"
    steps: int = Field(default=4, ge=1)
    base_fraction: float = Field(default=0.25, gt=0, le=1)
    spike_start: float = Field(default=0.4, ge=0, lt=1)
    spike_length: float = Field(default=0.2, gt=0, le=1)

    def users_at(self, elapsed_s: float, run_time_s: float, max_users: int) -> int | None:
        """The user count at ``elapsed_s``; None once the run time is over."""
        if elapsed_s >= run_time_s:
            return None
        progress = elapsed_s / run_time_s
        if self.kind == "step":
            step = min(self.steps, math.floor(progress * self.steps) + 1)
            return max(1, math.ceil(max_users * step / self.steps))
        if self.kind == "spike":
            spike_end = round(self.spike_start + self.spike_length, 9)  # 0.4 + 0.2 is 0.6000...1
            in_spike = self.spike_start <= progress < spike_end
            return max_users if in_spike else max(1, math.ceil(max_users * self.base_fraction))
        return max_users


class LoadProfile(BaseModel):
    """A whole load profile: the task mix, the user kinds, timing and shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    tasks: list[TaskMix] = Field(min_length=1)
    # Relative weights of the user kinds; 0 leaves a kind out.
    user_weights: dict[UserKind, int] = Field(default_factory=lambda: dict(BOTH_USER_KINDS))
    # True: a user waits for each task's result before the next (closed loop, depth <= users).
    # False: users publish at their own pace and the queues may grow (open loop).
    wait_for_result: bool = True
    think_time_s: tuple[float, float] = (0.0, 0.1)  # Locust's between(min, max)
    result_timeout_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(
        default=0.02, gt=0
    )  # HTTP users' first status poll; then it backs off
    shape: Shape = Shape()  # frozen: one shared default is safe

    @field_validator("user_weights")
    @classmethod
    def _some_user(cls, value: dict[UserKind, int]) -> dict[UserKind, int]:
        if any(weight < 0 for weight in value.values()) or not any(value.values()):
            raise ValueError("expected weights >= 0 with at least one above 0, e.g. {http = 1}")
        return value

    @field_validator("think_time_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("expected [min, max] seconds with 0 <= min <= max")
        return value

    def pick(self, rng: random.Random) -> TaskMix:
        """One task of the mix, drawn by weight."""
        return rng.choices(self.tasks, weights=[t.weight for t in self.tasks])[0]

    def weight_of(self, kind: UserKind) -> int:
        return self.user_weights.get(kind, 0)


def _echo(priority: PriorityName, weight: int) -> dict[str, Any]:
    return {"name": "diagnostics.echo", "args": ["ping"], "priority": priority, "weight": weight}


_DIAGNOSTICS_MIX: list[dict[str, Any]] = [
    _echo("normal", 10),
    _echo("critical", 2),
    _echo("high", 2),
    _echo("low", 2),
    {"name": "diagnostics.sleep", "kwargs": {"seconds": 0.05}, "priority": "normal", "weight": 4},
]
_REGIONS = ("north", "south", "east", "west")
# 50 rows: enough that parsing and aggregating is real work, small enough for a task argument.
SAMPLE_CSV = "region,units,price\n" + "".join(
    f"{_REGIONS[i % 4]},{i % 7 + 1},{(i % 13) * 1.25:.2f}\n" for i in range(50)
)
SAMPLE_SQL = (
    "SELECT region, COUNT(*) AS sales, SUM(quantity) AS units FROM sales "
    "GROUP BY region ORDER BY region"
)
_REFERENCE_MIX: list[dict[str, Any]] = [
    {
        "name": "files.process_csv",
        "kwargs": {"csv_text": SAMPLE_CSV, "required_columns": ["region", "units"]},
        "priority": "normal",
        "queue": "file_processing",
        "weight": 3,
    },
    {
        "name": "queries.run_query",
        "args": [SAMPLE_SQL],
        "priority": "high",
        "queue": "query_processing",
        "weight": 3,
    },
]

BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "mixed": {
        "description": "echo at every priority, sleep, CSV processing and SQL queries",
        "tasks": _DIAGNOSTICS_MIX + _REFERENCE_MIX,
    },
    "diagnostics": {
        "description": "diagnostics tasks only: runs against any app rebound by celery-stack",
        "tasks": _DIAGNOSTICS_MIX,
    },
    "step": {
        "description": "the mixed tasks, users rising in 4 steps to --users",
        "tasks": _DIAGNOSTICS_MIX + _REFERENCE_MIX,
        "shape": {"kind": "step", "steps": 4},
    },
    "spike": {
        "description": "the mixed tasks, a quarter of --users with a spike to all of them",
        "tasks": _DIAGNOSTICS_MIX + _REFERENCE_MIX,
        "shape": {"kind": "spike"},
    },
}


def misfits(profile: LoadProfile, tasks: Mapping[str, Any]) -> list[str]:
    """What in the profile the app cannot run: unknown names, arguments that do not bind.

    ``tasks`` maps names to Celery tasks (``app.tasks``); a task's ``run`` gives
    the signature. Found before the run, not as a thousand failed requests.
    """
    problems = []
    for mix in profile.tasks:
        task = tasks.get(mix.name)
        if task is None:
            problems.append(f"{mix.name}: not registered in the Celery app")
            continue
        try:
            inspect.signature(task.run).bind(*mix.args, **mix.kwargs)
        except TypeError as exc:
            problems.append(f"{mix.name}: args {mix.args} kwargs {mix.kwargs} do not fit ({exc})")
        except ValueError:
            pass  # no signature to check (a C function): let the run tell
    return sorted(set(problems))


def load_profile(ref: str | Path | None = None) -> LoadProfile:
    """A built-in profile by name, or a profile file (.toml or .json) by path."""
    ref = str(ref or DEFAULT_PROFILE)
    if ref in BUILTIN_PROFILES:
        return parse_profile({"name": ref, **BUILTIN_PROFILES[ref]}, source=f"built-in {ref!r}")
    path = Path(ref)
    if not path.is_file():
        names = ", ".join(BUILTIN_PROFILES)
        raise ProfileError(
            f"load profile {ref!r} is neither a built-in ({names}) nor an existing file: "
            "pass one of those names or the path of a .toml/.json profile"
        )
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ProfileError(f"load profile {str(path)!r} cannot be read: {exc}") from exc
    raw.setdefault("name", path.stem)
    return parse_profile(raw, source=str(path))


def parse_profile(raw: dict[str, Any], source: str = "profile") -> LoadProfile:
    """Validate a profile mapping; errors name the field and what it expects."""
    try:
        return LoadProfile.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in error['loc']) or 'profile'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ProfileError(f"load profile {source} is invalid:\n  " + "\n  ".join(lines)) from None
