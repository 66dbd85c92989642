"""Shaping the service's Arrow pages into the types they are loaded as."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from connector.arrow import (
    TIMESTAMP,
    as_json,
    loaded_types,
    plain_columns,
    prepare_batch,
    replace_nul_characters,
)
from connector.errors import LogfireSyncError
from connector.tables import METRICS, RECORDS

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


def test_encoded_text_is_decoded_for_the_pager_and_the_load() -> None:
    views = pa.array(["svc-a", "svc-b"], pa.string_view())
    batch = pa.record_batch(
        {
            "dictionary_of_views": pa.DictionaryArray.from_arrays(
                pa.array([0, None, 1], pa.int32()), views
            ),
            "run_end_encoded": pa.RunEndEncodedArray.from_arrays(
                [2, 3], pa.array(["svc-a", "svc-b"])
            ),
        }
    )
    expected = {
        "dictionary_of_views": ["svc-a", None, "svc-b"],
        "run_end_encoded": ["svc-a", "svc-a", "svc-b"],
    }

    for shaped in (plain_columns(batch), prepare_batch(batch)):
        assert shaped.schema.types == [pa.string()] * 2
        assert shaped.to_pydict() == expected


def test_extension_types_and_binary_views_become_their_plain_values() -> None:
    # A service may tag JSON text as arrow.json; metrics page on `attributes`.
    json_text = pa.array(['{"host": "a"}', None], pa.json_(pa.string()))
    batch = pa.record_batch(
        {
            "attributes": json_text,
            "blob": pa.array([b"\x00\xff", None], pa.binary_view()),
        }
    )
    for shaped in (plain_columns(batch), prepare_batch(batch, {"attributes"})):
        assert shaped.schema.types == [pa.string(), pa.binary()]
        assert shaped.to_pydict() == {
            "attributes": ['{"host": "a"}', None],
            "blob": [b"\x00\xff", None],
        }


def test_numbers_no_destination_holds_become_ones_it_does() -> None:
    big = pa.array([2**64 - 1, 1, None], pa.uint64())
    digits = pa.array(["1" * 45, "2.5", None]).cast(pa.decimal256(50, 1))
    narrow = pa.array(["12.25", None, "1"]).cast(pa.decimal256(10, 2))
    unsigned = pa.array([3_000_000_000, None, 0], pa.uint32())
    small = pa.array([1.5, None, -2.0], pa.float32())
    batch = pa.record_batch(
        {
            "big": big,
            "digits": digits,
            "narrow": narrow,
            "unsigned": unsigned,
            "small": small,
        }
    )

    prepared = prepare_batch(batch)

    # Each in its widest type, so that wider values later fit the same column.
    assert prepared.schema.types == [
        pa.decimal128(20, 0),
        pa.string(),
        pa.decimal128(38, 2),
        pa.int64(),
        pa.float64(),
    ]
    assert prepared.column("unsigned").to_pylist() == [3_000_000_000, None, 0]
    assert prepared.column("small").to_pylist() == [1.5, None, -2.0]
    assert prepared.column("big").to_pylist()[:2] == [Decimal(2**64 - 1), Decimal(1)]
    assert prepared.column("digits").to_pylist() == ["1" * 45 + ".0", "2.5", None]
    assert prepared.column("narrow").to_pylist() == [
        Decimal("12.25"),
        None,
        Decimal("1.00"),
    ]


def test_the_pager_gets_microseconds_from_finer_timestamps() -> None:
    nanos = pa.array([1_779_887_796_517_321_789], pa.timestamp("ns", tz="UTC"))

    plain = plain_columns(pa.record_batch({"created_at": nanos}))

    assert plain.schema.types == [TIMESTAMP]
    # A plain datetime: pyarrow turns nanoseconds into one only through pandas.
    assert type(plain.column(0)[0].as_py()) is datetime
    assert plain.column(0)[0].as_py() == WHEN


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


JSON_TEXT = [
    '{"a": [1, 2]}',
    "[]",
    ' {"padded": true}\n',
    '"a string"',
    "-1.5e3",
    "0",
    "true",
    "null",
    None,
]


def test_json_text_is_left_as_it_is() -> None:
    column = pa.array(JSON_TEXT)

    assert as_json(column) is column
    assert as_json(column, parse=True) is column


def test_text_that_cannot_be_json_becomes_a_json_string() -> None:
    texts = ["", "plain text body", "NaN", '"', "{unclosed", "tab\there"]
    column = pa.array([*texts, '{"kept": 1}', None])

    shaped = as_json(column).to_pylist()

    assert [json.loads(value) for value in shaped[:-1]] == [*texts, {"kept": 1}]
    assert shaped[-1] is None


def test_parsing_catches_text_that_only_looks_like_json() -> None:
    column = pa.array(["[worker-3] ready [ok]", "{not: json}", '{"ok": true}'])

    assert as_json(column).to_pylist() == column.to_pylist()
    shaped = as_json(column, parse=True).to_pylist()
    assert [json.loads(value) for value in shaped] == [
        "[worker-3] ready [ok]",
        "{not: json}",
        {"ok": True},
    ]


def test_parsing_tells_each_of_many_alike_values_apart() -> None:
    # Distinct values are parsed once each; their rows all follow.
    alike = ["{'a': 1}", '["x"] ["y"]', '{"a": "tab\there"}', '{"ok": 1}']
    column = pa.array([*alike, None, *alike, *alike])

    shaped = as_json(column, parse=True).to_pylist()

    wrapped = [json.dumps(value) for value in alike[:3]] + ['{"ok": 1}']
    assert shaped == [*wrapped, None, *wrapped, *wrapped]


def test_only_the_named_json_columns_are_shaped() -> None:
    batch = pa.record_batch(
        {"attributes": ["plain"], "log_body": ["[a] b [c]"], "message": ["plain"]}
    )

    shaped = prepare_batch(batch, {"attributes", "log_body"}, {"log_body"})

    assert shaped.to_pydict() == {
        "attributes": ['"plain"'],
        "log_body": ['"[a] b [c]"'],
        "message": ["plain"],
    }


def test_nul_characters_become_replacement_characters() -> None:
    batch = pa.record_batch(
        {
            "message": ["a\x00b", "\\u0000 as text", "clean"],
            "attributes": ['{"k": "x\\u0000y"}', '"\x00"', "{}"],
            "level": [1, 2, 3],
        }
    )

    cleaned, changed = replace_nul_characters(batch, {"attributes"})

    assert changed == ["message", "attributes"]
    assert cleaned.column(0).to_pylist() == ["a\ufffdb", "\\u0000 as text", "clean"]
    assert cleaned.column(1).to_pylist() == ['{"k": "x\\ufffdy"}', '"\ufffd"', "{}"]
    assert replace_nul_characters(cleaned, {"attributes"}) == (cleaned, [])


def test_documented_columns_load_as_their_documented_types() -> None:
    # As a service that types each page by its values might send them.
    schema = pa.schema(
        [
            pa.field("level", pa.int32(), nullable=False),
            pa.field("duration", pa.int64()),
            pa.field("service_name", pa.null()),
            pa.field("day", pa.date64()),
            pa.field("is_exception", pa.null()),
        ]
    )
    batch = pa.record_batch(
        [
            pa.array([9, 17], pa.int32()),
            pa.array([2, 3], pa.int64()),
            pa.nulls(2),
            pa.array([date(2026, 5, 27)] * 2, pa.date64()),
            pa.nulls(2),
        ],
        schema=schema,
    )

    prepared = prepare_batch(batch, types=loaded_types(RECORDS))

    assert prepared.schema == pa.schema(
        [
            pa.field("level", pa.int64()),
            pa.field("duration", pa.float64()),
            pa.field("service_name", pa.string()),
            pa.field("day", pa.date32()),
            pa.field("is_exception", pa.bool_()),
        ]
    )
    assert prepared.to_pydict() == {
        "level": [9, 17],
        "duration": [2.0, 3.0],
        "service_name": [None, None],
        "day": [date(2026, 5, 27)] * 2,
        "is_exception": [None, None],
    }


def test_every_documented_metrics_column_has_a_loaded_type() -> None:
    types = loaded_types(METRICS)
    assert list(types) == list(METRICS.columns)
    assert types["scalar_value"] == pa.float64()
    assert types["histogram_count"] == pa.int64()
    assert types["recorded_timestamp"] == TIMESTAMP
    assert types["histogram_bucket_counts"] == pa.string()


def test_a_documented_column_whose_values_cannot_be_its_type_is_named() -> None:
    batch = pa.record_batch({"duration": ["fast", "slow"]})
    with pytest.raises(LogfireSyncError, match="column duration as string"):
        prepare_batch(batch, types=loaded_types(RECORDS))


def test_columns_of_types_dlt_cannot_load_become_json_text() -> None:
    point = pa.struct([("x", pa.int64()), ("label", pa.string())])
    batch = pa.record_batch(
        {
            "point": pa.array([{"x": 1, "label": "a"}, None], point),
            "points": pa.array([[{"x": 2, "label": "b"}], []], pa.list_(point)),
            "sizes": pa.array([[("a", 1)], None], pa.map_(pa.string(), pa.int64())),
            "took": pa.array([timedelta(milliseconds=1500), None], pa.duration("us")),
        }
    )

    prepared = prepare_batch(batch)

    assert prepared.to_pydict() == {
        "point": ['{"x":1,"label":"a"}', None],
        "points": ['[{"x":2,"label":"b"}]', "[]"],
        "sizes": ['[["a",1]]', None],
        "took": [1.5, None],
    }


def test_json_that_strict_parsers_refuse_becomes_a_json_string() -> None:
    refused = ['{"v": NaN}', "[Infinity]", '{"s": "\\ud800"}', '{"s": "\\uDBFF x"}']
    refused += ['{"s": "\\udc00"}', '{"s": "\\uDFFF"}']
    kept = ['{"s": "\\ud83d\\ude00"}', '{"name": "NaNa", "n": "Infinity"}', "{}"]
    column = pa.array([*refused, *kept, None])

    shaped = as_json(column).to_pylist()

    assert [json.loads(value) for value in shaped[: len(refused)]] == refused
    assert shaped[len(refused) :] == [*kept, None]


def test_refused_json_is_found_in_a_slice_of_a_page() -> None:
    page = pa.array(['{"a": 1}', '{"v": NaN}', '{"b": 2}'])

    assert as_json(page.slice(1, 1)).to_pylist() == ['"{\\"v\\": NaN}"']
    assert as_json(page.slice(2)).to_pylist() == ['{"b": 2}']
    assert as_json(page.slice(3)).to_pylist() == []
    wide = pa.array(['{"a": 1}', '{"v": NaN}'], pa.large_string())
    assert as_json(wide).to_pylist() == ['{"a": 1}', '"{\\"v\\": NaN}"']
    assert as_json(pa.array([None, None], pa.string())).to_pylist() == [None, None]
