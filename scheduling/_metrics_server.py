"""The ``/metrics`` HTTP endpoint of a worker process: ``prometheus_client``'s own server and refreshed gauges.

Public through ``scheduling.metrics`` (``serve_metrics``, ``MetricsEndpoint``, ``MetricsServerError``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from stores.base import ScheduledCommandStore

from .clock import Clock
from .metrics import DEFAULT_NAMESPACE, StoreGauges

__all__ = ["MetricsEndpoint", "MetricsServerError", "serve_metrics"]

logger = logging.getLogger("scheduling.metrics")


# -- an HTTP endpoint for worker processes -------------------------------------------------------------------


class MetricsServerError(OSError):
    """The metrics endpoint cannot listen on ``host:port`` (in use, or not an address of this machine).

    Pick another ``--metrics-port``, or stop what holds that one.
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot serve metrics on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where ``serve_metrics`` listens (``port`` is the bound one, also when 0 was asked for)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


@asynccontextmanager
async def serve_metrics(
    store: ScheduledCommandStore,
    *,
    host: str = "127.0.0.1",
    port: int,
    registry: CollectorRegistry | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    refresh_every: timedelta = timedelta(seconds=15),
    clock: Clock | None = None,
) -> AsyncIterator[MetricsEndpoint]:
    """Serve ``/metrics`` over HTTP on ``host:port`` while the block runs, refreshing ``StoreGauges``.

    The HTTP side is ``prometheus_client``'s own exposition server (its WSGI server in a daemon thread: content
    negotiation and gzip as Prometheus expects), shut down when the block exits. The gauges are refreshed on
    the event loop once before the block starts and then every ``refresh_every``; a failed refresh is logged and
    retried at the next interval (the worker keeps running through a store outage).

    Args:
        store: the store whose entries ``StoreGauges`` counts.
        host: the interface; loopback by default, since the endpoint has no authentication.
        port: the TCP port; 0 picks a free one (see ``MetricsEndpoint.port``).
        registry: what to expose; default ``prometheus_client.REGISTRY`` (with the process metrics).
        namespace: the gauges' name prefix.
        refresh_every: how often the gauges are refreshed.
        clock: what "now" is for the gauges (see ``StoreGauges``); default ``SystemClock()``.

    Raises:
        MetricsServerError: the port cannot be bound.
        ValueError: ``refresh_every`` is not positive.

    .. versionadded:: 0.3
    """
    if refresh_every <= timedelta(0):
        raise ValueError(f"refresh_every must be positive, got {refresh_every}")
    exposed: CollectorRegistry = registry if registry is not None else REGISTRY
    gauges = StoreGauges(store, exposed, namespace, clock=clock)
    try:
        server, thread = start_http_server(port, addr=host, registry=exposed)
    except OSError as exc:
        # the socket's own message may repeat the address; a name that does not resolve has a negative errno
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
        raise MetricsServerError(host, port, reason) from exc
    endpoint = MetricsEndpoint(host, server.server_address[1])
    refresher: asyncio.Task[None] | None = None
    try:
        await _refresh_safely(gauges)
        refresher = asyncio.create_task(_refresh_loop(gauges, refresh_every.total_seconds()), name="metrics-refresh")
        yield endpoint
    finally:
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
        # shutdown() waits for the serving loop to notice (up to its 0.5 s poll): off the event loop
        await asyncio.to_thread(_stop_server, server, thread)


def _stop_server(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def _refresh_loop(gauges: StoreGauges, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await _refresh_safely(gauges)


async def _refresh_safely(gauges: StoreGauges) -> None:
    try:
        await gauges.refresh()
    except Exception as exc:  # noqa: BLE001 - a store outage must not stop the worker; logged, retried next time
        logger.warning(
            "refreshing the entry gauges from %s failed: %s: %s",
            gauges.store.description,
            type(exc).__name__,
            exc,
            extra={"action": "metrics_refresh_failed"},
        )
