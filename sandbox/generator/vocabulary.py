"""The values rows are filled with: template parameters, extra attributes, tags.

Every value is rendered once, as message text, as JSON and as JSON string
content, so a row picks its text by index instead of formatting it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sandbox.generator.columns import text_array
from sandbox.generator.typing import I64


def _param_values() -> dict[str, Sequence[int | float | str]]:
    """The values each message template parameter takes, by parameter name."""
    sku = [
        f"{kind}-{i:04d}" for kind in ("CAF", "TEA", "MUG", "BAG") for i in range(500)
    ]
    return {
        "id": list(range(1, 50_000)),
        "order_id": list(range(100_000, 160_000)),
        "sku": sku,
        "cart_id": [f"c_{(i * 2_654_435_761) % 16**6:06x}" for i in range(4096)],
        "count": list(range(1, 60)),
        "amount": [round(0.5 + 1.37 * i, 2) for i in range(1500)],
        "duration_ms": [round(0.4 + 0.731 * i, 1) for i in range(2000)],
        "card_brand": ["visa", "mastercard", "amex", "carte_bancaire"],
        "provider": ["stripe", "adyen", "paypal"],
        "key": [f"user:{i}" for i in range(300)]
        + [f"product:{s}" for s in sku[::20]]
        + ["session:ünïcødé", "ключ:42", "キー:東京"],
        "worker": [f"worker-{i}" for i in range(1, 9)],
        "template": [
            "order_confirmation",
            "password_reset",
            "shipping_update",
            "bienvenue_café",
            "ご注文確認",
        ],
        "email": [
            "zoë@example.com",
            "taro@例え.jp",
            "ana.souza@example.org",
            "mike+orders@example.com",
            "renée@café.fr",
        ],
        "file": [
            "catalogue-2026-05.csv",
            "stock_東京.csv",
            "feed 🚚.json",
            'prices "EU".csv',
        ],
        "shard": list(range(64)),
        "job": ["nightly-reconciliation", "ledger-export", "search-reindex"],
        "path": ["/", "/products", "/cart", "/checkout", "/account/orders", "/café"],
        "resource": [
            "https://cdn.example.com/app.3f9a2c.js",
            "https://cdn.example.com/app.3f9a2c.css",
            "https://cdn.example.com/fonts/inter.woff2",
            "https://cdn.example.com/img/hero@2x.webp",
            "https://www.googletagmanager.com/gtag/js",
        ],
        "attempt": list(range(1, 6)),
    }


def _render_value(value: int | float | str) -> tuple[str, str, str]:
    """A value as message text, as JSON, and escaped to sit inside a JSON string."""
    if isinstance(value, str):
        encoded = json.dumps(value, ensure_ascii=False)
        return value, encoded, encoded[1:-1]
    if isinstance(value, float):
        text = f"{value:.2f}"
        return text, text, text
    return str(value), str(value), str(value)


@dataclass(frozen=True)
class ParamTable:
    """Every template parameter value; entry 0 is the empty value."""

    text: pa.Array
    json: pa.Array
    escaped: pa.Array
    code: dict[str, int]
    base: I64
    size: I64


@functools.cache
def param_table() -> ParamTable:
    """Every parameter value, rendered three ways, in runs by parameter."""
    text, encoded, escaped = [""], [""], [""]
    code: dict[str, int] = {}
    base: list[int] = []
    size: list[int] = []
    for name, values in _param_values().items():
        code[name] = len(base)
        base.append(len(text))
        size.append(len(values))
        for value in values:
            a, b, c = _render_value(value)
            text.append(a)
            encoded.append(b)
            escaped.append(c)
    return ParamTable(
        text=text_array(text),
        json=text_array(encoded),
        escaped=text_array(escaped),
        code=code,
        base=np.array(base, dtype=np.int64),
        size=np.array(size, dtype=np.int64),
    )


_EXTRA_POOLS: tuple[tuple[float, tuple[tuple[str, object], ...]], ...] = (
    (
        0.3,
        (
            ("user", {"id": 42, "name": "Zoë", "city": "東京", "vip": True}),
            ("user", {"id": 7, "name": "José", "roles": ["admin", "support"]}),
            ("user", {"id": 1001, "name": "Anaïs", "city": "Montréal", "vip": None}),
            ("user", None),
            ("customer", {"country": "FR", "segment": "cafés ☕", "ltv": 1234.5}),
            ("customer", {"country": "JP", "segment": "小売", "ltv": 0}),
            ("tenant", "acme-corp"),
        ),
    ),
    (
        0.35,
        (
            ("latency_ms", 12.5),
            ("latency_ms", 0.031),
            ("retries", 0),
            ("retries", 3),
            ("cache", {"hit": True, "ttl_s": 300}),
            ("cache", {"hit": False, "ttl_s": None}),
            ("items", [1, 2, 3]),
            ("items", []),
            ("ratio", 0.25),
            ("big_id", 9_007_199_254_740_993),
            ("feature_flags", ["new-checkout", "dark-mode"]),
            ("temperature_c", -3.75),
        ),
    ),
    (
        0.15,
        (
            ("note", "Déjà vu 🎉"),
            ("greeting", "こんにちは世界"),
            ("emoji", "🚀🔥✨"),
            ("escaped", 'line one\nline two "quoted" \\ and\ttab'),
            ("nested", {"a": {"b": {"c": [1, {"d": False}, None]}}}),
            ("mixed", [1, "two", 3.0, None, True, {"six": 6}]),
            ("empty", {}),
            ("nothing", None),
            ("rtl", "مرحبا"),
            ("zero_width", "a\u200bb"),
        ),
    ),
)
"""Optional attributes: each pool adds one of its entries to a share of rows."""


def _value_schema(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {"type": "object"}
    if isinstance(value, list):
        return {"type": "array"}
    return {}


@dataclass(frozen=True)
class ExtraPool:
    """One pool's attribute fragments, each with its JSON schema fragment.

    Index 0 is "no attribute". Schema fragments come twice: first without a
    leading comma (for the first property), then with one.
    """

    share: float
    size: int
    fragment: pa.Array
    schema: pa.Array


@functools.cache
def extra_pools() -> tuple[ExtraPool, ...]:
    """Every pool of optional attributes, rendered."""
    pools = []
    for share, entries in _EXTRA_POOLS:
        fragments = [""]
        schemas = [""]
        for key, value in entries:
            pair = f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
            fragments.append(f", {pair}")
            schemas.append(f"{json.dumps(key)}: {json.dumps(_value_schema(value))}")
        schemas += [""] + [f", {entry}" for entry in schemas[1:]]
        pools.append(
            ExtraPool(share, len(entries), text_array(fragments), text_array(schemas))
        )
    return tuple(pools)


TAGS = ("checkout", "payments", "slow", "beta", "experiment-42", "café", "🚀 launch")
TAG_COUNT_SHARES = (0.65, 0.2, 0.1, 0.05)
"""How many tags a row of a tagged kind carries: none, one, two or three."""

STATUS_CODES = (0, 200, 201, 204, 301, 400, 404, 500, 503)
STATUS_OK_SHARES = (0.0, 0.86, 0.04, 0.02, 0.01, 0.03, 0.04, 0.0, 0.0)
STATUS_FAILED_SHARES = (0.0,) * 7 + (0.8, 0.2)
"""HTTP response codes (0 where there is none), and their shares in traces that
succeed and in traces that fail."""
