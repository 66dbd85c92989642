"""dlt's warning about JSON-hinted Arrow columns stays out of the log's warnings."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from synchelp import captured_logs, destination

from connector.dltlogs import quiet_hint_warning
from connector.sync import run_sync
from sandbox.server import SandboxServer

HINTS = (
    "In resource: {}, when merging arrow schema with dlt schema, several column "
    "hints were different. dlt schema hints were kept."
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.levelname, record.getMessage()))


def test_the_hint_warning_becomes_one_debug_line_per_resource() -> None:
    quiet_hint_warning()
    quiet_hint_warning()
    dlt_logger = logging.getLogger("dlt")
    ours = logging.getLogger("connector.dltlogs")
    handler = _Records()
    dlt_logger.addHandler(handler)
    ours.addHandler(handler)
    ours.setLevel(logging.DEBUG)
    try:
        for _ in range(3):
            dlt_logger.warning(HINTS.format("test_once_a"))
            dlt_logger.warning(HINTS.format("test_once_b"))
        dlt_logger.warning("Something else entirely.")
    finally:
        dlt_logger.removeHandler(handler)
        ours.removeHandler(handler)
        ours.setLevel(logging.NOTSET)

    hints = [level for level, message in handler.seen if "column hints" in message]
    assert hints == ["DEBUG", "DEBUG"]
    assert ("WARNING", "Something else entirely.") in handler.seen


def test_a_sync_of_many_batches_gives_no_hint_warning(
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
    assert not [line for line in lines if "several column hints" in line]
