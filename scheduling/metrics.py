"""Prometheus metrics through the official ``prometheus_client`` (``pip install 'cqrs-scheduling[metrics]'``).

Three pieces, each usable alone:

- ``PrometheusObserver``: a ``SchedulingObserver`` counting scheduled, completed, retried, dead-lettered, expired and
  cancelled commands per command type, with histograms of run duration and due-to-start lag, and the finished
  entries retention purged per status. Install it with ``SchedulingModule(observers=[PrometheusObserver()])``.
- ``StoreGauges``: the number of entries in each status, the age of the oldest overdue entry and the entries running
  now, read from the store by ``await gauges.refresh()``.
- ``render()`` (the exposition body and its content type, for a ``/metrics`` route of your own) and
  ``serve_metrics()`` (the client's HTTP endpoint with periodically refreshed gauges, what ``cqrs-scheduling worker
  --metrics-port`` runs).

Labels are command types (``module.Name``), outcomes and statuses, never ids, so the number of series stays bounded
by the number of command classes; outcome and status values are lower case (``completed``, ``pending``).
Instruments are registered once per registry and namespace: building a second observer or ``StoreGauges`` on the
same registry reuses them instead of failing with "Duplicated timeseries".

Counters and histograms expose no ``*_created`` series: they are registered through a collector that leaves those
samples out, so the process-wide ``prometheus_client.disable_created_metrics()`` switch is not needed (and not
touched: the application's own metrics keep whatever it chose).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import TypeVar, cast
from weakref import WeakKeyDictionary

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"scheduling.metrics needs the prometheus_client package ({exc}): pip install 'cqrs-scheduling[metrics]'"
    ) from exc

from stores.base import ScheduledCommandStore

from .clock import Clock, SystemClock
from .entries import TERMINAL_STATUSES, ScheduledCommandEntry, ScheduledCommandStatus
from .observer import FinishedOutcome, SchedulingObserver
from .workers import WORKER_STATES, workers_by_state

__all__ = [
    "DEFAULT_EXACT_UP_TO",
    "DEFAULT_NAMESPACE",
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "MetricsEndpoint",
    "MetricsServerError",
    "PrometheusObserver",
    "StoreGauges",
    "render",
    "serve_metrics",
]

logger = logging.getLogger(__name__)

#: The prefix of every metric name.
DEFAULT_NAMESPACE = "cqrs_scheduling"

#: ``StoreGauges`` counts each status exactly up to this many entries; a larger one may be estimated (PostgreSQL).
DEFAULT_EXACT_UP_TO = 10_000

#: Run duration buckets, in seconds: a millisecond handler to an hour-long batch job.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
    float("inf"),
)  # fmt: skip

#: Due-to-start lag buckets, in seconds: a busy worker's milliseconds to a backlog (or a stopped worker) of a day.
LAG_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
    float("inf"),
)  # fmt: skip

_NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: Outcomes of an attempt that ran (an expired entry never ran, so it has no duration).
_RAN: tuple[FinishedOutcome, ...] = ("completed", "retrying", "failed")

_T = TypeVar("_T")

#: Instruments already registered, per registry (weakly: a dropped registry takes its instruments along) and key.
_registered: WeakKeyDictionary[CollectorRegistry, dict[tuple[str, str], object]] = WeakKeyDictionary()
_registered_lock = threading.Lock()


def _shared(registry: CollectorRegistry, kind: str, namespace: str, build: Callable[[], _T]) -> _T:
    """The instruments of ``kind`` in ``namespace`` on ``registry``: built and registered once, then reused."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace must be a Prometheus name prefix (letters, digits, _), got {namespace!r}")
    with _registered_lock:
        per_registry = _registered.setdefault(registry, {})
        found = per_registry.get((kind, namespace))
        if found is None:
            found = per_registry[(kind, namespace)] = build()
        return cast(_T, found)


class _WithoutCreated(Collector):
    """Our instruments as one collector, registered at once (all names or none) and exposed without the
    ``*_created`` samples that ``prometheus_client`` adds to every counter and histogram child.

    Those samples double the series of every counter and histogram and are of no use to PromQL's ``rate()`` and
    ``increase()``. The client's own switch (``disable_created_metrics()``, or ``PROMETHEUS_DISABLE_CREATED_SERIES``)
    is process-wide and would change the application's metrics too; filtering here changes only ours.
    """

    def __init__(self, instruments: Sequence[MetricWrapperBase]) -> None:
        self._instruments = tuple(instruments)

    def describe(self) -> Iterable[Metric]:
        """The families without samples: what the registry checks for names already taken."""
        for instrument in self._instruments:
            yield from instrument.describe()

    def collect(self) -> Iterable[Metric]:
        for instrument in self._instruments:
            for family in instrument.collect():  # a fresh Metric per collect(): filtering it in place is safe
                created = f"{family.name}_created"
                family.samples = [sample for sample in family.samples if sample.name != created]
                yield family


