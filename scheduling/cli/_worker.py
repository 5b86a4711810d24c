"""``cqrs-scheduling worker``: run an application's worker until a signal (the runner is ``scheduling._worker``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from stores.base import ScheduledCommandStore
from stores.default import STORE_ENV

from ._common import (
    DEFAULT_STORE,
    StoreOption,
    fail,
)


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def worker(
    app_spec: Annotated[
        str,
        typer.Option("--app", help="The application: 'package.module:factory', a factory returning its Injector."),
    ],
    store: StoreOption = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Commands run at once (settings: max_concurrency).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Entries claimed per round trip.")] = None,
    polling_interval: Annotated[
        float | None, typer.Option(min=0.001, help="Longest sleep between polls, in seconds.")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="Name in leases and the audit trail (default host:pid:random).")
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", help="Claim only from this queue (repeatable; settings: queues). Default: every queue."
        ),
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option(case_sensitive=False, help="Log lines as text or JSON, on stderr.")
    ] = LogFormat.text,
    log_level: Annotated[
        LogLevel,
        typer.Option(case_sensitive=False, help="The least severe log level shown (debug shows every command run)."),
    ] = LogLevel.info,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Serve Prometheus metrics at /metrics on this port (extra: metrics; 0: any free)."
        ),
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option(help="Interface of --metrics-port (unauthenticated!). Default: 127.0.0.1.")
    ] = None,
) -> None:
    """Run the scheduled-command worker of an application until SIGINT or SIGTERM.

    The store is --store, else $CQRS_SCHEDULING_STORE, else the application's own store, except a MemoryStore,
    which a worker process cannot share: then the embedded default, sqlite:///scheduled-commands.db.

    The first signal stops it gracefully (running commands get shutdown_grace, the rest go back to PENDING);
    a second one stops it at once.

    With --metrics-port, Prometheus metrics (command counters, run duration and lag histograms, entries per
    status) are served at http://127.0.0.1:PORT/metrics while the worker runs; see docs/metrics.md.
    """
    from scheduling._worker import (
        AppLoadError,
        apply_overrides,
        configure_logging,
        install_metrics,
        load_app,
        run_worker,
    )
    from stores.errors import StoreError
    from stores.memory import MemoryStore
    from stores.queues import check_queue_name
    from stores.urls import store_from_url

    if metrics_host is not None and metrics_port is None:
        fail("--metrics-host goes with --metrics-port", 2)
    for name in queue or ():
        try:
            check_queue_name(name, "--queue")
        except ValueError as exc:
            fail(str(exc))
    configure_logging(log_format.value, getattr(logging, log_level.value.upper()))
    sys.path.insert(0, os.getcwd())
    try:
        injector = load_app(app_spec)
    except AppLoadError as exc:
        fail(str(exc), 2)
    url = store if store is not None else os.environ.get(STORE_ENV)
    if url is None and isinstance(injector.get(ScheduledCommandStore), MemoryStore):  # type: ignore[type-abstract]
        # A worker process on a memory store could only run what it scheduled itself: use the embedded default.
        url = DEFAULT_STORE
    try:
        apply_overrides(
            injector,
            store=store_from_url(url) if url else None,
            concurrency=concurrency,
            batch_size=batch_size,
            polling_interval=polling_interval,
            worker_id=worker_id,
            queues=queue,
        )
        metrics_address = None
        if metrics_port is not None:
            install_metrics(injector)
            metrics_address = (metrics_host or "127.0.0.1", metrics_port)
        asyncio.run(run_worker(injector, metrics_address=metrics_address))
    except ImportError as exc:  # only --metrics-port imports something optional: prometheus_client
        fail(str(exc))
    except (ValueError, StoreError, OSError) as exc:
        fail(str(exc))
