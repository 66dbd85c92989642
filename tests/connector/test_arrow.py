"""Shaping the service's Arrow pages into the types they are loaded as."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa

from connector.arrow import TIMESTAMP, prepare_batch

WHEN = datetime(2026, 5, 27, 13, 16, 36, 517321, tzinfo=UTC)


def test_text_of_every_layout_becomes_plain_strings() -> None:
    values = ["api", None, "o'brien"]
    batch = pa.record_batch(
        {
            "view": pa.array(values, pa.string_view()),
            "large": pa.array(values, pa.large_string()),
            "plain": pa.array(values, pa.string()),
        }
    )
    prepared = prepare_batch(batch)
    assert prepared.schema.types == [pa.string()] * 3
    assert prepared.to_pydict() == dict.fromkeys(batch.schema.names, values)


def test_timestamps_become_utc_microseconds() -> None:
    naive = WHEN.replace(tzinfo=None)
    batch = pa.record_batch(
        {
            "nanos_naive": pa.array([naive], pa.timestamp("ns")),
            "millis_paris": pa.array([WHEN], pa.timestamp("ms", tz="Europe/Paris")),
            "micros_utc": pa.array([WHEN], TIMESTAMP),
        }
    )
    prepared = prepare_batch(batch)
    assert prepared.schema.types == [TIMESTAMP] * 3
    row = prepared.to_pylist()[0]
    assert row["nanos_naive"] == row["micros_utc"] == WHEN
    assert row["millis_paris"] == WHEN.replace(microsecond=517000)


def test_lists_become_json_array_text() -> None:
    tags = [["a", 'say "hi"'], [], None, ["line\nbreak", None]]
    batch = pa.record_batch({"tags": pa.array(tags, pa.list_(pa.string()))})
    prepared = prepare_batch(batch).column(0).to_pylist()
    assert [None if text is None else json.loads(text) for text in prepared] == tags
