"""Columns the service adds, drops or retypes, loaded into DuckDB."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from synchelp import NOW, destination, expected_rows, make_records, sandbox

from connector.columns import _Type
from connector.errors import LogfireSyncError, causes
from connector.sync import run_sync
from sandbox.engine import QueryRequest, QueryResult
from sandbox.server import SandboxServer

LATER = timedelta(hours=3)

Shape = Callable[[pa.RecordBatch, int], pa.RecordBatch]
"""A page's batch as the service sends it, given the number of its request."""


class _Reshaped:
    """The sandbox's engine, each records page reshaped by `shape`."""

    def __init__(self, engine: Any, shape: Shape) -> None:
        self.engine = engine
        self.shape = shape
        self.pages = itertools.count()

    def execute(self, request: QueryRequest) -> QueryResult:
        result: QueryResult = self.engine.execute(request)
        if "trace_id" not in result.schema.names:
            return result
        page = next(self.pages)
        shaped = [self.shape(batch, page) for batch in result.batches]
        if not shaped:
            empty = pa.RecordBatch.from_pylist([], schema=result.schema)
            shaped = [self.shape(empty, page)]
        return QueryResult(shaped[0].schema, iter(shaped), result.plans)


def _with(name: str, values: Callable[[int], pa.Array]) -> Shape:
    """Pages with an extra column, its values made from each batch's length."""

    def shape(batch: pa.RecordBatch, page: int) -> pa.RecordBatch:
        del page
        column = values(batch.num_rows)
        return pa.RecordBatch.from_arrays(
            [*batch.columns, column],
            schema=batch.schema.append(pa.field(name, column.type)),
        )

    return shape


def _constant(value: object, kind: pa.DataType) -> Callable[[int], pa.Array]:
    return lambda rows: pa.array([value] * rows, kind)


def _options(server: SandboxServer, **extra: Any) -> dict[str, Any]:
    return {
        "read_token": server.token,
        "base_url": server.url,
        "start": (NOW - timedelta(hours=30)).isoformat(),
        "tables": ["records"],
        **extra,
    }


def _records() -> Any:
    return make_records(70, seed=61, start=NOW - timedelta(hours=4), end=NOW + LATER)


def _visible(server: SandboxServer) -> int:
    """How many records a sync at the server's clock loads."""
    stored = server.store.visible("records", server.clock.now())
    return int(expected_rows(stored, NOW - timedelta(minutes=5)).num_rows)


def _two_runs(tmp_path: Path, first: Shape, second: Shape) -> tuple[Any, int, int]:
    """Sync with pages of the `first` shape, then later rows of the `second`."""
    dest = destination(tmp_path)
    with sandbox(_records()) as server:
        engine = server._service.engine
        server._service.engine = _Reshaped(engine, first)
        before = run_sync(dest.pipeline, **_options(server)).rows
        server.clock.advance(LATER + timedelta(hours=1))
        server._service.engine = _Reshaped(engine, second)
        after = run_sync(dest.pipeline, **_options(server)).rows
    return dest, before, after


