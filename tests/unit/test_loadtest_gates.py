"""Gate evaluation over fake Locust statistics: pure logic, no Locust imported."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from stack.loadtest.gates import (
    E2E,
    ENQUEUE,
    Gates,
    Verdict,
    evaluate,
    measure,
    percentile,
    summary_rows,
)


@dataclass
class FakeEntry:
    method: str | None
    name: str
    num_requests: int
    num_failures: int = 0
    response_times: Mapping[int, int] = field(default_factory=dict)


def e2e(name: str, times_ms: dict[int, int], failures: int = 0) -> FakeEntry:
    return FakeEntry(E2E, name, sum(times_ms.values()) + failures, failures, times_ms)


def by_gate(results: list) -> dict:
    return {r.gate: r for r in results}


def healthy_run() -> list[FakeEntry]:
    return [
        FakeEntry(ENQUEUE, "celery diagnostics.echo [normal]", 100, 0, {2: 100}),
        e2e("celery diagnostics.echo [normal]", {10: 90, 50: 9, 400: 1}),
        FakeEntry("POST", "/tasks", 100, 0, {5: 100}),
        e2e("http diagnostics.echo [normal]", {20: 95, 30: 5}),
    ]


def test_percentile_is_nearest_rank_over_the_histogram():
    histogram = {10: 90, 50: 9, 400: 1}
    assert percentile(histogram, 0.50) == 10
    assert percentile(histogram, 0.95) == 50
    assert percentile(histogram, 0.99) == 50
    assert percentile(histogram, 1.0) == 400


def test_percentile_of_nothing_is_unknown():
    assert percentile({}, 0.95) is None


def test_end_to_end_percentiles_merge_every_e2e_entry_and_ignore_other_types():
    measures = measure(healthy_run(), duration_s=10.0, final_depth=0)
    assert measures.completed == 200
    assert measures.e2e_p50_ms == 20
    assert measures.e2e_p95_ms == 30
    assert measures.e2e_p99_ms == 50
    assert measures.tasks_per_s == pytest.approx(20.0)


def test_a_healthy_run_passes_every_gate():
    results = evaluate(Gates(), measure(healthy_run(), 10.0, final_depth=3), users=20)
    assert [r.gate for r in results if not r.passed] == []


def test_a_run_where_nothing_completed_fails_latency_and_throughput_gates():
    entries = [FakeEntry(ENQUEUE, "celery diagnostics.echo [normal]", 20, 0, {2: 20})]
    results = by_gate(evaluate(Gates(), measure(entries, 20.0, final_depth=20), users=20))
    assert not results["--max-p95-ms"].passed
    assert "no task completed" in results["--max-p95-ms"].describe()
    assert not results["--min-tasks-per-s"].passed
    assert results["--min-tasks-per-s"].measured == 0


def test_a_crossed_latency_gate_names_threshold_and_measured_value():
    results = by_gate(evaluate(Gates(max_p95_ms=1), measure(healthy_run(), 10.0, 0), users=20))
    gate = results["--max-p95-ms"]
    assert not gate.passed
    assert gate.describe() == "gate --max-p95-ms crossed: threshold 1 ms, measured 30 ms"


def test_fail_ratio_counts_failures_of_every_request_type():
    entries = [*healthy_run(), FakeEntry("POST", "/tasks", 10, 10)]
    measures = measure(entries, 10.0, 0)
    assert measures.failures == 10
    assert measures.fail_ratio == pytest.approx(10 / 410)
    assert not by_gate(evaluate(Gates(), measures, users=20))["--max-fail-ratio"].passed


def test_failed_tasks_do_not_count_as_completed():
    entries = [e2e("celery diagnostics.always_fail [normal]", {10: 5}, failures=5)]
    assert measure(entries, 1.0, 0).completed == 5


def test_final_depth_gate_defaults_to_the_number_of_users():
    measures = measure(healthy_run(), 10.0, final_depth=21)
    assert not by_gate(evaluate(Gates(), measures, users=20))["--max-final-depth"].passed
    assert by_gate(evaluate(Gates(), measures, users=21))["--max-final-depth"].passed
    explicit = Gates(max_final_depth=100)
    assert by_gate(evaluate(explicit, measures, users=1))["--max-final-depth"].passed


def test_an_unknown_final_depth_fails_its_gate():
    results = by_gate(evaluate(Gates(), measure(healthy_run(), 10.0, None), users=20))
    assert not results["--max-final-depth"].passed
    assert "Redis did not answer" in results["--max-final-depth"].describe()


def test_summary_rows_merge_tasks_per_user_kind():
    rows = summary_rows([*healthy_run(), e2e("celery diagnostics.sleep [high]", {100: 10})], 10.0)
    e2e_celery = next(r for r in rows if r["type"] == E2E and r["name"] == "celery")
    assert e2e_celery["requests"] == 110
    assert {(r["type"], r["name"]) for r in rows} == {
        (ENQUEUE, "celery"),
        (E2E, "celery"),
        (E2E, "http"),
        ("POST", "/tasks"),
    }


def test_a_verdict_survives_its_json_round_trip():
    measures = measure(healthy_run(), 10.0, 0)
    verdict = Verdict(measures, evaluate(Gates(), measures, 20), rows=[], depth={"end": 0})
    again = Verdict.from_dict(verdict.to_dict())
    assert again == verdict
    assert again.passed
