"""Failed logins are logged (WARNING, client address, never the token) and throttled per client: after
``login_attempts`` failures within ``login_window``, every attempt to log in from that address is answered 429 with
``Retry-After`` and a message saying how long to wait, until the window moves on. Sessions are never throttled."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest
from dashboard_support import BASE_URL, TOKEN, http_client, log_in
from fastapi import FastAPI

from scheduling import ManualClock

WRONG = "wrong-token-guess-0001"


def from_address(dashboard: FastAPI, address: str, **kwargs: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=dashboard, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, **kwargs)  # type: ignore[arg-type]


async def test_wrong_bearer_tokens_are_logged_then_throttled(
    dashboard: FastAPI, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scheduling.web")
    async with from_address(dashboard, "203.0.113.7") as guesser, from_address(dashboard, "198.51.100.2") as other:
        for _ in range(5):
            wrong = await guesser.get("/api/overview", headers={"Authorization": f"Bearer {WRONG}"})
            assert wrong.status_code == 401
            clock.advance(timedelta(seconds=1))
        refused = await guesser.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 429  # even the right token: guessing cannot go on
        assert refused.headers["retry-after"] == "55"  # the first failure leaves the minute in 55 s
        assert refused.json()["detail"] == ("too many failed logins from 203.0.113.7: 5 in 60 s; try again in 55 s")
        right = await other.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200  # another address is not held up

        clock.advance(timedelta(seconds=55))
        again = await guesser.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
        assert again.status_code == 200

    records = [r for r in caplog.records if r.name == "scheduling.web"]
    assert len(records) == 5
    assert all(r.levelno == logging.WARNING for r in records)
    assert records[0].getMessage() == "failed dashboard login from 203.0.113.7 (bearer token): 1 in the last 60 s"
    assert records[-1].getMessage().endswith(": 5 in the last 60 s")
    assert not any(WRONG in r.getMessage() or TOKEN in r.getMessage() for r in records)


async def test_the_login_form_says_how_long_to_wait(dashboard: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scheduling.web")
    headers = {"Accept": "text/html", "Origin": BASE_URL}
    async with from_address(dashboard, "203.0.113.8", headers=headers) as browser:
        for _ in range(5):
            wrong = await browser.post("/login", data={"token": WRONG})
            assert wrong.status_code == 401 and "That token is not right." in wrong.text
        refused = await browser.post("/login", data={"token": TOKEN})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
        assert "Too many failed logins from 203.0.113.8: 5 in 60 s; try again in 60 s." in refused.text
        link = await browser.get("/", params={"token": TOKEN})
        assert link.status_code == 429 and "Too many failed logins" in link.text
    assert [r.getMessage().split(": ")[0] for r in caplog.records if r.name == "scheduling.web"] == [
        "failed dashboard login from 203.0.113.8 (login form)"
    ] * 5


async def test_a_logged_in_browser_is_never_throttled(dashboard: FastAPI) -> None:
    async with http_client(dashboard, headers={"Accept": "text/html", "Origin": BASE_URL}) as browser:
        await log_in(browser)
        for _ in range(6):
            await browser.get("/api/overview", headers={"Authorization": f"Bearer {WRONG}"})
        assert (await browser.get("/api/overview", headers={"Authorization": ""})).status_code == 200
        assert (await browser.get("/entries")).status_code == 200
