"""The watermarks a destination keeps, against the ones in the pipeline's folder.

dlt stores the pipeline's state in the destination with every load and, at a
run's first step, takes it back if it is as new as the folder's or newer. A
destination whose watermarks are behind the folder's, or that holds none, has
lost rows that the folder's watermarks have moved past: it was restored from
an older copy, deleted, or replaced. dlt then goes on from the folder's
watermarks, or, where the dataset is gone, wipes the folder and starts a day
back; either way the rows in between would never be loaded, and nothing would
say so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity

from connector.errors import ConfigurationError

__all__ = [
    "SOURCE_NAME",
    "refuse_lost_destination",
    "resource_states_in",
    "tables_synced_in_destination",
]

logger = logging.getLogger(__name__)

SOURCE_NAME: Final = "logfire"
"""The name of the connector's dlt source, under which its state is kept."""


def resource_states_in(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The state of every resource in a pipeline's `state` that keeps a watermark."""
    states: dict[str, dict[str, Any]] = {}
    sources = state.get("sources", {})
    for source_name in sorted(sources, key=lambda name: name != SOURCE_NAME):
        resources = sources[source_name].get("resources", {})
        for name, resource in resources.items():
            if isinstance(resource, dict) and "watermark" in resource:
                states.setdefault(name, resource)
    return states


def tables_synced_in_destination(pipeline: dlt.Pipeline) -> list[str]:
    """The tables whose watermark the state kept in the destination holds.

    Read without touching the pipeline's folder, and without taking its lock:
    an empty list when the destination cannot be read, which the run itself
    then reports.
    """
    try:
        state = pipeline._restore_state_from_destination()
    except Exception as error:
        logger.debug("The state in the destination could not be read: %s", error)
        return []
    return list(resource_states_in(state or {}))


def refuse_lost_destination(pipeline: dlt.Pipeline) -> None:
    """Refuse a run whose destination lost rows the folder's watermarks passed.

    Only a folder with watermarks and loaded packages of its own is checked:
    one whose first load never finished keeps its package, which the run
    loads first. A destination that cannot be read is left to the run to
    report.

    Raises:
        ConfigurationError: The destination's watermarks are behind the
            folder's, or it holds none.
    """
    ours = resource_states_in(pipeline.state)
    if not pipeline.config.restore_from_destination or not ours:
        return
    if pipeline.has_pending_data:
        # A killed run's package moved the folder's state on; dlt loads it.
        return
    try:
        remote = pipeline._restore_state_from_destination()
    except DestinationUndefinedEntity:
        remote = None
    except Exception as error:
        logger.debug("The state in the destination could not be read: %s", error)
        return
    if remote is None:
        if pipeline.list_completed_load_packages():
            raise ConfigurationError(_lost(pipeline, None))
        return
    theirs = resource_states_in(remote)
    if any(_behind(theirs.get(name), state) for name, state in ours.items()):
        raise ConfigurationError(_lost(pipeline, remote))


def _behind(theirs: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> bool:
    """Whether the destination's state of a table is behind the folder's."""
    if theirs is None:
        return True
    return _instant(theirs["watermark"]) < _instant(ours["watermark"])


def _instant(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


def _lost(pipeline: dlt.Pipeline, remote: Mapping[str, Any] | None) -> str:
    """What the refusal says: the two states' watermarks, and what to do."""
    folder = pipeline.working_dir
    ours = _watermarks(pipeline.state)
    if remote is None:
        found = (
            f"The destination holds no state of {pipeline.pipeline_name} in the "
            f"dataset {pipeline.dataset_name}, though this folder's runs loaded "
            f"rows up to {ours} into it: it was deleted or replaced."
        )
        advice = (
            f"To load everything again, delete the folder {folder} and run with "
            "start (--start) at the oldest event time to load; without it, a "
            "first sync starts a day back."
        )
    else:
        found = (
            f"The destination holds an older state of {pipeline.pipeline_name} "
            f"(rows up to {_watermarks(remote)}) than this folder (up to {ours}): "
            "it was restored from an older copy."
        )
        advice = (
            f"To go on from what the destination holds, delete the folder "
            f"{folder}; the next run takes the watermarks back from the "
            "destination."
        )
    return (
        f"{found} Going on from this folder's watermarks would never load the "
        f"rows in between. {advice} Nothing was read."
    )


def _watermarks(state: Mapping[str, Any]) -> str:
    """Each table's watermark in `state`, such as ``records 2026-05-01T10:00``."""
    marks = [
        f"{name} {resource['watermark']}"
        for name, resource in sorted(resource_states_in(state).items())
    ]
    return ", ".join(marks) or "no watermark"
