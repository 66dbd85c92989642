"""The query engine: what a request's SQL sees, and how its result comes back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from sandbox import schema
from sandbox.clock import Clock
from sandbox.engine import QueryEngine, QueryFailed, QueryRequest, QueryResult
from sandbox.store import Store

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
"""When the first hand-built row starts."""

LATER = BASE + timedelta(days=1)
"""Where the tests' clocks start: every hand-built row is visible by then."""


def records(
    n: int,
    *,
    start: datetime = BASE,
    step: timedelta = timedelta(seconds=1),
    first: int = 0,
    **columns: list[Any],
) -> pa.Table:
    """`n` spans starting `step` apart, each visible as soon as it is stored."""
    times = [start + step * i for i in range(n)]
    data: dict[str, list[Any]] = {
        "start_timestamp": times,
        "end_timestamp": times,
        "created_at": times,
        "day": [moment.date() for moment in times],
        "trace_id": [f"{first + i:032x}" for i in range(n)],
        "span_id": [f"{first + i:016x}" for i in range(n)],
        "kind": ["span"] * n,
        "span_name": ["work"] * n,
        "message": [f"row {first + i}" for i in range(n)],
        "level": [9] * n,
        "service_name": ["api"] * n,
        "project_id": ["sandbox"] * n,
    }
    data.update(columns)
    return pa.table(data)


def metrics(n: int, *, start: datetime = BASE, **columns: list[Any]) -> pa.Table:
    """`n` gauge points recorded a second apart."""
    times = [start + timedelta(seconds=i) for i in range(n)]
    data: dict[str, list[Any]] = {
        "recorded_timestamp": times,
        "created_at": times,
        "day": [moment.date() for moment in times],
        "metric_name": ["cpu"] * n,
        "metric_type": ["gauge"] * n,
        "unit": ["1"] * n,
        "service_name": ["api"] * n,
        "project_id": ["sandbox"] * n,
    }
    data.update(columns)
    return pa.table(data)


def engine_for(
    records_table: pa.Table | None = None,
    metrics_table: pa.Table | None = None,
    clock: Clock | None = None,
) -> QueryEngine:
    store = Store(
        records=records(0) if records_table is None else records_table,
        metrics=metrics(0) if metrics_table is None else metrics_table,
    )
    return QueryEngine(store, clock or Clock(start=LATER))


def request(sql: str, **options: Any) -> QueryRequest:
    options.setdefault("min_timestamp", BASE - timedelta(days=1))
    options.setdefault("max_timestamp", None)
    options.setdefault("limit", 10_000)
    return QueryRequest(sql=sql, **options)


def query(engine: QueryEngine, sql: str, **options: Any) -> pa.Table:
    result = engine.execute(request(sql, **options))
    return pa.Table.from_batches(list(result.batches), schema=result.schema)


def column(engine: QueryEngine, sql: str, **options: Any) -> list[Any]:
    values: list[Any] = query(engine, sql, **options).column(0).to_pylist()
    return values


def count(engine: QueryEngine, sql: str = "SELECT count(*) FROM records") -> int:
    [value] = column(engine, sql)
    assert isinstance(value, int)
    return value


# Which rows a query sees


def test_a_row_is_invisible_until_the_clock_reaches_its_visible_at() -> None:
    table = records(2)
    visible_at = [BASE, LATER + timedelta(hours=1)]
    table = table.append_column(
        schema.VISIBLE_AT, pa.array(visible_at, schema.TIMESTAMP)
    )
    clock = Clock(start=LATER)
    engine = engine_for(table, clock=clock)

    assert column(engine, "SELECT message FROM records") == ["row 0"]
    clock.advance(timedelta(hours=2))
    assert column(engine, "SELECT message FROM records") == ["row 0", "row 1"]


def test_visible_at_is_not_a_column_of_the_tables() -> None:
    engine = engine_for(records(1), metrics(1))

    assert query(engine, "SELECT * FROM records").schema == schema.RECORDS
    assert query(engine, "SELECT * FROM metrics").schema == schema.METRICS
    with pytest.raises(QueryFailed, match="_visible_at"):
        query(engine, "SELECT _visible_at FROM records")


def test_rows_appended_to_the_store_are_seen_by_the_next_query() -> None:
    store = Store(records=records(3), metrics=metrics(0))
    engine = QueryEngine(store, Clock(start=LATER))
    assert count(engine) == 3

    store.append("records", records(2, first=3))

    assert count(engine) == 5
    assert column(engine, "SELECT max(message) FROM records") == ["row 4"]


