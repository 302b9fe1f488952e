"""The control socket: another terminal (or a watcher thread) asks the running launcher.

One request per connection, one JSON line each way, over a Unix socket in the
data dir (``control.sock``, mode 0600 inside the 0700 data dir: only its owner
can connect). Requests are :class:`Command` values; the launcher executes them
on its own main loop (``Launcher.post``), so nothing here touches a process.

A socket file with nobody listening (its launcher was SIGKILLed) and no socket
at all read the same to a client: no stack runs there, start one with `up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.errors import StackError

SOCKET_NAME = "control.sock"
ACTIONS = ("restart", "stop", "start", "scale", "ps")
MAX_REQUEST_BYTES = 64 * 1024  # a request names a few services: anything longer is not ours
CONNECT_TIMEOUT_S = 5.0  # the launcher answers within one loop tick; a hung one is not waited on
REPLY_TIMEOUT_S = 30.0
SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; longer paths go through /proc/self/fd


class NoStack(StackError):
    """No launcher answers on the data dir's control socket."""


class ControlError(StackError):
    """The launcher refused a request (an unknown name, a bad count) or sent nonsense."""


@dataclass(frozen=True)
class Command:
    """What to do to which services: executed by the launcher's main loop, never the caller's."""

    action: str  # restart | stop | start | scale (| ps, a query)
    names: tuple[str, ...] = ()
    count: int | None = None  # scale only: the number of instances wanted


def encode(command: Command) -> bytes:
    body: dict[str, Any] = {"action": command.action, "names": list(command.names)}
    if command.count is not None:
        body["count"] = command.count
    return json.dumps(body).encode() + b"\n"


def decode(line: bytes) -> Command:
    """A request line as a Command; ControlError naming what is wrong with it."""
    try:
        body = json.loads(line)
    except (ValueError, RecursionError):
        raise ControlError("a request is one JSON object per line") from None
    if not isinstance(body, dict):
        raise ControlError("a request is one JSON object per line")
    action, names, count = body.get("action"), body.get("names", []), body.get("count")
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ControlError("names must be a list of service names")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ControlError(f"count must be a whole number >= 0, got {count!r}")
    if action == "scale" and (count is None or len(names) != 1):
        raise ControlError("scale takes one name and a count")
    return Command(action, tuple(names), count)


def socket_path(data_dir: Path) -> Path:
    return data_dir.resolve() / SOCKET_NAME


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A path the kernel accepts: a long one goes through its directory's descriptor."""
    if len(str(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


Handler = Callable[[Command], dict[str, Any]]


class ControlServer:
    """Accepts one request per connection in a daemon thread and answers with ``handler``."""

    def __init__(self, path: Path, listener: socket.socket, handler: Handler) -> None:
        self.path, self._listener, self._handler = path, listener, handler
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="up-control", daemon=True)

    @classmethod
    def start(cls, data_dir: Path, handler: Handler) -> ControlServer | None:
        """Listen on the data dir's socket; None when another live launcher already does."""
        path = socket_path(data_dir)
        if _answers(path):
            return None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket: its launcher died without removing it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no moment where another user may connect
        try:
            with _address(path) as address:
                listener.bind(address)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        listener.listen(8)
        server = cls(path, listener, handler)
        server._thread.start()
        return server

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(CONNECT_TIMEOUT_S)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(self._answer(_read_line(conn))).encode() + b"\n")

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            return self._handler(decode(line))
        except StackError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # the launcher must outlive any request
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST_BYTES:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        _connect(path, 1.0).close()
    except OSError:
        return False
    return True


def _connect(path: Path, timeout_s: float) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout_s)
    try:
        with _address(path) as address:
            client.connect(address)
    except OSError:
        client.close()
        raise
    return client


def no_stack(data_dir: Path, why: str) -> NoStack:
    return NoStack(
        f"no stack runs in {data_dir.resolve()} ({why}): start one with `celery-stack up` "
        "(STACK_DATA_DIR picks the data dir)"
    )


def call(data_dir: Path, command: Command, timeout_s: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
    """Send ``command`` to the launcher of ``data_dir``; its reply, or NoStack / ControlError."""
    path = socket_path(data_dir)
    if not path.exists():
        raise no_stack(data_dir, f"no {SOCKET_NAME}")
    try:
        client = _connect(path, CONNECT_TIMEOUT_S)
    except (ConnectionRefusedError, FileNotFoundError):
        raise no_stack(data_dir, f"{SOCKET_NAME} is left from a launcher that died") from None
    except OSError as exc:
        raise no_stack(data_dir, f"cannot connect to {SOCKET_NAME}: {exc.strerror}") from None
    with client:
        client.settimeout(timeout_s)
        try:
            client.sendall(encode(command))
            line = _read_line(client)
        except OSError as exc:
            raise ControlError(f"the launcher did not answer ({exc})") from None
    if not line:
        raise no_stack(data_dir, "the launcher closed the connection: it is stopping")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"the launcher sent nonsense: {line[:200]!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the launcher sent nonsense: {line[:200]!r}")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the launcher refused the request")))
    return reply
