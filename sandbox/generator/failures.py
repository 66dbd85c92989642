"""The exceptions failing traces raise, with messages and stack traces.

Each failure has a few message variants; every variant's columns (type, message,
stack trace, status message and the tail of its `exception` event) are rendered
once and taken per row.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from sandbox.generator.columns import text_array
from sandbox.generator.typing import I64


@dataclass(frozen=True)
class _Failure:
    """One kind of exception, its message variants and the frames it passes."""

    key: str
    type: str
    messages: tuple[str, ...]
    frames: tuple[tuple[str, int, str, str], ...]
    style: Literal["python", "javascript", "rust"] = "python"


_FAILURES = (
    _Failure(
        "card_declined",
        "payments.errors.CardDeclined",
        (
            "Card declined: insufficient funds",
            "Card declined: do not honor",
            "Carte refusée : fonds insuffisants",
        ),
        (
            (
                "/app/payments/api.py",
                58,
                "create_charge",
                "charge = await charge_card(req)",
            ),
            (
                "/app/payments/charges.py",
                131,
                "charge_card",
                "result = provider.capture(c)",
            ),
            ("/app/payments/providers.py", 77, "capture", "raise CardDeclined(reason)"),
        ),
    ),
    _Failure(
        "read_timeout",
        "httpx.ReadTimeout",
        ("The read operation timed out",),
        (
            ("/app/checkout/service.py", 212, "charge", "response = client.post(url)"),
            (
                "/usr/local/lib/python3.12/site-packages/httpx/_client.py",
                1014,
                "send",
                "response = self._send_handling_auth(request)",
            ),
            (
                "/usr/local/lib/python3.12/site-packages/httpx/_transports/default.py",
                118,
                "map_httpcore_exceptions",
                "raise mapped_exc(message) from exc",
            ),
        ),
    ),
    _Failure(
        "integrity",
        "sqlalchemy.exc.IntegrityError",
        (
            "(psycopg.errors.UniqueViolation) duplicate key value violates unique "
            'constraint "refunds_pkey"\nDETAIL:  Key (id)=(4412) already exists.',
        ),
        (
            ("/app/payments/refunds.py", 44, "record_refund", "session.commit()"),
            (
                "/usr/local/lib/python3.12/site-packages/sqlalchemy/engine/base.py",
                1967,
                "_exec_single_context",
                "self.dialect.do_execute(",
            ),
        ),
    ),
    _Failure(
        "db_connection",
        "sqlalchemy.exc.OperationalError",
        (
            "(psycopg.OperationalError) connection failed: server closed the "
            "connection unexpectedly",
        ),
        (
            (
                "/app/checkout/orders.py",
                91,
                "load_order",
                "row = session.get(Order, id)",
            ),
            (
                "/usr/local/lib/python3.12/site-packages/sqlalchemy/pool/base.py",
                896,
                "__connect",
                "self.dbapi_connection = connection = pool._invoke_creator(self)",
            ),
        ),
    ),
    _Failure(
        "smtp",
        "smtplib.SMTPServerDisconnected",
        ("Connection unexpectedly closed",),
        (
            ("/app/worker/tasks.py", 33, "send_email", "smtp.send_message(message)"),
            ("/usr/local/lib/python3.12/smtplib.py", 405, "getreply", "raise Error()"),
        ),
    ),
    _Failure(
        "memory",
        "MemoryError",
        ("",),
        (("/app/worker/imports.py", 120, "load_feed", "rows = list(reader)"),),
    ),
    _Failure(
        "key_error",
        "KeyError",
        ("'shipping_address'",),
        (
            (
                "/app/worker/tasks.py",
                61,
                "render",
                "address = order['shipping_address']",
            ),
        ),
    ),
    _Failure(
        "js_type",
        "TypeError",
        ("Cannot read properties of undefined (reading 'price')",),
        (
            ("https://cdn.example.com/app.3f9a2c.js", 2, "ProductCard", "14201"),
            ("https://cdn.example.com/app.3f9a2c.js", 2, "renderWithHooks", "88310"),
        ),
        "javascript",
    ),
    _Failure(
        "pool_timeout",
        "sqlx_core::error::Error",
        ("pool timed out while waiting for an open connection",),
        (
            ("src/db.rs", 88, "inventory::db::reserve", "19"),
            ("src/handlers.rs", 142, "inventory::handlers::reserve_stock", "9"),
        ),
        "rust",
    ),
    _Failure(
        "supplier",
        "reqwest::Error",
        (
            "error sending request for url (https://supplier.example.net/feed.json): "
            "operation timed out",
        ),
        (("src/sync.rs", 57, "inventory::sync::fetch_feed", "14"),),
        "rust",
    ),
)


def _stacktrace(failure: _Failure, message: str) -> str:
    head = f"{failure.type}: {message}" if message else failure.type
    if failure.style == "javascript":
        lines = [head]
        lines += [
            f"    at {func} ({file}:{line}:{col})"
            for file, line, func, col in failure.frames
        ]
        return "\n".join(lines)
    if failure.style == "rust":
        lines = [message, "", "Stack backtrace:"]
        for i, (file, line, func, col) in enumerate(failure.frames):
            lines += [f"   {i}: {func}", f"             at ./{file}:{line}:{col}"]
        return "\n".join(lines)
    lines = ["Traceback (most recent call last):"]
    for file, line, func, code in failure.frames:
        lines += [f'  File "{file}", line {line}, in {func}', f"    {code}"]
    return "\n".join([*lines, head])


@dataclass(frozen=True)
class FailureTable:
    """Every exception variant; each failure key owns a run of variants."""

    code: dict[str, int]
    first: I64
    size: I64
    type: pa.Array
    message: pa.Array
    stacktrace: pa.Array
    status_message: pa.Array
    event_tail: pa.Array


@functools.cache
def failure_table() -> FailureTable:
    """Every exception variant's columns, rendered once."""
    code: dict[str, int] = {}
    first: list[int] = []
    size: list[int] = []
    rows: list[tuple[str, str, str, str, str]] = []
    for failure in _FAILURES:
        code[failure.key] = len(first)
        first.append(len(rows))
        size.append(len(failure.messages))
        for message in failure.messages:
            status = f"{failure.type}: {message}" if message else failure.type
            attributes = {
                "exception.type": failure.type,
                "exception.message": message,
                "exception.escaped": "False",
            }
            tail = f', "attributes": {json.dumps(attributes, ensure_ascii=False)}}}]'
            stack = _stacktrace(failure, message)
            rows.append((failure.type, message, stack, status, tail))

    columns = [text_array([row[i] for row in rows]) for i in range(5)]
    return FailureTable(
        code,
        np.array(first, dtype=np.int64),
        np.array(size, dtype=np.int64),
        *columns,
    )
