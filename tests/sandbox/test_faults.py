from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pyarrow as pa
import pytest

from sandbox.clock import Clock
from sandbox.faults import ALL_KINDS, FaultPlan
from sandbox.server import SandboxServer

EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
ARROW = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"
RECENT_ROWS = "SELECT trace_id, span_id, message FROM records ORDER BY created_at"
# Each side of a UNION ALL streams its own batches: a result of two or more.
TWO_PARTS = "SELECT span_id FROM records UNION ALL SELECT span_id FROM records"


def query(
    server: SandboxServer,
    *,
    accept: str = ARROW,
    sql: str = RECENT_ROWS,
    limit: int = 2_000,
) -> httpx.Response:
    body = {
        "sql": sql,
        "min_timestamp": (server.clock.now() - timedelta(days=2)).isoformat(),
        "limit": limit,
    }
    headers = {"Authorization": f"Bearer {server.token}", "Accept": accept}
    return httpx.post(f"{server.url}/v2/query", json=body, headers=headers)


def arrow_batches(content: bytes) -> list[pa.RecordBatch]:
    return list(pa.ipc.open_stream(content))


# The spec grammar


def test_parse_reads_every_setting() -> None:
    plan = FaultPlan.parse(
        "rate=0.3,kinds=500+502+429,seed=7,retry_after=4,slow_seconds=0.5"
    )

    assert (plan.rate, plan.kinds, plan.seed) == (0.3, ("500", "502", "429"), 7)
    assert (plan.retry_after, plan.slow_seconds) == (4.0, 0.5)


def test_parse_of_the_empty_spec_injects_nothing() -> None:
    for spec in ("", "none", "  "):
        plan = FaultPlan.parse(spec)
        assert [plan.next_fault() for _ in range(50)] == [None] * 50


def test_parse_with_kinds_but_no_rate_faults_every_request() -> None:
    plan = FaultPlan.parse("kinds=503")

    faults = [plan.next_fault() for _ in range(20)]

    assert {fault.kind for fault in faults if fault} == {"503"}
    assert None not in faults


def test_parse_without_kinds_draws_from_all_kinds() -> None:
    plan = FaultPlan.parse("rate=1,seed=3")

    drawn = {plan.kind_for(index) for index in range(500)}

    assert drawn == set(ALL_KINDS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rate=0.3,colour=red", "colour=red"),
        ("kinds=500+418", "'418'"),
        ("rate=lots", "rate='lots'"),
        ("rate=1.5", "between 0 and 1"),
        ("seed=1.5", "seed='1.5'"),
        ("rate", "key=value"),
        ("force=500*x", "KIND*COUNT"),
    ],
)
def test_parse_refuses_a_bad_spec_naming_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        FaultPlan.parse(spec)


def test_spec_parses_back_to_the_same_draws() -> None:
    plan = FaultPlan.parse("rate=0.4,kinds=500+truncate+slow,seed=9,retry_after=2")

    again = FaultPlan.parse(plan.spec)

    assert [again.kind_for(k) for k in range(200)] == [
        plan.kind_for(k) for k in range(200)
    ]


# Determinism


def test_the_kth_fault_depends_only_on_seed_and_k() -> None:
    plan = FaultPlan(rate=0.5, seed=42)
    same = FaultPlan(rate=0.5, seed=42)
    for _ in range(7):
        same.next_fault()

    later = [same.next_fault() for _ in range(30)]

    assert [f.kind if f else None for f in later] == [
        plan.kind_for(k) for k in range(7, 37)
    ]


def test_next_fault_follows_kind_for_in_order() -> None:
    plan = FaultPlan(rate=0.5, seed=5)
    expected = [plan.kind_for(k) for k in range(100)]

    drawn = [plan.next_fault() for _ in range(100)]

    assert [fault.kind if fault else None for fault in drawn] == expected


def test_different_seeds_draw_differently() -> None:
    draws = {
        seed: tuple(FaultPlan(rate=0.5, seed=seed).kind_for(k) for k in range(50))
        for seed in range(5)
    }

    assert len(set(draws.values())) == 5


def test_the_rate_is_the_share_of_faulted_requests() -> None:
    plan = FaultPlan(rate=0.3, seed=1)

    faulted = sum(plan.kind_for(k) is not None for k in range(4_000))

    assert 0.27 < faulted / 4_000 < 0.33


