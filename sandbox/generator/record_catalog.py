"""The trace templates compiled into columns, for expansion over whole arrays.

Every node of every template becomes one entry of a `NodeTable`: its numbers
(parent, depth, placement, repeats, failure role) and the pre-rendered text its
rows are assembled from (message literals, attribute lead, scope, URL pieces).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from sandbox.generator.columns import text_array
from sandbox.generator.failures import failure_table
from sandbox.generator.services import SCOPES, SERVICE_INDEX, SERVICES
from sandbox.generator.templates import KINDS, WHENS, Node, Template, trace_templates
from sandbox.generator.timing import SKEWED_ROW_SHARE
from sandbox.generator.typing import F64, I64, Bool
from sandbox.generator.vocabulary import param_table

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

_STATEMENTS = {
    "SELECT products": "SELECT sku, name, price_cents FROM products WHERE sku = $1",
    "SELECT orders": (
        "SELECT orders.id, orders.status, orders.total FROM orders "
        "WHERE orders.id = %(pk_1)s"
    ),
    "UPDATE stock": "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2",
    "COMMIT": "COMMIT",
}

_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)

_LOG_BODIES: dict[str, tuple[str, str]] = {
    "rust": ('"', '"'),
    "nodejs": ('{"level": 30, "msg": "', '", "hostname": "gateway"}'),
    "webjs": ('{"message": "', '", "source": "console"}'),
}
"""How services that log through OpenTelemetry wrap a message into a log body."""


def _snake(name: str) -> str:
    """A code name for a span: the first three words of its name, in snake case."""
    words = re.findall(r"[a-z0-9]+", _PLACEHOLDER.sub("", name).lower())
    return "_".join(words[:3]) or "handler"


def _lead_attributes(node: Node, position: int) -> dict[str, object]:
    """The attributes a node's instrumentation always records."""
    service = SERVICES[SERVICE_INDEX[node.service]]
    http = node.http
    if http is not None and http.server:
        lead: dict[str, object] = {
            "http.request.method": http.method,
            "http.route": http.path,
            "url.scheme": http.host.split(":")[0],
        }
        if node.scope == "node-http":
            lead["user_agent.original"] = _USER_AGENT
        return lead
    if http is not None:
        address = http.host.split("//")[1].split(":")
        port = int(address[1]) if len(address) > 1 else 443
        return {
            "http.request.method": http.method,
            "server.address": address[0],
            "server.port": port,
        }
    if node.scope in ("sqlalchemy", "sqlx"):
        statement = _STATEMENTS.get(node.name, node.name)
        return {"db.system": "postgresql", "db.name": "shop", "db.statement": statement}
    if node.scope == "celery":
        return {
            "celery.action": "run",
            "celery.task_name": f"worker.tasks.{_snake(node.name)}",
            "messaging.system": "redis",
        }
    if node.scope == "tracing":
        return {
            "code.namespace": "inventory::handlers",
            "code.filepath": "src/handlers.rs",
            "code.lineno": 40 + 9 * position,
            "thread.name": "tokio-runtime-worker",
        }
    if node.scope in ("document-load", "fetch"):
        return {"component": node.scope, "session.id": "s-0f9e"}
    suffix = ".js" if service.language == "nodejs" else ".py"
    return {
        "code.filepath": service.module + suffix,
        "code.function": _snake(node.name),
        "code.lineno": 20 + 7 * position,
    }


