"""Queries answered from the segments their time ranges need, with every row."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from sandbox import engine, store
from sandbox.clock import Clock
from sandbox.engine import QueryEngine, QueryRequest
from sandbox.store import Store

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROWS = 2_000
SLICE = 100
"""Rows per stored batch and per slice in these tests: segments of 200 rows."""


def _records(order: list[int]) -> pa.Table:
    times = [BASE + timedelta(seconds=i) for i in order]
    return pa.table(
        {
            "start_timestamp": times,
            "end_timestamp": times,
            "created_at": times,
            "day": [moment.date() for moment in times],
            "trace_id": [f"{i % 300:032x}" for i in order],
            "span_id": [f"{i:016x}" for i in order],
            "kind": ["span"] * len(order),
            "span_name": ["work"] * len(order),
            "message": [f"row {i}" for i in order],
            "level": [9] * len(order),
            "service_name": ["api"] * len(order),
            "project_id": ["sandbox"] * len(order),
        }
    )


def _metrics() -> pa.Table:
    return pa.table(
        {
            "recorded_timestamp": [BASE],
            "created_at": [BASE],
            "day": [BASE.date()],
            "metric_name": ["cpu"],
            "metric_type": ["gauge"],
            "unit": ["1"],
            "service_name": ["api"],
            "project_id": ["sandbox"],
        }
    )


def _engine(order: list[int]) -> QueryEngine:
    clock = Clock(start=BASE + timedelta(days=1), speed=1e-9)
    return QueryEngine(Store(_records(order), _metrics()), clock)


def _at(seconds: int) -> str:
    return f"'{(BASE + timedelta(seconds=seconds)).isoformat()}'"


QUERIES = [
    f"SELECT * FROM records WHERE created_at >= {_at(450)} AND created_at < {_at(620)}"
    " ORDER BY created_at",
    f"SELECT * FROM records WHERE created_at = {_at(1999)}",
    f"SELECT * FROM records WHERE {_at(1200)} <= created_at AND level = 9 "
    f"AND created_at <= {_at(1210)} ORDER BY span_id",
    f"SELECT * FROM records WHERE created_at < {_at(30)} OR created_at > {_at(1990)}"
    " ORDER BY span_id",
    f"SELECT count(*) AS n FROM records WHERE created_at > {_at(100)} AND trace_id IN "
    f"(SELECT trace_id FROM records WHERE created_at > {_at(1900)})",
    f"SELECT a.span_id FROM records a JOIN records b ON a.trace_id = b.trace_id "
    f"WHERE a.created_at < {_at(10)} AND b.created_at > {_at(1800)} ORDER BY 1",
    f"SELECT (SELECT max(created_at) FROM records) AS newest, count(*) AS n "
    f"FROM records WHERE created_at < {_at(5)}",
    "SELECT count(*) AS n FROM records",
    f"SELECT * FROM records WHERE created_at > {_at(1500)} OR (created_at = "
    f"{_at(1500)} AND span_id > '{1500:016x}') ORDER BY created_at, span_id LIMIT 30",
    f"SELECT * FROM records WHERE (created_at >= {_at(300)} AND created_at < "
    f"{_at(320)}) OR (created_at > {_at(1700)} AND created_at <= {_at(1710)}) "
    "ORDER BY span_id",
    f"SELECT * FROM records WHERE created_at < {_at(40)} OR level = 9 ORDER BY span_id"
    " LIMIT 5",
]


def _rows(engine_: QueryEngine, sql: str, **options: object) -> list[dict[str, object]]:
    request = QueryRequest(
        sql=sql,
        min_timestamp=BASE - timedelta(days=1),
        max_timestamp=None,
        limit=10_000,
        **options,  # type: ignore[arg-type]
    )
    result = engine_.execute(request)
    return pa.Table.from_batches(list(result.batches), schema=result.schema).to_pylist()


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "BATCH_ROWS", SLICE)
    monkeypatch.setattr(engine, "_SLICE_ROWS", SLICE)


@pytest.mark.parametrize("shuffled", [False, True], ids=["stored-in-order", "shuffled"])
@pytest.mark.parametrize("sql", QUERIES)
def test_small_segments_answer_like_one_whole_table(
    small_segments: None, monkeypatch: pytest.MonkeyPatch, sql: str, shuffled: bool
) -> None:
    order = list(range(ROWS))
    if shuffled:
        random.Random(3).shuffle(order)
    pruned = _rows(_engine(order), sql)

    monkeypatch.setattr(engine, "_SEGMENT_SLICES", 10**9)
    monkeypatch.setattr(store, "BATCH_ROWS", 10**9)
    whole = _rows(_engine(order), sql)

    assert pruned == whole
    assert pruned


def _explained(sql: str) -> tuple[int, str]:
    """The rows a query returns over records stored in order, and its plans."""
    request = QueryRequest(
        sql=sql,
        min_timestamp=BASE - timedelta(days=1),
        max_timestamp=None,
        limit=10_000,
        explain=True,
    )
    result = _engine(list(range(ROWS))).execute(request)
    rows = sum(batch.num_rows for batch in result.batches)
    assert result.plans is not None
    return rows, result.plans


def test_a_narrow_range_reads_only_the_segments_it_needs(small_segments: None) -> None:
    rows, plans = _explained(
        f"SELECT * FROM records WHERE created_at >= {_at(450)} "
        f"AND created_at < {_at(620)}"
    )

    assert rows == 170
    # Rows 450 to 619 lie in the segments of rows 400-599 and 600-799.
    assert plans.count("DataSourceExec") == 2


def test_a_function_call_in_the_select_list_keeps_the_pruning(
    small_segments: None,
) -> None:
    rows, plans = _explained(
        f"SELECT upper(kind), created_at FROM records WHERE created_at >= "
        f"{_at(450)} AND created_at < {_at(620)} ORDER BY created_at LIMIT 500"
    )

    assert rows == 170
    assert plans.count("DataSourceExec") == 2


def test_a_cursor_condition_reads_only_the_segments_after_it(
    small_segments: None,
) -> None:
    rows, plans = _explained(
        f"SELECT * FROM records WHERE created_at > {_at(1500)} OR "
        f"(created_at = {_at(1500)} AND span_id > '{1500:016x}')"
    )

    assert rows == 499
    # Rows 1500 to 1999 lie in the segments of rows 1400-1599, 1600-1799 and
    # 1800-1999; an OR the pruning could not read would scan all ten.
    assert plans.count("DataSourceExec") == 3


def _segment(order: list[int]) -> engine._Segment:
    """A segment of `order`'s records, in stored batches of `SLICE` rows."""
    table = store.conform("records", _records(order))
    return engine._memory_table("records", table.to_batches(max_chunksize=SLICE))


def _micros(seconds: int) -> int:
    return int((BASE + timedelta(seconds=seconds)).timestamp() * 1_000_000)


def test_a_sorted_segment_is_cut_to_the_bounded_rows() -> None:
    segment = _segment(list(range(300)))
    bounds = {"created_at": (_micros(150), _micros(249))}

    pieces = engine._narrowed(segment, bounds)

    assert pieces is not None
    seconds = [
        int((moment - BASE).total_seconds())
        for piece in pieces
        for moment in piece.column("created_at").to_pylist()
    ]
    assert seconds == list(range(150, 250))


def test_only_batches_sorted_on_the_column_are_cut() -> None:
    order = list(range(300))
    order[10], order[20] = order[20], order[10]
    segment = _segment(order)

    pieces = engine._narrowed(segment, {"created_at": (_micros(150), None)})

    assert pieces is not None
    assert [piece.num_rows for piece in pieces] == [100, 50, 100]


def test_bounds_that_hold_every_row_leave_the_segment_whole() -> None:
    segment = _segment(list(range(300)))

    assert engine._narrowed(segment, {"created_at": (_micros(0), None)}) is None
    assert engine._narrowed(segment, {"level": (0, 1)}) is None
