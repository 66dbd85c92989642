"""Faults the sandbox injects into query responses, to test clients' recovery.

A plan is written as a spec string of comma-separated `key=value` settings::

    rate=0.3,kinds=500+502+429+truncate,seed=7,retry_after=1,slow_seconds=2

`rate`
    The chance, from 0 to 1, that a query request draws a fault. It defaults to
    1 when `kinds` is given and to 0 otherwise.
`kinds`
    The kinds a draw picks from, joined by `+`, each equally likely. Default: all.
`seed`
    An integer; the k-th query request's fault depends only on the seed and k.
`retry_after`
    Seconds a `429` asks the client to wait (default 1).
`slow_seconds`
    How long a `slow` response waits before answering (default 2).
`force`
    Kinds the next query requests get in order, before any random draw, each
    optionally repeated with `*N`: `force=500*2+drop_before`.

The empty spec and `none` mean no faults. The kinds:

`500`, `502`, `503`, `504`
    That status, with a body like the real service's (JSON for `500`, a proxy's
    HTML page for the gateway errors).
`429`, `429date`
    Rate limited, with `Retry-After` in seconds, or as an HTTP date of the
    sandbox clock (rounded up to the second) for `429date`, whose problem body
    then has no `retry_after`, so a client must read the header.
`slow`
    The query waits `slow_seconds` before it runs, holding its place among the
    running queries (see `max_concurrent_queries`), then is served normally.
`drop_before`
    The connection is closed without any response.
`drop_during`
    The status, headers and half of the first body chunk are sent, then the
    connection is closed.
`truncate`
    The body ends cleanly but early, after the first batch: Arrow without its
    end-of-stream marker, NDJSON without its `end` line, JSON cut off (invalid),
    CSV with the header and the first batch only. A result of one batch loses
    only the marker (or the `end` line); an empty result keeps only the schema.
`ndjson_error`
    NDJSON gets an `error` line after the first batch and stops. The other
    formats cannot report an error mid-stream: their connection is closed
    there instead, as when a query really fails while streaming.

Faults apply only to `POST /v2/query`, and are drawn when a request arrives, so
the status kinds and `drop_before` come before authentication. `slow` and the
stream kinds apply only to queries that run: a request refused anyway (401,
422, 429 for the concurrency cap, 400) is answered normally and the fault it
drew is not counted. Replacing the plan starts its draws again from k = 0.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

FaultKind = Literal[
    "500",
    "502",
    "503",
    "504",
    "429",
    "429date",
    "slow",
    "drop_before",
    "drop_during",
    "truncate",
    "ndjson_error",
]

ALL_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
"""Every fault kind, in the order the spec documents them."""

STATUS_KINDS: frozenset[FaultKind] = frozenset(
    {"500", "502", "503", "504", "429", "429date"}
)
"""Kinds answered with an error status instead of the result."""

STREAM_KINDS: frozenset[FaultKind] = frozenset(
    {"drop_during", "truncate", "ndjson_error"}
)
"""Kinds that spoil a streamed result after it has started."""

_SETTINGS = ("rate", "kinds", "seed", "retry_after", "slow_seconds", "force")


@dataclass(frozen=True)
class Fault:
    """One fault to inject into one response."""

    kind: FaultKind
    retry_after: float = 1.0
    slow_seconds: float = 2.0

    @property
    def status(self) -> int:
        """The HTTP status of a status kind (429 for both 429 kinds)."""
        return int(self.kind[:3])

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` in whole seconds, rounded up as the header requires."""
        return str(math.ceil(self.retry_after))


