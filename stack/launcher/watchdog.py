"""The watchdog: when the launcher dies without stopping its services, stop them.

Why not only ``prctl(PR_SET_PDEATHSIG)``: it reaches direct children only
(the Procfile's shells, not Celery's pool or uvicorn's workers), it fires on
the death of the *thread* that forked, it would SIGKILL the worker with no
warm stop and Redis before its clients, and setting it needs a ``preexec_fn``,
which Python documents as unsafe in a threaded program such as the launcher.

So `up` starts this small process (``python -m stack.launcher.watchdog
<state file>``) in a session of its own, holding the read end of a pipe whose
write end only the launcher has. It blocks on that pipe. ``done`` on it means
the launcher stopped everything itself; end of file without it means the
launcher died (SIGKILL included): the watchdog reaps what the state file
lists (dependents with a warm SIGTERM, Redis last, SIGKILL for the rest),
says so on the launcher's stderr, and removes the file.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

DONE = b"done\n"  # the launcher's last word after a stop of its own
RELEASE_WAIT_S = 2.0  # the watchdog exits at once on `done`; never block `up`'s exit longer


class Watchdog:
    """The launcher's side: start the watchdog, and release it after a clean stop."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, state_path: Path) -> Watchdog:
        process = subprocess.Popen(
            [sys.executable, "-m", "stack.launcher.watchdog", str(state_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # no terminal signal, no killpg of ours reaches it
            close_fds=True,
        )
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        """Everything stopped by the launcher itself: the watchdog exits without acting."""
        pipe: IO[bytes] | None = self.process.stdin
        with contextlib.suppress(OSError, ValueError):
            if pipe is not None:
                pipe.write(DONE)
                pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(RELEASE_WAIT_S)


def watch(state_path: Path, launcher: IO[bytes], say: IO[str]) -> int:
    """Block until the launcher says ``done`` (0) or dies (reap, then 0 as well)."""
    received = b""
    with contextlib.suppress(OSError):
        while chunk := launcher.read(64):
            received += chunk
    if DONE in received:
        return 0
    from stack.launcher.state import LaunchState, reap  # psutil: only once there is work

    state = LaunchState.load(state_path)
    if state is None:
        return 0
    started = time.monotonic()
    stopped = reap(state)
    state.remove()
    if stopped:
        with contextlib.suppress(OSError, ValueError):
            print(
                f"celery-stack watchdog: the launcher (pid {state.launcher.pid}) died; stopped "
                f"{', '.join(stopped)} in {time.monotonic() - started:.2f} s",
                file=say,
                flush=True,
            )
    return 0


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGHUP):  # the launcher decides; we outlive it
        signal.signal(signum, signal.SIG_IGN)
    return watch(Path(argv[1]), sys.stdin.buffer, sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
