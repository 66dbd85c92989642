"""dlt's warning about JSON-hinted Arrow columns shows once per resource."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from synchelp import captured_logs, destination

from connector.dltlogs import log_hint_warning_once
from connector.sync import run_sync
from sandbox.server import SandboxServer

HINTS = (
    "In resource: {}, when merging arrow schema with dlt schema, several column "
    "hints were different. dlt schema hints were kept."
)


def test_the_hint_warning_passes_once_per_resource_with_a_note() -> None:
    log_hint_warning_once()
    log_hint_warning_once()
    dlt_logger = logging.getLogger("dlt")
    with captured_logs(("dlt",)) as lines:
        for _ in range(3):
            dlt_logger.warning(HINTS.format("test_once_a"))
            dlt_logger.warning(HINTS.format("test_once_b"))
        dlt_logger.warning("Something else entirely.")
        dlt_logger.warning("Something else entirely.")

    hints = [line for line in lines if "several column hints" in line]
    assert len(hints) == 2
    assert all("expected for the JSON-hinted text columns" in line for line in hints)
    assert lines.count("Something else entirely.") == 2


def test_a_sync_of_many_batches_warns_about_hints_at_most_once(
    fresh_sandbox: SandboxServer, tmp_path: Path
) -> None:
    dest = destination(tmp_path)
    start = fresh_sandbox.clock.now() - timedelta(hours=25)
    with captured_logs(("dlt",)) as lines:
        report = run_sync(
            dest.pipeline,
            read_token=fresh_sandbox.token,
            base_url=fresh_sandbox.url,
            tables=["records"],
            start=start.isoformat(),
            page_size=500,
        )

    assert report.requests > 4
    assert sum("several column hints" in line for line in lines) <= 1
