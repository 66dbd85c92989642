"""When rows are stored and become visible, as Logfire's storage rules say.

Times are whole microseconds since the epoch, in int64 arrays. A span is stored
(`created_at`) a few seconds after it ends, now and then some minutes later. Rows
leave a service in export batches whose rows share one `created_at`. A few
clients' clocks run ahead of the server. `_visible_at` falls within 5 minutes
after `created_at`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from sandbox.generator.typing import I64

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_EXPORT_WINDOW = 5 * SECOND
"""How often an SDK flushes its export queue (OpenTelemetry's default)."""

_EXPORT_BATCH_MAX = 512
"""The most rows one export carries (OpenTelemetry's default)."""

SKEWED_ROW_SHARE = 0.002
"""The share of records written by a browser whose clock runs ahead."""

_SKEW_MINUTES = (1.0, 50.0)
"""How far a fast clock runs ahead, in minutes."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of a tz-aware moment, without float rounding."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def ingest_delays(rng: np.random.Generator, count: int) -> I64:
    """How long an export takes to be stored: seconds, now and then minutes."""
    seconds = rng.uniform(0.5, 6.0, count)
    late = rng.random(count) < 0.03
    seconds[late] = rng.uniform(60.0, 900.0, int(late.sum()))
    return (seconds * SECOND).astype(np.int64)


def visibility_delays(rng: np.random.Generator, count: int) -> I64:
    """How long a stored row takes to show in queries, always under 5 minutes."""
    draw = rng.random(count)
    seconds = rng.uniform(0.1, 5.0, count)
    slow = draw >= 0.9
    seconds[slow] = rng.uniform(5.0, 60.0, int(slow.sum()))
    slowest = draw >= 0.99
    seconds[slowest] = rng.uniform(60.0, 290.0, int(slowest.sum()))
    return (seconds * SECOND).astype(np.int64)


def skews(rng: np.random.Generator, count: int, share: float) -> I64:
    """How far each unit's clock runs ahead: zero for all but `share` of them."""
    skewed = rng.random(count) < share
    minutes = rng.uniform(*_SKEW_MINUTES, count)
    return np.where(skewed, (minutes * MINUTE).astype(np.int64), 0)


def export_batches(source: I64, ready: I64) -> tuple[I64, I64]:
    """Group rows into exports as an SDK's batch processor would.

    Each source (a service instance) flushes every 5 seconds, at most 512 rows at
    a time. Returns each row's export number and each export's flush time.
    """
    phase = (source * 1_234_577) % _EXPORT_WINDOW
    window = (ready + phase) // _EXPORT_WINDOW
    window_span = int(window.max() - window.min()) + 1
    key = source * window_span + (window - window.min())
    order = np.argsort(key, kind="stable")

    sorted_key = key[order]
    first = np.ones(len(key), dtype=np.bool_)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    group_start = np.flatnonzero(first)
    rank = np.arange(len(key)) - group_start[np.cumsum(first) - 1]
    opens = rank % _EXPORT_BATCH_MAX == 0

    batch = np.empty(len(key), dtype=np.int64)
    batch[order] = np.cumsum(opens) - 1
    opening = order[opens]
    flush = (window[opening] + 1) * _EXPORT_WINDOW - phase[opening]
    return batch, flush.astype(np.int64)
