"""The same sync into a real PostgreSQL server, started by the tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import psycopg2
import pyarrow as pa
import pytest

from connector.sync import SyncReport, run_backfill, run_sync
from tests.connector.synchelp import (
    NOW,
    assert_same_rows,
    expected_rows,
    make_metrics,
    make_records,
    sandbox,
)
from tests.postgres_server import postgres_server

START = NOW - timedelta(hours=6)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _pipeline(tmp_path: Path, url: str, name: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.postgres(url),
        pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name=name,
    )


def _table(url: str, dataset: str, name: str) -> pa.Table:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {dataset}.{name}")
        assert cursor.description is not None
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    data = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    for name, values in data.items():
        if values and isinstance(values[0], dict | list):
            data[name] = [json.dumps(v) if v is not None else None for v in values]
    return pa.table(data)


def test_a_full_sync_into_postgres_holds_exactly_the_source_rows(
    tmp_path: Path, postgres_url: str
) -> None:
    records = make_records(3_000, seed=5, start=START, end=NOW)
    metrics = make_metrics(500, seed=6, start=START, end=NOW)
    pipeline = _pipeline(tmp_path, postgres_url, "full_sync")
    with sandbox(records, metrics) as server:
        run_sync(
            pipeline,
            read_token=server.token,
            base_url=server.url,
            start=(START - timedelta(hours=1)).isoformat(),
            page_size=500,
        )

    horizon = NOW - timedelta(minutes=5)
    assert_same_rows(
        _table(postgres_url, "full_sync", "records"), expected_rows(records, horizon)
    )
    assert_same_rows(
        _table(postgres_url, "full_sync", "metrics"), expected_rows(metrics, horizon)
    )


def test_json_and_list_columns_are_jsonb_that_sql_can_index(
    tmp_path: Path, postgres_url: str
) -> None:
    records = make_records(300, seed=7, start=START, end=NOW)
    pipeline = _pipeline(tmp_path, postgres_url, "json_columns")
    with sandbox(records) as server:
        run_sync(
            pipeline,
            read_token=server.token,
            base_url=server.url,
            tables=["records"],
            start=(START - timedelta(hours=1)).isoformat(),
        )

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'json_columns' AND table_name = 'records' "
            "AND column_name IN ('tags', 'attributes', 'created_at')"
        )
        types = dict(cursor.fetchall())
        cursor.execute(
            "SELECT tags->>1, attributes->'nested'->'k'->>0 FROM json_columns.records "
            "WHERE jsonb_array_length(tags) = 2 LIMIT 1"
        )
        second_tag, first_k = cursor.fetchone() or (None, None)

    assert types == {
        "tags": "jsonb",
        "attributes": "jsonb",
        "created_at": "timestamp with time zone",
    }
    assert second_tag == 'q"uote'
    assert first_k == "1"


def test_a_backfill_into_postgres_merges_without_duplicates(
    tmp_path: Path, postgres_url: str
) -> None:
    records = make_records(2_000, seed=8, start=START, end=NOW)
    pipeline = _pipeline(tmp_path, postgres_url, "backfill_merge")
    with sandbox(records) as server:
        options = {
            "read_token": server.token,
            "base_url": server.url,
            "tables": ["records"],
            "start": (START - timedelta(hours=1)).isoformat(),
        }
        run_sync(pipeline, **options)
        run_backfill(pipeline, START - timedelta(days=1), NOW, **options)

    horizon = NOW - timedelta(minutes=5)
    assert_same_rows(
        _table(postgres_url, "backfill_merge", "records"),
        expected_rows(records, horizon),
    )


def test_merges_into_postgres_find_the_rows_they_replace_by_index(
    tmp_path: Path, postgres_url: str
) -> None:
    # dlt creates no index on a merge key, so every merge read the whole table.
    records = make_records(600, seed=9, start=START, end=NOW + timedelta(hours=2))
    metrics = make_metrics(100, seed=10, start=START, end=NOW + timedelta(hours=2))
    pipeline = _pipeline(tmp_path, postgres_url, "indexed")
    with sandbox(records, metrics) as server:
        options = {
            "read_token": server.token,
            "base_url": server.url,
            "start": (START - timedelta(hours=1)).isoformat(),
        }
        run_sync(pipeline, **options)
        # The first sync appends, into tables empty when it began.
        assert _merge_indexes(postgres_url, "indexed") == {}
        server.clock.advance(timedelta(hours=3))
        run_sync(pipeline, **options)
        run_sync(pipeline, **options)

    assert _merge_indexes(postgres_url, "indexed") == {
        "records": "(start_timestamp, created_at)",
        "metrics": "(recorded_timestamp, created_at)",
    }
    horizon = NOW + timedelta(hours=3) - timedelta(minutes=5)
    assert_same_rows(
        _table(postgres_url, "indexed", "records"), expected_rows(records, horizon)
    )


def _merge_indexes(url: str, dataset: str) -> dict[str, str]:
    """The columns of each table's merge-key index, as PostgreSQL lists them."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexdef FROM pg_indexes "
            "WHERE schemaname = %s AND indexname LIKE %s",
            (dataset, "%merge_key"),
        )
        found = cursor.fetchall()
    return {table: definition[definition.rindex("(") :] for table, definition in found}


