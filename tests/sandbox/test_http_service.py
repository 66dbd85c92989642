"""The service around the queries: token info, schemas, clock, caps, counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from sandbox import schema
from sandbox.clock import Clock
from sandbox.faults import FaultPlan
from sandbox.server import SandboxServer


def get(
    server: SandboxServer, path: str, *, token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": server.token if token is None else token}
    return httpx.get(f"{server.url}{path}", headers=headers)


def post(server: SandboxServer, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": server.token}
    return httpx.post(f"{server.url}{path}", headers=headers, **kwargs)


def query(server: SandboxServer, sql: str = "SELECT 1 AS x") -> httpx.Response:
    body = {"sql": sql, "min_timestamp": "2000-01-01T00:00:00Z"}
    return post(server, "/v2/query", json=body)


def in_threads(count: int, task: Any) -> list[Any]:
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        results[index] = task()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_read_token_info_describes_the_token(sandbox: SandboxServer) -> None:
    info = get(sandbox, "/v1/read-token-info").json()

    assert {
        "token_id",
        "organization_id",
        "organization_name",
        "project_id",
        "project_name",
        "organization_subscription_plan",
        "expires_at",
    } <= set(info)
    assert (info["organization_name"], info["project_name"]) == ("sandbox", "sandbox")


def test_schemas_list_both_tables_with_their_columns(sandbox: SandboxServer) -> None:
    tables = get(sandbox, "/v1/schemas").json()["tables"]

    by_name = {table["name"]: table for table in tables}
    assert set(by_name) == {"records", "metrics"}
    columns = by_name["records"]["schema"]
    assert list(columns) == schema.RECORDS.names
    assert columns["start_timestamp"] == {
        "data_type": {"Timestamp": ["Microsecond", "UTC"]},
        "nullable": False,
        "description": columns["start_timestamp"]["description"],
    }
    assert "_visible_at" not in columns


@pytest.mark.parametrize(
    "path", ["/v1/read-token-info", "/v1/schemas", "/sandbox/counters"]
)
def test_every_route_needs_the_token(sandbox: SandboxServer, path: str) -> None:
    response = get(sandbox, path, token="nope")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid read token"}


def test_an_unknown_route_is_a_json_404(sandbox: SandboxServer) -> None:
    response = get(sandbox, "/v3/query")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# The Date header and the clock


def test_the_date_header_follows_a_fast_clock() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = Clock(start=start, speed=3_600)
    with SandboxServer(records=200, metrics=20, clock=clock) as server:
        first = parsedate_to_datetime(query(server).headers["date"])
        time.sleep(0.5)
        second = parsedate_to_datetime(query(server).headers["date"])

    assert first.year == 2030
    assert second - first >= timedelta(minutes=25)


def test_the_date_header_is_on_errors_too(fresh_sandbox: SandboxServer) -> None:
    response = get(fresh_sandbox, "/v1/schemas", token="nope")

    sent = parsedate_to_datetime(response.headers["date"])
    assert abs(sent - fresh_sandbox.clock.now()) < timedelta(seconds=3)


def test_posting_to_the_clock_moves_it_forward(fresh_sandbox: SandboxServer) -> None:
    before = fresh_sandbox.clock.now()

    answer = post(fresh_sandbox, "/sandbox/clock", json={"seconds": 7_200}).json()

    moved = datetime.fromisoformat(answer["now"])
    assert timedelta(hours=2) <= moved - before < timedelta(hours=2, minutes=1)
    date = parsedate_to_datetime(query(fresh_sandbox).headers["date"])
    assert date >= before + timedelta(hours=2) - timedelta(seconds=1)


def test_the_clock_refuses_to_move_back(fresh_sandbox: SandboxServer) -> None:
    response = post(fresh_sandbox, "/sandbox/clock", json={"seconds": -5})

    assert response.status_code == 422


def test_now_in_sql_follows_the_clock() -> None:
    clock = Clock(start=datetime(2031, 6, 1, tzinfo=UTC))
    with SandboxServer(records=200, metrics=20, clock=clock) as server:
        row = query(server, "SELECT CAST(now() AS VARCHAR) AS n").json()["data"][0]

    assert row["n"].startswith("2031-06-01")


# The sandbox's own routes


def test_counters_count_requests_queries_rows_and_bytes(
    fresh_sandbox: SandboxServer,
) -> None:
    query(fresh_sandbox, "SELECT span_id FROM records LIMIT 3")
    query(fresh_sandbox, "SELECT nope")
    get(fresh_sandbox, "/v1/schemas", token="bad")

    counters = get(fresh_sandbox, "/sandbox/counters").json()

    assert counters["requests"]["by_path"] == {
        "/v2/query": 2,
        "/v1/schemas": 1,
        "/sandbox/counters": 1,
    }
    assert counters["requests"]["by_status"] == {"200": 1, "400": 1, "401": 1}
    assert counters["requests"]["total"] == 4
    assert (counters["queries"], counters["rows_served"]) == (2, 3)
    assert counters["bytes_served"] > 0


def test_deleting_the_counters_resets_them(fresh_sandbox: SandboxServer) -> None:
    query(fresh_sandbox)

    headers = {"Authorization": fresh_sandbox.token}
    httpx.delete(f"{fresh_sandbox.url}/sandbox/counters", headers=headers)

    snapshot = fresh_sandbox.counters.snapshot()
    assert (snapshot["queries"], snapshot["rows_served"]) == (0, 0)


def test_posting_a_spec_replaces_the_fault_plan(fresh_sandbox: SandboxServer) -> None:
    answer = post(fresh_sandbox, "/sandbox/faults", content=b"kinds=503,seed=4")

    assert answer.json()["spec"].startswith("rate=1,kinds=503,seed=4")
    assert query(fresh_sandbox).status_code == 503
    post(fresh_sandbox, "/sandbox/faults", json={"spec": "none"})
    assert query(fresh_sandbox).status_code == 200


def test_a_bad_fault_spec_is_refused_and_the_plan_kept(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults = FaultPlan.parse("kinds=502")

    response = post(fresh_sandbox, "/sandbox/faults", json="kinds=418")

    assert response.status_code == 422
    assert "418" in response.json()["detail"]
    assert fresh_sandbox.faults.kinds == ("502",)


# Concurrency and latency


@pytest.fixture
def capped() -> Iterator[SandboxServer]:
    with SandboxServer(
        records=200, metrics=20, max_concurrent_queries=1, queue_timeout=0.3
    ) as server:
        yield server


def test_queries_beyond_the_cap_that_wait_too_long_get_429(
    capped: SandboxServer,
) -> None:
    # Both are slow: whichever takes the one slot first holds it for 1.5 s.
    # With only one slow, the fast one could take the slot first and be gone
    # before the slow one's 0.3 s of waiting ran out.
    capped.faults = FaultPlan.parse("slow_seconds=1.5,force=slow*2")

    statuses = in_threads(2, lambda: query(capped))

    rate_limited = [r for r in statuses if r.status_code == 429]
    assert sorted(r.status_code for r in statuses) == [200, 429]
    assert rate_limited[0].headers["retry-after"] == "1"
    assert rate_limited[0].json()["retry_after"] == 1.0


def test_queries_beyond_the_cap_wait_their_turn() -> None:
    with SandboxServer(
        records=200, metrics=20, max_concurrent_queries=1, queue_timeout=5
    ) as server:
        server.faults = FaultPlan.parse("slow_seconds=0.4,force=slow")
        started = time.monotonic()

        statuses = [r.status_code for r in in_threads(2, lambda: query(server))]

    assert statuses == [200, 200]
    assert time.monotonic() - started >= 0.4


def test_without_a_cap_slow_queries_run_side_by_side(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults = FaultPlan.parse("slow_seconds=0.8,force=slow*4")
    started = time.monotonic()

    statuses = [r.status_code for r in in_threads(4, lambda: query(fresh_sandbox))]

    assert statuses == [200] * 4
    assert time.monotonic() - started < 2.5


def test_latency_delays_every_request() -> None:
    with SandboxServer(records=200, metrics=20, latency=0.25) as server:
        started = time.monotonic()
        get(server, "/v1/read-token-info")
        query(server)

    assert time.monotonic() - started >= 0.5


def test_a_server_reports_its_url_and_stops_cleanly() -> None:
    server = SandboxServer(records=100, metrics=10, token="t0ken")
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.running
        assert query(server).status_code == 200
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/schemas", timeout=1)


def test_live_mode_keeps_adding_rows_as_the_clock_runs() -> None:
    sql = "SELECT count(*) AS n FROM records"
    with SandboxServer(
        records=1_000, metrics=100, hours=1, live=True, speed=1_200
    ) as server:
        before = query(server, sql).json()["data"][0]["n"]
        time.sleep(1.5)
        after = query(server, sql).json()["data"][0]["n"]

    assert after > before
