"""serve_metrics(): a real HTTP endpoint on 127.0.0.1, scraped with httpx, with periodically refreshed gauges."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from datetime import timedelta

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from scheduling_app import Add, make_app
from sqlalchemy.engine import make_url

from scheduling.metrics import MetricsServerError, PrometheusObserver, serve_metrics
from stores import ScheduledCommandStore, SqlStore


def families(body: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}}."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


async def test_scrape_serves_counters_and_refreshed_gauges(
    run_store: ScheduledCommandStore, registry: CollectorRegistry
) -> None:
    """GET /metrics: the observer's counters and the gauges; new entries show up after a periodic refresh."""
    app = make_app(store=run_store, observers=[PrometheusObserver(registry)])
    await app.scheduler.schedule(Add(a=1, b=1))
    await app.service.run_until_idle()
    async with (
        serve_metrics(run_store, port=0, registry=registry, refresh_every=timedelta(milliseconds=50)) as endpoint,
        httpx.AsyncClient(timeout=5) as client,
    ):
        assert endpoint.host == "127.0.0.1"
        assert endpoint.url == f"http://127.0.0.1:{endpoint.port}/metrics"
        response = await client.get(endpoint.url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = families(response.text)
        assert samples["cqrs_scheduling_commands_completed_total"][(("command_type", "scheduling_app.Add"),)] == 1
        assert samples["cqrs_scheduling_entries"][(("status", "completed"),)] == 1  # refreshed before serving

        await app.scheduler.schedule_many([Add(a=n, b=n) for n in range(3)])
        deadline = time.monotonic() + 10
        while True:  # the refresh task catches up within a few intervals; bounded, no fixed sleep asserted
            pending = families((await client.get(endpoint.url)).text)["cqrs_scheduling_entries"][
                (("status", "pending"),)
            ]
            if pending == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert pending == 3

        openmetrics = await client.get(endpoint.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
    with pytest.raises(httpx.ConnectError):  # closed on exit
        await httpx.AsyncClient().get(endpoint.url)


async def test_a_silent_client_does_not_block_others(registry: CollectorRegistry) -> None:
    """A client that connects and says nothing does not hold up a scrape (the server answers per thread)."""
    app = make_app()
    async with serve_metrics(app.store, port=0, registry=registry) as endpoint:
        _, silent_writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(endpoint.url)).status_code == 200
        silent_writer.close()


async def test_a_port_in_use_is_named(registry: CollectorRegistry) -> None:
    """A port another socket holds: MetricsServerError naming host and port, before anything is served."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError, match=f"cannot serve metrics on 127.0.0.1:{port}: ") as caught:
            async with serve_metrics(make_app().store, port=port, registry=registry):
                pytest.fail("served on a port in use")
    assert (caught.value.host, caught.value.port) == ("127.0.0.1", port)


async def test_a_store_outage_is_logged_and_metrics_still_served(
    registry: CollectorRegistry, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's database disappears while serving: a warning per failed refresh, and /metrics still answers
    with the last values."""
    admin = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"cqrs_metrics_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store = SqlStore(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    try:
        async with store:
            app = make_app(store=store)
            await app.scheduler.schedule(Add(a=1, b=1))
            with caplog.at_level(logging.WARNING, logger="scheduling.metrics"):
                async with (
                    serve_metrics(
                        store, port=0, registry=registry, refresh_every=timedelta(milliseconds=20)
                    ) as endpoint,
                    httpx.AsyncClient(timeout=5) as client,
                ):
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                    deadline = time.monotonic() + 10
                    while "refreshing the entry gauges from" not in caplog.text and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)
                    response = await client.get(endpoint.url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert "refreshing the entry gauges from" in caplog.text
    assert response.status_code == 200
    assert families(response.text)["cqrs_scheduling_entries"][(("status", "pending"),)] == 1


async def test_refresh_every_must_be_positive(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="refresh_every must be positive, got 0:00:00"):
        async with serve_metrics(make_app().store, port=0, registry=registry, refresh_every=timedelta(0)):
            pass
