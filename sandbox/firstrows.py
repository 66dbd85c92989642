"""Queries that keep only the first rows of a table in a stored order.

A page of the connector, like many queries, is a filter over one table sorted
by a timestamp and cut to a number of rows. DataFusion's memory tables do not
say that their batches are stored in that order, so the engine would sort the
whole filtered range for every page. When a query has this shape, the engine
can run it first over a prefix of the stored order (every row before some time
T, and any row of a batch not stored in order) and keep that answer if its last
row is before T: a row left out of the prefix is at T or later, or null, and so
sorts after every row of the answer.

Only what is certain qualifies: a scan of one stand-in, under nothing but
filters, projections and subquery aliases, then a sort whose first key is
that scan's column, ascending with nulls last, cut to a number of rows, then
projections, aliases and limits without an offset. The first key must reach
the output unchanged, so that the answer's last value can be checked.

Rows outside the prefix are never evaluated, so an error that one of them
would raise (a failed cast in a filter, say) is not raised, as in an engine
that skips files by their statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["FirstRows", "first_rows"]

_THROUGH: Final = frozenset({"Filter", "Projection", "SubqueryAlias"})
"""The plan nodes between the scan and the sort that keep each row whole."""

_ABOVE: Final = frozenset({"Limit", "Projection", "SubqueryAlias"})
"""The plan nodes above the sort that keep its first rows first."""


@dataclass(frozen=True)
class FirstRows:
    """A query that needs only the first `rows` of `table` ordered by `column`.

    Attributes:
        table: The stand-in table scanned.
        column: The stored column that orders the rows.
        rows: How many rows the query returns at most.
        output: The name of that column in the query's result.
    """

    table: str
    column: str
    rows: int
    output: str


def first_rows(
    plan: Any, plan_text: str, tables: Mapping[str, Iterable[str]]
) -> FirstRows | None:
    """The query's first-rows shape over one of `tables`, or None.

    Args:
        plan: DataFusion's optimized logical plan.
        plan_text: The plan's ``display_indent()``, which also shows plans
            nested in expressions: a query scanning more than once is left out.
        tables: The stand-in table names, each with its columns that batches
            may be stored in order of.
    """
    if plan_text.count("TableScan:") != 1:
        return None
    above, sort_node = _down_to_sort(plan)
    if sort_node is None or len(sort_node.inputs()) != 1:
        return None
    sort = sort_node.to_variant()
    fetches = [sort.get_fetch_val()]
    for node in above:
        if type(node).__name__ == "Limit":
            if node.skip() not in (None, 0):
                return None
            fetches.append(node.fetch())
    known = [int(fetch) for fetch in fetches if fetch is not None]
    if not known:
        return None

    key = _first_key(sort)
    if key is None:
        return None
    scanned = _scanned_column(sort_node.inputs()[0], key, tables)
    output = _output_name(above, key)
    if scanned is None or output is None:
        return None
    table, column = scanned
    return FirstRows(table=table, column=column, rows=min(known), output=output)


def _down_to_sort(plan: Any) -> tuple[list[Any], Any | None]:
    """The variants of the plan nodes above its sort, from the top, and the sort."""
    above: list[Any] = []
    node = plan
    while True:
        variant = node.to_variant()
        kind = type(variant).__name__
        if kind == "Sort":
            return above, node
        if kind not in _ABOVE or len(node.inputs()) != 1:
            return above, None
        above.append(variant)
        node = node.inputs()[0]


def _first_key(sort: Any) -> str | None:
    """The name of the column the sort orders by first, if it sorts as needed."""
    keys = sort.sort_exprs()
    if not keys or not keys[0].ascending() or keys[0].nulls_first():
        return None
    return _column_name(keys[0].expr())


def _scanned_column(
    node: Any, name: str, tables: Mapping[str, Iterable[str]]
) -> tuple[str, str] | None:
    """The stand-in and stored column that `name` is below the sort, if plain."""
    while True:
        variant = node.to_variant()
        kind = type(variant).__name__
        if kind == "TableScan":
            table = variant.table_name()
            if table not in tables or variant.fetch() is not None:
                return None
            return (table, name) if name in set(tables[table]) else None
        if kind not in _THROUGH or len(node.inputs()) != 1:
            return None
        if kind == "Projection":
            found = _single([src for out, src in _passed(variant) if out == name])
            if found is None:
                return None
            name = found
        node = node.inputs()[0]


def _output_name(above: list[Any], name: str) -> str | None:
    """What the projections above the sort call the column `name`, if kept."""
    for variant in reversed(above):
        if type(variant).__name__ != "Projection":
            continue
        found = _single([out for out, src in _passed(variant) if src == name])
        if found is None:
            return None
        name = found
    return name


def _passed(projection: Any) -> list[tuple[str, str | None]]:
    """Each output name of a projection, with the column it passes on unchanged."""
    return [
        (_alias(expr), _projected_from_expr(expr)) for expr in projection.projections()
    ]


def _single(names: list[str | None]) -> str | None:
    """The one name given, or None for none or several."""
    return names[0] if len(names) == 1 else None


def _projected_from_expr(expr: Any) -> str | None:
    """The column a projected expression passes on unchanged, or None."""
    if expr.variant_name() == "Alias":
        return _column_name(expr.to_variant().expr())
    return _column_name(expr)


def _alias(expr: Any) -> str:
    """The name a projected expression has in the projection's output."""
    # Only these two kinds are converted: DataFusion's Python binding cannot
    # convert every expression, function calls among them.
    kind = expr.variant_name()
    if kind == "Alias":
        return str(expr.to_variant().alias())
    if kind == "Column":
        return str(expr.to_variant().name())
    return str(expr.schema_name())


def _column_name(expr: Any) -> str | None:
    if expr.variant_name() != "Column":
        return None
    return str(expr.to_variant().name())
