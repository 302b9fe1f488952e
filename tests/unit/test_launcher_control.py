"""The control protocol: request lines, replies, and what a client sees with no launcher."""

import json
import socket

import pytest

from stack.launcher.control import (
    Command,
    ControlError,
    ControlServer,
    NoStack,
    call,
    decode,
    encode,
    socket_path,
)


def test_a_command_survives_its_round_trip_through_a_request_line():
    for command in (Command("restart", ("worker", "beat")), Command("scale", ("worker",), 3)):
        line = encode(command)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line.rstrip(b"\n")) == command


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"not json", "one JSON object per line"),
        (b"[1, 2]", "one JSON object per line"),
        (b'{"action": "explode"}', "unknown action 'explode'"),
        (b'{"action": "stop", "names": "worker"}', "names must be a list"),
        (b'{"action": "scale", "names": ["worker"], "count": -1}', "count must be a whole number"),
        (
            b'{"action": "scale", "names": ["worker"], "count": true}',
            "count must be a whole number",
        ),
        (b'{"action": "scale", "names": ["worker"]}', "scale takes one name and a count"),
        (b"[" * 100_000, "one JSON object per line"),
    ],
)
def test_a_bad_request_line_is_refused_naming_the_problem(line, says):
    with pytest.raises(ControlError, match=says):
        decode(line)


def test_no_socket_means_no_stack_naming_the_data_dir_and_up(tmp_path):
    with pytest.raises(NoStack) as caught:
        call(tmp_path, Command("ps"))
    assert str(tmp_path.resolve()) in str(caught.value)
    assert "celery-stack up" in str(caught.value)


def test_a_socket_file_nobody_listens_on_means_no_stack_too(tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path(tmp_path)))
    listener.close()
    with pytest.raises(NoStack, match="left from a launcher that died"):
        call(tmp_path, Command("ps"))


def test_the_server_answers_on_an_owner_only_socket_even_under_a_long_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    seen = []

    def handler(command):
        seen.append(command)
        if command.names == ("nope",):
            raise ControlError("no service is named 'nope'")
        return {"ok": True, "names": list(command.names)}

    server = ControlServer.start(deep, handler)
    assert server is not None
    try:
        assert socket_path(deep).stat().st_mode & 0o777 == 0o600
        assert call(deep, Command("restart", ("worker",))) == {"ok": True, "names": ["worker"]}
        with pytest.raises(ControlError, match="no service is named 'nope'"):
            call(deep, Command("stop", ("nope",)))
        assert ControlServer.start(deep, handler) is None  # a second launcher does not steal it
    finally:
        server.close()
    assert seen == [Command("restart", ("worker",)), Command("stop", ("nope",))]
    assert not socket_path(deep).exists()


def test_a_garbled_request_gets_an_error_reply_not_a_dead_server(tmp_path):
    server = ControlServer.start(tmp_path, lambda command: {"ok": True})
    assert server is not None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(socket_path(tmp_path)))
            client.sendall(b"garbage\n")
            reply = json.loads(client.makefile("rb").readline())
        assert reply["ok"] is False and "JSON" in reply["error"]
        assert call(tmp_path, Command("ps")) == {"ok": True}
    finally:
        server.close()
