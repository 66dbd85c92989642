"""The `records` table: traces laid out as rows, then stored and rendered.

Planning draws every random choice in one pass over all rows: the traces and
their timing (`traces.py`), then each row's export and storage times, ids,
outcome and the details that only change its text. Rendering then turns chunks
of the plan into Arrow columns (messages, JSON attributes and their schema,
exception events, links, URLs) without drawing anything, so chunks build in
parallel and the same seed gives the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox import schema
from sandbox.generator.columns import (
    constant,
    days,
    hex_text,
    join,
    random_words,
    scatter,
    take,
    text_array,
    timestamps,
)
from sandbox.generator.failures import failure_table
from sandbox.generator.record_catalog import (
    ROLE_NONE,
    ROLE_PROPAGATES,
    ROLE_RAISES,
    RecordCatalog,
    record_catalog,
)
from sandbox.generator.services import (
    SERVICE_INDEX,
    instance_columns,
    instance_index,
    instance_table,
)
from sandbox.generator.tables import build_table, check_arguments
from sandbox.generator.templates import KINDS
from sandbox.generator.timing import (
    SECOND,
    export_batches,
    ingest_delays,
    visibility_delays,
)
from sandbox.generator.traces import Layout, Traces, draw_traces, lay_out, place
from sandbox.generator.typing import I64, U64, Bool
from sandbox.generator.vocabulary import (
    STATUS_CODES,
    TAG_COUNT_SHARES,
    TAGS,
    extra_pools,
    param_table,
)

_RECORDS_STORED = schema.RECORDS.append(
    pa.field(schema.VISIBLE_AT, schema.TIMESTAMP, nullable=False)
)


def generate_records(
    n: int, *, seed: int, start: datetime, end: datetime, project_id: str = "sandbox"
) -> pa.Table:
    """Generate `n` rows of the `records` table.

    Args:
        n: how many rows; the last trace is cut short to make the count exact.
        seed: the same seed gives the same table.
        start: the earliest start of a trace's root span (tz-aware).
        end: root spans start before this (tz-aware); rows may be stored later.
        project_id: the value of the `project_id` column.

    Returns:
        The rows, in `created_at` order, with the `records` schema plus
        `_visible_at`. Spans from browsers with a fast clock may start up to 50
        minutes after `end`.

    Raises:
        ValueError: `n` or `seed` is negative, or the time range is empty or naive.
    """
    lo, hi = check_arguments(n, seed, start, end)
    if n == 0:
        return _RECORDS_STORED.empty_table()

    rng = np.random.Generator(np.random.PCG64(seed))
    plan = _plan_records(rng, n, lo, hi)
    return build_table(n, _RECORDS_STORED, lambda a, b: plan.batch(a, b, project_id))


@dataclass
class _RecordPlan:
    """Every record's structure, timing and choices, in `created_at` order.

    Text columns are rendered from this per chunk by `batch`, which draws no
    randomness, so chunks can be built in parallel.
    """

    catalog: RecordCatalog
    node: I64
    trace: I64
    source: I64
    start: I64
    end: I64
    created: I64
    visible: I64
    span: U64
    parent_span: U64
    has_parent: Bool
    level: I64
    status: I64
    role: I64
    failure: I64
    slots: I64 = field(init=False)
    extras: I64 = field(init=False)
    tag_count: I64 = field(init=False)
    tag_first: I64 = field(init=False)
    query: I64 = field(init=False)
    link: I64 = field(init=False)
    trace_words: U64 = field(init=False)
    root_span: U64 = field(init=False)

    def batch(self, a: int, b: int, project_id: str) -> pa.RecordBatch:
        """Rows `a` to `b` as a record batch of the stored schema."""
        columns = _record_columns(self, slice(a, b), project_id)
        arrays = [columns[f.name] for f in _RECORDS_STORED]
        return pa.RecordBatch.from_arrays(arrays, schema=_RECORDS_STORED)


def _plan_records(rng: np.random.Generator, n: int, lo: int, hi: int) -> _RecordPlan:
    """Draw `n` rows' structure, timing and choices, in `created_at` order."""
    catalog = record_catalog()
    count = int(n / catalog.rows_per_trace * 1.1) + 16
    while True:
        traces = draw_traces(rng, catalog, count, lo, hi)
        rows = lay_out(rng, catalog, traces, n)
        if rows is not None:
            break
        count *= 2

    times = place(rng, catalog, traces, rows)
    source, created, visible = _store(rng, catalog, traces, rows, times)
    frontend = catalog.nodes.service[rows.node] == SERVICE_INDEX["frontend"]
    skew = np.where(frontend, traces.skew[rows.trace], 0)
    span, parent_span, has_parent = _identify(rng, catalog, rows)
    level, status, role, failure = _outcomes(catalog, traces, rows)

    order = np.argsort(created, kind="stable")
    plan = _RecordPlan(
        catalog=catalog,
        node=rows.node[order],
        trace=rows.trace[order],
        source=source[order],
        start=(times[0] + skew)[order],
        end=(times[1] + skew)[order],
        created=created[order],
        visible=visible[order],
        span=span[order],
        parent_span=parent_span[order],
        has_parent=has_parent[order],
        level=level[order],
        status=status[order],
        role=role[order],
        failure=failure[order],
    )
    plan.trace_words = traces.words
    plan.root_span = span[rows.root]
    _choose_details(rng, plan, traces, rows.rank[order], len(rows.root))
    return plan