def test_an_extra_column_that_changes_type_loads_into_a_variant_column(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest, first, second = _two_runs(
        tmp_path,
        _with("gen_ai_tokens", _constant(42, pa.int64())),
        _with("gen_ai_tokens", _constant("many", pa.string())),
    )

    assert first > 0
    assert second > 0
    loaded = dest.table("records")
    assert loaded.num_rows == first + second == 70
    assert pc.sum(pc.equal(loaded["gen_ai_tokens"], 42)).as_py() == first
    texts = pc.equal(loaded["gen_ai_tokens__v_text"], "many")
    assert pc.sum(texts).as_py() == second
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "Column gen_ai_tokens, loaded as bigint before, now arrives as text" in said


@pytest.mark.parametrize(
    ("first", "second", "value"),
    [
        (pa.int32(), pa.int64(), 2**40),
        (pa.uint16(), pa.uint32(), 3_000_000_000),
        (pa.float32(), pa.float64(), 1e300),
        (pa.decimal128(5, 2), pa.decimal128(20, 2), Decimal("123456789012345.25")),
    ],
)
def test_numbers_that_grow_wider_load_into_the_same_column(
    tmp_path: Path, first: pa.DataType, second: pa.DataType, value: object
) -> None:
    # dlt gave the column the width of its first values, and wider ones
    # failed the load on every run.
    dest, before, after = _two_runs(
        tmp_path,
        _with("extra", _constant(1, first)),
        _with("extra", _constant(value, second)),
    )

    assert before > 0
    assert after > 0
    loaded = dest.table("records")
    assert loaded.num_rows == 70
    assert [name for name in loaded.column_names if name.startswith("extra")] == [
        "extra"
    ]
    values = loaded["extra"].to_pylist()
    assert (values.count(1), values.count(value)) == (before, after)


def test_a_type_that_changes_between_the_pages_of_one_chunk_loads_every_page(
    tmp_path: Path,
) -> None:
    def shape(batch: pa.RecordBatch, page: int) -> pa.RecordBatch:
        values = [page] * batch.num_rows
        # Integers, then doubles, then narrower integers than at first.
        kind = [pa.int64(), pa.float64()][page % 2] if page < 4 else pa.int16()
        return _with("extra", lambda rows: pa.array(values, kind))(batch, page)

    dest = destination(tmp_path)
    with sandbox(_records()) as server:
        server._service.engine = _Reshaped(server._service.engine, shape)
        report = run_sync(dest.pipeline, **_options(server, page_size=10))

    assert report.chunks == 1
    assert report.requests >= 6
    loaded = dest.table("records")
    assert loaded.num_rows == report.rows == _visible(server)
    whole = pc.is_valid(loaded["extra"])
    parts = pc.is_valid(loaded["extra__v_double"])
    assert pc.sum(pc.xor(whole, parts)).as_py() == report.rows
    doubles = set(pc.unique(loaded["extra__v_double"]).drop_null().to_pylist())
    integers = set(pc.unique(loaded["extra"]).drop_null().to_pylist())
    assert doubles
    assert doubles <= {1.0, 3.0}
    assert integers
    assert all(page % 2 == 0 or page >= 4 for page in integers)


def test_columns_dlt_would_load_under_one_name_are_refused_naming_both(
    tmp_path: Path,
) -> None:
    dest = destination(tmp_path)
    with sandbox(_records()) as server:
        engine = server._service.engine
        shape = _with("Attributes", _constant("{}", pa.string()))
        server._service.engine = _Reshaped(engine, shape)
        with pytest.raises(LogfireSyncError) as raised:
            run_sync(dest.pipeline, **_options(server))
        assert not dest.has_table("records")
        server._service.engine = engine
        report = run_sync(dest.pipeline, **_options(server))

    said = " ".join(str(cause) for cause in causes(raised.value))
    assert "the columns attributes and Attributes in records" in said
    assert "table_columns" in said
    assert report.rows == dest.count("records") == _visible(server)


def test_a_documented_column_the_service_stops_sending_is_warned_of_once_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def without_duration(batch: pa.RecordBatch, page: int) -> pa.RecordBatch:
        del page
        return batch.drop_columns(["duration"])

    dest = destination(tmp_path)
    with sandbox(_records()) as server:
        server._service.engine = _Reshaped(server._service.engine, without_duration)
        report = run_sync(dest.pipeline, **_options(server, chunk_rows=20))

    said = [record.getMessage() for record in caplog.records]
    warned = [text for text in said if "sent no column duration in records" in text]
    assert report.chunks > 1
    assert len(warned) == 1
    loaded = dest.table("records")
    assert loaded.num_rows == report.rows == _visible(server)
    assert "duration" not in loaded.column_names


@pytest.mark.parametrize(
    ("loaded", "arriving", "holds"),
    [
        (_Type("bigint"), _Type("bigint", 32), True),
        (_Type("bigint", 32), _Type("bigint", 16), True),
        (_Type("bigint", 32), _Type("bigint"), False),
        (_Type("decimal", 38, 2), _Type("decimal", 38, 4), False),
        (_Type("double"), _Type("text"), False),
        (_Type(None), _Type("text"), True),
    ],
)
def test_a_column_loaded_before_holds_only_values_that_fit_it(
    loaded: _Type, arriving: _Type, holds: bool
) -> None:
    # Columns created by earlier versions can be narrower than int64.
    assert loaded.holds(arriving) is holds
