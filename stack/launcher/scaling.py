"""Scaling a worker line: several copies of one Procfile worker, each its own Celery node.

honcho's ``-c worker=3`` starts three copies with one node name, so the
workers clash (Celery warns of a duplicate nodename and a ping cannot tell
them apart). Here copy ``k`` is the service ``worker.k`` with the node name
``worker.k@host`` (given through ``STACK_WORKER_HOSTNAME``, which the stack's
worker lines pass to ``--hostname``) and is gated on a ping to that name.
Pure functions of services; the launcher starts and stops the copies.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterable, Mapping, Sequence

from stack.checks.probes import WorkerPing
from stack.errors import SettingsError
from stack.launcher.services import Service

HOSTNAME_VARIABLE = "STACK_WORKER_HOSTNAME"
INSTANCE = re.compile(r"(?P<group>[A-Za-z0-9_-]+)\.(?P<index>[1-9][0-9]*)")
MAX_INSTANCES = 64  # more Celery nodes than that on one dev machine is a typo
SCALE_HINT = "write NAME=N, e.g. worker=3"


def parse_scale(values: Iterable[str]) -> dict[str, int]:
    """``worker=3`` (also ``worker=3,other=2``, honcho's ``-c`` form) as {name: count}."""
    counts: dict[str, int] = {}
    for value in values:
        for item in value.split(","):
            name, eq, number = item.strip().partition("=")
            if not item.strip():
                continue
            if not eq or not name.strip():
                raise SettingsError(f"--scale {item.strip()!r}: {SCALE_HINT}")
            counts[name.strip()] = parse_count(number, name.strip())
    return counts


def parse_count(text: str, name: str = "worker") -> int:
    """A count of instances from 0 to MAX_INSTANCES; SettingsError naming what was given."""
    try:
        count = int(text.strip())
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_INSTANCES:
        raise SettingsError(
            f"scale {name}={text.strip()!r}: expected a whole number from 0 to {MAX_INSTANCES}"
        )
    return count


def group_of(name: str) -> str:
    """``worker.2`` -> ``worker``; a name without an instance number is its own group."""
    match = INSTANCE.fullmatch(name)
    return match["group"] if match else name


def index_of(name: str) -> int:
    """``worker.2`` -> 2; the unnumbered line is instance 1."""
    match = INSTANCE.fullmatch(name)
    return int(match["index"]) if match else 1


def scalable(service: Service) -> bool:
    """A stack worker line: gated on a ping and named by STACK_WORKER_HOSTNAME."""
    return isinstance(service.probe, WorkerPing) and HOSTNAME_VARIABLE in service.env


def refuse(name: str, services: Sequence[Service]) -> SettingsError:
    """Why ``name`` cannot be scaled, listing what can."""
    can = sorted({group_of(s.name) for s in services if scalable(s)})
    known = ", ".join(dict.fromkeys(group_of(s.name) for s in services))
    if name not in {group_of(s.name) for s in services}:
        why = f"no service is named {name!r} (known: {known})"
    else:
        why = f"{name!r} is not a Celery worker line of the stack, so it cannot be scaled"
    return SettingsError(f"{why}; scalable: {', '.join(can) or 'none'}")


def instance(template: Service, index: int, host: str | None = None) -> Service:
    """Copy ``index`` of a worker line: its own service name, node name and probe."""
    group = group_of(template.name)
    hostname = f"{group}.{index}@{host or socket.gethostname()}"
    probe = template.probe
    assert isinstance(probe, WorkerPing)
    return dataclasses.replace(
        template,
        name=f"{group}.{index}",
        probe=dataclasses.replace(probe, hostname=hostname),
        url=hostname,
        env={**template.env, HOSTNAME_VARIABLE: hostname},
    )


def scaled(
    services: Sequence[Service], counts: Mapping[str, int], host: str | None = None
) -> list[Service]:
    """The services with each named worker line as ``count`` copies (0: not started)."""
    for name in counts:
        matching = [s for s in services if s.name == name]
        if not matching or not scalable(matching[0]):
            raise refuse(name, services)
    result: list[Service] = []
    for service in services:
        if service.name in counts:
            result += [instance(service, k, host) for k in range(1, counts[service.name] + 1)]
        else:
            result.append(service)
    return result
