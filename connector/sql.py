"""Safe pieces of Apache DataFusion SQL: literals, identifiers, timestamps, lists.

Logfire runs DataFusion with standard SQL strings: inside single quotes only a
doubled quote is special and a backslash is an ordinary character. Every value
the connector puts into a query goes through these helpers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from connector.errors import ConfigurationError

__all__ = [
    "check_condition",
    "in_list",
    "quote_identifier",
    "quote_literal",
    "timestamp_literal",
    "validate_column_name",
]

_COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]*")

# The column type of every Logfire timestamp. Casting to exactly this type keeps
# comparisons at microsecond precision, whatever the session's time zone.
_TIMESTAMP_TYPE = 'Timestamp(Microsecond, Some("UTC"))'


def _shown(text: str) -> str:
    """``text`` quoted for an error message, shortened if it is long."""
    if len(text) <= 60:
        return repr(text)
    return repr(text[:60]) + f" (and {len(text) - 60} more characters)"


def _check_text(text: str, what: str) -> None:
    """Refuse text that no query can carry: NUL, or lone surrogates."""
    if "\x00" in text:
        raise ConfigurationError(
            f"The {what} {_shown(text)} contains a NUL character, which SQL cannot "
            "carry. Remove it."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"The {what} {_shown(text)} is not valid Unicode: it holds a lone "
            "surrogate. Decode the text properly first."
        ) from None


def quote_literal(value: str) -> str:
    """``value`` as a single-quoted SQL string literal.

    Raises:
        ConfigurationError: If ``value`` contains a NUL character or a lone
            surrogate.
    """
    _check_text(value, "string")
    escaped = value.replace("'", "''")
    return f"'{escaped}'"


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier, kept exactly as written.

    Raises:
        ConfigurationError: If ``name`` is empty, or contains a NUL character
            or a lone surrogate.
    """
    if not name:
        raise ConfigurationError("An SQL identifier cannot be empty.")
    _check_text(name, "identifier")
    escaped = name.replace('"', '""')
    return f'"{escaped}"'


def validate_column_name(name: str) -> str:
    """``name`` itself, if it is a plain lowercase column name.

    Raises:
        ConfigurationError: If ``name`` is not made of lowercase letters,
            digits and underscores, starting with a letter or underscore.
    """
    if not _COLUMN_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a valid column name. Use lowercase letters, "
            "digits and underscores, starting with a letter or an underscore, "
            "such as 'service_name'."
        )
    return name


def check_condition(condition: str, option: str = "where") -> str:
    """``condition`` itself, if it stays inside the parentheses it is put in.

    A raw condition is ANDed to a query as ``(condition)``. One that closes a
    parenthesis it did not open, ends the statement with ``;``, or leaves a
    string, quoted name or comment open would escape them and change the rest
    of the query, such as the window's bounds. Quotes, comments and nesting
    are otherwise free.

    Raises:
        ConfigurationError: If the condition could escape its parentheses.
    """
    problem = _escape(condition)
    if problem is not None:
        raise ConfigurationError(
            f"{option} {_shown(condition)} {problem}, which would change the rest "
            "of the query. Write one condition, such as \"service_name = 'api'\", "
            "with balanced parentheses and closed quotes."
        )
    return condition


def _escape(text: str) -> str | None:
    """How `text` would break out of the parentheses around it, if it would."""
    depth = 0
    index = 0
    while index < len(text):
        char, pair = text[index], text[index : index + 2]
        if char in "'\"":
            index = text.find(char, index + 1)
            while index != -1 and text[index + 1 : index + 2] == char:
                index = text.find(char, index + 2)
            if index == -1:
                return "leaves a quoted string or name open"
        elif pair == "--":
            index = len(text) if (end := text.find("\n", index)) == -1 else end
        elif pair == "/*":
            if (end := text.find("*/", index + 2)) == -1:
                return "leaves a comment open"
            index = end + 1
        elif char == ";":
            return "ends the statement with ';'"
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return "closes a parenthesis it did not open"
        index += 1
    return "leaves a parenthesis open" if depth else None


def timestamp_literal(dt: datetime) -> str:
    """``dt`` as a DataFusion timestamp in UTC at microsecond precision.

    The literal has the type of Logfire's timestamp columns, so ``=`` and ``<``
    against them compare exact microseconds. DataFusion accepts only plain
    literals inside row values such as ``(a, b) > (x, y)``: spell such
    comparisons out with ``OR`` and ``AND`` instead.

    Raises:
        ConfigurationError: If ``dt`` has no time zone.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ConfigurationError(
            f"The timestamp {dt.isoformat()} has no time zone. Give a "
            "timezone-aware datetime, such as datetime.now(UTC)."
        )

    utc = dt.astimezone(UTC).replace(tzinfo=None)
    text = utc.isoformat(timespec="microseconds") + "Z"
    return f"arrow_cast('{text}', '{_TIMESTAMP_TYPE}')"


def in_list(values: Iterable[str]) -> str:
    """``values`` as a parenthesised list of string literals, for ``IN``.

    Raises:
        ConfigurationError: If there are no values, or one is not a string
            or contains NUL.
    """
    if isinstance(values, str):
        raise ConfigurationError(
            f"An IN list needs a list of strings, not the single string "
            f"{values!r}. Wrap it in a list."
        )

    literals = []
    for value in values:
        if not isinstance(value, str):
            raise ConfigurationError(
                f"IN list values must be strings, not {type(value).__name__} "
                f"({value!r})."
            )
        literals.append(quote_literal(value))

    if not literals:
        raise ConfigurationError(
            "An IN list needs at least one value; leave the filter out instead."
        )
    return "(" + ", ".join(literals) + ")"
