"""Building the dlt pipeline a command-line sync runs, with local defaults.

A local run keeps dlt's working folder under ``state/`` and, for DuckDB, the
database file there too, unless dlt's own configuration says otherwise
(``DESTINATION__DUCKDB__CREDENTIALS`` and the rest work unchanged).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import dlt
from dlt.common.destination import Destination
from dlt.common.destination.reference import TDestinationReferenceArg

from connector.errors import ConfigurationError

__all__ = ["PipelineOptions", "make_pipeline"]

DEFAULT_STATE_DIR: Final = Path("state")
_NAME_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class PipelineOptions:
    """Where a sync loads and keeps its state.

    Attributes:
        name: The dlt pipeline name; one per destination dataset.
        destination: A dlt destination name, such as ``duckdb``.
        dataset: The dataset (schema) the tables load into.
        state_dir: dlt's working folder for this machine.
        database: The DuckDB file to load into, over any that dlt's config
            names; None for dlt's config, or else a file in `state_dir`.
    """

    name: str = "logfire_sync"
    destination: str = "duckdb"
    dataset: str = "logfire"
    state_dir: Path = DEFAULT_STATE_DIR
    database: Path | None = None


def make_pipeline(options: PipelineOptions) -> dlt.Pipeline:
    """The dlt pipeline for `options`.

    Raises:
        ConfigurationError: The pipeline name or destination is not usable.
    """
    _check_name(options.name, "pipeline name")
    _check_name(options.dataset, "dataset")
    destination = _destination(options)
    pipelines_dir = options.state_dir / "pipelines"
    try:
        pipelines_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            f"The state folder {options.state_dir} cannot be written ({error}). "
            "Free some space or pass --state-dir with a writable folder."
        ) from error
    return dlt.pipeline(
        pipeline_name=options.name,
        destination=destination,
        dataset_name=options.dataset,
        pipelines_dir=str(pipelines_dir),
    )


def _destination(options: PipelineOptions) -> TDestinationReferenceArg:
    """The destination, with the DuckDB file under the state folder by default."""
    if options.destination == "duckdb" and options.database is not None:
        return dlt.destinations.duckdb(str(options.database.resolve()))
    if options.destination != "duckdb" or _duckdb_configured():
        return _known_destination(options.destination)
    if options.name == options.dataset:
        # DuckDB names the catalog after the file, and a catalog and a schema of
        # the same name make every unqualified table reference ambiguous.
        raise ConfigurationError(
            f"The pipeline and the dataset are both named {options.name!r}, so the "
            f"DuckDB file {options.name}.duckdb would clash with its own dataset. "
            "Choose another --pipeline or --dataset."
        )
    # Absolute, as dlt would resolve a relative path against the folder of the
    # pipeline's first run, kept in its state, rather than the current one.
    database = (options.state_dir / f"{options.name}.duckdb").resolve()
    return dlt.destinations.duckdb(str(database))


def _known_destination(name: str) -> str:
    if name not in _destination_names():
        known = ", ".join(_destination_names())
        raise ConfigurationError(
            f"The destination {name!r} is not one dlt knows. Choose one of: {known}."
        )
    return name


def _destination_names() -> list[str]:
    """The names of dlt's destinations; `dlt.destinations` holds modules too."""
    names = []
    for name in dir(dlt.destinations):
        found = getattr(dlt.destinations, name)
        # `destination` makes a custom one from code; a name alone cannot.
        if name == "destination":
            continue
        if isinstance(found, type) and issubclass(found, Destination):
            names.append(name)
    return sorted(names)


def _duckdb_configured() -> bool:
    """Whether dlt's configuration already names a DuckDB database."""
    if os.environ.get("DESTINATION__DUCKDB__CREDENTIALS"):
        return True
    for key in ("destination.duckdb.credentials", "destination.credentials"):
        try:
            if dlt.secrets.get(key) or dlt.config.get(key):
                return True
        except Exception:
            continue
    return False


def _check_name(value: str, what: str) -> None:
    if not value or not set(value) <= _NAME_CHARACTERS or value[0].isdigit():
        raise ConfigurationError(
            f"The {what} {value!r} is not usable: use lowercase letters, digits "
            "and underscores, starting with a letter."
        )