def _store(
    rng: np.random.Generator,
    catalog: RecordCatalog,
    traces: Traces,
    rows: Layout,
    times: tuple[I64, I64],
) -> tuple[I64, I64, I64]:
    """Each row's source instance, `created_at` and `_visible_at`.

    Spans and logs leave their instance in export batches; a span event is stored
    with its span.
    """
    nodes = catalog.nodes
    kind = nodes.kind[rows.node]
    source = instance_index(
        nodes.service[rows.node],
        traces.environment[rows.trace],
        traces.replica[rows.trace],
    )
    exported = kind != 2
    ready = np.where(kind == 0, times[1], times[0])
    batch, flush = export_batches(source[exported], ready[exported])
    stored = flush + ingest_delays(rng, len(flush))
    shown = stored + visibility_delays(rng, len(flush))

    created = np.empty(len(kind), dtype=np.int64)
    visible = np.empty(len(kind), dtype=np.int64)
    created[exported] = stored[batch]
    visible[exported] = shown[batch]
    events = np.flatnonzero(~exported)
    created[events] = created[rows.parent[events]]
    visible[events] = visible[rows.parent[events]]
    return source, created, visible


def _identify(
    rng: np.random.Generator, catalog: RecordCatalog, rows: Layout
) -> tuple[U64, U64, Bool]:
    """Span ids, parent span ids and which rows have a parent.

    A span event carries the ids of the span it belongs to.
    """
    span = random_words(rng, len(rows.node))
    parent_span = np.zeros(len(span), dtype=np.uint64)
    has_parent = rows.parent >= 0
    events = catalog.nodes.kind[rows.node] == 2

    children = np.flatnonzero(has_parent & ~events)
    parent_span[children] = span[rows.parent[children]]
    owners = rows.parent[events]
    span[events] = span[owners]
    parent_span[events] = parent_span[owners]
    has_parent[events] = has_parent[owners]
    return span, parent_span, has_parent


def _outcomes(
    catalog: RecordCatalog, traces: Traces, rows: Layout
) -> tuple[I64, I64, I64, I64]:
    """Level, HTTP status, failure role and exception variant of every row."""
    nodes = catalog.nodes
    failures = failure_table()
    role = np.where(traces.failed[rows.trace], nodes.role[rows.node], ROLE_NONE)
    group = nodes.failure[rows.node]
    carries = (role == ROLE_RAISES) | (role == ROLE_PROPAGATES)
    safe_group = np.maximum(group, 0)
    variant = (traces.failure_draw[rows.trace] * failures.size[safe_group]).astype(
        np.int64
    )
    failure = np.where(carries & (group >= 0), failures.first[safe_group] + variant, -1)

    http = nodes.http[rows.node] > 0
    errored = role != ROLE_NONE
    trace_status = np.where(
        errored, traces.failed_status[rows.trace], traces.ok_status[rows.trace]
    )
    status = np.where(http, trace_status, 0)

    level = nodes.level[rows.node]
    level = np.where(errored, np.maximum(level, 17), level)
    client_error = (status == STATUS_CODES.index(400)) | (
        status == STATUS_CODES.index(404)
    )
    level = np.where(client_error, np.maximum(level, 13), level)
    return level, status, role, failure