def _register(registry: CollectorRegistry, instruments: Sequence[MetricWrapperBase]) -> None:
    """Register ``instruments`` (built with ``registry=None``) on ``registry`` as one collector.

    Raises:
        ValueError: another collector already owns one of the names; nothing is registered.
    """
    registry.register(_WithoutCreated(instruments))


class _TypeSeries:
    """The labelled children of one command type, looked up once (``labels()`` takes a lock and builds a key)."""

    __slots__ = ("cancelled", "completed", "duration", "expired", "failed", "lag", "retried", "scheduled")

    def __init__(self, instruments: _Instruments, command_type: str) -> None:
        self.scheduled = instruments.scheduled.labels(command_type)
        self.completed = instruments.completed.labels(command_type)
        self.retried = instruments.retried.labels(command_type)
        self.failed = instruments.failed.labels(command_type)
        self.expired = instruments.expired.labels(command_type)
        self.cancelled = instruments.cancelled.labels(command_type)
        self.lag = instruments.lag.labels(command_type)
        self.duration = {outcome: instruments.duration.labels(command_type, outcome) for outcome in _RAN}


class _Instruments:
    """The observer's counters and histograms on one registry under one namespace."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        def counter(event: str, documentation: str) -> Counter:
            return Counter(f"commands_{event}", documentation, ["command_type"], namespace=namespace, registry=None)

        self.scheduled = counter("scheduled", "Commands stored to run later (an idempotent repeat is not counted).")
        self.completed = counter("completed", "Commands whose handler returned (the entry is COMPLETED).")
        self.retried = counter("retried", "Failed attempts that will be retried after a backoff.")
        self.failed = counter("failed", "Commands dead-lettered: every allowed attempt failed (FAILED).")
        self.expired = counter("expired", "Commands not started before their expires_at (EXPIRED).")
        self.cancelled = counter("cancelled", "Pending commands cancelled through the scheduler.")
        self.duration = Histogram(
            "run_duration_seconds",
            "How long an attempt ran, by command type and outcome (completed, retrying, failed).",
            ["command_type", "outcome"],
            namespace=namespace,
            registry=None,
            buckets=DURATION_BUCKETS,
        )
        self.lag = Histogram(
            "due_lag_seconds",
            "How late an attempt started after it was due (scheduled_for); never negative.",
            ["command_type"],
            namespace=namespace,
            registry=None,
            buckets=LAG_BUCKETS,
        )
        purged = Counter(
            "entries_purged", "Finished entries deleted by retention.", ["status"], namespace=namespace, registry=None
        )
        self.purged = {status: purged.labels(_status_label(status)) for status in TERMINAL_STATUSES}  # at zero
        counters = (self.scheduled, self.completed, self.retried, self.failed, self.expired, self.cancelled, purged)
        _register(registry, (*counters, self.duration, self.lag))
        self._by_type: dict[str, _TypeSeries] = {}

    def of(self, command_type: str) -> _TypeSeries:
        series = self._by_type.get(command_type)
        if series is None:
            series = self._by_type.setdefault(command_type, _TypeSeries(self, command_type))
        return series


class PrometheusObserver(SchedulingObserver):
    """Counts and times every scheduled command in Prometheus instruments, labelled by command type.

    Metrics (``{ns}`` is the namespace): counters ``{ns}_commands_scheduled_total``, ``_completed_total``,
    ``_retried_total``, ``_failed_total`` (dead-lettered), ``_expired_total`` and ``_cancelled_total``, each with
    the label ``command_type``; histograms ``{ns}_run_duration_seconds{command_type,outcome}`` and
    ``{ns}_due_lag_seconds{command_type}``; ``{ns}_entries_purged_total{status}``, the finished entries the
    service's retention deleted (``status``: ``completed``, ``failed``, ``cancelled``, ``expired``, each at zero
    from the start); no ``*_created`` series. A command type's series appear at zero when
    a service with a handler for it starts (``on_service_started``), or else the first time one of its commands
    is seen, so ``increase()`` counts the first event.

    Args:
        registry: where the instruments are registered; default ``prometheus_client.REGISTRY``. A second observer
            on the same registry and namespace shares the first one's instruments.
        namespace: the metric name prefix.

    Raises:
        ValueError: ``namespace`` is not a valid name prefix, or another collector already owns one of the names.

    .. versionadded:: 0.3
    """

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.registry: CollectorRegistry = registry if registry is not None else REGISTRY
        self.namespace = namespace
        self._instruments = _shared(
            self.registry, "observer", namespace, partial(_Instruments, self.registry, namespace)
        )

    def on_service_started(self, command_types: Sequence[str]) -> None:
        for command_type in command_types:
            self._instruments.of(command_type)

    def on_scheduled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        for command_type, count in _tally(entries).items():
            self._instruments.of(command_type).scheduled.inc(count)

    def on_started(self, entry: ScheduledCommandEntry, started_at: datetime) -> None:
        lag = (started_at - entry.scheduled_for).total_seconds()
        self._instruments.of(entry.command_type).lag.observe(lag if lag > 0 else 0.0)

    def on_finished(
        self, entry: ScheduledCommandEntry, outcome: FinishedOutcome, started_at: datetime, finished_at: datetime
    ) -> None:
        series = self._instruments.of(entry.command_type)
        if outcome == "expired":
            series.expired.inc()
            return
        if outcome == "completed":
            series.completed.inc()
        elif outcome == "retrying":
            series.retried.inc()
        else:
            series.failed.inc()
        duration = (finished_at - started_at).total_seconds()
        series.duration[outcome].observe(duration if duration > 0 else 0.0)

    def on_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        for command_type, count in _tally(entries).items():
            self._instruments.of(command_type).cancelled.inc(count)

    def on_purged(self, status: ScheduledCommandStatus, count: int) -> None:
        self._instruments.purged[status].inc(count)


def _tally(entries: Sequence[ScheduledCommandEntry]) -> dict[str, int]:
    if len(entries) == 1:
        return {entries[0].command_type: 1}
    return Tally(entry.command_type for entry in entries)


class _StoreInstruments:
    """``StoreGauges``' gauges on one registry under one namespace."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.entries = Gauge(
            "entries",
            "Entries in the store per status, as of the last refresh; an estimate where entries_estimated is 1.",
            ["status"],
            namespace=namespace,
            registry=None,
        )
        self.estimated = Gauge(
            "entries_estimated",
            "1 when the entries gauge of this status is an estimate from the database's statistics (above the "
            "exact bound), 0 when it is an exact count.",
            ["status"],
            namespace=namespace,
            registry=None,
        )
        self.oldest_overdue_age = Gauge(
            "oldest_overdue_age_seconds",
            "How long the oldest pending entry that is due has been waiting to start (0 when none is due), "
            "as of the last refresh.",
            namespace=namespace,
            registry=None,
        )
        self.running = Gauge(
            "entries_running",
            "Entries a live worker holds: processing under a lease that has not expired, as of the last refresh.",
            namespace=namespace,
            registry=None,
        )
        self.stuck = Gauge(
            "entries_stuck",
            "Entries of a gone worker: processing under an expired lease, not yet recovered, as of the last refresh.",
            namespace=namespace,
            registry=None,
        )
        self.workers = Gauge("workers", "Registered workers per state.", ["state"], namespace=namespace, registry=None)
        gauges = (self.entries, self.estimated, self.oldest_overdue_age, self.running, self.stuck, self.workers)
        _register(registry, gauges)


