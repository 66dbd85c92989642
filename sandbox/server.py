"""`SandboxServer`: the sandbox's HTTP service on a background thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sandbox.app import Connections, Service, create_app
from sandbox.clock import Clock
from sandbox.counters import Counters
from sandbox.faults import FaultPlan
from sandbox.store import Store

if TYPE_CHECKING:
    from sandbox.live import LiveFeed

logger = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
_GRACEFUL_SECONDS = 2
_KEEP_ALIVE_SECONDS = 60


class SandboxServer:
    """A local stand-in for Logfire's query API, serving a store over HTTP.

    Without a store, one is generated: `records` and `metrics` rows over the
    `hours` before the clock's start, from `seed`. With `live`, a feed keeps
    adding rows as the clock moves, at the same hourly rates.

    Args:
        store: The tables to serve; generated when None.
        token: The read token clients must send.
        host: The address to listen on; loopback by default.
        port: The port; 0 picks a free one (see `url` once started).
        clock: The sandbox's clock; a new one running at `speed` when None.
        faults: The fault plan; none when None.
        seed: The seed of the generated data and of the live feed.
        records: How many records rows to generate.
        metrics: How many metrics rows to generate.
        hours: How many hours of history the generated rows span.
        live: Keep adding rows as the clock moves, at `records / hours` an hour.
        speed: How fast a new clock runs; ignored when `clock` is given.
        latency: Seconds added to every request, like a network's.
        max_concurrent_queries: Queries allowed to run at once; None for no cap.
        queue_timeout: Seconds a query may wait for the cap before a 429.
        arrow_end_marker: Whether Arrow streams end with their end-of-stream
            marker; off, they stop after their last batch, as some services'.
        batch_rows: Stream results in batches of at most this many rows.

    Example:
        with SandboxServer(records=10_000) as server:
            client = LogfireQueryClient(server.token, base_url=server.url)
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        token: str = "sandbox-token",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        faults: FaultPlan | None = None,
        seed: int = 0,
        records: int = 200_000,
        metrics: int = 50_000,
        hours: float = 24.0,
        live: bool = False,
        speed: float = 1.0,
        latency: float = 0.0,
        max_concurrent_queries: int | None = None,
        queue_timeout: float = 10.0,
        arrow_end_marker: bool = True,
        batch_rows: int | None = None,
    ) -> None:
        if not token:
            raise ValueError("The sandbox needs a non-empty read token.")
        if max_concurrent_queries is not None and max_concurrent_queries < 1:
            raise ValueError(
                f"max_concurrent_queries must be 1 or more, not "
                f"{max_concurrent_queries}; use None for no cap."
            )
        self.clock = clock or Clock(speed=speed)
        if store is None:
            store = Store.generated(
                seed=seed,
                records=records,
                metrics=metrics,
                hours=hours,
                end=self.clock.now(),
            )
        self.store = store
        self.host = host
        self._port = port
        self._seed = seed
        self._rates = (records / hours, metrics / hours) if hours > 0 else (0.0, 0.0)
        self._live = live
        self._feed: LiveFeed | None = None
        self._service = self._make_service(
            token, faults, latency, max_concurrent_queries, queue_timeout
        )
        if batch_rows is not None and batch_rows < 1:
            raise ValueError(f"batch_rows must be 1 or more, not {batch_rows}.")
        self._service.arrow_end_marker = arrow_end_marker
        self._service.batch_rows = batch_rows
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def _make_service(
        self,
        token: str,
        faults: FaultPlan | None,
        latency: float,
        max_concurrent_queries: int | None,
        queue_timeout: float,
    ) -> Service:
        from sandbox.engine import QueryEngine

        return Service(
            store=self.store,
            clock=self.clock,
            engine=QueryEngine(self.store, self.clock),
            token=token,
            faults=faults or FaultPlan.none(),
            latency=latency,
            max_concurrent_queries=max_concurrent_queries,
            queue_timeout=queue_timeout,
        )

    @property
    def token(self) -> str:
        """The read token clients must send."""
        return self._service.token

    @property
    def counters(self) -> Counters:
        """What the server has served so far."""
        return self._service.counters

    @property
    def faults(self) -> FaultPlan:
        """The fault plan in force; assign a new plan to change it."""
        return self._service.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self._service.faults = plan

    @property
    def port(self) -> int:
        """The port listened on (known once started, when 0 was asked for)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL to give clients, e.g. `http://127.0.0.1:8765`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"SandboxServer(url={self.url!r}, {state})"

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SandboxServer:
        """Start serving; returns once the port accepts connections."""
        if self.running:
            return self
        self._socket = _listen(self.host, self._port)
        self._port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"sandbox-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._wait_started()
        if self._live:
            self._start_feed()
        logger.info("Sandbox serving on %s", self.url)
        return self

    def _config(self) -> uvicorn.Config:
        connections = self._service.connections
        return uvicorn.Config(
            create_app(self._service),
            http=_tracking_protocol(connections),
            lifespan="off",
            date_header=False,
            server_header=False,
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=_GRACEFUL_SECONDS,
            # Like a load balancer's idle timeout, so pooled clients rarely race
            # a closing connection.
            timeout_keep_alive=_KEEP_ALIVE_SECONDS,
        )

    def _wait_started(self) -> None:
        server, thread = self._server, self._thread
        assert server is not None
        assert thread is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started and thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if not server.started:
            self.stop()
            raise RuntimeError(f"The sandbox server did not start on {self.url}.")

    def _start_feed(self) -> None:
        from sandbox.live import LiveFeed

        records_per_hour, metrics_per_hour = self._rates
        self._feed = LiveFeed(
            self.store,
            self.clock,
            seed=self._seed,
            records_per_hour=round(records_per_hour),
            metrics_per_hour=round(metrics_per_hour),
        )
        self._feed.start()

    def stop(self) -> None:
        """Stop serving and wait for the server thread to finish."""
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_GRACEFUL_SECONDS + 10)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(
            f"The sandbox cannot listen on {host}:{port} ({error.strerror}); "
            "choose another port, or 0 for a free one."
        ) from error
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _tracking_protocol(connections: Connections) -> type[H11Protocol]:
    """An HTTP/1.1 protocol that lets the app find and close its connections."""

    class TrackingH11Protocol(H11Protocol):
        def connection_made(  # type: ignore[override]
            self, transport: asyncio.Transport
        ) -> None:
            super().connection_made(transport)
            if self.client is not None:
                connections.add(self.client, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                connections.discard(self.client)
            super().connection_lost(exc)

    return TrackingH11Protocol
