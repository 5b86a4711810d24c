"""``cqrs-scheduling worker``: run the service of an application as a standalone process.

The application is named as ``module:factory``; the factory returns the application's ``Injector`` (with its
``MediatorModule``s and ``SchedulingModule``). Command-line options override the store and settings. SIGINT or
SIGTERM stops the worker gracefully; a second signal stops it at once. With a metrics address, the worker
also serves Prometheus metrics (``scheduling.metrics``) while it runs.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import signal
import sys
import sysconfig
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

from injector import Binder, Injector

from stores.base import ScheduledCommandStore

from .clock import Clock
from .observer import SchedulingObservers
from .options import SchedulerSettings
from .service import ScheduledCommandService

__all__ = [
    "AppLoadError",
    "JsonFormatter",
    "configure_logging",
    "handler_threads",
    "python_default_threads",
    "install_metrics",
    "load_app",
    "run_worker",
    "settle_heap",
]

logger = logging.getLogger("scheduling.worker")  # the name operators configure


class AppLoadError(Exception):
    """``--app`` does not name a factory returning an ``Injector``; the message says which part is wrong."""


def load_app(spec: str) -> Injector:
    """Import ``module:factory``, call the factory and return the ``Injector`` it builds."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"--app must look like 'package.module:factory', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r} (from --app {spec!r}): {exc}") from exc
    except Exception as exc:  # the module itself is broken: say where, in one line
        raise AppLoadError(f"importing {module_name!r} failed: {_one_line(exc)} ({_origin(exc)})") from exc
    factory = getattr(module, attribute, None)
    if factory is None:
        raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r} (from --app {spec!r})")
    if isinstance(factory, Injector):
        app: object = factory
    elif callable(factory):
        try:
            app = factory()
        except Exception as exc:
            raise AppLoadError(f"calling {spec} failed: {_one_line(exc)} ({_origin(exc)})") from exc
    else:
        app = factory
    if not isinstance(app, Injector):
        raise AppLoadError(f"{spec} returned {type(app).__qualname__}, not an injector.Injector")
    if _binder_with(app, ScheduledCommandStore) is None:
        raise AppLoadError(
            f"the injector {spec} returned has no SchedulingModule: add SchedulingModule() to its modules, "
            "e.g. Injector([MediatorModule(handlers), SchedulingModule()])"
        )
    return app


