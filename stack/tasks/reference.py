"""Reference tasks of the seed guides, each doing small but real work.

- ``monitoring.check_monitor``: a monitor's latest metrics against its thresholds.
- ``analysis.run_analysis``: statistics over numbers and/or text of a request.
- ``files.process_csv`` (queue ``file_processing``): parse, validate, aggregate a CSV.
- ``queries.run_query`` (queue ``query_processing``): a read-only query on the
  bundled SQLite database.

Bad input raises a NonRetryableError subclass: a retry cannot fix it, so it
goes straight to the dead letters. The pure functions below are the work; the
tasks only fetch inputs and call them.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import shared_task

from stack.retry import NonRetryableError
from stack.task import StackTask
from stack.tasks import database

MAX_CSV_BYTES = 10 * 1024 * 1024  # a task argument or upload past this belongs in object storage
UPLOADS_DIR = "uploads"  # under STACK_DATA_DIR: the only place process_csv reads files from
TOP_WORDS = 5  # how many frequent words a text analysis reports
_WORD = re.compile(r"[A-Za-z0-9']+")


class InvalidInput(NonRetryableError):
    """A task's input is malformed: retrying the same input fails the same way."""


# --- monitoring -------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    metric: str
    min_value: float | None
    max_value: float | None


def evaluate_thresholds(
    thresholds: Sequence[Threshold], snapshot: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One alert per metric that is missing, not a number, or outside its bounds."""
    alerts: list[dict[str, Any]] = []
    for rule in thresholds:
        value = snapshot.get(rule.metric)
        alert: dict[str, Any] = {"metric": rule.metric, "value": value}
        if value is None:
            alerts.append({**alert, "kind": "missing"})
        elif isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            alerts.append({**alert, "kind": "not_a_number"})
        elif rule.min_value is not None and value < rule.min_value:
            alerts.append({**alert, "kind": "below_min", "limit": rule.min_value})
        elif rule.max_value is not None and value > rule.max_value:
            alerts.append({**alert, "kind": "above_max", "limit": rule.max_value})
    return alerts


@shared_task(bind=True, base=StackTask, name="monitoring.check_monitor")
def check_monitor(
    self: StackTask, monitor_id: str, snapshot: dict[str, float] | None = None
) -> dict[str, Any]:
    """Check ``monitor_id``'s thresholds (from the bundled DB) against ``snapshot``.

    Without a snapshot, the monitor's latest readings in the DB are checked.
    """
    path = database.ensure_database(self.settings.data_dir)
    rules = database.run_select(
        path,
        "SELECT metric, min_value, max_value FROM monitor_thresholds WHERE monitor_id = ?",
        [monitor_id],
    ).rows
    if not rules:
        raise InvalidInput(f"unknown monitor {monitor_id!r}: it has no thresholds")
    if snapshot is None:
        readings = database.run_select(
            path, "SELECT metric, value FROM readings WHERE monitor_id = ?", [monitor_id]
        ).rows
        snapshot = {metric: value for metric, value in readings}
    alerts = evaluate_thresholds([Threshold(*rule) for rule in rules], snapshot)
    return {
        "monitor_id": monitor_id,
        "checked_at": time.time(),
        "metrics_checked": len(rules),
        "status": "alerting" if alerts else "ok",
        "alerts": alerts,
    }


# --- analysis ---------------------------------------------------------------------


def number_statistics(values: Sequence[Any]) -> dict[str, float]:
    """count, mean, median, stdev, min, max and quartiles of a list of numbers."""
    if not values:
        raise InvalidInput("request.values is empty: give at least one number")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad:
        raise InvalidInput(f"request.values must hold numbers only, got {bad[:3]!r}")
    numbers = [float(v) for v in values]
    stats: dict[str, float] = {
        "count": len(numbers),
        "sum": math.fsum(numbers),
        "mean": statistics.fmean(numbers),
        "median": statistics.median(numbers),
        "min": min(numbers),
        "max": max(numbers),
        "stdev": statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
    }
    if len(numbers) > 1:
        stats["p25"], _, stats["p75"] = statistics.quantiles(numbers, n=4)
    return stats


def text_statistics(text: str) -> dict[str, Any]:
    """Words, sentences, average word length and the most frequent words of a text."""
    words = _WORD.findall(text.lower())
    sentences = [s for s in re.split(r"[.!?]+", text) if s.strip()]
    return {
        "characters": len(text),
        "words": len(words),
        "sentences": len(sentences),
        "average_word_length": (sum(map(len, words)) / len(words)) if words else 0.0,
        "top_words": Counter(words).most_common(TOP_WORDS),
    }


def analyse(request: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics for ``request["values"]`` and/or ``request["text"]``."""
    if not isinstance(request, Mapping):
        raise InvalidInput(f"request must be an object, got {type(request).__name__}")
    if "values" not in request and "text" not in request:
        raise InvalidInput('request needs "values" (a list of numbers) and/or "text" (a string)')
    out: dict[str, Any] = {}
    if "values" in request:
        values = request["values"]
        if not isinstance(values, list):
            raise InvalidInput("request.values must be a list of numbers")
        out["values"] = number_statistics(values)
    if "text" in request:
        if not isinstance(request["text"], str):
            raise InvalidInput("request.text must be a string")
        out["text"] = text_statistics(request["text"])
    return out


@shared_task(bind=True, base=StackTask, name="analysis.run_analysis")
def run_analysis(self: StackTask, request: dict[str, Any], user_id: str) -> dict[str, Any]:
    """An analysis run for ``user_id`` (seed: ``run_analysis_task(request_dict, user_id)``)."""
    started = time.monotonic()
    result = analyse(request)
    return {
        "user_id": user_id,
        "analysis": result,
        "duration_s": time.monotonic() - started,
    }


# --- files ------------------------------------------------------------------------


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def summarise_csv(
    text: str, required_columns: Sequence[str] = (), delimiter: str = ","
) -> dict[str, Any]:
    """Validate a CSV (header, unique names, equal row widths) and aggregate its columns."""
    if len(delimiter) != 1:
        raise InvalidInput(f"delimiter must be one character, got {delimiter!r}")
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}") from exc
    rows = [row for row in rows if row]  # blank lines carry no data
    if not rows:
        raise InvalidInput("empty CSV: expected a header row")
    header = [name.strip() for name in rows[0]]
    if any(not name for name in header):
        raise InvalidInput(f"the header has an empty column name: {header!r}")
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise InvalidInput(f"duplicate column names in the header: {duplicates!r}")
    missing = [name for name in required_columns if name not in header]
    if missing:
        raise InvalidInput(f"required columns missing: {missing!r} (header: {header!r})")
    data = rows[1:]
    for line, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise InvalidInput(f"row {line} has {len(row)} fields, the header has {len(header)}")
    numeric: dict[str, dict[str, float]] = {}
    empty_cells: dict[str, int] = {}
    for index, name in enumerate(header):
        cells = [row[index].strip() for row in data]
        filled = [cell for cell in cells if cell]
        empty_cells[name] = len(cells) - len(filled)
        values = [_number(cell) for cell in filled]
        if filled and all(v is not None for v in values):
            numbers = [v for v in values if v is not None]
            numeric[name] = {
                "sum": math.fsum(numbers),
                "min": min(numbers),
                "max": max(numbers),
                "mean": statistics.fmean(numbers),
            }
    return {
        "row_count": len(data),
        "columns": header,
        "numeric_columns": numeric,
        "empty_cells": empty_cells,
    }