def _sync_records_of(
    pipeline: dlt.Pipeline,
    messages: list[str],
    attributes: list[str],
    *,
    seed: int,
    **options: Any,
) -> SyncReport:
    """Sync records holding these messages and attributes, and two metrics."""
    records = make_records(len(messages), seed=seed, start=START, end=NOW)
    for name, values in (("message", messages), ("attributes", attributes)):
        index = records.schema.get_field_index(name)
        records = records.set_column(index, name, pa.array(values))
    metrics = make_metrics(2, seed=seed + 1, start=START, end=NOW)
    with sandbox(records, metrics) as server:
        return run_sync(
            pipeline,
            read_token=server.token,
            base_url=server.url,
            start=(START - timedelta(hours=1)).isoformat(),
            **options,
        )


def test_nul_characters_load_into_postgres_as_replacement_characters(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    messages = ["a\x00b", "plain", "c", "d"]
    attributes = [json.dumps({"k": "x\x00y"}), "{}", "{}", "{}"]
    pipeline = _pipeline(tmp_path, postgres_url, "nul_chars")

    report = _sync_records_of(pipeline, messages, attributes, seed=7)

    assert report.rows == 6
    loaded = _table(postgres_url, "nul_chars", "records").to_pydict()
    by_message = dict(zip(loaded["message"], loaded["attributes"], strict=True))
    assert by_message["a\ufffdb"] == json.dumps({"k": "x\ufffdy"})
    assert by_message["plain"] == "{}"
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "Column message holds NUL characters" in warned
    assert "Column attributes holds NUL characters" in warned


def test_empty_strings_arrive_in_postgres_as_null_with_a_warning(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    messages = ["", "plain", "c", "d"]
    pipeline = _pipeline(tmp_path, postgres_url, "empty_text")

    report = _sync_records_of(pipeline, messages, ["{}"] * 4, seed=11)

    assert report.rows == 6
    loaded = _table(postgres_url, "empty_text", "records").to_pydict()
    assert sorted(loaded["message"], key=str) == [None, "c", "d", "plain"]
    warned = [record.getMessage() for record in caplog.records]
    said = [text for text in warned if "holds empty strings" in text]
    assert len(said) == 1
    assert said[0].startswith("Column message holds empty strings")


def test_empty_strings_go_unwarned_where_the_config_says_so(
    tmp_path: Path,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__LOGFIRE__WARN_EMPTY_TEXT", "false")
    pipeline = _pipeline(tmp_path, postgres_url, "empty_text_quiet")

    report = _sync_records_of(pipeline, ["", "plain", "c", "d"], ["{}"] * 4, seed=11)

    assert report.rows == 6
    assert "holds empty strings" not in caplog.text


def test_json_that_postgres_refuses_loads_as_json_strings(
    tmp_path: Path, postgres_url: str
) -> None:
    # Python's json module writes NaN, and a lone surrogate as an escape.
    refused = ['{"v": NaN}', '{"v": -Infinity}', '{"s": "\\ud800"}']
    refused.append('{"s": "\\udc00"}')
    attributes = [*refused, '{"s": "\\ud83d\\ude00 NaN"}']
    messages = ["nan", "infinity", "high surrogate", "low surrogate", "fine"]
    pipeline = _pipeline(tmp_path, postgres_url, "strict_json")

    report = _sync_records_of(
        pipeline, messages, attributes, seed=9, tables=["records"]
    )

    assert report.rows == 5
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT message, attributes::text FROM strict_json.records")
        by_message = {message: json.loads(text) for message, text in cursor}
    for message, text in zip(messages, refused, strict=False):
        assert by_message[message] == text
    assert by_message["fine"] == {"s": "\U0001f600 NaN"}
