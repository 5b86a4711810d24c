"""The queue routes of the admin API: ``GET /api/queues`` is ``queue list --json``; pause, resume and limits act
fleet-wide through the store, answer the queue afterwards, and leave an audit record; a store without queues
answers 501 naming the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from dashboard_support import TOKEN, http_client
from queueless_store import QueuelessStore

from scheduling import ManualClock, admin
from scheduling.web import DashboardSettings, create_dashboard_app
from stores import ScheduledCommandStore


def json_of(model: Any) -> Any:
    return model.model_dump(mode="json")


async def audit_actions(client: httpx.AsyncClient) -> list[tuple[str, str | None, str]]:
    records = (await client.get("/api/audit")).json()["records"]
    return [(r["action"], r["target"], r["actor"]) for r in records]


async def test_queues_is_the_queue_list_json(
    client: httpx.AsyncClient, store: ScheduledCommandStore, populated: dict[str, str]
) -> None:
    """GET /api/queues: every queue with depth, running, paused and limits, equal to ``queue list --json``."""
    body = (await client.get("/api/queues")).json()
    assert body == json_of(await admin.queue_list(store))
    (default,) = body["queues"]
    assert default == {"name": "default", "paused": False, "depth": 2, "running": 0, "max_running": None, "rate": None}


async def test_pause_and_resume_a_queue_with_audit_records(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """POST /api/queues/{name}/pause then /resume: the stored queue changes (what every worker claims by), the
    answer is the queue afterwards, and each leaves one audit record naming the queue."""
    paused = await client.post("/api/queues/default/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["depth"] == 2
    assert [q.paused for q in await store.list_queues() if q.name == "default"] == [True]
    assert (await client.get("/api/queues")).json()["queues"][0]["paused"] is True

    clock.advance(timedelta(seconds=1))
    resumed = await client.post("/api/queues/default/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert [q.paused for q in await store.list_queues() if q.name == "default"] == [False]
    assert (await audit_actions(client))[:2] == [
        ("resume_queue", "default", "token"),
        ("pause_queue", "default", "token"),
    ]


async def test_pausing_an_unused_queue_makes_it_listed(client: httpx.AsyncClient) -> None:
    """A queue springs into being when named: pausing one that holds nothing lists it as paused and empty."""
    body = (await client.post("/api/queues/emails/pause")).json()
    assert body == {"name": "emails", "paused": True, "depth": 0, "running": 0, "max_running": None, "rate": None}
    assert [q["name"] for q in (await client.get("/api/queues")).json()["queues"]] == ["emails"]


async def test_a_bad_queue_name_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/queues/no%20spaces!/pause")
    assert response.status_code == 422
    assert "'no spaces!'" in response.json()["detail"]
    assert (await client.get("/api/queues")).json()["queues"] == []
    assert await audit_actions(client) == []


async def test_queue_limits_are_set_cleared_and_validated(
    client: httpx.AsyncClient, store: ScheduledCommandStore
) -> None:
    """POST /api/queues/{name}/limits sets both limits (one left out is cleared); bad limits are a 422."""
    limited = await client.post("/api/queues/emails/limits", json={"max_running": 3, "rate": {"count": 50, "per": 1}})
    assert limited.status_code == 200, limited.text
    assert limited.json()["max_running"] == 3 and limited.json()["rate"] == {"count": 50, "per": "PT1S"}
    (stored,) = await store.list_queues()
    assert stored.max_running == 3 and stored.rate is not None and stored.rate.count == 50
    assert (await audit_actions(client))[0] == ("limit_queue", "emails max_running=3 rate=50/1s", "token")

    bad = await client.post("/api/queues/emails/limits", json={"max_running": 0})
    assert bad.status_code == 422 and "max_running" in bad.text
    assert (await client.post("/api/queues/emails/limits", json={"rate": {"count": 5, "per": -1}})).status_code == 422

    cleared = (await client.post("/api/queues/emails/limits", json={})).json()
    assert cleared["max_running"] is None and cleared["rate"] is None


@pytest.fixture
async def queueless_client(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with QueuelessStore() as store:
        dashboard = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN), clock=clock)
        async with http_client(dashboard, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            yield client


async def test_a_store_without_queues_answers_501_naming_it(queueless_client: httpx.AsyncClient) -> None:
    """A store without queues: the routes say so (501) instead of failing, and nothing is audited."""
    for method, path in [("GET", "/api/queues"), ("POST", "/api/queues/emails/pause")]:
        response = await queueless_client.request(method, path)
        assert response.status_code == 501, (path, response.text)
        assert "does not support" in response.json()["detail"] and "QueuelessStore" in response.json()["detail"]
    assert await audit_actions(queueless_client) == []
