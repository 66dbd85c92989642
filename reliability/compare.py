"""Whether a destination holds exactly the source's rows: none missing, none extra.

Rows are compared as multisets over every column of the source, so a row loaded
twice counts as extra even when its copy is identical. Values are put in one
form first: JSON text is parsed (a destination may store it in its own
spelling), lists become JSON, as the connector loads them, and timestamps UTC.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "Comparison",
    "MismatchError",
    "compare",
    "expected_rows",
    "read_table",
]

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_SAMPLES = 3

Row = tuple[Hashable, ...]


class MismatchError(AssertionError):
    """The destination does not hold exactly the source's rows."""


@dataclass(frozen=True)
class Comparison:
    """How a loaded table differs from what it should hold.

    Attributes:
        table: The table compared.
        expected: Rows the source holds.
        loaded: Rows the destination holds.
        missing: Source rows the destination lacks, counting repeats.
        extra: Destination rows beyond the source's, duplicates included.
        duplicated: Destination rows that are copies of another loaded row.
        samples: A few missing (``-``) and extra (``+``) rows, for the message.
    """

    table: str
    expected: int
    loaded: int
    missing: int
    extra: int
    duplicated: int
    samples: tuple[str, ...] = field(default=(), repr=False)

    @property
    def exact(self) -> bool:
        """Whether the destination holds exactly the source's rows."""
        return self.missing == 0 and self.extra == 0

    def __str__(self) -> str:
        verdict = "exact" if self.exact else "DIFFERENT"
        return (
            f"{self.table}: {verdict}: {self.loaded} rows loaded, "
            f"{self.expected} expected, {self.missing} missing, {self.extra} "
            f"extra, {self.duplicated} duplicated"
        )

    def check(self) -> None:
        """Raise :class:`MismatchError` with samples unless the tables are equal."""
        if not self.exact:
            raise MismatchError("\n  ".join([str(self), *self.samples]))


def compare(table: str, loaded: pa.Table, expected: pa.Table) -> Comparison:
    """Compare a loaded table with the source's rows, on the source's columns.

    Raises:
        MismatchError: If the destination lacks one of the source's columns.
    """
    columns = expected.column_names
    absent = sorted(set(columns) - set(loaded.column_names))
    if absent and loaded.num_rows:
        raise MismatchError(f"{table}: the destination has no columns {absent}.")
    have = _rows(loaded, columns) if loaded.num_rows else Counter[Row]()
    want = _rows(expected, columns)

    missing = want - have
    extra = have - want
    samples = [f"- {row!r}"[:300] for row in list(missing)[:_SAMPLES]]
    samples += [f"+ {row!r}"[:300] for row in list(extra)[:_SAMPLES]]
    return Comparison(
        table=table,
        expected=expected.num_rows,
        loaded=loaded.num_rows,
        missing=sum(missing.values()),
        extra=sum(extra.values()),
        duplicated=sum(count - 1 for count in have.values() if count > 1),
        samples=tuple(samples),
    )


def expected_rows(
    stored: pa.Table,
    *,
    created_before: datetime | None = None,
    column: str | None = None,
    within: tuple[datetime, datetime] | None = None,
) -> pa.Table:
    """The stored rows a sync should have loaded, without the sandbox's columns.

    Args:
        stored: A table as the sandbox stores it.
        created_before: Keep rows with `created_at` before this.
        column: The event-time column `within` applies to.
        within: Keep rows whose `column` lies in ``[start, end)``.
    """
    mask = pa.array([True] * stored.num_rows, pa.bool_())
    if created_before is not None:
        limit = pa.scalar(created_before, _TIMESTAMP)
        mask = pc.and_(mask, pc.less(stored["created_at"], limit))
    if within is not None:
        assert column is not None
        low, high = (pa.scalar(moment, _TIMESTAMP) for moment in within)
        values = stored[column]
        inside = pc.and_(pc.greater_equal(values, low), pc.less(values, high))
        mask = pc.and_(mask, inside)
    kept = stored.filter(mask)
    hidden = [name for name in kept.column_names if name.startswith("_")]
    return kept.drop_columns(hidden)


def read_table(database: Path, table: str, dataset: str = "logfire") -> pa.Table:
    """A table of a DuckDB destination, or an empty table if it was never made."""
    with duckdb.connect(str(database), read_only=True) as connection:
        found = connection.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [dataset, table],
        ).fetchall()
        if not found or not found[0][0]:
            return pa.table({})
        result = connection.sql(f'SELECT * FROM "{dataset}"."{table}"')
        loaded: pa.Table = result.arrow().read_all()
        return loaded


def _rows(table: pa.Table, columns: list[str]) -> Counter[Row]:
    """The rows of `table` on `columns`, in one form, counted."""
    values = [_column_values(table.column(name)) for name in columns]
    return Counter(zip(*values, strict=True))


def _column_values(column: pa.ChunkedArray) -> Iterable[Hashable]:
    """One column's values in one form."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(_TIMESTAMP)
    return [_normal(value) for value in column.to_pylist()]


def _normal(value: Any) -> Hashable:
    """A value in the form both sides can be compared in."""
    if isinstance(value, list | dict):
        return _json_text(value)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return _json_text(json.loads(value, parse_int=float))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, float) and value != value:
        return "NaN"
    assert isinstance(value, Hashable)
    return value


def _json_text(value: object) -> str:
    """JSON in one spelling: sorted keys, numbers as floats."""
    normal = json.loads(json.dumps(value), parse_int=float)
    return json.dumps(normal, sort_keys=True)
