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
    "text_value",
    "timestamp_literal",
    "validate_column_name",
]

_COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]*")

# The column type of every Logfire timestamp. Casting to exactly this type keeps
# comparisons at microsecond precision, whatever the session's time zone.
_TIMESTAMP_TYPE = 'Timestamp(Microsecond, Some("UTC"))'
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$#@")
"""What DataFusion's tokenizer lets a name or a number be made of."""
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


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


def text_value(value: str) -> str:
    """A text value read from the service, as an SQL expression equal to it.

    Unlike a setting, data may hold NUL characters, which no SQL literal can
    carry: each one is spliced in as ``chr(0)``.
    """
    if "\x00" not in value:
        return quote_literal(value)
    parts = " || chr(0) || ".join(quote_literal(part) for part in value.split("\x00"))
    return f"({parts})"


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
    are otherwise free, read as DataFusion reads them: ``E'...'`` strings
    with backslash escapes, ``$tag$...$tag$`` strings, backtick names and
    nested block comments.

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
    """How `text` would break out of the parentheses around it, if it would.

    It reads quotes, comments and dollar quotes the way DataFusion's tokenizer
    does, so that nothing it skips is code to DataFusion, or the other way.
    """
    depth = 0
    index = 0
    while index < len(text):
        # Each branch leaves `index` on the last character of what it read.
        char = text[index]
        if char in "'\"`":
            end = _quote_end(text, index, backslash=_is_escape_string(text, index))
            if end is None:
                return "leaves a quoted string or name open"
            index = end
        elif text.startswith("--", index):
            newline = text.find("\n", index)
            index = len(text) if newline == -1 else newline
        elif text.startswith("/*", index):
            end = _comment_end(text, index)
            if end is None:
                return "leaves a comment open"
            index = end
        elif char == "$" and (tag := _dollar_tag(text, index)) is not None:
            closing = text.find(tag, index + len(tag))
            if closing == -1:
                return "leaves a dollar-quoted string open"
            index = closing + len(tag) - 1
        elif char == ";":
            return "ends the statement with ';'"
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                return "closes a parenthesis it did not open"
        index += 1
    return "leaves a parenthesis open" if depth else None


def _quote_end(text: str, start: int, *, backslash: bool) -> int | None:
    """Where the quote opened at `start` closes; a doubled quote is a quote."""
    quote = text[start]
    index = start + 1
    while index < len(text):
        char = text[index]
        if backslash and char == "\\":
            index += 2
        elif char != quote:
            index += 1
        elif text[index + 1 : index + 2] == quote:
            index += 2
        else:
            return index
    return None


def _comment_end(text: str, start: int) -> int | None:
    """Where the block comment opened at `start` ends; they nest."""
    depth = 0
    index = start
    while index < len(text):
        if text.startswith("/*", index):
            depth += 1
            index += 2
        elif text.startswith("*/", index):
            depth -= 1
            index += 2
            if depth == 0:
                return index - 1
        else:
            index += 1
    return None


def _word_before(text: str, index: int) -> str:
    """The run of name or number characters that ends just before `index`."""
    start = index
    while start > 0 and text[start - 1] in _WORD:
        start -= 1
    return text[start:index]


def _is_escape_string(text: str, quote: int) -> bool:
    """Whether the quote at `quote` opens an ``E'...'`` string, with backslashes.

    ``E`` starts one where it starts a token of its own, or follows a number.
    """
    if text[quote] != "'" or quote == 0 or text[quote - 1] not in "eE":
        return False
    before = _word_before(text, quote - 1)
    return before == "" or before.isdigit()


def _dollar_tag(text: str, index: int) -> str | None:
    """The ``$tag$`` that opens a dollar-quoted string at `index`, if one does."""
    before = _word_before(text, index)
    if before and not before.isdigit():
        return None
    match = _DOLLAR_TAG.match(text, index)
    return None if match is None else match.group()


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
