"""The bundled SQLite database, built on first use and only ever read.

``stack/data/reference.sql`` is the seed; the ``.sqlite`` built from it lives in
STACK_DATA_DIR under a name carrying the seed's hash, so an edited seed builds
a fresh database and workers racing to build it never see half a file (each
builds a temporary file and renames it into place).

Queries run on a ``mode=ro`` connection with an authorizer that allows reading
only: an UPDATE, a PRAGMA or an ATTACH is refused before it runs, whatever the
text tries.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from stack.retry import NonRetryableError

SEED_FILE = "reference.sql"
MAX_ROWS = 1000  # a query answer travels through the result backend: keep it small
QUERY_TIMEOUT_S = 10.0  # far below the task's soft time limit; a runaway query is cut
PROGRESS_EVERY_OPS = 10_000  # SQLite VM steps between two deadline checks

# What a read-only query may do; everything else the authorizer denies.
ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_FIRST_WORD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)


class QueryRefused(NonRetryableError):
    """A query that is not a single read-only SELECT: retrying cannot help."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
        }


def seed_sql() -> str:
    return resources.files("stack").joinpath("data", SEED_FILE).read_text(encoding="utf-8")


def database_path(data_dir: Path, sql: str | None = None) -> Path:
    digest = hashlib.sha256((sql if sql is not None else seed_sql()).encode()).hexdigest()[:12]
    return data_dir / f"reference-{digest}.sqlite"


def ensure_database(data_dir: Path) -> Path:
    """The built database, building it from the seed when missing (atomic, race-safe)."""
    sql = seed_sql()
    path = database_path(data_dir, sql)
    if path.is_file():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".reference-", suffix=".sqlite", dir=data_dir)
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            conn.executescript(sql)
            conn.commit()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _authorize(action: int, arg1: str | None, arg2: str | None, *rest: Any) -> int:
    return sqlite3.SQLITE_OK if action in ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


@contextlib.contextmanager
def read_only(path: Path, timeout_s: float = QUERY_TIMEOUT_S) -> Iterator[sqlite3.Connection]:
    """A connection that can only read ``path``, and gives up after ``timeout_s``."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    deadline = time.monotonic() + timeout_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_EVERY_OPS)
    conn.set_authorizer(_authorize)
    try:
        yield conn
    finally:
        conn.close()


def statement_kind(sql: str) -> str:
    """The statement's first keyword (comments skipped), upper-cased, for error messages."""
    match = _FIRST_WORD.match(sql)
    return match.group(1).upper() if match else ""


def run_select(
    path: Path,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    max_rows: int = MAX_ROWS,
    timeout_s: float = QUERY_TIMEOUT_S,
) -> QueryResult:
    """Run one read-only query; QueryRefused for anything else or a bad query."""
    kind = statement_kind(sql)
    if kind not in ("SELECT", "WITH", "VALUES"):
        label = kind or "empty"
        article = "an" if label[0].upper() in "AEIOU" else "a"
        raise QueryRefused(
            f"only read-only SELECT queries are allowed, refused {article} {label} "
            "statement (the query database is read-only)"
        )
    try:
        with read_only(path, timeout_s) as conn:
            cursor = conn.execute(sql, params or ())
            rows = cursor.fetchmany(max_rows + 1)
            columns = [d[0] for d in cursor.description or ()]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise QueryRefused(f"query ran longer than {timeout_s:g} s and was stopped") from exc
        raise QueryRefused(_explain(exc)) from exc
    except (sqlite3.DatabaseError, sqlite3.ProgrammingError) as exc:
        raise QueryRefused(_explain(exc)) from exc
    return QueryResult(
        columns=columns, rows=[list(r) for r in rows[:max_rows]], truncated=len(rows) > max_rows
    )


def _explain(exc: Exception) -> str:
    if "not authorized" in str(exc):
        return (
            "query refused: it would write, attach or change the database (only reading is allowed)"
        )
    return f"invalid query: {exc}"
