"""Keeping one expected dlt warning from repeating for every batch.

The JSON columns (``attributes``, ``tags`` as JSON text, ...) are strings in
Arrow, which has no JSON type that dlt reads, and are hinted
``{"data_type": "json"}`` so that they load as JSON (DuckDB) or jsonb
(PostgreSQL). dlt sees the Arrow type (``text``) differ from the hint and
warns that "several column hints were different", once for every batch. The
hint wins and the data loads as intended, so the warning says nothing new after
its first time: :func:`log_hint_warning_once` lets it through once per
resource per process, with a note saying why it is expected.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

__all__ = ["log_hint_warning_once"]

_DLT_LOGGER: Final = "dlt"
_MARKER: Final = "when merging arrow schema with dlt schema, several column hints"
_NOTE: Final = (
    " (logfire-sync: expected for the JSON-hinted text columns; shown once per "
    "resource.)"
)


class _OncePerResource(logging.Filter):
    """Passes dlt's hint warning once per resource, and everything else."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _MARKER not in message:
            return True
        resource = message.split(",", 1)[0]
        with self._lock:
            if resource in self._seen:
                return False
            self._seen.add(resource)
        record.msg = message + _NOTE
        record.args = None
        return True


_FILTER: Final = _OncePerResource()


def log_hint_warning_once() -> None:
    """Install the filter on dlt's logger; calling it again changes nothing."""
    logger = logging.getLogger(_DLT_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
