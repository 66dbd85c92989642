"""The fields of a `POST /v2/query` body, authentication and validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sandbox import schema
from sandbox.engine import QueryFailed, QueryRequest, QueryResult
from sandbox.server import SandboxServer

ARROW = "application/vnd.apache.arrow.stream"


def post(
    server: SandboxServer,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    accept: str = "application/json",
    content: bytes | None = None,
) -> httpx.Response:
    headers = {"Accept": accept}
    headers["Authorization"] = server.token if token is None else token
    if content is not None:
        return httpx.post(f"{server.url}/v2/query", content=content, headers=headers)
    return httpx.post(f"{server.url}/v2/query", json=body, headers=headers)


def week_ago(server: SandboxServer) -> str:
    return (server.clock.now() - timedelta(days=7)).isoformat()


def arrow(server: SandboxServer, sql: str, **fields: Any) -> pa.Table:
    body = {"sql": sql, "min_timestamp": week_ago(server), "limit": 10_000, **fields}
    response = post(server, body, accept=ARROW)
    assert response.status_code == 200, response.text
    return pa.ipc.open_stream(response.content).read_all()


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


# Required fields and validation


def test_sql_is_required(sandbox: SandboxServer) -> None:
    body = {"min_timestamp": week_ago(sandbox)}

    [error] = errors(post(sandbox, body))

    assert error == {
        "type": "missing",
        "loc": ["body", "sql"],
        "msg": "Field required",
        "input": body,
    }


def test_min_timestamp_is_required(sandbox: SandboxServer) -> None:
    [error] = errors(post(sandbox, {"sql": "SELECT 1"}))

    assert (error["type"], error["loc"]) == ("missing", ["body", "min_timestamp"])


def test_a_naive_min_timestamp_is_refused(sandbox: SandboxServer) -> None:
    body = {"sql": "SELECT 1", "min_timestamp": "2026-05-27T13:16:36"}

    [error] = errors(post(sandbox, body))

    assert error["type"] == "timezone_aware"
    assert error["loc"] == ["body", "min_timestamp"]
    assert error["input"] == "2026-05-27T13:16:36"


def test_a_naive_max_timestamp_is_refused(sandbox: SandboxServer) -> None:
    body = {
        "sql": "SELECT 1",
        "min_timestamp": week_ago(sandbox),
        "max_timestamp": "2026-05-27 13:16:36",
    }

    [error] = errors(post(sandbox, body))

    assert (error["type"], error["loc"]) == (
        "timezone_aware",
        ["body", "max_timestamp"],
    )


def test_a_malformed_timestamp_is_refused(sandbox: SandboxServer) -> None:
    [error] = errors(post(sandbox, {"sql": "SELECT 1", "min_timestamp": "yesterday"}))

    assert error["loc"] == ["body", "min_timestamp"]
    assert error["msg"].startswith("Input should be a valid datetime")


def test_a_z_suffixed_timestamp_is_accepted(sandbox: SandboxServer) -> None:
    body = {"sql": "SELECT 1 AS one", "min_timestamp": "2026-05-27T13:16:36.5Z"}

    response = post(sandbox, body)

    assert response.json()["data"] == [{"one": 1}]


def test_every_error_is_reported_at_once(sandbox: SandboxServer) -> None:
    body = {"sql": 5, "min_timestamp": "2026-05-27T00:00:00", "limit": 0}

    found = errors(post(sandbox, body))

    assert [error["loc"][1] for error in found] == ["sql", "min_timestamp", "limit"]


def test_a_body_that_is_not_json_is_refused(sandbox: SandboxServer) -> None:
    [error] = errors(post(sandbox, content=b"{not json"))

    assert (error["type"], error["loc"][0]) == ("json_invalid", "body")


def test_a_body_that_is_not_an_object_is_refused(sandbox: SandboxServer) -> None:
    [error] = errors(post(sandbox, content=b"[1, 2]"))

    assert (error["type"], error["loc"]) == ("model_attributes_type", ["body"])


def test_unknown_fields_are_ignored(sandbox: SandboxServer) -> None:
    body = {
        "sql": "SELECT 2 AS two",
        "min_timestamp": week_ago(sandbox),
        "include_schema": True,
        "colour": "blue",
    }

    assert post(sandbox, body).json()["data"] == [{"two": 2}]


def test_explain_must_be_a_boolean(sandbox: SandboxServer) -> None:
    body = {"sql": "SELECT 1", "min_timestamp": week_ago(sandbox), "explain": "maybe"}

    [error] = errors(post(sandbox, body))

    assert (error["type"], error["loc"]) == ("bool_parsing", ["body", "explain"])


# The row limit


def test_limit_defaults_to_100(sandbox: SandboxServer) -> None:
    body = {"sql": "SELECT span_id FROM records", "min_timestamp": week_ago(sandbox)}

    assert len(post(sandbox, body).json()["data"]) == 100


def test_limit_caps_a_larger_sql_limit(sandbox: SandboxServer) -> None:
    table = arrow(sandbox, "SELECT span_id FROM records LIMIT 50000", limit=7)

    assert table.num_rows == 7


def test_limit_keeps_the_sql_order(sandbox: SandboxServer) -> None:
    table = arrow(
        sandbox, "SELECT created_at FROM records ORDER BY created_at DESC", limit=50
    )

    values = table.column("created_at").to_pylist()
    assert values == sorted(values, reverse=True)
    newest = pc.max(sandbox.store.visible("records", sandbox.clock.now())["created_at"])
    assert values[0] <= newest.as_py()


def test_limit_of_10000_is_allowed(sandbox: SandboxServer) -> None:
    table = arrow(sandbox, "SELECT span_id FROM records", limit=10_000)

    assert table.num_rows == 10_000


@pytest.mark.parametrize(
    ("limit", "kind"),
    [
        (0, "greater_than_equal"),
        (10_001, "less_than_equal"),
        (2.5, "int_from_float"),
        ("many", "int_parsing"),
    ],
)
def test_limit_out_of_range_is_refused(
    sandbox: SandboxServer, limit: object, kind: str
) -> None:
    body = {"sql": "SELECT 1", "min_timestamp": week_ago(sandbox), "limit": limit}

    [error] = errors(post(sandbox, body))

    assert (error["type"], error["loc"], error["input"]) == (
        kind,
        ["body", "limit"],
        limit,
    )


# Time bounds


def test_min_timestamp_bounds_start_timestamp(sandbox: SandboxServer) -> None:
    bound = sandbox.clock.now() - timedelta(hours=3)

    table = arrow(
        sandbox, "SELECT start_timestamp FROM records", min_timestamp=bound.isoformat()
    )

    assert table.num_rows > 0
    assert pc.min(table.column("start_timestamp")).as_py() >= bound


def test_max_timestamp_bounds_start_timestamp(sandbox: SandboxServer) -> None:
    bound = sandbox.clock.now() - timedelta(hours=20)

    table = arrow(
        sandbox, "SELECT start_timestamp FROM records", max_timestamp=bound.isoformat()
    )

    assert table.num_rows > 0
    assert pc.max(table.column("start_timestamp")).as_py() <= bound


def test_max_timestamp_is_inclusive(sandbox: SandboxServer) -> None:
    visible = sandbox.store.visible("records", sandbox.clock.now())
    moment = visible.column("start_timestamp")[0].as_py()

    table = arrow(
        sandbox,
        "SELECT start_timestamp FROM records",
        min_timestamp=moment.isoformat(),
        max_timestamp=moment.isoformat(),
    )

    assert set(table.column("start_timestamp").to_pylist()) == {moment}


def test_time_bounds_apply_to_recorded_timestamp_of_metrics(
    sandbox: SandboxServer,
) -> None:
    stored = sandbox.store.visible("metrics", sandbox.clock.now())
    low, high = pc.min_max(stored["recorded_timestamp"]).values()
    bound = low.as_py() + (high.as_py() - low.as_py()) / 2

    table = arrow(
        sandbox,
        "SELECT recorded_timestamp FROM metrics",
        min_timestamp=bound.isoformat(),
    )

    assert table.num_rows > 0
    assert pc.min(table.column("recorded_timestamp")).as_py() >= bound


# Environments and time zone


def stored_environments(server: SandboxServer) -> list[str | None]:
    column = server.store.visible("records", server.clock.now())
    values: list[str | None] = pc.unique(column["deployment_environment"]).to_pylist()
    return values


def test_deployment_environment_as_a_string(sandbox: SandboxServer) -> None:
    name = sorted(e for e in stored_environments(sandbox) if e)[0]

    table = arrow(
        sandbox,
        "SELECT deployment_environment FROM records",
        deployment_environment=name,
    )

    assert set(table.column("deployment_environment").to_pylist()) == {name}


def test_deployment_environment_as_a_list(sandbox: SandboxServer) -> None:
    names = sorted(e for e in stored_environments(sandbox) if e)[:2]

    table = arrow(
        sandbox,
        "SELECT deployment_environment FROM records",
        deployment_environment=names,
    )

    assert set(table.column("deployment_environment").to_pylist()) == set(names)


def test_empty_deployment_environment_means_none_set(sandbox: SandboxServer) -> None:
    table = arrow(
        sandbox,
        "SELECT deployment_environment FROM records",
        deployment_environment=[""],
    )

    assert table.num_rows > 0
    assert set(table.column("deployment_environment").to_pylist()) <= {None, ""}


def test_timezone_sets_the_session_time_zone(sandbox: SandboxServer) -> None:
    sql = "SELECT arrow_typeof(now()) AS t"

    paris = arrow(sandbox, sql, timezone="Europe/Paris").column("t")[0].as_py()
    default = arrow(sandbox, sql).column("t")[0].as_py()

    assert "Europe/Paris" in paris
    assert "Europe/Paris" not in default


def test_an_unknown_timezone_is_a_query_error(sandbox: SandboxServer) -> None:
    body = {
        "sql": "SELECT 1",
        "min_timestamp": week_ago(sandbox),
        "timezone": "Mars/Olympus",
    }

    response = post(sandbox, body)

    assert response.status_code == 400
    assert "Mars/Olympus" in response.json()["detail"]


# Explain


def test_explain_adds_the_plans_to_json(sandbox: SandboxServer) -> None:
    body = {
        "sql": "SELECT span_id FROM records WHERE level > 9",
        "min_timestamp": week_ago(sandbox),
        "explain": True,
        "limit": 3,
    }

    result = post(sandbox, body).json()

    assert {"logical_plan", "physical_plan", "physical_plan_with_metrics"} <= set(
        result
    )
    assert "Limit" in result["logical_plan"] or "limit" in result["logical_plan"]
    assert result["physical_plan"] != result["logical_plan"]
    assert len(result["data"]) == 3


def test_without_explain_json_has_no_plans(sandbox: SandboxServer) -> None:
    body = {"sql": "SELECT 1 AS x", "min_timestamp": week_ago(sandbox)}

    assert set(post(sandbox, body).json()) == {"schema", "data"}


# SQL errors


def test_a_sql_error_is_a_400_with_the_engine_message(sandbox: SandboxServer) -> None:
    body = {"sql": "SELEKT 1", "min_timestamp": week_ago(sandbox)}

    response = post(sandbox, body)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)
    assert "SELEKT" in response.json()["detail"]


def test_a_client_asking_for_problems_gets_a_problem_detail(
    sandbox: SandboxServer,
) -> None:
    body = {"sql": "SELECT nope FROM records", "min_timestamp": week_ago(sandbox)}

    response = post(
        sandbox, body, accept="application/json, application/problem+json;q=0.9"
    )

    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert (problem["status"], problem["title"]) == (400, "Bad Request")
    assert problem["error_details"]["detail"] == problem["detail"]
    assert "nope" in problem["detail"]


def test_writing_sql_is_refused(sandbox: SandboxServer) -> None:
    body = {"sql": "DROP TABLE records", "min_timestamp": week_ago(sandbox)}

    assert post(sandbox, body).status_code == 400
    assert sandbox.store.row_count("records") > 0


# Authentication


@pytest.mark.parametrize("form", ["{token}", "Bearer {token}", "bearer  {token}"])
def test_the_token_is_accepted_bare_or_as_bearer(
    sandbox: SandboxServer, form: str
) -> None:
    body = {"sql": "SELECT 1 AS x", "min_timestamp": week_ago(sandbox)}

    response = post(sandbox, body, token=form.format(token=sandbox.token))

    assert response.status_code == 200


@pytest.mark.parametrize("token", ["", "Bearer", "Bearer wrong", "sandbox"])
def test_a_missing_or_wrong_token_is_a_401(sandbox: SandboxServer, token: str) -> None:
    body = {"sql": "SELECT 1", "min_timestamp": week_ago(sandbox)}

    response = post(sandbox, body, token=token)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid read token"}


def test_authentication_comes_before_validation(sandbox: SandboxServer) -> None:
    assert post(sandbox, {"limit": -1}, token="wrong").status_code == 401


def test_get_on_the_query_route_is_not_allowed(sandbox: SandboxServer) -> None:
    response = httpx.get(
        f"{sandbox.url}/v2/query", headers={"Authorization": sandbox.token}
    )

    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


def test_min_timestamp_may_carry_any_offset(sandbox: SandboxServer) -> None:
    bound = (sandbox.clock.now() - timedelta(hours=3)).astimezone(
        datetime.fromisoformat("2026-01-01T00:00:00+05:30").tzinfo
    )

    table = arrow(
        sandbox, "SELECT start_timestamp FROM records", min_timestamp=bound.isoformat()
    )

    assert "+05:30" in bound.isoformat()
    assert pc.min(table.column("start_timestamp")).as_py() >= bound


def test_records_have_the_public_columns_only(sandbox: SandboxServer) -> None:
    table = arrow(sandbox, "SELECT * FROM records", limit=1)

    assert table.schema.names == schema.RECORDS.names


class FailsAfterOneBatch:
    """An engine whose queries fail after their first batch."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def execute(self, request: QueryRequest) -> QueryResult:
        result = self._engine.execute(request)

        def batches() -> Iterator[pa.RecordBatch]:
            yield next(iter(result.batches))
            raise QueryFailed("Resources exhausted: the query ran out of memory.")

        return QueryResult(result.schema, batches(), result.plans)


@pytest.fixture
def failing(
    fresh_sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> SandboxServer:
    service = fresh_sandbox._service
    monkeypatch.setattr(service, "engine", FailsAfterOneBatch(service.engine))
    return fresh_sandbox


def test_a_query_failing_mid_stream_ends_ndjson_with_an_error_line(
    failing: SandboxServer,
) -> None:
    body = {"sql": "SELECT span_id FROM records", "min_timestamp": week_ago(failing)}

    response = post(failing, body, accept="application/x-ndjson")

    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200
    assert [line["type"] for line in lines] == ["schema", "data", "error"]
    assert "out of memory" in lines[-1]["message"]


def test_a_query_failing_mid_stream_closes_an_arrow_connection(
    failing: SandboxServer,
) -> None:
    body = {"sql": "SELECT span_id FROM records", "min_timestamp": week_ago(failing)}

    with pytest.raises(httpx.RemoteProtocolError):
        post(failing, body, accept=ARROW)
