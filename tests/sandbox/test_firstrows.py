"""Queries that keep their first rows in a stored order, answered from a prefix."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from datafusion import SessionContext

from sandbox import engine, store
from sandbox.clock import Clock
from sandbox.engine import QueryEngine, QueryRequest
from sandbox.firstrows import FirstRows, first_rows
from sandbox.store import Store
from tests.sandbox.test_engine import metrics

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROWS = 3_000


def _records(order: list[int]) -> pa.Table:
    """Rows that share their `created_at` three at a time, in `order`."""
    created = [BASE + timedelta(seconds=i // 3) for i in order]
    started = [BASE + timedelta(seconds=(i * 7) % ROWS) for i in order]
    return pa.table(
        {
            "start_timestamp": started,
            "end_timestamp": started,
            "created_at": created,
            "day": [moment.date() for moment in created],
            "trace_id": [f"{i % 97:032x}" for i in order],
            "span_id": [f"{i:016x}" for i in order],
            "kind": ["log" if i % 10 == 0 else "span" for i in order],
            "span_name": ["work"] * len(order),
            "message": [f"row {i}" for i in order],
            "level": [i % 20 for i in order],
            "service_name": ["api"] * len(order),
            "project_id": ["sandbox"] * len(order),
        }
    )


def _engine(order: list[int]) -> QueryEngine:
    clock = Clock(start=BASE + timedelta(days=1), speed=1e-9)
    return QueryEngine(Store(_records(order), metrics(1)), clock)


def _rows(engine_: QueryEngine, sql: str, limit: int = 10_000) -> list[dict[str, Any]]:
    request = QueryRequest(
        sql=sql, min_timestamp=BASE - timedelta(days=1), max_timestamp=None, limit=limit
    )
    result = engine_.execute(request)
    table = pa.Table.from_batches(list(result.batches), schema=result.schema)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _at(seconds: int) -> str:
    return f"'{(BASE + timedelta(seconds=seconds)).isoformat()}'"


@pytest.fixture
def prefixes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Small stored batches, and whether each prefix tried held the answer."""
    monkeypatch.setattr(store, "BATCH_ROWS", 250)
    monkeypatch.setattr(engine, "_SLICE_ROWS", 250)
    outcomes: list[bool] = []
    complete = engine._complete

    def spy(*args: Any) -> bool:
        outcomes.append(complete(*args))
        return outcomes[-1]

    monkeypatch.setattr(engine, "_complete", spy)
    return outcomes


