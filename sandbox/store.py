"""The tables the sandbox serves, which grow over time in live mode."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sandbox import schema

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536
"""The most rows one stored batch holds, so the engine can skip parts of a table."""


def stored_schema(table_name: str) -> pa.Schema:
    """The schema a table is stored with: its public columns and `_visible_at`."""
    public = schema.TABLES[table_name]
    return public.append(pa.field(schema.VISIBLE_AT, schema.TIMESTAMP, False))


def conform(table_name: str, rows: pa.Table) -> pa.Table:
    """Cast `rows` to the stored schema of `table_name`.

    A missing `_visible_at` becomes `created_at` (visible as soon as stored), a
    missing nullable column becomes nulls, and unknown columns are dropped.

    Raises:
        ValueError: a required column is missing or a column cannot be cast.
    """
    target = stored_schema(table_name)
    if schema.VISIBLE_AT not in rows.column_names and "created_at" in rows.column_names:
        rows = rows.append_column(schema.VISIBLE_AT, rows.column("created_at"))

    unknown = sorted(set(rows.column_names) - set(target.names))
    if unknown:
        logger.warning("Ignoring unknown %s columns: %s", table_name, unknown)

    columns = []
    for field in target:
        columns.append(_conform_column(table_name, field, rows))
    return pa.Table.from_arrays(columns, schema=target)


def _batches(rows: pa.Table) -> list[pa.RecordBatch]:
    """`rows` as batches of `BATCH_ROWS` rows each, the last one shorter.

    The batches start every `BATCH_ROWS` rows wherever the table's chunks
    break. A batch is a zero-copy slice of the chunks it lies in; only the
    columns whose chunks break inside it are copied, a batch's worth each.
    """
    batches: list[pa.RecordBatch] = []
    for offset in range(0, rows.num_rows, BATCH_ROWS):
        piece = rows.slice(offset, BATCH_ROWS).combine_chunks()
        batches.extend(piece.to_batches())
    return batches


def _conform_column(
    table_name: str, field: pa.Field, rows: pa.Table
) -> pa.ChunkedArray:
    if field.name not in rows.column_names:
        if not field.nullable:
            raise ValueError(
                f"The {table_name} data has no {field.name!r} column, which is "
                "required; add it to the data."
            )
        return pa.chunked_array([pa.nulls(rows.num_rows, field.type)])

    column = rows.column(field.name)
    try:
        # A cast to the column's own type shares its buffers. The chunks stay
        # as they are: joining them would copy every column, gigabytes for a
        # large table, and `_batches` cuts the table without joining.
        cast = column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ValueError(
            f"The {table_name} column {field.name!r} has type {column.type}, which "
            f"cannot be read as {field.type}: {error}"
        ) from error
    if not field.nullable and cast.null_count:
        raise ValueError(
            f"The {table_name} column {field.name!r} holds {cast.null_count} nulls, "
            "but it may not be null."
        )
    return cast


class Store:
    """The tables the sandbox serves.

    Rows are kept as Arrow record batches, including rows not yet visible to
    queries: `_visible_at` says when each row appears.
    """

    def __init__(self, records: pa.Table, metrics: pa.Table) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, list[pa.RecordBatch]] = {
            "records": _batches(conform("records", records)),
            "metrics": _batches(conform("metrics", metrics)),
        }

    @classmethod
    def empty(cls) -> Store:
        """A store with no rows."""
        return cls(
            records=stored_schema("records").empty_table(),
            metrics=stored_schema("metrics").empty_table(),
        )

    @classmethod
    def from_parquet_dir(cls, path: Path) -> Store:
        """Read `records` and `metrics` from Parquet under `path`.

        Each table is `<name>.parquet` or a `<name>/` folder of Parquet files; a
        table with neither is empty.
        """
        if not path.is_dir():
            raise ValueError(f"The data folder {path} does not exist.")
        tables = {name: _read_parquet(path, name) for name in schema.TABLES}
        return cls(records=tables["records"], metrics=tables["metrics"])

    @classmethod
    def generated(
        cls, *, seed: int, records: int, metrics: int, hours: float, end: datetime
    ) -> Store:
        """Generate `records` and `metrics` rows over the `hours` before `end`."""
        from sandbox import generator

        start = end - timedelta(hours=hours)
        return cls(
            records=generator.generate_records(
                records, seed=seed, start=start, end=end
            ),
            metrics=generator.generate_metrics(
                metrics, seed=seed + 1, start=start, end=end
            ),
        )

    def append(self, table_name: str, rows: pa.Table) -> None:
        """Add rows to a table."""
        batches = _batches(conform(table_name, rows))
        with self._lock:
            self._batches[table_name] = [*self._batches[table_name], *batches]

    def snapshot(self, table_name: str) -> list[pa.RecordBatch]:
        """Every stored row of a table, visible or not, with `_visible_at`."""
        with self._lock:
            return list(self._batches[table_name])

    def row_count(self, table_name: str) -> int:
        """How many rows a table stores, visible or not."""
        return sum(batch.num_rows for batch in self.snapshot(table_name))

    def visible(self, table_name: str, now: datetime) -> pa.Table:
        """What a query at `now` can see of a table, without `_visible_at`."""
        table = pa.Table.from_batches(
            self.snapshot(table_name), schema=stored_schema(table_name)
        )
        mask = pc.less_equal(table.column(schema.VISIBLE_AT), pa.scalar(now))
        return table.filter(mask).drop_columns([schema.VISIBLE_AT])


def _read_parquet(path: Path, name: str) -> pa.Table:
    single = path / f"{name}.parquet"
    folder = path / name
    if single.is_file():
        # Read in stored batches, so that no column is decoded whole (its
        # buffers regrown and copied on the way to gigabytes) and `_batches`
        # has nothing to cut. `read_table` would take more CPU to scan it.
        with pq.ParquetFile(single) as file:
            batches = file.iter_batches(batch_size=BATCH_ROWS)
            return pa.Table.from_batches(batches, schema=file.schema_arrow)
    if folder.is_dir():
        return pq.read_table(folder)
    logger.warning("No %s data under %s: the table is empty.", name, path)
    return stored_schema(name).empty_table()