class StoreGauges:
    """Gauges read from the store, for dashboards and for alerts that must fire when no worker is left.

    - ``{ns}_entries{status}``: how many entries the store holds in each status, zeros included; the status
      values are lower case (``pending``, ``processing``, ``completed``, ``failed``, ``cancelled``, ``expired``).
      Exact up to ``exact_up_to`` per status; a larger status may be an estimate (PostgreSQL's statistics, as the
      dashboard's "about" counts), never below the bound. PROCESSING is always exact.
    - ``{ns}_entries_estimated{status}``: 1 when that status's ``entries`` value is an estimate, else 0.
    - ``{ns}_oldest_overdue_age_seconds``: ``now - scheduled_for`` of the oldest pending entry that is due (0 when
      none is): grows without bound while nothing claims due work.
    - ``{ns}_entries_running``: processing entries whose lease has not expired. Entries of a worker that died
      stay ``processing`` until another worker reclaims them; this gauge drops to 0 within one lease duration
      when the whole fleet is down.
    - ``{ns}_entries_stuck``: processing entries whose lease has expired (their worker is gone), not yet recovered.
    - ``{ns}_workers{state}``: registered workers per state (``running``, ``stopping``, ``gone``), zeros included.

    The values are read from the store by ``refresh()`` (the counts per status, ``next_due_at()`` and
    ``count_running()`` at one moment, through ``read_gauges(exact_up_to=...)``, then ``list_workers()``),
    so call it before each scrape (the dashboard's ``/metrics`` route does) or periodically (``serve_metrics``
    does). Serve them from a process that outlives the workers (the dashboard, your web application) for the
    fleet-down alerts. Cheap to build: the gauges are registered once per registry and namespace.

    Args:
        store: the store to read.
        registry: where the gauges are registered; default ``prometheus_client.REGISTRY``.
        namespace: the metric name prefix.
        clock: what "now" is for the overdue age and the leases; default ``SystemClock()``.
        exact_up_to: count each status exactly up to this many entries, through its index; above it a status may
            be estimated, so that a refresh costs the same at any size. None: every count exact (on SQL, a scan of
            every row per refresh: 0.1 to 0.2 s at a million entries on PostgreSQL).

    Raises:
        ValueError: ``exact_up_to`` is negative.

    .. versionadded:: 0.3
    .. versionchanged:: 0.4
        The overdue-age and running gauges, and lower-case status values (were ``PENDING``, ...).
    .. versionchanged:: 0.5
        The stuck-entries and workers gauges.
    .. versionchanged:: 0.6
        ``exact_up_to`` (the counts were exact at any size) and the ``entries_estimated`` gauge.
    """

    def __init__(
        self,
        store: ScheduledCommandStore,
        registry: CollectorRegistry | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        clock: Clock | None = None,
        exact_up_to: int | None = DEFAULT_EXACT_UP_TO,
    ) -> None:
        if exact_up_to is not None and exact_up_to < 0:
            raise ValueError(f"exact_up_to must not be negative, got {exact_up_to}")
        self.store = store
        self.exact_up_to = exact_up_to
        self.registry: CollectorRegistry = registry if registry is not None else REGISTRY
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._instruments = _shared(
            self.registry, "store", namespace, partial(_StoreInstruments, self.registry, namespace)
        )
        self._children = {
            status: self._instruments.entries.labels(_status_label(status)) for status in ScheduledCommandStatus
        }
        self._estimated = {
            status: self._instruments.estimated.labels(_status_label(status)) for status in ScheduledCommandStatus
        }
        self._workers: dict[str, Gauge] = {state: self._instruments.workers.labels(state) for state in WORKER_STATES}

    async def refresh(self) -> None:
        """Read the store and set every gauge; a store error propagates and leaves all the values as they were."""
        now = self.clock.now()
        # One reading: an entry claimed between separate reads showed as running and still overdue (or as stuck).
        reading = await self.store.read_gauges(now=now, exact_up_to=self.exact_up_to)
        counts, next_due, running = reading.counts, reading.next_due_at, reading.running
        workers = await workers_by_state(self.store, now)
        for status, child in self._children.items():
            child.set(counts.get(status, 0))
            self._estimated[status].set(1 if status in reading.estimated else 0)
        self._instruments.stuck.set(max(0, counts.get(ScheduledCommandStatus.PROCESSING, 0) - running))
        for state, count in workers.items():
            self._workers[state].set(count)
        overdue = (now - next_due).total_seconds() if next_due is not None else 0.0
        self._instruments.oldest_overdue_age.set(overdue if overdue > 0 else 0.0)
        self._instruments.running.set(running)


def _status_label(status: ScheduledCommandStatus) -> str:
    """The ``status`` label value: lower case, like every label value of ours (``outcome="completed"``)."""
    return status.value.lower()


def render(registry: CollectorRegistry | None = None, *, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition of ``registry`` (default ``prometheus_client.REGISTRY``) and its content type.

    Args:
        registry: what to expose.
        accept: the scrape request's ``Accept`` header; OpenMetrics when it asks for it, else the Prometheus
            text format.

    .. versionadded:: 0.3
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry if registry is not None else REGISTRY), content_type


# The HTTP endpoint lives in its own module; imported last, since it builds on the gauges above.
from ._metrics_server import MetricsEndpoint, MetricsServerError, serve_metrics  # noqa: E402
