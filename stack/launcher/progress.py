"""The live status block `up` shows on a terminal while the stack starts.

Each service is waiting (for what it needs), starting or ready, with the time
it has spent so far; the block goes once every service is ready and the table
takes its place. The services' log lines print above it (through the same
rich console), so nothing overwrites anything. Not on a terminal, or with
``--no-color`` or ``--json``, there is no block: the launcher's plain
"x ready after n s" lines say the same.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from honcho.printer import Printer
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

REFRESH_S = 0.1
LABELS = {"pending": "waiting", "starting": "starting", "ready": "ready", "external": "ready"}
STYLES = {"waiting": "dim", "starting": "yellow", "ready": "green", "done": "green"}


@dataclass
class Board:
    """Each service's state and since when: a pure function of the rows it is shown."""

    since: dict[str, tuple[str, float]] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    ready_s: dict[str, float] = field(default_factory=dict)

    def update(self, rows: Iterable[Mapping[str, Any]], now: float) -> None:
        for row in rows:
            name, label = str(row["name"]), LABELS.get(str(row["state"]), str(row["state"]))
            self.first_seen.setdefault(name, now)
            if self.since.get(name, ("", 0.0))[0] != label:
                self.since[name] = (label, now)
                if label in ("ready", "done"):
                    self.ready_s.setdefault(name, now - self.first_seen[name])

    def lines(self, now: float) -> list[tuple[str, str, float]]:
        """(name, state, seconds): for ready ones the time it took, else the time so far."""
        out = []
        for name, (label, since) in self.since.items():
            done = label in ("ready", "done") and name in self.ready_s
            seconds = self.ready_s[name] if done else now - since
            out.append((name, label, seconds))
        return out

    def render(self, now: float) -> Table:
        table = Table.grid(padding=(0, 2))
        for name, label, seconds in self.lines(now):
            mark: Any = (
                Spinner("dots", style="yellow")
                if label == "starting"
                else Text("✓" if label in ("ready", "done") else "·", style=STYLES.get(label, ""))
            )
            table.add_row(
                mark, name, Text(label, style=STYLES.get(label, "red")), f"{seconds:.1f} s"
            )
        return table


class ConsoleOutput:
    """A text file for honcho's printer that prints through the live console (above the block)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._partial = ""

    def write(self, text: str) -> int:
        """Whole lines only: a half line would sit where the block is redrawn."""
        whole, _, self._partial = (self._partial + text).rpartition("\n")
        if whole:
            self.console.print(Text.from_ansi(whole), soft_wrap=True, highlight=False)
        return len(text)

    def flush(self) -> None:
        self.console.file.flush()

    def isatty(self) -> bool:
        return True


class Progress:
    """The block, refreshed from the launcher's rows by a daemon thread until :meth:`close`;
    inert (every method a no-op) when built without an output."""

    def __init__(self, output: TextIO | None) -> None:
        self.console = None if output is None else Console(file=output, force_terminal=True)
        self.board = Board()
        self.live = None if self.console is None else Live(console=self.console, transient=True)
        self.output = None if self.console is None else ConsoleOutput(self.console)
        self._stop = threading.Event()
        self._rows: Callable[[], Iterable[Mapping[str, Any]]] = list

    @classmethod
    def over(cls, printer: Printer, profile: str, colour: bool) -> Progress:
        """A block for a person at a terminal (the printer then prints above it), else inert."""
        if not wanted(printer.output, colour, profile):
            return cls(None)
        progress = cls(printer.output)
        printer.output = progress.output
        return progress

    def start(self, rows: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        if self.live is None:
            return
        self._rows = rows
        self.live.start()
        threading.Thread(target=self._refresh, name="up-progress", daemon=True).start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            now = time.monotonic()
            with contextlib.suppress(RuntimeError):  # the launcher changed its dict meanwhile
                self.board.update(list(self._rows()), now)
            if self.live is not None and not self._stop.is_set():
                self.live.update(self.board.render(now), refresh=True)

    def closing(self, before: Callable[[], Sequence[str]] | None) -> Callable[[], Sequence[str]]:
        """The launcher's before-the-table hook, closing the block first."""

        def close_then() -> Sequence[str]:
            self.close()
            return [] if before is None else before()

        return close_then

    def close(self) -> None:
        """The block goes; what follows (the table) prints where it was."""
        if self._stop.is_set() or self.live is None:
            return
        self._stop.set()
        with contextlib.suppress(OSError, ValueError):
            self.live.stop()


def wanted(output: Any, colour: bool, profile: str) -> bool:
    """A block only for a person at a terminal: never with --json, --no-color, in production."""
    isatty = getattr(output, "isatty", None)
    return bool(colour and profile != "production" and isatty and isatty())
