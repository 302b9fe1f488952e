"""A restarted service's readiness is its own: what the probe saw of the dead one is forgotten."""

import time

from stack.checks.probes import AnyOf, FileWritten, LogLine, StayedUp
from stack.launcher.running import renewed


def test_a_log_line_seen_from_the_dead_instance_no_longer_counts():
    probe = LogLine("beat: Starting...")
    probe.observe("beat: Starting...")
    assert probe.check()
    fresh = renewed(probe)
    assert fresh.text == "beat: Starting..." and not fresh.check()


def test_a_file_written_before_the_restart_no_longer_counts(tmp_path):
    (tmp_path / "celerybeat-schedule").write_text("x")
    probe = FileWritten(tmp_path, "celerybeat-schedule*", since=time.time() - 60)
    fresh = renewed(probe)
    assert fresh.since > probe.since and (fresh.directory, fresh.pattern) == (
        tmp_path,
        "celerybeat-schedule*",
    )


def test_the_stay_up_grace_starts_again_and_any_of_renews_its_probes():
    stayed = StayedUp(grace_s=0.0)
    seen = LogLine("ready")
    seen.observe("ready")
    assert stayed.check()
    fresh = renewed(AnyOf((stayed, seen)))
    assert fresh.probes[0]._first is None and fresh.probes[0].grace_s == 0.0
    assert not fresh.probes[1].check()


def test_a_probe_with_a_reset_of_its_own_is_reset_in_place():
    class Counting:
        resets = 0

        def reset(self):
            self.resets += 1

    probe = Counting()
    assert renewed(probe) is probe and probe.resets == 1
