"""The status table `celery-stack up` prints once every service is ready.

Pure functions of plain rows, so the text and the JSON stay in step and are
tested without starting anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from stack.launcher.services import Service

HEADERS = ("service", "state", "url", "pid", "ready after")


def row_of(
    service: Service, state: str, pid: int | None, ready_after_s: float | None
) -> dict[str, Any]:
    return {
        "name": service.name,
        "state": state,
        "url": service.url,
        "pid": pid,
        "ready_after_s": None if ready_after_s is None else round(ready_after_s, 3),
    }


def render_table(rows: Sequence[dict[str, Any]], total_s: float, broker: str = "") -> str:
    """A plain-text table, one line per service, and how long start-up took (and the broker
    every process was given, when known)."""
    cells = [
        (
            row["name"],
            row["state"],
            row["url"] or "-",
            "-" if row["pid"] is None else str(row["pid"]),
            "-" if row["ready_after_s"] is None else f"{row['ready_after_s']:.2f} s",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [HEADERS, *cells]) for i in range(len(HEADERS))]

    def fmt(line: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(line, widths, strict=True)
        ).rstrip()

    rule = "-" * len(fmt(["-" * w for w in widths]))
    body = [fmt(HEADERS), rule, *(fmt(line) for line in cells), rule]
    if broker:
        body.append(f"broker and results: {broker} (every process's CELERY_BROKER_URL)")
    body.append(f"{len(rows)} services ready in {total_s:.2f} s; Ctrl-C stops them all")
    return "\n".join(body)


def render_json(
    rows: Sequence[dict[str, Any]],
    total_s: float,
    warnings: Sequence[str] = (),
    broker: str = "",
) -> str:
    """One line of JSON: the first line a script reads from `up --json`."""
    return json.dumps(
        {
            "ready": True,
            "ready_after_s": round(total_s, 3),
            "services": list(rows),
            "warnings": list(warnings),
            "broker": broker or None,
        }
    )