@dataclass(frozen=True)
class NodeTable:
    """Every node of every template, as columns indexed by a global node number."""

    parent: I64
    depth: I64
    kind: I64
    service: I64
    level: I64
    at: F64
    length: F64
    repeat_low: I64
    repeat_high: I64
    when: I64
    role: I64
    failure: I64
    http: I64
    links: Bool
    tagged: Bool
    extras: Bool
    param: npt.NDArray[np.int64]
    query_base: I64
    query_size: I64
    has_schema: Bool
    has_body: Bool
    rust: Bool

    span_name: pa.Array
    literal: tuple[pa.Array, pa.Array, pa.Array]
    literal_escaped: tuple[pa.Array, pa.Array, pa.Array]
    slot_key: tuple[pa.Array, pa.Array]
    slot_schema: tuple[pa.Array, pa.Array]
    attribute_lead: pa.Array
    status_key: pa.Array
    scope_name: pa.Array
    scope_version: pa.Array
    http_method: pa.Array
    http_route: pa.Array
    path_literal: tuple[pa.Array, pa.Array, pa.Array]
    path_slots: I64
    host: pa.Array
    body_open: pa.Array
    body_close: pa.Array


@dataclass(frozen=True)
class RecordCatalog:
    """The templates, compiled for vectorised expansion."""

    weight: F64
    failure_rate: F64
    long: Bool
    first_node: I64
    node_count: I64
    root_seconds: F64
    rows_per_trace: float
    skew_share: float
    nodes: NodeTable
    query_text: pa.Array
    query_suffix: pa.Array


# The roles a node plays when its trace fails.
ROLE_NONE, ROLE_RAISES, ROLE_PROPAGATES, ROLE_ERROR_STATUS = range(4)


def _failure_roles(template: Template) -> list[tuple[int, str | None]]:
    """Each node's role in a failing trace and the exception it carries.

    A raising span's exception propagates up through its own service's spans;
    spans of other services above it end with an error status. A raising log
    records the exception without failing its parents.
    """
    roles: list[tuple[int, str | None]] = [(ROLE_NONE, None)] * len(template.nodes)
    for i, node in enumerate(template.nodes):
        if node.raises is None:
            continue
        roles[i] = (ROLE_RAISES, node.raises)
        parent = node.parent if node.kind == "span" else -1
        while parent >= 0:
            above = template.nodes[parent]
            role = (
                ROLE_PROPAGATES if above.service == node.service else ROLE_ERROR_STATUS
            )
            if roles[parent][0] == ROLE_NONE or roles[parent][0] > role:
                roles[parent] = (
                    role,
                    node.raises if role == ROLE_PROPAGATES else None,
                )
            parent = above.parent
    return roles


def _check_template(template: Template) -> None:
    """Refuse a template that the vectorised expansion would get wrong."""
    for i, node in enumerate(template.nodes):
        problem = _node_problem(template, i, node)
        if problem:
            raise ValueError(
                f"Node {i} of the {template.name!r} trace template {problem}; "
                "fix the template."
            )


def _node_problem(template: Template, i: int, node: Node) -> str | None:
    if i == 0:
        if node.parent != -1 or node.repeat != (1, 1) or node.when != "always":
            return "is the root, so it needs no parent, one copy, and no condition"
        return None
    if not 0 <= node.parent < i:
        return "must name an earlier node as its parent"
    parent = template.nodes[node.parent]
    if parent.kind != "span" or parent.repeat != (1, 1) or parent.when != "always":
        return "must have a parent span that is always there, in one copy"
    if not 0 <= node.at <= node.at + node.length <= 1:
        return "must fit inside its parent: 0 <= at <= at + length <= 1"
    if node.kind == "span_event" and parent.service != node.service:
        return "is an event, so it must belong to a span of its own service"

    names = _PLACEHOLDER.findall(node.message or node.name)
    path = _PLACEHOLDER.findall(node.http.path) if node.http else []
    if len(names) > 2 or len(set(names)) < len(names):
        return "may use at most two distinct parameters"
    if any(name not in param_table().code for name in names):
        return f"uses a parameter that vocabulary.py gives no values: {names}"
    if path != names[: len(path)]:
        return "must use its message's first parameters, in order, in its URL path"
    if node.raises is not None and node.raises not in failure_table().code:
        return f"raises {node.raises!r}, which failures.py does not define"
    return None