def test_min_timestamp_keeps_records_starting_at_or_after_it() -> None:
    engine = engine_for(records(5))

    messages = column(
        engine, "SELECT message FROM records", min_timestamp=BASE + timedelta(seconds=2)
    )

    assert messages == ["row 2", "row 3", "row 4"]


def test_max_timestamp_keeps_records_starting_at_or_before_it() -> None:
    engine = engine_for(records(5))

    messages = column(
        engine, "SELECT message FROM records", max_timestamp=BASE + timedelta(seconds=2)
    )

    assert messages == ["row 0", "row 1", "row 2"]


def test_bounds_apply_to_recorded_timestamp_in_metrics() -> None:
    engine = engine_for(metrics_table=metrics(5))

    seconds = column(
        engine,
        "SELECT extract(second FROM recorded_timestamp) FROM metrics",
        min_timestamp=BASE + timedelta(seconds=1),
        max_timestamp=BASE + timedelta(seconds=3),
    )

    assert seconds == [1, 2, 3]


def test_bounds_hold_whatever_the_sql_asks_for() -> None:
    engine = engine_for(records(5))
    sql = (
        "SELECT count(*) FROM records "
        "WHERE start_timestamp >= TIMESTAMP '2000-01-01T00:00:00Z' OR true"
    )

    seen = column(
        engine,
        sql,
        min_timestamp=BASE + timedelta(seconds=1),
        max_timestamp=BASE + timedelta(seconds=3),
    )

    assert seen == [3]


def test_environments_keep_only_the_named_environments() -> None:
    environments = ["prod", "staging", None, "", "prod"]
    engine = engine_for(records(5, deployment_environment=environments))

    seen = column(
        engine, "SELECT deployment_environment FROM records", environments=("prod",)
    )

    assert seen == ["prod", "prod"]


def test_an_empty_environment_matches_rows_without_one() -> None:
    environments = ["prod", "staging", None, "", "prod"]
    engine = engine_for(records(5, deployment_environment=environments))

    seen = column(
        engine,
        "SELECT deployment_environment FROM records",
        environments=("", "staging"),
    )

    assert seen == ["staging", None, ""]


def test_environments_also_filter_metrics() -> None:
    environments = ["prod", None, "dev"]
    engine = engine_for(metrics_table=metrics(3, deployment_environment=environments))

    assert column(
        engine, "SELECT deployment_environment FROM metrics", environments=("",)
    ) == [None]


# Limits and order


