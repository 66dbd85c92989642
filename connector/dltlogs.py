"""Keeping one expected dlt warning out of every run's log.

The JSON columns (``attributes``, ``tags`` as JSON text, ...) are strings in
Arrow, which has no JSON type that dlt reads, and are hinted
``{"data_type": "json"}`` so that they load as JSON (DuckDB) or jsonb
(PostgreSQL). dlt sees the Arrow type (``text``) differ from the hint and
warns that "several column hints were different", for every batch. The hint
wins and the data loads as intended, so an hourly run would raise a warning
that calls for nothing every hour: :func:`quiet_hint_warning` turns it into one
DEBUG line per resource per process.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

__all__ = ["quiet_hint_warning"]

logger = logging.getLogger(__name__)

_DLT_LOGGER: Final = "dlt"
_MARKER: Final = "when merging arrow schema with dlt schema, several column hints"


class _HintWarningAsDebug(logging.Filter):
    """Drops dlt's hint warning, logged at DEBUG instead once per resource."""

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
            first = resource not in self._seen
            self._seen.add(resource)
        if first:
            logger.debug("dlt said, as expected for JSON-hinted text: %s", message)
        return False


_FILTER: Final = _HintWarningAsDebug()


def quiet_hint_warning() -> None:
    """Install the filter on dlt's logger; calling it again changes nothing."""
    dlt_logger = logging.getLogger(_DLT_LOGGER)
    if _FILTER not in dlt_logger.filters:
        dlt_logger.addFilter(_FILTER)