def upload_path(data_dir: Path, path: str) -> Path:
    """``path`` inside STACK_DATA_DIR/uploads, refusing anything that escapes it."""
    root = (data_dir / UPLOADS_DIR).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise InvalidInput(f"path {path!r} is outside the uploads directory {str(root)!r}")
    if not target.is_file():
        raise InvalidInput(f"no such upload {str(target)!r}: put the file under {str(root)!r}")
    if target.stat().st_size > MAX_CSV_BYTES:
        raise InvalidInput(f"{str(target)!r} is larger than {MAX_CSV_BYTES} bytes")
    return target


@shared_task(bind=True, base=StackTask, name="files.process_csv")
def process_csv(
    self: StackTask,
    csv_text: str | None = None,
    path: str | None = None,
    required_columns: list[str] | None = None,
    delimiter: str = ",",
) -> dict[str, Any]:
    """Parse a CSV given inline (``csv_text``) or as an upload (``path`` under uploads/)."""
    if (csv_text is None) == (path is None):
        raise InvalidInput("give exactly one of csv_text (the CSV itself) or path (an upload)")
    if path is not None:
        source = upload_path(self.settings.data_dir, path)
        try:
            text = source.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{path!r} is not UTF-8 text ({exc.reason})") from exc
    else:
        assert csv_text is not None
        if len(csv_text.encode()) > MAX_CSV_BYTES:
            raise InvalidInput(f"csv_text is larger than {MAX_CSV_BYTES} bytes: upload it")
        text = csv_text
    summary = summarise_csv(text, required_columns or (), delimiter)
    return {"source": path if path is not None else "inline", **summary}


# --- queries ----------------------------------------------------------------------


@shared_task(bind=True, base=StackTask, name="queries.run_query")
def run_query(
    self: StackTask,
    sql: str,
    params: list[Any] | dict[str, Any] | None = None,
    max_rows: int = database.MAX_ROWS,
) -> dict[str, Any]:
    """Run one read-only SELECT on the bundled database; anything else is refused."""
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidInput("sql must be a non-empty string")
    path = database.ensure_database(self.settings.data_dir)
    rows = max(1, min(int(max_rows), database.MAX_ROWS))
    return database.run_select(path, sql, params, max_rows=rows).as_dict()
