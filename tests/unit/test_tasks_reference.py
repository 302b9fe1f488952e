"""The work inside the reference tasks, as plain functions (no Celery, no Redis)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from stack.retry import NonRetryableError
from stack.tasks import database
from stack.tasks.maintenance import result_age_s
from stack.tasks.reference import (
    InvalidInput,
    Threshold,
    analyse,
    evaluate_thresholds,
    summarise_csv,
    upload_path,
)

# --- monitoring ---------------------------------------------------------------------

RULES = [
    Threshold("share", min_value=0.1, max_value=None),
    Threshold("churn", min_value=None, max_value=0.05),
    Threshold("price", min_value=-1.0, max_value=1.0),
]


def test_values_inside_their_bounds_raise_no_alert():
    assert evaluate_thresholds(RULES, {"share": 0.2, "churn": 0.01, "price": 0}) == []


def test_each_breach_names_its_metric_kind_value_and_limit():
    alerts = evaluate_thresholds(RULES, {"share": 0.05, "churn": 0.2, "price": "n/a"})

    assert alerts == [
        {"metric": "share", "value": 0.05, "kind": "below_min", "limit": 0.1},
        {"metric": "churn", "value": 0.2, "kind": "above_max", "limit": 0.05},
        {"metric": "price", "value": "n/a", "kind": "not_a_number"},
    ]


def test_a_metric_missing_from_the_snapshot_is_an_alert():
    assert evaluate_thresholds(RULES[:1], {}) == [
        {"metric": "share", "value": None, "kind": "missing"}
    ]


# --- analysis -----------------------------------------------------------------------


def test_analysis_of_numbers_gives_the_usual_statistics():
    stats = analyse({"values": [2, 4, 4, 4, 5, 5, 7, 9]})["values"]

    assert (stats["count"], stats["mean"], stats["median"]) == (8, 5.0, 4.5)
    assert (stats["min"], stats["max"], stats["sum"]) == (2.0, 9.0, 40.0)
    assert stats["stdev"] == pytest.approx(2.138, abs=1e-3)


def test_analysis_of_text_counts_words_and_sentences():
    stats = analyse({"text": "One fish. Two fish! Red fish?"})["text"]

    assert (stats["words"], stats["sentences"]) == (6, 3)
    assert stats["top_words"][0] == ("fish", 3)


@pytest.mark.parametrize(
    "request_",
    [{}, {"values": []}, {"values": [1, "two"]}, {"values": [True]}, {"text": 5}, ["values"]],
)
def test_malformed_analysis_requests_are_not_retryable(request_):
    with pytest.raises(NonRetryableError):
        analyse(request_)


# --- CSV ----------------------------------------------------------------------------


def test_a_csv_is_counted_and_its_numeric_columns_aggregated():
    summary = summarise_csv("name,qty,price\na,1,2.5\nb,3,\n\nc,2,1.5\n")

    assert summary["row_count"] == 3
    assert summary["columns"] == ["name", "qty", "price"]
    assert summary["numeric_columns"]["qty"] == {"sum": 6.0, "min": 1.0, "max": 3.0, "mean": 2.0}
    assert summary["numeric_columns"]["price"]["sum"] == 4.0
    assert summary["empty_cells"] == {"name": 0, "qty": 0, "price": 1}


def test_a_semicolon_csv_parses_with_its_delimiter():
    assert summarise_csv("a;b\n1;2\n", delimiter=";")["numeric_columns"]["b"]["sum"] == 2.0


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "empty CSV"),
        ("a,,c\n1,2,3\n", {}, "empty column name"),
        ("a,a\n1,2\n", {}, "duplicate column names"),
        ("a,b\n1,2\n3\n", {}, "row 3 has 1 fields, the header has 2"),
        ("a,b\n1,2\n", {"required_columns": ["a", "total"]}, "required columns missing"),
        ('a,b\n"1,2\n', {}, "malformed CSV"),
        ("a,b\n", {"delimiter": "::"}, "one character"),
    ],
)
def test_invalid_csvs_are_refused_with_the_reason(text, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        summarise_csv(text, **kwargs)


def test_uploads_are_read_only_from_inside_the_uploads_dir(tmp_path):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "ok.csv").write_text("a\n1\n")
    (tmp_path / "secret.csv").write_text("a\n1\n")

    assert upload_path(tmp_path, "ok.csv") == (tmp_path / "uploads" / "ok.csv").resolve()
    with pytest.raises(InvalidInput, match="outside the uploads directory"):
        upload_path(tmp_path, "../secret.csv")
    with pytest.raises(InvalidInput, match="outside the uploads directory"):
        upload_path(tmp_path, str(tmp_path / "secret.csv"))
    with pytest.raises(InvalidInput, match="no such upload"):
        upload_path(tmp_path, "missing.csv")


# --- the bundled database -------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    return database.ensure_database(tmp_path)


def test_the_database_is_built_once_under_a_name_that_follows_the_seed(tmp_path, db):
    assert database.ensure_database(tmp_path) == db
    assert db.name == database.database_path(tmp_path).name
    assert database.database_path(tmp_path, "CREATE TABLE t (x);") != db
    assert [p.name for p in tmp_path.iterdir()] == [db.name]  # no temporary left behind


def test_a_select_with_parameters_returns_columns_and_rows(db):
    result = database.run_select(
        db, "SELECT id, name FROM monitors WHERE id = :id", {"id": "monitor_456"}
    )

    assert result.as_dict() == {
        "columns": ["id", "name"],
        "rows": [["monitor_456", "Globex sentiment"]],
        "row_count": 1,
        "truncated": False,
    }


def test_rows_beyond_the_limit_are_cut_and_flagged(db):
    result = database.run_select(db, "SELECT id FROM sales ORDER BY id", max_rows=5)

    assert (len(result.rows), result.truncated) == (5, True)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE sales SET quantity = 0", "refused an UPDATE statement"),
        ("-- comment first\nDELETE FROM sales", "refused a DELETE statement"),
        ("PRAGMA writable_schema = 1", "refused a PRAGMA statement"),
        ("ATTACH DATABASE 'x.db' AS x", "refused an ATTACH statement"),
        ("", "refused an empty statement"),
        ("WITH t AS (SELECT 1) DELETE FROM sales", "only reading is allowed"),
        ("SELECT 1; DROP TABLE sales", "one statement at a time"),
        ("SELECT * FROM no_such_table", "no such table"),
    ],
)
def test_anything_but_a_single_read_is_refused_and_never_retried(db, sql, message):
    with pytest.raises(database.QueryRefused, match=message) as refused:
        database.run_select(db, sql)
    assert isinstance(refused.value, NonRetryableError)


def test_the_database_is_unchanged_after_refused_writes(db):
    for sql in ("UPDATE sales SET quantity = 0", "WITH t AS (SELECT 1) DELETE FROM sales"):
        with pytest.raises(database.QueryRefused):
            database.run_select(db, sql)

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), MIN(quantity) FROM sales").fetchone() == (60, 1)


def test_a_runaway_query_is_stopped_at_its_deadline(db):
    forever = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n"
    )

    with pytest.raises(database.QueryRefused, match=r"longer than 0\.2 s"):
        database.run_select(db, forever, timeout_s=0.2)


# --- maintenance -----------------------------------------------------------------------


def test_a_results_age_comes_from_its_date_done():
    meta = json.dumps({"status": "SUCCESS", "date_done": "2025-01-01T00:00:00+00:00"}).encode()

    assert result_age_s(meta, now_s=1735689600.0 + 90) == pytest.approx(90)


def test_a_result_without_a_date_done_or_unreadable_has_no_age():
    assert result_age_s(json.dumps({"status": "STARTED"}).encode(), 0) is None
    assert result_age_s(b"\x80not json", 0) is None
