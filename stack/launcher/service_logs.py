"""Each service's output in its own file under the data dir, rotated by the standard library.

``<data dir>/logs/<name>.log`` (the launcher's own lines in ``system.log``),
one line per output line with the time it was seen; rotated by
:class:`logging.handlers.RotatingFileHandler` at ``MAX_BYTES`` keeping
``BACKUPS`` older files, so a stack left running all day cannot fill the disk.
`celery-stack logs` reads them; the data dir is 0700, the files are its owner's.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

LOGS_DIR = "logs"
MAX_BYTES = 5 * 1024 * 1024  # 5 MB per file: a day of a chatty dev worker ...
BACKUPS = 3  # ... and three older ones beside it
FORMAT = "%(asctime)s %(message)s"
FOLLOW_POLL_S = 0.1


def logs_dir(data_dir: Path) -> Path:
    return data_dir.resolve() / LOGS_DIR


def log_path(data_dir: Path, name: str) -> Path:
    return logs_dir(data_dir) / f"{name}.log"


class ServiceLogs:
    """The launcher's side: one rotating handler per service, opened on its first line."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._handlers: dict[str, logging.Handler] = {}
        self._formatter = logging.Formatter(FORMAT)

    def write(self, name: str, text: str) -> None:
        """One line of ``name``'s output; a full disk must not stop the stack."""
        handler = self._handlers.get(name) or self._open(name)
        if handler is None:
            return
        record = logging.makeLogRecord({"msg": text.rstrip("\n"), "levelno": logging.INFO})
        handler.handle(record)

    def _open(self, name: str) -> logging.Handler | None:
        try:
            os.makedirs(logs_dir(self.data_dir), mode=0o700, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                log_path(self.data_dir, name), maxBytes=MAX_BYTES, backupCount=BACKUPS
            )
        except OSError:
            return None
        handler.setFormatter(self._formatter)
        handler.handleError = lambda record: None  # type: ignore[method-assign]
        self._handlers[name] = handler
        return handler

    def close(self) -> None:
        for handler in self._handlers.values():
            handler.close()
        self._handlers.clear()


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (none when it does not exist yet)."""
    try:
        with path.open(errors="replace") as file:
            return [line.rstrip("\n") for line in deque(file, maxlen=count)] if count else []
    except FileNotFoundError:
        return []


def follow(paths: Sequence[Path], running: Iterator[bool]) -> Iterator[tuple[Path, str]]:
    """New lines of each file as they are written, across rotations, while ``running`` says so.

    Starts at each file's current end; a file replaced (rotated) or shrunk is read
    again from its start.
    """
    positions: dict[Path, tuple[int, int]] = {}  # path -> (inode, offset)
    for path in paths:
        with contextlib.suppress(OSError):
            stat = path.stat()
            positions[path] = (stat.st_ino, stat.st_size)
    while next(running):
        for path in paths:
            yield from _new_lines(path, positions)
        time.sleep(FOLLOW_POLL_S)
    for path in paths:  # what was written just before the end
        yield from _new_lines(path, positions)


def _new_lines(path: Path, positions: dict[Path, tuple[int, int]]) -> Iterator[tuple[Path, str]]:
    try:
        stat = path.stat()
    except OSError:
        return
    inode, offset = positions.get(path, (stat.st_ino, 0))
    if inode != stat.st_ino or stat.st_size < offset:
        offset = 0  # rotated: the new file from its start
    if stat.st_size == offset:
        positions[path] = (stat.st_ino, offset)
        return
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read()
    complete = data.rfind(b"\n") + 1  # a line still being written waits for its end
    positions[path] = (stat.st_ino, offset + complete)
    for line in data[:complete].decode(errors="replace").splitlines():
        yield path, line