def _without_prefixes(order: list[int], sql: str, limit: int) -> list[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_PREFIX_TRIES", ())
        return _rows(_engine(order), sql, limit)


CURSOR = (
    f"created_at >= {_at(400)} AND (created_at > {_at(400)} OR (created_at = "
    f"{_at(400)} AND span_id > '{1201:016x}'))"
)

QUERIES = [
    "SELECT * FROM records ORDER BY created_at, span_id LIMIT 100",
    f"SELECT * FROM records WHERE {CURSOR} ORDER BY created_at, span_id LIMIT 100",
    f"SELECT span_id, created_at AS c FROM records WHERE {CURSOR} "
    "ORDER BY c, span_id LIMIT 7",
    "SELECT span_id, start_timestamp FROM records "
    "ORDER BY start_timestamp, span_id LIMIT 50",
    "SELECT span_id, created_at FROM records WHERE level = 3 "
    "ORDER BY created_at, span_id LIMIT 40",
    "SELECT span_id, created_at FROM (SELECT * FROM records WHERE kind = 'log') AS r "
    "ORDER BY created_at, span_id DESC LIMIT 30",
    # The batch stored out of order fills the page with rows after the cut.
    f"SELECT span_id, created_at FROM records WHERE kind = 'log' OR created_at >= "
    f"{_at(83)} ORDER BY created_at, span_id LIMIT 100",
]


@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("sql", QUERIES)
def test_a_prefix_answers_like_all_the_rows(
    prefixes: list[bool], sql: str, shuffled: bool
) -> None:
    order = list(range(ROWS))
    if shuffled:
        random.Random(5).shuffle(order)
    else:
        # One stored batch out of order, which a prefix must hold whole.
        order[250:500] = reversed(order[250:500])

    answered = _rows(_engine(order), sql)
    whole = _without_prefixes(order, sql, 10_000)

    assert answered == whole
    assert answered


def test_pages_in_stored_order_are_answered_from_prefixes(
    prefixes: list[bool],
) -> None:
    _rows(_engine(list(range(ROWS))), QUERIES[1])

    assert prefixes == [True]


def test_a_prefix_without_enough_rows_falls_back_to_all_of_them(
    prefixes: list[bool],
) -> None:
    order = list(range(ROWS))
    sql = (
        "SELECT span_id, created_at FROM records WHERE created_at >= "
        f"{_at(990)} OR level = 19 ORDER BY created_at LIMIT 50"
    )

    answered = _rows(_engine(order), sql)

    # Level 19 is one row in twenty: prefixes of 62 and 800 rows hold 3 and 40.
    assert prefixes == [False, False]
    assert answered == _without_prefixes(order, sql, 10_000)
    assert len(answered) == 50


def test_the_request_limit_is_the_rows_kept(prefixes: list[bool]) -> None:
    order = list(range(ROWS))
    sql = "SELECT span_id, created_at FROM records ORDER BY created_at, span_id"

    answered = _rows(_engine(order), sql, limit=20)

    assert prefixes == [True]
    assert answered == _without_prefixes(order, sql, 20)
    assert len(answered) == 20


# Which plans qualify


@pytest.fixture(scope="module")
def context() -> SessionContext:
    stand_in = engine._memory_table("records", []).table
    context = SessionContext()
    context.register_table("records", stand_in)
    context.register_table("metrics", engine._memory_table("metrics", []).table)
    return context


def _shape(context: SessionContext, sql: str) -> FirstRows | None:
    plan = context.sql(sql).limit(10_000).optimized_logical_plan()
    ordered = {"records": ("created_at", "start_timestamp")}
    return first_rows(plan, plan.display_indent(), ordered)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT * FROM records WHERE kind = 'log' ORDER BY created_at, span_id "
            "LIMIT 5",
            FirstRows("records", "created_at", 5, "created_at"),
        ),
        (
            "SELECT trace_id, created_at AS c FROM (SELECT * FROM records) AS r "
            "ORDER BY c LIMIT 5",
            FirstRows("records", "created_at", 5, "c"),
        ),
        (
            "SELECT start_timestamp AS created_at FROM records ORDER BY created_at "
            "LIMIT 5",
            FirstRows("records", "start_timestamp", 5, "created_at"),
        ),
        (
            "SELECT upper(kind), created_at FROM records ORDER BY created_at LIMIT 5",
            FirstRows("records", "created_at", 5, "created_at"),
        ),
        (
            "SELECT created_at AS a, created_at AS b FROM records ORDER BY b LIMIT 5",
            FirstRows("records", "created_at", 5, "b"),
        ),
        (
            "SELECT created_at FROM records ORDER BY created_at",
            FirstRows("records", "created_at", 10_000, "created_at"),
        ),
    ],
)
def test_first_rows_of_one_scan_in_a_stored_order_qualify(
    context: SessionContext, sql: str, expected: FirstRows
) -> None:
    assert _shape(context, sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT trace_id FROM records ORDER BY created_at LIMIT 5",
        "SELECT created_at FROM records ORDER BY created_at LIMIT 5 OFFSET 2",
        "SELECT created_at FROM records ORDER BY created_at DESC LIMIT 5",
        "SELECT created_at FROM records ORDER BY created_at NULLS FIRST LIMIT 5",
        "SELECT created_at FROM records ORDER BY span_id, created_at LIMIT 5",
        "SELECT end_timestamp FROM records ORDER BY end_timestamp LIMIT 5",
        "SELECT created_at + INTERVAL '1 second' AS c FROM records ORDER BY c LIMIT 5",
        "SELECT kind, max(created_at) AS c FROM records GROUP BY kind ORDER BY c "
        "LIMIT 5",
        "SELECT DISTINCT created_at FROM records ORDER BY created_at LIMIT 5",
        "SELECT created_at, row_number() OVER (ORDER BY span_id) AS n FROM records "
        "ORDER BY created_at LIMIT 5",
        "SELECT * FROM (SELECT * FROM records LIMIT 100) AS r ORDER BY created_at "
        "LIMIT 5",
        "SELECT * FROM records WHERE trace_id IN (SELECT trace_id FROM records "
        "WHERE kind = 'log') ORDER BY created_at LIMIT 5",
        "SELECT * FROM records WHERE created_at > (SELECT max(created_at) "
        "FROM metrics) ORDER BY created_at LIMIT 5",
        "SELECT created_at FROM metrics ORDER BY created_at LIMIT 5",
    ],
)
def test_other_queries_do_not_qualify(context: SessionContext, sql: str) -> None:
    assert _shape(context, sql) is None
