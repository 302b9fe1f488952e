"""schemathesis against the API's own OpenAPI spec: every check, bounded examples, real Redis,
a real worker, and real dead-letter and task ids mixed into the generated paths.

The verdict a user relies on: whatever a client sends, the API answers with a status its spec
lists, in the body its spec describes, and never with a server error.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from stack.api.app import create_app
from stack.deadletter import DeadLetter
from stack.submit import submit

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 40  # per operation: enough to hit every branch of our small API, bounded in time
SEEDED = 3  # dead letters written before the run, whose ids the fuzzer reuses


@pytest.fixture
def api_schema(stack_app, stack_worker, stack_dead_letters):
    stack_worker()
    seeded = []
    for n in range(SEEDED):
        record = DeadLetter(
            task_id=f"fuzz-{n}-{time.time_ns()}",
            name="diagnostics.always_fail",
            queue="default",
            priority="normal",
            exception_type="stack.tasks.diagnostics.DiagnosticFailure",
            exception_message="seeded",
            reason="gave up after 4 attempts",
            attempts=4,
            first_failure_at=time.time(),
            last_failure_at=time.time(),
        )
        seeded.append(stack_dead_letters.add(record)[0])
    tasks = [submit(stack_app, "diagnostics.echo", ["fuzz"]) for _ in range(SEEDED)]
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app=stack_app))
    return schema, {"record_id": seeded, "task_id": tasks}


def fuzz(operation, mode: GenerationMode, known: dict[str, list[str]], seen: Counter) -> str | None:
    """Run one operation's bounded examples in ``mode``; the first failure's report, or None."""

    @given(case=operation.as_strategy(mode), pick=st.integers(min_value=0, max_value=2 * SEEDED))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case, pick):
        for name, ids in known.items():
            if case.path_parameters and name in case.path_parameters and pick < len(ids):
                case.path_parameters[name] = ids[pick]  # a real id half of the time
        response = case.call_and_validate()
        seen[f"{operation.label} -> {response.status_code}"] += 1

    try:
        check()
    except Unsatisfiable:  # nothing to negate: an operation without parameters or body
        return None
    except (AssertionError, BaseExceptionGroup) as exc:
        return f"{operation.label} ({mode}): {exc}"
    return None


def test_the_api_honours_its_spec_and_never_answers_a_server_error(api_schema):
    schema, known = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    seen: Counter = Counter()
    failures = [
        failure
        for op in operations
        for mode in GenerationMode
        if (failure := fuzz(op, mode, known, seen)) is not None
    ]

    assert len(operations) >= 10, [op.label for op in operations]
    assert failures == [], "\n\n".join(failures)
    assert sum(seen.values()) >= len(operations) * 10, seen  # the examples really ran
    print("schemathesis:", sum(seen.values()), "calls;", dict(sorted(seen.items())))