def _choose_details(
    rng: np.random.Generator, plan: _RecordPlan, traces: Traces, rank: I64, kept: int
) -> None:
    """Draw what only changes the rendered text: values, extras, tags, links."""
    nodes = plan.catalog.nodes
    params = param_table()
    n = len(plan.node)

    slots = np.zeros((n, 2), dtype=np.int64)
    for j in range(2):
        code = nodes.param[plan.node, j]
        safe = np.maximum(code, 0)
        draw = traces.param_draw[plan.trace, safe]
        pick = ((draw * params.size[safe]).astype(np.int64) + rank) % params.size[safe]
        slots[:, j] = np.where(code >= 0, params.base[safe] + pick, 0)
    plan.slots = slots

    extras = np.zeros((n, len(extra_pools())), dtype=np.int64)
    allowed = nodes.extras[plan.node]
    for k, pool in enumerate(extra_pools()):
        present = allowed & (rng.random(n) < pool.share)
        extras[:, k] = np.where(present, 1 + rng.integers(0, pool.size, n), 0)
    plan.extras = extras

    tag_counts = np.searchsorted(np.cumsum(TAG_COUNT_SHARES), rng.random(n), "right")
    plan.tag_count = np.where(nodes.tagged[plan.node], np.minimum(tag_counts, 3), 0)
    plan.tag_first = rng.integers(0, len(TAGS), n)

    query_draw = rng.random(n) * nodes.query_size[plan.node]
    plan.query = nodes.query_base[plan.node] + query_draw.astype(np.int64)

    linked = nodes.links[plan.node] & (rng.random(n) < 0.6)
    plan.link = np.where(linked, rng.integers(0, kept, n), -1)


# Pre-rendered text the columns below take from.
_KIND_TEXT = text_array(KINDS)
_STATUS_TEXT = text_array(["", *(str(code) for code in STATUS_CODES[1:])])
_STATUS_VALUES = np.array(STATUS_CODES, dtype=np.int32)
_OTEL_STATUS = text_array(["UNSET", "OK", "ERROR"])
_TAG_TEXT = text_array(TAGS)
_SCHEMA_OPEN = text_array([None, '{"type": "object", "properties": {'])
_EXCEPTION_EVENT = '[{"name": "exception", "time_unix_nano": '


def _record_columns(plan: _RecordPlan, rows: slice, project_id: str) -> dict[str, Any]:
    """Every column of the stored schema, for the plan's `rows`."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    kind = nodes.kind[node]
    instances = instance_table()
    source = plan.source[rows]
    start, end = plan.start[rows], plan.end[rows]
    status = plan.status[rows]
    failure = plan.failure[rows]
    count = len(node)

    columns: dict[str, Any] = {
        "start_timestamp": timestamps(start),
        "end_timestamp": timestamps(end),
        "created_at": timestamps(plan.created[rows]),
        "day": days(start),
        "trace_id": hex_text(plan.trace_words[plan.trace[rows]]),
        "span_id": hex_text(plan.span[rows]),
        "parent_span_id": pc.if_else(
            pa.array(plan.has_parent[rows]),
            hex_text(plan.parent_span[rows]),
            pa.scalar(None, type=pa.string()),
        ),
        "kind": take(_KIND_TEXT, kind),
        "span_name": take(nodes.span_name, node),
        "message": _message(plan, rows, escaped=False),
        "level": pa.array(plan.level[rows].astype(np.int32)),
        "http_response_status_code": pa.array(_STATUS_VALUES[status], mask=status == 0),
        "process_pid": take(instances.pid, source),
        "duration": pa.array((end - start) / SECOND, mask=kind != 0),
        "is_exception": pa.array(failure >= 0),
        "tags": _tags(plan.tag_count[rows], plan.tag_first[rows]),
        "attributes": _attributes(plan, rows),
        "otel_events": _exception_events(failure, end),
        "otel_links": _links(plan, plan.link[rows]),
        "otel_resource_attributes": take(instances.resource, source),
        "otel_scope_attributes": constant("{}", count),
        "log_body": _log_body(plan, rows),
        "attributes_json_schema": _attributes_schema(plan, rows),
        "exception_type": take(failure_table().type, failure),
        "exception_message": take(failure_table().message, failure),
        "exception_stacktrace": take(failure_table().stacktrace, failure),
        "otel_status_code": take(_OTEL_STATUS, _otel_status(plan, rows)),
        "otel_status_message": take(failure_table().status_message, failure),
        "otel_scope_name": take(nodes.scope_name, node),
        "otel_scope_version": take(nodes.scope_version, node),
        "http_method": take(nodes.http_method, node),
        "http_route": take(nodes.http_route, node),
        "project_id": constant(project_id, count),
        schema.VISIBLE_AT: timestamps(plan.visible[rows]),
    }
    columns.update(instance_columns(source))
    columns.update(_urls(plan, rows))
    return columns


def _message(plan: _RecordPlan, rows: slice | I64, *, escaped: bool) -> pa.Array:
    """The formatted message; `escaped` renders it ready to sit in a JSON string."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    params = param_table()
    literals = nodes.literal_escaped if escaped else nodes.literal
    values = params.escaped if escaped else params.text
    slots = plan.slots[rows]
    return join(
        take(literals[0], node),
        take(values, slots[:, 0]),
        take(literals[1], node),
        take(values, slots[:, 1]),
        take(literals[2], node),
    )