def test_forced_faults_come_first_then_the_draws_resume() -> None:
    plan = FaultPlan(rate=0.5, seed=8)
    expected = [plan.kind_for(k) for k in range(6)]
    plan.force("504", count=2)

    drawn = [plan.next_fault() for _ in range(6)]

    kinds = [fault.kind if fault else None for fault in drawn]
    assert kinds[:2] == ["504", "504"]
    assert kinds[2:] == expected[2:]


def test_force_in_the_spec_queues_kinds_in_order() -> None:
    plan = FaultPlan.parse("force=500*2+drop_before")

    kinds = [plan.next_fault() for _ in range(4)]

    assert [f.kind if f else None for f in kinds] == [
        "500",
        "500",
        "drop_before",
        None,
    ]


def test_force_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="Unknown fault kind 'teapot'"):
        FaultPlan.none().force("teapot")


# What a client observes, kind by kind


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_a_server_error_fault_answers_with_its_status(
    fresh_sandbox: SandboxServer, status: str
) -> None:
    fresh_sandbox.faults.force(status)

    response = query(fresh_sandbox)

    assert response.status_code == int(status)


def test_a_500_fault_has_a_json_detail(fresh_sandbox: SandboxServer) -> None:
    fresh_sandbox.faults.force("500")

    response = query(fresh_sandbox)

    assert response.json() == {"detail": "Internal Server Error"}


def test_a_gateway_fault_has_a_proxy_html_page(fresh_sandbox: SandboxServer) -> None:
    fresh_sandbox.faults.force("502")

    response = query(fresh_sandbox)

    assert response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text


def test_a_429_fault_gives_retry_after_seconds_and_a_problem(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults = FaultPlan.parse("retry_after=3,force=429")

    response = query(fresh_sandbox)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["retry_after"]) == (429, 3.0)
    assert {"type", "title", "detail"} <= problem.keys()