def _split_template(text: str) -> tuple[list[str], list[str]]:
    """Literal parts (always three) and parameter names (up to two) of a template."""
    parts = _PLACEHOLDER.split(text)
    literals, names = parts[0::2], parts[1::2]
    return literals + [""] * (3 - len(literals)), names


@functools.cache
def record_catalog() -> RecordCatalog:
    """Every template, checked and compiled once."""
    templates = trace_templates()
    total = sum(t.weight for t in templates)
    columns: dict[str, list[Any]] = {}
    queries = [""]
    first_node = []
    for template in templates:
        _check_template(template)
        first_node.append(len(columns.get("kind", [])))
        roles = _failure_roles(template)
        depths = _depths(template)
        for i, node in enumerate(template.nodes):
            _compile_node(columns, queries, node, i, depths[i], roles[i])

    rows = sum(t.weight / total * _expected_rows(t) for t in templates)
    browser = sum(t.weight / total * _expected_rows(t, "frontend") for t in templates)
    return RecordCatalog(
        weight=np.array([t.weight / total for t in templates]),
        failure_rate=np.array([t.failure_rate for t in templates]),
        long=np.array([t.long for t in templates]),
        first_node=np.array(first_node, dtype=np.int64),
        node_count=np.array([len(t.nodes) for t in templates], dtype=np.int64),
        root_seconds=np.array([t.nodes[0].length for t in templates]),
        rows_per_trace=rows,
        skew_share=min(1.0, SKEWED_ROW_SHARE * rows / browser),
        nodes=_node_table(columns),
        query_text=text_array([query or None for query in queries]),
        query_suffix=text_array([f"?{query}" if query else "" for query in queries]),
    )


def _depths(template: Template) -> list[int]:
    depths: list[int] = []
    for i, node in enumerate(template.nodes):
        depths.append(0 if i == 0 else depths[node.parent] + 1)
    return depths


def _expected_rows(template: Template, service: str | None = None) -> float:
    """How many rows a trace of this template holds on average."""
    rows = 0.0
    for node in template.nodes:
        if service is not None and node.service != service:
            continue
        present = {"always": 1.0, "failure": template.failure_rate}.get(
            node.when, 1.0 - template.failure_rate
        )
        rows += present * (node.repeat[0] + node.repeat[1]) / 2
    return rows


def _compile_node(
    columns: dict[str, list[Any]],
    queries: list[str],
    node: Node,
    position: int,
    depth: int,
    role: tuple[int, str | None],
) -> None:
    """Append one node's entries to the node table's columns."""
    entries = {
        **_node_numbers(node, depth, role),
        **_node_texts(node, position),
        **_node_http(node, queries),
    }
    for name, value in entries.items():
        columns.setdefault(name, []).append(value)


def _node_numbers(
    node: Node, depth: int, role: tuple[int, str | None]
) -> dict[str, Any]:
    language = SERVICES[SERVICE_INDEX[node.service]].language
    names = _PLACEHOLDER.findall(node.message or node.name)
    codes = [param_table().code[name] for name in names]
    return {
        "parent": node.parent,
        "depth": depth,
        "kind": KINDS.index(node.kind),
        "service": SERVICE_INDEX[node.service],
        "level": node.level,
        "at": node.at,
        "length": node.length,
        "repeat_low": node.repeat[0],
        "repeat_high": node.repeat[1],
        "when": WHENS.index(node.when),
        "role": role[0],
        "failure": failure_table().code[role[1]] if role[1] else -1,
        "links": node.links,
        "tagged": node.scope == "logfire",
        "extras": node.extras,
        "param": codes + [-1] * (2 - len(codes)),
        "has_schema": bool(names),
        "has_body": node.kind == "log" and language in _LOG_BODIES,
        "rust": language == "rust",
    }