def shuffled_store(rows: int, batches: int) -> Store:
    """`rows` records stored out of order over several batches."""
    order = [(i * 7919) % rows for i in range(rows)]
    table = records(rows)
    store = Store(records=table.take(order[: rows // batches]), metrics=metrics(0))
    for part in range(1, batches):
        chunk = order[part * rows // batches : (part + 1) * rows // batches]
        store.append("records", table.take(chunk))
    return store


def test_limit_caps_a_larger_sql_limit_and_keeps_its_order() -> None:
    store = shuffled_store(rows=5_000, batches=5)
    assert len(store.snapshot("records")) == 5
    engine = QueryEngine(store, Clock(start=LATER))
    sql = "SELECT message FROM records ORDER BY start_timestamp DESC LIMIT 4000"

    messages = column(engine, sql, limit=1_000)

    assert messages == [f"row {i}" for i in range(4_999, 3_999, -1)]


def test_a_smaller_sql_limit_stands() -> None:
    engine = engine_for(records(100))
    sql = "SELECT message FROM records ORDER BY start_timestamp LIMIT 3"

    assert column(engine, sql, limit=50) == ["row 0", "row 1", "row 2"]


def test_ordered_pages_by_keyset_cover_every_row_once() -> None:
    engine = QueryEngine(shuffled_store(rows=3_000, batches=4), Clock(start=LATER))
    seen: list[str] = []
    after = ""
    while True:
        sql = (
            f"SELECT span_id FROM records WHERE span_id > '{after}' "
            "ORDER BY span_id LIMIT 10000"
        )
        page = column(engine, sql, limit=700)
        if not page:
            break
        seen += page
        after = page[-1]

    assert seen == [f"{i:016x}" for i in range(3_000)]


# Streaming


def test_batches_stream_from_an_iterator_not_a_list() -> None:
    store = Store(records=records(12_000), metrics=metrics(0))
    store.append("records", records(12_000, first=12_000))
    engine = QueryEngine(store, Clock(start=LATER))

    result = engine.execute(request("SELECT span_id FROM records", limit=20_000))
    batches = result.batches

    assert isinstance(batches, Iterator)
    assert not isinstance(batches, list | tuple)
    sizes = [batch.num_rows for batch in batches]
    assert len(sizes) > 1
    assert sum(sizes) == 20_000


def test_an_error_in_a_later_batch_surfaces_while_iterating() -> None:
    numbers = [str(i) for i in range(9_000)]
    store = Store(records=records(9_000, message=numbers), metrics=metrics(0))
    store.append("records", records(9_000, first=9_000))
    engine = QueryEngine(store, Clock(start=LATER))

    result = engine.execute(request("SELECT CAST(message AS INT) FROM records"))
    first = next(result.batches)

    assert first.column(0)[:3].to_pylist() == [0, 1, 2]
    with pytest.raises(QueryFailed, match="Cannot cast string 'row 9000'"):
        list(result.batches)


def test_the_schema_is_known_for_an_empty_result() -> None:
    engine = engine_for(records(3))

    result = engine.execute(request("SELECT trace_id, tags FROM records WHERE false"))

    assert result.schema.names == ["trace_id", "tags"]
    assert result.schema.field("tags").type == pa.list_(pa.string())
    assert sum(batch.num_rows for batch in result.batches) == 0


def test_the_schema_is_known_for_an_empty_store() -> None:
    engine = engine_for()

    result = engine.execute(request("SELECT * FROM records"))

    assert result.schema == schema.RECORDS
    assert sum(batch.num_rows for batch in result.batches) == 0


def test_every_batch_carries_the_announced_schema() -> None:
    engine = engine_for(records(3))

    result = engine.execute(
        request("SELECT upper(message) AS m, 1 AS one FROM records")
    )

    for batch in result.batches:
        assert batch.schema == result.schema


# Types


def test_plain_record_columns_keep_their_stored_types() -> None:
    engine = engine_for(records(2, tags=[["a", "ü"], None]))

    table = query(engine, "SELECT start_timestamp, created_at, day, tags FROM records")

    assert table.schema.field("start_timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("tags").type == pa.list_(pa.string())
    assert table.column("tags").to_pylist() == [["a", "ü"], None]
    assert table.column("start_timestamp")[1].as_py() == BASE + timedelta(seconds=1)


def test_plain_metric_columns_keep_their_list_types() -> None:
    table = metrics(
        1,
        histogram_bucket_counts=[[1, 2, 3]],
        histogram_explicit_bounds=[[0.5, 2.5]],
    )
    engine = engine_for(metrics_table=table)

    result = query(
        engine,
        "SELECT recorded_timestamp, histogram_bucket_counts, "
        "histogram_explicit_bounds FROM metrics",
    )

    assert result.schema.field("recorded_timestamp").type == schema.TIMESTAMP
    assert result.schema.field("histogram_bucket_counts").type == pa.list_(pa.int64())
    assert result.schema.field("histogram_explicit_bounds").type == pa.list_(
        pa.float64()
    )
    assert result.to_pylist()[0]["histogram_bucket_counts"] == [1, 2, 3]
    assert result.to_pylist()[0]["histogram_explicit_bounds"] == [0.5, 2.5]


def test_json_columns_come_back_as_text() -> None:
    engine = engine_for(records(1, attributes=['{"a": 1}']))

    table = query(engine, "SELECT attributes FROM records")

    assert table.schema.field("attributes").type == pa.string()
    assert table.column(0).to_pylist() == ['{"a": 1}']


def test_json_function_columns_are_named_as_logfire_names_them() -> None:
    engine = engine_for(records(1, attributes=['{"a": {"b": "c"}}']))

    table = query(engine, "SELECT json_get_str(attributes, 'a', 'b') FROM records")

    assert table.schema.names == [
        'json_get_str(records.attributes,Utf8("a"),Utf8("b"))'
    ]
    assert table.column(0).to_pylist() == ["c"]


# Failures


def test_an_unknown_column_fails_with_the_engine_message() -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed, match="nope") as failure:
        query(engine, "SELECT nope FROM records")

    assert "Schema error" in str(failure.value)


def test_unparseable_sql_fails_with_the_engine_message() -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed, match="SQL error"):
        query(engine, "SELEC 1")


def test_an_unknown_table_fails() -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed, match=r"spans.*not found"):
        query(engine, "SELECT * FROM spans")


def test_the_json_arrow_operators_fail_with_a_hint() -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed, match=r"->>.*json_as_text\(column, 'key'\)"):
        query(engine, "SELECT attributes->>'a' FROM records")


def test_a_type_error_fails() -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed):
        query(engine, "SELECT start_timestamp + tags FROM records")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE copy AS SELECT * FROM records",
        "CREATE VIEW spans AS SELECT * FROM records",
        "INSERT INTO records SELECT * FROM records",
        "DROP VIEW records",
        "COPY records TO '/tmp/records.csv'",
        "SET datafusion.execution.time_zone = 'UTC'",
    ],
)
def test_statements_other_than_queries_are_refused(sql: str) -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed, match="not supported"):
        query(engine, sql)

    assert count(engine) == 1