def test_a_429date_fault_gives_retry_after_as_an_http_date(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults = FaultPlan.parse("retry_after=5,force=429date")

    response = query(fresh_sandbox)

    retry_at = parsedate_to_datetime(response.headers["retry-after"])
    sent_at = parsedate_to_datetime(response.headers["date"])
    assert response.status_code == 429
    assert timedelta(seconds=5) <= retry_at - sent_at <= timedelta(seconds=7)
    assert "retry_after" not in response.json()


def test_a_slow_fault_delays_the_answer(fresh_sandbox: SandboxServer) -> None:
    fresh_sandbox.faults = FaultPlan.parse("slow_seconds=0.6,force=slow")

    started = time.monotonic()
    response = query(fresh_sandbox)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.6


def test_drop_before_closes_the_connection_without_a_response(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("drop_before")

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        query(fresh_sandbox)


def test_drop_during_closes_the_connection_inside_the_body(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("drop_during")

    status, received, broken = stream_query(fresh_sandbox)

    assert status == 200
    assert received
    assert broken


def stream_query(server: SandboxServer) -> tuple[int, bytes, bool]:
    """Status, body bytes received and whether the body broke off."""
    headers = {"Authorization": server.token, "Accept": ARROW}
    body = {
        "sql": RECENT_ROWS,
        "min_timestamp": (server.clock.now() - timedelta(days=2)).isoformat(),
    }
    received = bytearray()
    url = f"{server.url}/v2/query"
    with httpx.stream("POST", url, json=body, headers=headers) as response:
        try:
            for chunk in response.iter_bytes():
                received += chunk
        except httpx.RemoteProtocolError:
            return response.status_code, bytes(received), True
    return response.status_code, bytes(received), False


def test_truncate_ends_arrow_after_the_first_batch_without_the_marker(
    fresh_sandbox: SandboxServer,
) -> None:
    complete = query(fresh_sandbox, sql=TWO_PARTS, limit=10_000)
    fresh_sandbox.faults.force("truncate")

    cut = query(fresh_sandbox, sql=TWO_PARTS, limit=10_000)

    assert len(arrow_batches(complete.content)) >= 2
    assert complete.content.endswith(EOS)
    assert cut.status_code == 200
    assert not cut.content.endswith(EOS)
    assert arrow_batches(cut.content) == arrow_batches(complete.content)[:1]


def test_truncate_of_a_one_batch_result_drops_only_the_marker(
    fresh_sandbox: SandboxServer,
) -> None:
    complete = query(fresh_sandbox, limit=10)
    fresh_sandbox.faults.force("truncate")

    cut = query(fresh_sandbox, limit=10)

    assert cut.content == complete.content[: -len(EOS)]


def test_truncate_of_an_empty_result_keeps_only_the_schema(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("truncate")

    cut = query(fresh_sandbox, sql="SELECT span_id FROM records WHERE level < 0")

    reader = pa.ipc.open_stream(cut.content)
    assert reader.schema.names == ["span_id"]
    assert reader.read_all().num_rows == 0
    assert not cut.content.endswith(EOS)


def test_truncate_ends_ndjson_without_the_end_line(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("truncate")

    response = query(fresh_sandbox, accept=NDJSON, limit=10_000)

    kinds = [json_line(line)["type"] for line in response.text.splitlines()]
    assert kinds == ["schema", "data"]


def json_line(line: str) -> dict[str, object]:
    value = json.loads(line)
    assert isinstance(value, dict)
    return value


def test_ndjson_error_writes_an_error_line_after_some_data(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("ndjson_error")

    response = query(fresh_sandbox, accept=NDJSON, limit=10_000)

    lines = [json_line(line) for line in response.text.splitlines()]
    assert response.status_code == 200
    assert [line["type"] for line in lines] == ["schema", "data", "error"]
    assert lines[-1]["message"]


def test_ndjson_error_closes_an_arrow_connection_mid_stream(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("ndjson_error")

    with pytest.raises(httpx.RemoteProtocolError, match="incomplete"):
        query(fresh_sandbox, limit=10_000)


def test_faults_are_counted_by_kind(fresh_sandbox: SandboxServer) -> None:
    fresh_sandbox.faults = FaultPlan.parse("force=500*2+truncate")
    for _ in range(4):
        query(fresh_sandbox)

    assert fresh_sandbox.counters.snapshot()["faults"] == {"500": 2, "truncate": 1}


def test_faults_apply_only_to_queries(fresh_sandbox: SandboxServer) -> None:
    fresh_sandbox.faults = FaultPlan.parse("kinds=500")
    headers = {"Authorization": fresh_sandbox.token}

    schemas = httpx.get(f"{fresh_sandbox.url}/v1/schemas", headers=headers)
    info = httpx.get(f"{fresh_sandbox.url}/v1/read-token-info", headers=headers)

    assert (schemas.status_code, info.status_code) == (200, 200)
    assert query(fresh_sandbox).status_code == 500


def test_a_seeded_plan_gives_the_server_its_sequence_of_outcomes(
    fresh_sandbox: SandboxServer,
) -> None:
    spec = "rate=0.5,kinds=500+503+429,seed=21"
    expected = [FaultPlan.parse(spec).kind_for(k) for k in range(12)]
    fresh_sandbox.faults = FaultPlan.parse(spec)

    statuses = [query(fresh_sandbox, limit=1).status_code for _ in range(12)]

    assert statuses == [int(kind[:3]) if kind else 200 for kind in expected]


def test_a_dropped_connection_is_counted_as_dropped(
    fresh_sandbox: SandboxServer,
) -> None:
    fresh_sandbox.faults.force("drop_before")
    with pytest.raises(httpx.RemoteProtocolError):
        query(fresh_sandbox)

    by_status = fresh_sandbox.counters.snapshot()["requests"]["by_status"]
    assert by_status == {"dropped": 1}


def test_the_clock_sets_the_retry_date_not_the_wall_clock() -> None:
    start = datetime(2031, 3, 1, 12, 0, 0, 400_000, tzinfo=UTC)

    with SandboxServer(records=200, metrics=20, clock=Clock(start=start)) as server:
        server.faults = FaultPlan.parse("retry_after=1,force=429date")
        response = query(server)

    retry_at = parsedate_to_datetime(response.headers["retry-after"])
    assert retry_at.year == 2031
    assert retry_at >= start + timedelta(seconds=1)
