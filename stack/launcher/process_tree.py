"""Signalling a Procfile process: its main process for a warm stop, its whole tree to kill.

honcho starts each line as ``sh -c '<line>'`` in a new session, so the shell's
pid is also the process group id. Celery's warm shutdown is SIGTERM to the
worker's *main* process: the prefork pool children reset SIGTERM to its
default and die on it, abandoning their tasks, which is what honcho's
``killpg(SIGTERM)`` does to them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import psutil

SHELLS = frozenset({"sh", "dash", "bash", "zsh"})  # Procfile lines run under `sh -c`


@dataclass
class ProcessTree:
    """One Procfile process and every descendant it was ever seen with.

    ``refresh()`` while the tree is intact (at ready, before the stop) records
    descendants, so a kill still reaches one that left the process group and
    was re-parented when its parent died.
    """

    pid: int
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def refresh(self) -> None:
        for process in self._current():
            self.seen.setdefault(process.pid, process)

    def pids(self) -> list[int]:
        """The main pid first, then every descendant seen (what the state file records)."""
        return [self.pid, *(pid for pid in self.seen if pid != self.pid)]

    def signal(self, signum: int, whole_group: bool) -> None:
        """The main process (warm stop), or the group and every process seen (kill)."""
        current = self._current()
        if whole_group:
            self.refresh()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)
            targets = [p for p in self.seen.values() if p.is_running()]  # pid reuse safe
        elif current and _is_shell(current[0]):
            targets = current[0].children() or current[:1]
        else:
            targets = current[:1]
        for process in targets:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def _current(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def _is_shell(process: psutil.Process) -> bool:
    try:
        return process.name() in SHELLS
    except psutil.NoSuchProcess:
        return False