def _binder_with(injector: Injector, interface: type) -> Binder | None:
    """The binder that binds ``interface`` for ``injector``: its own, or a parent's. A child injector
    (``create_child_injector``) gets what its parent's modules bind, such as the ``SchedulingModule`` of an
    application's root injector, and the scheduler and service built there use the parent's bindings."""
    binder: Binder | None = injector.binder
    while binder is not None:
        if binder.has_binding_for(interface):
            return binder
        binder = binder.parent
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _origin(exc: BaseException) -> str:
    """``file:line`` where the application's code raised ``exc``: the innermost frame outside the standard library,
    installed packages and this library (or where a SyntaxError points)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"at {_shown_path(exc.filename)}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    not_the_app = (*_not_the_app(), "<")  # "<frozen importlib._bootstrap>" and the like
    in_app = [frame for frame in frames if not frame.filename.startswith(not_the_app)]
    if not (in_app or frames):
        return "no traceback"
    frame = (in_app or frames)[-1]
    return f"at {_shown_path(frame.filename)}:{frame.lineno}"


def _not_the_app() -> tuple[str, ...]:
    """Directories of code that is not the application's: the standard library, installed packages, this library."""
    import mediator
    import stores

    paths = sysconfig.get_paths()
    ours = [Path(package.__file__ or "").parent for package in (mediator, stores, sys.modules[__name__])]
    return (paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"], *(f"{p}/" for p in ours))


def _shown_path(filename: str) -> str:
    """``filename`` relative to the working directory when it is below it, as a user typed ``--app``."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def apply_overrides(
    injector: Injector,
    *,
    store: ScheduledCommandStore | None = None,
    concurrency: int | None = None,
    batch_size: int | None = None,
    polling_interval: float | None = None,
    worker_id: str | None = None,
    queues: Sequence[str] | None = None,
) -> SchedulerSettings:
    """Rebind the store and settings the command line overrides; return the settings in force."""
    settings = injector.get(SchedulerSettings)
    changes: dict[str, Any] = {}
    if concurrency is not None:
        changes["max_concurrency"] = concurrency
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if polling_interval is not None:
        changes["polling_interval"] = timedelta(seconds=polling_interval)
    if worker_id is not None:
        changes["worker_id"] = worker_id
    if queues:
        changes["queues"] = tuple(queues)
    # Rebound where SchedulingModule bound them (a parent's binder for a child injector): the service and scheduler
    # are built there, so a binding in the child alone would leave them on the application's own store.
    if changes:
        settings = SchedulerSettings.model_validate(settings.model_dump() | changes)
        (_binder_with(injector, SchedulerSettings) or injector.binder).bind(SchedulerSettings, to=settings)
    if store is not None:
        binder = _binder_with(injector, ScheduledCommandStore) or injector.binder
        binder.bind(ScheduledCommandStore, to=store)  # type: ignore[type-abstract]
    return settings


def install_metrics(injector: Injector) -> None:
    """Add a ``PrometheusObserver`` on the default registry to the application's observers.

    Raises:
        ImportError: ``prometheus_client`` is missing; the message names the ``metrics`` extra.
    """
    from .metrics import PrometheusObserver

    injector.get(SchedulingObservers).add(PrometheusObserver())


async def run_worker(injector: Injector, *, metrics_address: tuple[str, int] | None = None) -> None:
    """Run the application's service until SIGINT/SIGTERM (graceful) or a second signal (immediate).

    With ``metrics_address`` (host, port), ``/metrics`` is served there while the service runs (call
    ``install_metrics`` first for the command counters); a port that cannot be bound raises
    ``scheduling.metrics.MetricsServerError`` before any command runs.

    Plain ``def`` handlers run in the event loop's default thread pool: this replaces it with one of
    ``handler_threads()`` threads (one per concurrency slot, and Python's default number besides); the worker owns
    its event loop, as ``asyncio.run`` gives it one.
    """
    service = injector.get(ScheduledCommandService)
    store = injector.get(ScheduledCommandStore)  # type: ignore[type-abstract]
    loop = asyncio.get_running_loop()
    signals_seen = 0
    stopping: set[asyncio.Task[None]] = set()  # keeps the stop tasks alive until they finish

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            logger.info("%s received: stopping gracefully (again to stop at once)", name, extra={"action": "signal"})
            stopping.add(loop.create_task(service.stop()))
        else:
            logger.warning("%s received again: stopping at once", name, extra={"action": "signal"})
            stopping.add(loop.create_task(service.stop(immediate=True)))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    threads = handler_threads(injector.get(SchedulerSettings).max_concurrency)
    loop.set_default_executor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="scheduled-command"))
    try:
        await store.open()
        async with AsyncExitStack() as stack:
            if metrics_address is not None:
                from .metrics import serve_metrics

                host, port = metrics_address
                clock = injector.get(Clock)  # type: ignore[type-abstract]
                endpoint = await stack.enter_async_context(serve_metrics(store, host=host, port=port, clock=clock))
                logger.info("serving Prometheus metrics on %s", endpoint.url, extra={"action": "metrics"})
            # A signal during start-up (opening the store) asked a service that was not running yet to stop, and
            # run() starts afresh: it must not start at all then. No await between this check and run() taking over.
            if signals_seen:
                logger.info("stopped before the service started", extra={"action": "stopped"})
                return
            settle_heap()
            await service.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await store.close()


def python_default_threads() -> int:
    """The size of the thread pool Python gives an event loop by default (``ThreadPoolExecutor``'s own default,
    counting the CPUs this process may use from Python 3.13 on)."""
    cpus = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (cpus or 1) + 4)


def handler_threads(max_concurrency: int) -> int:
    """The threads of the worker's event loop's default pool, where a plain ``def`` handler runs: one per slot, so
    an entry never waits for a thread while it holds its slot and its lease (an idle worker could have run it, and
    its timeout would count the wait), plus Python's default for everything else the loop runs in threads (resolving
    the database's host name when a connection is made), which handlers holding every slot would otherwise keep
    waiting. Threads are started only as they are needed."""
    return max_concurrency + python_default_threads()


def settle_heap() -> None:
    """Collect the start-up's garbage, then freeze what is left (modules, classes, the application) out of the
    cyclic garbage collector's sight: this process owns its interpreter, and what it built to serve lives as long as
    it does. Otherwise every full collection walks that whole heap (about 100,000 objects with the SQL and Redis
    clients imported), tens of milliseconds each, and a drain at concurrency 100 triggers several per 10,000
    commands: a fifth of a Redis worker's CPU. Frozen objects are still freed by reference counting (only a cycle
    among them would stay); objects made afterwards are collected as before."""
    gc.collect()
    gc.freeze()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the structured fields of the record."""

    FIELDS = ("action", "command_id", "command_type", "worker_id")

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                document[field] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Configure the root logger for a worker process (the library itself never configures logging)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