def _attributes(plan: _RecordPlan, rows: slice) -> pa.Array:
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    params = param_table()
    slots = plan.slots[rows]
    extras = plan.extras[rows]
    fragments = [
        take(pool.fragment, extras[:, k]) for k, pool in enumerate(extra_pools())
    ]
    return join(
        take(nodes.attribute_lead, node),
        take(nodes.slot_key[0], node),
        take(params.json, slots[:, 0]),
        take(nodes.slot_key[1], node),
        take(params.json, slots[:, 1]),
        take(nodes.status_key, node),
        take(_STATUS_TEXT, plan.status[rows]),
        *fragments,
        "}",
    )


def _attributes_schema(plan: _RecordPlan, rows: slice) -> pa.Array:
    """The JSON schema of a row's own attributes; null when it has none."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    extras = plan.extras[rows]
    described = nodes.has_schema[node].copy()
    parts = []
    for k, pool in enumerate(extra_pools()):
        pick = extras[:, k]
        parts.append(take(pool.schema, np.where(described, pick + pool.size + 1, pick)))
        described |= pick > 0
    return join(
        take(_SCHEMA_OPEN, described.astype(np.int64)),
        take(nodes.slot_schema[0], node),
        take(nodes.slot_schema[1], node),
        *parts,
        "}}",
    )


def _tags(count: I64, first: I64) -> pa.Array:
    offsets = np.zeros(len(count) + 1, dtype=np.int32)
    np.cumsum(count, out=offsets[1:])
    total = int(offsets[-1])
    within = np.arange(total) - np.repeat(offsets[:-1], count)
    values = (np.repeat(first, count) + within) % len(TAGS)
    return pa.ListArray.from_arrays(pa.array(offsets), take(_TAG_TEXT, values))


def _exception_events(failure: I64, end: I64) -> pa.Array:
    """The `exception` event recorded with each failing row, else an empty list."""
    failing = failure >= 0
    if not failing.any():
        return constant("[]", len(failure))
    nanos = pa.array(end[failing] * 1000).cast(pa.string())
    events = join(
        _EXCEPTION_EVENT, nanos, take(failure_table().event_tail, failure[failing])
    )
    return pc.fill_null(scatter(events, failing), "[]")


def _links(plan: _RecordPlan, link: I64) -> pa.Array:
    """A link to the trace that enqueued a task, else an empty list."""
    linked = link >= 0
    if not linked.any():
        return constant("[]", len(link))
    target = link[linked]
    links = join(
        '[{"context": {"trace_id": "',
        hex_text(plan.trace_words[target]),
        '", "span_id": "',
        hex_text(plan.root_span[target]),
        '"}, "attributes": {"messaging.operation": "receive"}}]',
    )
    return pc.fill_null(scatter(links, linked), "[]")


def _log_body(plan: _RecordPlan, rows: slice) -> pa.Array:
    """The OpenTelemetry log body of logs from non-Python services, else null."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    has_body = nodes.has_body[node]
    if not has_body.any():
        return pa.nulls(len(node), type=pa.string())

    message = _message(plan, np.flatnonzero(has_body) + rows.start, escaped=True)
    chosen = node[has_body]
    body = join(take(nodes.body_open, chosen), message, take(nodes.body_close, chosen))
    return scatter(body, has_body)


def _otel_status(plan: _RecordPlan, rows: slice) -> I64:
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    ok = nodes.rust[node] & (nodes.kind[node] == 0)
    return np.where(plan.role[rows] != ROLE_NONE, 2, np.where(ok, 1, 0))


def _urls(plan: _RecordPlan, rows: slice) -> dict[str, pa.Array]:
    """The URL columns of HTTP spans; null on every other row."""
    node = plan.node[rows]
    nodes = plan.catalog.nodes
    http = nodes.http[node] > 0
    if not http.any():
        empty = pa.nulls(len(node), type=pa.string())
        return {"url_full": empty, "url_path": empty, "url_query": empty}

    chosen = node[http]
    slots = plan.slots[rows][http]
    in_path = nodes.path_slots[chosen]
    text = param_table().text
    path = join(
        take(nodes.path_literal[0], chosen),
        take(text, np.where(in_path > 0, slots[:, 0], 0)),
        take(nodes.path_literal[1], chosen),
        take(text, np.where(in_path > 1, slots[:, 1], 0)),
        take(nodes.path_literal[2], chosen),
    )
    query = plan.query[rows][http]
    catalog = plan.catalog
    full = join(take(nodes.host, chosen), path, take(catalog.query_suffix, query))
    return {
        "url_full": scatter(full, http),
        "url_path": scatter(path, http),
        "url_query": scatter(take(catalog.query_text, query), http),
    }
