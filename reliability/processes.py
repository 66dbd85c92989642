"""Processes of their own: a sandbox serving saved telemetry, and sync commands.

A crash test kills the sync, so the sync and the sandbox cannot share a
process: the sandbox runs as ``python -m sandbox serve --data DIR``, and each
sync as the ``logfire-sync`` command line, with its options in the environment
the way dlt reads them (``SOURCES__LOGFIRE__CHUNK`` and the rest).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import httpx

__all__ = ["SandboxProcess", "SyncProcess", "quiet_dlt_environment"]

_URL_LINE: Final = re.compile(r"serving on (http://\S+)")
_START_SECONDS: Final = 120.0
_STOP_SECONDS: Final = 15.0


def quiet_dlt_environment() -> dict[str, str]:
    """Settings that keep dlt from phoning home or asking Airflow for config."""
    return {
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
    }


class SandboxProcess:
    """``python -m sandbox serve`` on a free port, stopped on exit.

    Args:
        data: The folder of ``records.parquet`` and ``metrics.parquet``.
        token: The read token the sandbox asks for.
        extra: More arguments of ``serve``, such as ``--faults``.
    """

    def __init__(self, data: Path, *, token: str, extra: Sequence[str] = ()) -> None:
        self.token = token
        self.url = ""
        self._command = [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--token",
            token,
            "--data",
            str(data),
            *extra,
        ]
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SandboxProcess:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self._process.stdout is not None
        self.url = _read_url(self._process.stdout, self._process)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def counters(self, *, reset: bool = False) -> dict[str, Any]:
        """What the sandbox has served; with `reset`, set back to zero after."""
        method = "DELETE" if reset else "GET"
        response = httpx.request(
            method,
            f"{self.url}/sandbox/counters",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
        )
        response.raise_for_status()
        counters: dict[str, Any] = response.json()
        return counters


def _read_url(stdout: IO[str], process: subprocess.Popen[str]) -> str:
    """The URL the sandbox prints once it serves."""
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line and process.poll() is not None:
            break
        match = _URL_LINE.search(line)
        if match:
            return match.group(1)
    raise RuntimeError(
        "The sandbox process did not start; run `python -m sandbox serve` to see why."
    )


class SyncProcess:
    """One ``logfire-sync`` command in a child process, watched line by line.

    Args:
        arguments: The command's arguments, such as ``["backfill", ...]``.
        environment: Variables added to this process's environment.
        log: Where the child's standard error is copied, if anywhere.
    """

    def __init__(
        self,
        arguments: Sequence[str],
        environment: Mapping[str, str],
        log: IO[str] | None = None,
    ) -> None:
        env = {**os.environ, **quiet_dlt_environment(), **environment}
        self.started = time.monotonic()
        self._log = log
        self._working = threading.Event()
        self.lines: list[str] = []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", *arguments],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._watch, args=(stream,), daemon=True)
            for stream in (self._process.stdout, self._process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    def wait_until_working(self, timeout: float) -> bool:
        """Wait until the child has loaded a window; False if it has not."""
        return self._working.wait(timeout)

    def poll(self) -> int | None:
        """The exit code, or None while the child runs."""
        return self._process.poll()

    def kill(self) -> int:
        """SIGKILL the child and reap it; returns its exit code."""
        if self._process.poll() is None:
            self._process.kill()
        return self.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit; returns its exit code."""
        code = self._process.wait(timeout)
        for reader in self._readers:
            reader.join()
        return code

    def _watch(self, stream: IO[str] | None) -> None:
        """Copy the child's lines, and notice the first window it loads."""
        if stream is None:
            return
        for line in stream:
            self.lines.append(line)
            if self._log is not None:
                self._log.write(line)
            if " window " in line and " loaded " in line:
                self._working.set()
        stream.close()