def _node_texts(node: Node, position: int) -> dict[str, Any]:
    """The pre-rendered text pieces a node's rows are assembled from."""
    literals, names = _split_template(node.message or node.name)
    keys = [json.dumps(name) for name in names] + [""] * (2 - len(names))
    language = SERVICES[SERVICE_INDEX[node.service]].language
    body = _LOG_BODIES.get(language, (None, None)) if node.kind == "log" else None
    lead = json.dumps(_lead_attributes(node, position), ensure_ascii=False)
    scope_name, scope_version = SCOPES[node.scope]
    return {
        "span_name": node.name,
        "literal": literals,
        "literal_escaped": [json.dumps(p, ensure_ascii=False)[1:-1] for p in literals],
        "slot_key": [f", {key}: " if key else "" for key in keys],
        "slot_schema": [
            f"{keys[0]}: {{}}" if keys[0] else "",
            f", {keys[1]}: {{}}" if keys[1] else "",
        ],
        # The lead's closing brace goes: the other attributes follow it.
        "attribute_lead": lead[:-1],
        "status_key": ', "http.response.status_code": ' if node.http else "",
        "scope_name": scope_name,
        "scope_version": scope_version,
        "body_open": body[0] if body else None,
        "body_close": body[1] if body else None,
    }


def _node_http(node: Node, queries: list[str]) -> dict[str, Any]:
    """A node's HTTP pieces; its query strings are appended to `queries`."""
    http = node.http
    if http is None:
        return {
            "http": 0,
            "http_method": None,
            "http_route": None,
            "path_literal": [None] * 3,
            "path_slots": 0,
            "host": None,
            "query_base": 0,
            "query_size": 1,
        }

    literals, names = _split_template(http.path)
    base = len(queries)
    queries.extend(http.queries)
    return {
        "http": 1 if http.server else 2,
        "http_method": http.method,
        "http_route": http.path if http.server else None,
        "path_literal": literals,
        "path_slots": len(names),
        "host": http.host,
        "query_base": base,
        "query_size": len(http.queries),
    }


def _node_table(columns: dict[str, list[Any]]) -> NodeTable:
    def ints(name: str) -> I64:
        return np.array(columns[name], dtype=np.int64)

    def flags(name: str) -> Bool:
        return np.array(columns[name], dtype=np.bool_)

    def texts(name: str) -> pa.Array:
        return text_array(columns[name])

    def text_tuple(name: str, width: int) -> Any:
        return tuple(
            text_array([row[i] for row in columns[name]]) for i in range(width)
        )

    return NodeTable(
        parent=ints("parent"),
        depth=ints("depth"),
        kind=ints("kind"),
        service=ints("service"),
        level=ints("level"),
        at=np.array(columns["at"], dtype=np.float64),
        length=np.array(columns["length"], dtype=np.float64),
        repeat_low=ints("repeat_low"),
        repeat_high=ints("repeat_high"),
        when=ints("when"),
        role=ints("role"),
        failure=ints("failure"),
        http=ints("http"),
        links=flags("links"),
        tagged=flags("tagged"),
        extras=flags("extras"),
        param=np.array(columns["param"], dtype=np.int64),
        query_base=ints("query_base"),
        query_size=ints("query_size"),
        has_schema=flags("has_schema"),
        has_body=flags("has_body"),
        rust=flags("rust"),
        span_name=texts("span_name"),
        literal=text_tuple("literal", 3),
        literal_escaped=text_tuple("literal_escaped", 3),
        slot_key=text_tuple("slot_key", 2),
        slot_schema=text_tuple("slot_schema", 2),
        attribute_lead=texts("attribute_lead"),
        status_key=texts("status_key"),
        scope_name=texts("scope_name"),
        scope_version=texts("scope_version"),
        http_method=texts("http_method"),
        http_route=texts("http_route"),
        path_literal=text_tuple("path_literal", 3),
        path_slots=ints("path_slots"),
        host=texts("host"),
        body_open=texts("body_open"),
        body_close=texts("body_close"),
    )
