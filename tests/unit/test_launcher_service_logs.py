"""Service log files: written per service, rotated by the standard library, read and followed."""

import itertools

from stack.launcher import service_logs
from stack.launcher.service_logs import ServiceLogs, follow, last_lines, log_path


def test_each_service_gets_its_own_file_and_the_last_lines_read_back(tmp_path):
    logs = ServiceLogs(tmp_path)
    for i in range(5):
        logs.write("worker", f"line {i}\n")
    logs.write("redis", "redis line\n")
    logs.close()
    assert [line.split(" ", 2)[2] for line in last_lines(log_path(tmp_path, "worker"), 2)] == [
        "line 3",
        "line 4",
    ]
    assert "redis line" in last_lines(log_path(tmp_path, "redis"), 5)[0]
    assert last_lines(log_path(tmp_path, "beat"), 5) == []
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700


def test_a_log_is_rotated_at_its_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(service_logs, "MAX_BYTES", 200)
    logs = ServiceLogs(tmp_path)
    for i in range(50):
        logs.write("worker", f"line {i:03d} " + "x" * 20 + "\n")
    logs.close()
    rotated = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert rotated == ["worker.log", "worker.log.1", "worker.log.2", "worker.log.3"]
    assert "line 049" in last_lines(log_path(tmp_path, "worker"), 1)[0]


def test_follow_yields_new_lines_across_a_rotation_and_ends_when_told(tmp_path):
    path = tmp_path / "w.log"
    path.write_text("old\n")
    ticks = itertools.count()
    writes = {
        1: lambda: path.open("a").write("new 1\npartial"),
        2: lambda: path.open("a").write(" done\n"),
        3: lambda: (path.rename(tmp_path / "w.log.1"), path.write_text("after rotation\n")),
    }

    def running():
        for tick in ticks:
            if tick in writes:
                writes[tick]()
            yield tick < 5

    assert [line for _, line in follow([path], running())] == [
        "new 1",
        "partial done",
        "after rotation",
    ]
