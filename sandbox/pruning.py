"""Which stored segments a query can need, read from its optimized plan.

DataFusion's memory tables keep no statistics, so a query on an hour of a day
scans the whole day. The engine therefore plans each query once over empty
stand-ins of the tables, reads the time ranges every scan of a table is
filtered to, and hands the real plan only the segments whose time ranges
meet one of them.

Only what is certain narrows the segments: comparisons of a plain timestamp
column with a literal, combined by AND and OR, in the filter right above a
scan. Anything else (a cast, a scan with no filter, a scan the walk cannot
see, such as one in a subquery expression) leaves the table unpruned. A
comparison is false on null, so a row whose column is null never meets one,
and a segment's range need only cover its non-null values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Bounds", "ScanRanges", "hull", "needed", "scan_ranges"]

Bounds = tuple[int | None, int | None]
"""The lowest and highest microseconds a column may hold; None is open."""

ScanRanges = dict[str, Bounds]
"""One scan's bounds, by column; a column not named is not bounded."""

_MICROSECONDS: Final = "Timestamp(µs"
_LOWER: Final = frozenset({">", ">=", "="})
_UPPER: Final = frozenset({"<", "<=", "="})
_FLIPPED: Final = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "="}


@dataclass(frozen=True)
class _Comparison:
    column: str
    op: str
    micros: int


def scan_ranges(
    plan: Any, plan_text: str, tables: Mapping[str, Iterable[str]]
) -> dict[str, list[ScanRanges]]:
    """The ranges of every scan of each table, for the tables that can be pruned.

    Args:
        plan: DataFusion's optimized logical plan.
        plan_text: The plan's ``display_indent()``, which also shows plans
            nested in expressions: a table scanned more often there than the
            walk finds is left out.
        tables: The stand-in table names, each with its prunable columns.

    Returns:
        For each table that can be pruned, one entry per scan of it.
    """
    found: dict[str, list[ScanRanges]] = {}
    _walk(plan, None, tables, found)
    return {
        name: scans
        for name, scans in found.items()
        if plan_text.count(f"TableScan: {name} ")
        + plan_text.count(f"TableScan: {name}\n")
        == len(scans)
        and all(scans)
    }


def needed(segment: Mapping[str, Bounds], scans: list[ScanRanges]) -> bool:
    """Whether a segment with these column ranges can hold a row of a scan."""
    return any(_meets(segment, scan) for scan in scans)


def _meets(segment: Mapping[str, Bounds], scan: ScanRanges) -> bool:
    for column, (low, high) in scan.items():
        known = segment.get(column)
        if known is None:
            continue
        least, most = known
        if least is None or most is None:
            continue
        if low is not None and most < low:
            return False
        if high is not None and least > high:
            return False
    return True


def _walk(
    node: Any,
    above: Any,
    tables: Mapping[str, Iterable[str]],
    found: dict[str, list[ScanRanges]],
) -> None:
    """Record each scan of a stand-in with the filter right above it."""
    variant = node.to_variant()
    kind = type(variant).__name__
    if kind == "TableScan":
        name = variant.table_name()
        if name in tables:
            predicates = [] if above is None else [above]
            predicates.extend(variant.filters())
            found.setdefault(name, []).append(_ranges(predicates, set(tables[name])))
        return
    predicate = variant.predicate() if kind == "Filter" else None
    for child in node.inputs():
        _walk(child, predicate, tables, found)


def _ranges(predicates: list[Any], columns: set[str]) -> ScanRanges:
    """The bounds that the AND of `predicates` puts on `columns`."""
    ranges: ScanRanges = {}
    for predicate in predicates:
        ranges = _both(ranges, _bounds(predicate, columns))
    return ranges


def _bounds(expr: Any, columns: set[str]) -> ScanRanges:
    """The bounds a row meeting `expr` has on `columns`; none where unsure.

    An AND meets both sides' bounds. An OR meets one side's, so only a column
    both sides bound is bounded, by the hull of the two: the cursor condition
    ``a > x OR (a = x AND b > y)`` keeps rows with ``a >= x``.
    """
    variant = expr.to_variant()
    if type(variant).__name__ != "BinaryExpr":
        return {}
    op = str(variant.op())
    if op.upper() == "AND":
        left = _bounds(variant.left(), columns)
        return _both(left, _bounds(variant.right(), columns))
    if op.upper() == "OR":
        left = _bounds(variant.left(), columns)
        return _either(left, _bounds(variant.right(), columns))
    comparison = _comparison(variant, op)
    if comparison is None or comparison.column not in columns:
        return {}
    low = comparison.micros if comparison.op in _LOWER else None
    high = comparison.micros if comparison.op in _UPPER else None
    return {comparison.column: (low, high)}


def _both(left: ScanRanges, right: ScanRanges) -> ScanRanges:
    """The bounds of rows that meet both `left` and `right`."""
    ranges = dict(left)
    for column, (low, high) in right.items():
        known_low, known_high = ranges.get(column, (None, None))
        ranges[column] = (_pick(max, known_low, low), _pick(min, known_high, high))
    return ranges


def _either(left: ScanRanges, right: ScanRanges) -> ScanRanges:
    """The bounds of rows that meet `left` or `right`: the hull, where both bound."""
    ranges: ScanRanges = {}
    for column in left.keys() & right.keys():
        (left_low, left_high), (right_low, right_high) = left[column], right[column]
        low = _loosest(min, left_low, right_low)
        high = _loosest(max, left_high, right_high)
        if low is not None or high is not None:
            ranges[column] = (low, high)
    return ranges


def _pick(choose: Any, known: int | None, new: int | None) -> int | None:
    """`choose` of two bounds, where None is no bound."""
    if known is None:
        return new
    if new is None:
        return known
    return int(choose(known, new))


def _loosest(choose: Any, left: int | None, right: int | None) -> int | None:
    """`choose` of two bounds, or no bound if either side has none."""
    if left is None or right is None:
        return None
    return int(choose(left, right))


def hull(scans: list[ScanRanges]) -> ScanRanges:
    """Bounds that hold for a row of any of `scans`: those every scan puts."""
    if not scans:
        return {}
    ranges = scans[0]
    for scan in scans[1:]:
        ranges = _either(ranges, scan)
    return ranges


def _comparison(variant: Any, op: str) -> _Comparison | None:
    """A column compared with a timestamp literal, the column on the left."""
    if op not in _FLIPPED:
        return None
    left, right = variant.left().to_variant(), variant.right().to_variant()
    if type(left).__name__ == "Literal":
        left, right, op = right, left, _FLIPPED[op]
    if type(left).__name__ != "Column" or type(right).__name__ != "Literal":
        return None
    micros = _micros(right)
    return None if micros is None else _Comparison(left.name(), op, micros)


def _micros(literal: Any) -> int | None:
    """A microsecond timestamp literal's value, or None for anything else."""
    if not str(literal.data_type()).startswith(_MICROSECONDS):
        return None
    value = literal.value_timestamp()
    if value is None:
        return None
    micros = value[0] if isinstance(value, tuple) else value
    return micros if isinstance(micros, int) else None