# The clock and the time zone


def test_now_follows_the_sandbox_clock() -> None:
    clock = Clock(start=datetime.now(UTC) - timedelta(days=3))
    engine = engine_for(records(1), clock=clock)

    [row] = query(engine, "SELECT now() AS a, current_timestamp AS b").to_pylist()

    assert abs(row["a"] - clock.now()) < timedelta(seconds=5)
    assert row["b"] == row["a"]


def test_now_is_a_utc_timestamp() -> None:
    engine = engine_for(records(1))

    result = engine.execute(request("SELECT now()"))

    assert result.schema.field(0).type == pa.timestamp("us", tz="UTC")


def test_current_date_follows_the_sandbox_clock() -> None:
    clock = Clock(start=datetime(2030, 6, 1, 12, tzinfo=UTC))
    engine = engine_for(records(1), clock=clock)

    assert column(engine, "SELECT current_date") == [clock.now().date()]


def test_now_in_sql_filters_follows_the_clock() -> None:
    clock = Clock(start=BASE + timedelta(seconds=2, microseconds=500_000))
    engine = engine_for(records(5), clock=clock)

    seen = column(engine, "SELECT message FROM records WHERE start_timestamp < now()")

    assert seen == ["row 0", "row 1", "row 2"]


def test_timezone_sets_the_session_time_zone() -> None:
    clock = Clock(start=datetime(2026, 1, 1, 23, 30, tzinfo=UTC))
    engine = engine_for(records(1), clock=clock)

    table = query(engine, "SELECT now() AS n, current_date AS d", timezone="Asia/Tokyo")

    assert table.schema.field("n").type == pa.timestamp("us", tz="Asia/Tokyo")
    assert table.column("d").to_pylist() == [datetime(2026, 1, 2).date()]


def test_timezone_changes_how_local_timestamps_are_read() -> None:
    engine = engine_for(records(1))
    sql = "SELECT CAST('2026-01-01T00:00:00' AS TIMESTAMPTZ) AS t"

    [paris] = column(engine, sql, timezone="Europe/Paris")

    assert paris == datetime(2025, 12, 31, 23, tzinfo=UTC)


def test_an_unknown_timezone_fails_with_a_clear_message() -> None:
    engine = engine_for(records(1))

    with pytest.raises(QueryFailed, match="'Mars/Olympus' is not known"):
        query(engine, "SELECT 1", timezone="Mars/Olympus")


# Explain and the catalogue


def test_explain_gives_both_plans_and_still_runs_the_query() -> None:
    engine = engine_for(records(4))

    result: QueryResult = engine.execute(
        request("SELECT count(*) FROM records", explain=True)
    )

    assert result.plans is not None
    assert "logical_plan" in result.plans
    assert "physical_plan" in result.plans
    assert "Aggregate" in result.plans
    assert [batch.column(0)[0].as_py() for batch in result.batches] == [4]


def test_plans_are_absent_without_explain() -> None:
    engine = engine_for(records(1))

    assert engine.execute(request("SELECT 1")).plans is None


def test_information_schema_lists_the_columns_of_both_tables() -> None:
    engine = engine_for(records(1))

    table = query(
        engine,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )

    pairs = list(zip(*table.to_pydict().values(), strict=True))
    expected = [("metrics", name) for name in schema.METRICS.names]
    expected += [("records", name) for name in schema.RECORDS.names]
    assert pairs == expected


# Concurrency


def test_concurrent_queries_each_see_one_snapshot_while_the_store_grows() -> None:
    store = Store(records=records(1_000), metrics=metrics(0))
    engine = QueryEngine(store, Clock(start=LATER))
    failures: list[BaseException] = []
    counts: list[int] = []
    sql = (
        "SELECT (SELECT count(*) FROM records) AS a, "
        "(SELECT count(DISTINCT span_id) FROM records) AS b"
    )

    def write() -> None:
        for part in range(1, 31):
            store.append("records", records(100, first=900 + part * 100))

    def read() -> None:
        try:
            for _ in range(15):
                [row] = query(engine, sql).to_pylist()
                assert row["a"] == row["b"]
                counts.append(row["a"])
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=write)]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert all((seen - 1_000) % 100 == 0 and seen <= 4_000 for seen in counts)
    assert count(engine) == 4_000
