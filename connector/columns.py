"""The service's columns as dlt will load them, checked page by page.

The source asks for every column (``SELECT *``) unless told otherwise, so a
column the service adds is loaded from the page it first appears in. What the
documentation does not list arrives in whatever type the service chose, which
can change between runs or between the pages of one, and dlt loads each column
in one type, under a normalized name. :class:`ArrivingColumns` keeps every page
loadable and says what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import NamedTuple

import dlt
import pyarrow as pa
from dlt.common.libs.pyarrow import (
    UnsupportedArrowTypeException,
    get_column_type_from_py_arrow,
)
from dlt.common.schema.typing import TColumnType

from connector.errors import LogfireSyncError
from connector.tables import TableSpec

__all__ = ["ArrivingColumns"]

logger = logging.getLogger(__name__)


class ArrivingColumns:
    """Names for each page's columns, so that dlt can load every page.

    An undocumented column loaded as integers once and sent as text later
    would fail that load, and every run's retry of it, as would integers too
    wide for the column. Values that do not fit go to a column of their own,
    named as dlt names a column's variants, ``<column>__v_<type>``. The types
    loaded are the schema's when the chunk began and then each column's
    first, so that pages of one chunk agree too.

    Args:
        spec: The table.
        expected: The documented columns asked for.
    """

    def __init__(self, spec: TableSpec, expected: Collection[str]) -> None:
        schema = dlt.current.source_schema()
        known = schema.tables.get(spec.name, {}).get("columns", {})
        self._loaded = {name: _Type.of(column) for name, column in known.items()}
        self._normal = schema.naming.normalize_identifier
        self._table = spec.name
        self._documented = frozenset(spec.columns)
        self._expected = tuple(expected)
        self._names: dict[tuple[str, pa.DataType], str] = {}
        self._checked: set[tuple[str, ...]] = set()

    def named(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch`, with each extra column of a changed type renamed.

        Raises:
            LogfireSyncError: Two columns would load under one name.
        """
        names = [self._name(field) for field in batch.schema]
        if tuple(names) not in self._checked:
            self._check(names)
            self._checked.add(tuple(names))
        if names == batch.schema.names:
            return batch
        return batch.rename_columns(names)

    def _check(self, names: list[str]) -> None:
        """Refuse names dlt would merge; warn of documented columns not sent."""
        seen: dict[str, str] = {}
        for name in names:
            normal = self._normal(name)
            other = seen.setdefault(normal, name)
            if other != name:
                raise LogfireSyncError(_collision(self._table, other, name, normal))

        missing = [name for name in self._expected if name not in names]
        if missing:
            logger.warning(
                "The service sent no column %s in %s, which the documentation "
                "lists: its rows are loaded without it. If the service no "
                "longer has it, leave it out with table_columns (--columns).",
                ", ".join(missing),
                self._table,
            )

    def _name(self, field: pa.Field) -> str:
        key = (field.name, field.type)
        if key not in self._names:
            self._names[key] = self._choose(field)
        return self._names[key]

    def _choose(self, field: pa.Field) -> str:
        name = str(field.name)
        if name in self._documented or pa.types.is_null(field.type):
            return name
        try:
            arriving = _Type.of(get_column_type_from_py_arrow(field.type))
        except UnsupportedArrowTypeException:  # dlt says so when it loads
            return name
        if arriving.kind is None:
            return name
        loaded = self._loaded.setdefault(self._normal(name), arriving)
        if loaded.holds(arriving):
            return name

        variant = f"{name}__v_{arriving.kind}"
        logger.warning(
            "Column %s, loaded as %s before, now arrives as %s: its values are "
            "loaded into %s instead, as dlt names a column's variants.",
            name,
            loaded,
            arriving,
            variant,
        )
        self._loaded.setdefault(self._normal(variant), arriving)
        return variant


class _Type(NamedTuple):
    """What of a dlt column's schema decides whether values fit in it."""

    kind: str | None
    precision: int | None = None
    scale: int | None = None

    @classmethod
    def of(cls, column: TColumnType) -> _Type:
        return cls(
            column.get("data_type"), column.get("precision"), column.get("scale")
        )

    def holds(self, arriving: _Type) -> bool:
        """Whether values of the `arriving` type load into a column of this one."""
        if self.kind is None:
            return True
        if (arriving.kind, arriving.scale) != (self.kind, self.scale):
            return False
        width = arriving.precision
        return self.precision is None or (width is not None and width <= self.precision)

    def __str__(self) -> str:
        """Such as ``bigint``, ``bigint(32)`` or ``decimal(38,2)``."""
        sizes = [str(size) for size in (self.precision, self.scale) if size is not None]
        return f"{self.kind}({','.join(sizes)})" if sizes else str(self.kind)


def _collision(table: str, first: str, second: str, name: str) -> str:
    return (
        f"The service sent the columns {first} and {second} in {table}, which "
        f"dlt would load under one name, {name}. To load {table} until the "
        "service tells them apart, list the documented columns to load in "
        f"table_columns (--columns {table}:COL,COL,...), which leaves every "
        "other column out."
    )