class FaultPlan:
    """Which query requests get which faults, changeable while the server runs.

    Args:
        rate: The chance that a query request draws a fault, 0 to 1.
        kinds: The kinds a draw picks from.
        seed: Makes the draws repeatable.
        retry_after: Seconds a 429 asks the client to wait.
        slow_seconds: How long a `slow` response is delayed.
    """

    def __init__(
        self,
        rate: float = 0.0,
        kinds: Sequence[FaultKind] = ALL_KINDS,
        *,
        seed: int = 0,
        retry_after: float = 1.0,
        slow_seconds: float = 2.0,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"The fault rate must be between 0 and 1, not {rate}.")
        if not kinds:
            raise ValueError("A fault plan needs at least one kind to draw from.")
        if retry_after < 0 or slow_seconds < 0:
            raise ValueError(
                f"retry_after ({retry_after}) and slow_seconds ({slow_seconds}) "
                "must not be negative."
            )
        self.rate = rate
        self.kinds = tuple(_check_kind(kind) for kind in kinds)
        self.seed = seed
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self._lock = threading.Lock()
        self._forced: deque[FaultKind] = deque()
        self._drawn = 0

    @classmethod
    def none(cls) -> FaultPlan:
        """A plan that injects nothing (until faults are forced)."""
        return cls()

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Build a plan from a spec string (see the module docstring).

        Raises:
            ValueError: the spec has an unknown setting, kind or bad value.
        """
        settings = _split_spec(spec)
        kinds = [_check_kind(k) for k in _split_list(settings.get("kinds", ""))]
        default_rate = "1" if kinds else "0"
        plan = cls(
            rate=_number(settings, "rate", default_rate),
            kinds=kinds or ALL_KINDS,
            seed=_integer(settings, "seed", "0"),
            retry_after=_number(settings, "retry_after", "1"),
            slow_seconds=_number(settings, "slow_seconds", "2"),
        )
        for kind, count in _forced(settings.get("force", "")):
            plan.force(kind, count)
        return plan

    @property
    def spec(self) -> str:
        """The plan as a spec string that parses back to the same draws."""
        parts = [
            f"rate={self.rate:g}",
            "kinds=" + "+".join(self.kinds),
            f"seed={self.seed}",
            f"retry_after={self.retry_after:g}",
            f"slow_seconds={self.slow_seconds:g}",
        ]
        with self._lock:
            forced = list(self._forced)
        if forced:
            parts.append("force=" + "+".join(forced))
        return ",".join(parts)

    def __repr__(self) -> str:
        return f"FaultPlan.parse({self.spec!r})"

    def force(self, kind: FaultKind | str, count: int = 1) -> None:
        """Give the next `count` query requests the fault `kind`."""
        if count < 1:
            raise ValueError(f"A forced fault needs a count of 1 or more, not {count}.")
        checked = _check_kind(kind)
        with self._lock:
            self._forced.extend([checked] * count)

    def kind_for(self, index: int) -> FaultKind | None:
        """The kind the random draw gives the query request `index` (from 0)."""
        if self.rate <= 0.0:
            return None
        rng = random.Random(f"{self.seed}:{index}")
        if rng.random() >= self.rate:
            return None
        return self.kinds[rng.randrange(len(self.kinds))]

    def next_fault(self) -> Fault | None:
        """The fault for the next query request: a forced one, else a draw."""
        with self._lock:
            index = self._drawn
            self._drawn += 1
            kind = self._forced.popleft() if self._forced else None
        if kind is None:
            kind = self.kind_for(index)
        if kind is None:
            return None
        return Fault(kind, self.retry_after, self.slow_seconds)


def _check_kind(kind: str) -> FaultKind:
    for known in ALL_KINDS:
        if kind == known:
            return known
    raise ValueError(
        f"Unknown fault kind {kind!r}; choose from {', '.join(ALL_KINDS)}."
    )


def _split_spec(spec: str) -> dict[str, str]:
    text = spec.strip()
    if text.lower() in ("", "none"):
        return {}

    settings: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in _SETTINGS:
            raise ValueError(
                f"Bad fault setting {item.strip()!r}: write key=value with a key "
                f"from {', '.join(_SETTINGS)}."
            )
        settings[key] = value
    return settings


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split("+") if part.strip()]


def _number(settings: dict[str, str], key: str, default: str) -> float:
    value = settings.get(key, default)
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"The fault setting {key}={value!r} is not a number; write e.g. {key}=1."
        ) from None


def _integer(settings: dict[str, str], key: str, default: str) -> int:
    value = settings.get(key, default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"The fault setting {key}={value!r} is not an integer; write e.g. {key}=7."
        ) from None


def _forced(value: str) -> Iterable[tuple[FaultKind, int]]:
    for item in _split_list(value):
        kind, _, count = item.partition("*")
        if count and not count.strip().isdigit():
            raise ValueError(
                f"Bad forced fault {item!r}: write KIND or KIND*COUNT, e.g. 500*2."
            )
        yield _check_kind(kind.strip()), int(count or 1)
