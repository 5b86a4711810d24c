"""End to end in a real headless Chromium: a dead-lettered command is requeued from the dashboard and completes.

The dashboard is served by a real uvicorn server on a free 127.0.0.1 port, over a real SQLite file. The worker is a
real ``ScheduledCommandService`` running in the same process, on the same event loop as the servers, in a background
thread: one process keeps the handler's "fail the first attempt, succeed afterwards" memory in a plain dict and lets
the test schedule commands and read statuses through the same opened store, while the store, the HTTP server, the
worker loop and the browser are all real (separate worker processes are covered by tests/processes and
tests/reliability). A second server on the same store is read-only; a third, on another port (another origin of
the same site), serves a page that tries a cross-site form POST.

Chromium and its driver come from the Debian packages ``chromium`` and ``chromium-driver``; without them these tests
are skipped with that reason (and fail when ``CI`` is set, since CI installs them). No driver is ever downloaded.
Screenshots are taken of each page and kept under ``dashboard/`` of ``test-artifacts/`` (git-ignored) or of the
directory ``$CQRS_SCHEDULING_TEST_ARTIFACTS`` names; ``test_browser_layout.py`` shoots every page at desktop and
phone width.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from injector import Injector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from mediator import Command, CommandHandler, MediatorModule
from scheduling import (
    CommandScheduler,
    ScheduledCommandEntry,
    ScheduledCommandService,
    ScheduleOptions,
    SchedulerSettings,
    SchedulingModule,
)
from scheduling.web import DashboardSettings, create_dashboard_app
from stores.sql import SqlStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-token"
#: Where screenshots are kept (in its ``dashboard/``) when set; ``ARTIFACTS`` otherwise.
ARTIFACTS_ENV = "CQRS_SCHEDULING_TEST_ARTIFACTS"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Upper bound of every wait: generous for a loaded machine, and never waited in full unless something is wrong.
WAIT = 30.0

T = TypeVar("T")


# -- the application ------------------------------------------------------------------------------------------


class Flaky(Command[str]):
    """Fails on its first attempt and succeeds on every later one (counted per key)."""

    key: str


_attempts: dict[str, int] = {}


class FlakyHandler(CommandHandler[Flaky, str]):
    async def handle(self, command: Flaky) -> str:
        _attempts[command.key] = seen = _attempts.get(command.key, 0) + 1
        if seen == 1:
            raise RuntimeError(f"first attempt at {command.key} fails")
        return f"{command.key} done on attempt {seen}"


def _evil_app(target: str) -> Starlette:
    """A page on another origin whose form POSTs to the dashboard's requeue-all route as soon as it loads."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><title>Win a prize</title></head><body>
<form id="attack" method="post" action="{target}"><input type="hidden" name="command_type" value=""></form>
<script>document.getElementById("attack").submit();</script></body></html>"""
        )

    return Starlette(routes=[Route("/", page)])


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Served:
    """The running servers and worker, and a way to run coroutines on their loop from the test."""

    url: str
    read_only_url: str
    evil_url: str
    loop: asyncio.AbstractEventLoop
    scheduler: CommandScheduler
    store: SqlStore

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=WAIT)

    def status(self, entry_id: str) -> str:
        entry: ScheduledCommandEntry | None = self.call(self.store.get(entry_id))
        assert entry is not None
        return entry.status.value

    def schedule_dead_letter(self, key: str) -> str:
        """Schedule a Flaky command allowed one attempt only; it becomes a dead letter."""
        return self.call(self.scheduler.schedule(Flaky(key=key), ScheduleOptions(max_retries=0)))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    _attempts.clear()
    sockets = [_listening_socket() for _ in range(3)]
    ports = [sock.getsockname()[1] for sock in sockets]
    ready = threading.Event()
    box: dict[str, Any] = {}
    servers: list[uvicorn.Server] = []

    async def main() -> None:
        store = SqlStore(f"sqlite:///{tmp_path / 'dashboard.db'}")
        await store.open()
        try:
            injector = Injector(
                [
                    MediatorModule(handlers=[FlakyHandler]),
                    SchedulingModule(
                        store=store,
                        settings=SchedulerSettings(worker_id="e2e-worker", polling_interval=timedelta(seconds=0.5)),
                    ),
                ]
            )
            apps = [
                create_dashboard_app(store, settings=DashboardSettings(token=TOKEN, refresh_seconds=0.5)),
                create_dashboard_app(
                    store, settings=DashboardSettings(token=TOKEN, refresh_seconds=0.5, read_only=True)
                ),
                _evil_app(f"http://127.0.0.1:{ports[0]}/api/dead-letters/requeue"),
            ]
            for app in apps:
                config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
                servers.append(uvicorn.Server(config))
            box["scheduler"] = injector.get(CommandScheduler)
            box["store"] = store
            async with injector.get(ScheduledCommandService):
                serving = [
                    asyncio.create_task(server.serve(sockets=[sock]))
                    for server, sock in zip(servers, sockets, strict=True)
                ]
                while not all(server.started for server in servers) and not any(t.done() for t in serving):
                    await asyncio.sleep(0.01)
                ready.set()
                await asyncio.gather(*serving)
        finally:
            await store.close()

    def run() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            box["error"] = exc
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="dashboard-e2e", daemon=True)
    thread.start()
    assert ready.wait(WAIT), "the servers did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield Served(
            url=f"http://127.0.0.1:{ports[0]}",
            read_only_url=f"http://127.0.0.1:{ports[1]}",
            evil_url=f"http://127.0.0.1:{ports[2]}",
            loop=box["loop"],
            scheduler=box["scheduler"],
            store=box["store"],
        )
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(WAIT)
        for sock in sockets:
            sock.close()
        assert not thread.is_alive(), "the servers did not stop"
        if "error" in box:
            raise box["error"]


# -- the browser ----------------------------------------------------------------------------------------------


def _require_chromium() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    reason = (
        f"headless Chromium is not installed ({', '.join(missing)} missing): "
        "install the Debian packages chromium and chromium-driver"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)")
    pytest.skip(reason)


def test_without_chromium_the_tests_skip_and_under_ci_they_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install the Debian packages chromium and chromium-driver"):
        _require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _require_chromium()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations included
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], T], message: str) -> T:
    """Poll ``condition`` until it holds. An element missing or replaced while it is read means "not yet": the page
    swaps parts of itself after an action, and on a busy machine a poll can fall between finding an element and
    reading it."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    result: T = WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=ignored).until(condition, message)
    return result


def click(driver: Any, by: str, selector: str, message: str = "") -> None:
    """Find an element and click it, again if the live region holding it was swapped in between (the dashboard
    refreshes its regions every half second here, so a found element can be replaced before the click)."""
    _act_on(driver, lambda d: d.find_element(by, selector).click(), message or f"{selector} clicked")


def press_enter(driver: Any, by: str, selector: str, message: str = "") -> None:
    """Focus an element by sending it Enter (the keyboard's way to press a button), found again as ``click`` does."""
    from selenium.webdriver.common.keys import Keys

    _act_on(driver, lambda d: d.find_element(by, selector).send_keys(Keys.ENTER), message or f"Enter on {selector}")


def _act_on(driver: Any, act: Callable[[Any], None], message: str) -> None:
    """Run ``act`` until it goes through. An element replaced by a live update before the action is stale; one
    replaced while ChromeDriver acts on it (its steps, scrolling, focusing, typing, are separate page tasks, and the
    update can run between them) is "not interactable". Either means "find it again"; an action that went through
    is not repeated."""
    from selenium.common.exceptions import (
        ElementNotInteractableException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException, ElementNotInteractableException)
    WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=ignored).until(lambda d: act(d) or True, message)


def screenshot(driver: Any, name: str) -> None:
    """Take a shot of the whole page (the window grows to the page's height for it); keep it as ``{name}.png`` in
    ``dashboard/`` of ``$CQRS_SCHEDULING_TEST_ARTIFACTS`` or ``test-artifacts/``."""
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(size["width"], max(size["height"], min(int(height) + 120, 4000)))
    try:
        png: bytes = driver.get_screenshot_as_png()
    finally:
        driver.set_window_size(size["width"], size["height"])
    assert png.startswith(b"\x89PNG"), name
    kept = Path(os.environ.get(ARTIFACTS_ENV) or ARTIFACTS) / "dashboard"
    kept.mkdir(parents=True, exist_ok=True)
    (kept / f"{name}.png").write_bytes(png)


def login(driver: Any, base: str, path: str) -> None:
    """Open ``path`` once with ``?token=``: the dashboard sets its session cookie and drops the token from the URL."""
    driver.get(f"{base}{path}?token={TOKEN}")
    wait_for(driver, lambda d: d.current_url == f"{base}{path}", f"login redirect to {path}")


def element(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, element_id)
    return found[0] if found else None


def live_status(driver: Any) -> str | None:
    """The status the entry page shows right now (None while the region is being swapped)."""
    status: str | None = driver.execute_script(
        'var e = document.getElementById("entry-status"); return e && e.dataset.status;'
    )
    return status


def action_buttons(driver: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    buttons: list[Any] = driver.find_elements(By.CSS_SELECTOR, "button[data-action]")
    return buttons


# -- scenarios ------------------------------------------------------------------------------------------------


def test_requeue_a_dead_letter_and_watch_it_complete(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    first, second = served.schedule_dead_letter("first"), served.schedule_dead_letter("second")
    wait_for(browser, lambda _: served.status(first) == served.status(second) == "FAILED", "both dead-lettered")

    login(browser, served.url, "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    assert browser.find_element(By.ID, "count-FAILED").text == "2"
    screenshot(browser, "overview")

    browser.get(f"{served.url}/dead-letters")
    wait_for(browser, lambda d: element(d, f"dead-row-{first}") and element(d, f"dead-row-{second}"), "dead letters")
    assert "first attempt at first fails" in browser.find_element(By.ID, f"dead-row-{first}").text
    browser.execute_script("window.e2eMarker = 'still the same page';")
    screenshot(browser, "dead-letters-before")

    # Keyboard only: focus the first entry's Requeue button and press Enter.
    press_enter(browser, By.ID, f"dead-requeue-{first}")
    wait_for(browser, lambda d: f"Requeued entry {first}." in d.find_element(By.ID, "announcer").text, "announced")
    # The live update drops the row, without a reload; its button is gone, so focus moves to the region.
    wait_for(browser, lambda d: element(d, f"dead-row-{first}") is None, "requeued row leaves the dead letters")
    assert browser.execute_script("return window.e2eMarker;") == "still the same page"
    assert browser.execute_script("return document.activeElement.id;") == "live"
    assert element(browser, f"dead-row-{second}") is not None
    wait_for(browser, lambda _: served.status(first) == "COMPLETED", "the requeued entry completes")

    # A new dead letter appears by itself, and the button that had focus keeps it across the update.
    bulk = browser.find_element(By.ID, "requeue-type-1")
    browser.execute_script("arguments[0].focus();", bulk)
    third = served.schedule_dead_letter("third")
    wait_for(browser, lambda d: element(d, f"dead-row-{third}") is not None, "the new dead letter shows up")
    assert browser.execute_script("return document.activeElement.id;") == "requeue-type-1"
    assert browser.execute_script("return window.e2eMarker;") == "still the same page"

    # The second one: open its page, press its Requeue button, and watch its status change in place.
    click(browser, By.ID, f"dead-link-{second}")
    wait_for(browser, lambda d: live_status(d) == "FAILED", "the entry page shows FAILED")
    browser.execute_script("window.e2eMarker = 'entry page';")
    click(browser, By.ID, "detail-requeue")
    wait_for(browser, lambda d: live_status(d) == "COMPLETED", "the entry page shows COMPLETED")
    assert browser.execute_script("return window.e2eMarker;") == "entry page"
    attempts = browser.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
    assert [row.find_element(By.TAG_NAME, "th").text for row in attempts] == ["1", "2"]
    assert "failed" in attempts[0].text and "completed" in attempts[1].text
    assert "second done on attempt 2" in browser.find_element(By.ID, "entry-result").text
    screenshot(browser, "entry-detail")

    # The third one, with "Requeue all failed of this type": the Entries page states the count and asks first.
    browser.get(f"{served.url}/dead-letters")
    wait_for(browser, lambda d: element(d, f"dead-row-{third}") is not None, "the third dead letter is listed")
    click(browser, By.ID, "requeue-type-1")
    wait_for(browser, lambda d: d.find_element(By.ID, "bulk-confirm").is_displayed(), "the confirmation")
    assert served.status(third) == "FAILED"  # not before the confirmation
    assert browser.find_element(By.ID, "bulk-question").text.startswith("Requeue 1 entry (FAILED, matching")
    click(browser, By.ID, "bulk-confirm-yes")
    wait_for(browser, lambda d: "Requeued 1 of 1 entry." in d.find_element(By.ID, "announcer").text, "announced")
    browser.get(f"{served.url}/dead-letters")
    wait_for(browser, lambda d: element(d, "no-dead-letters") is not None, "the dead-letter queue is empty")
    wait_for(browser, lambda _: served.status(third) == "COMPLETED", "the third entry completes")
    screenshot(browser, "dead-letters-after")
    assert served.status(first) == served.status(second) == "COMPLETED"


def test_cancel_dismisses_a_dead_letter(served: Served, browser: Any) -> None:
    """The Cancel button beside Requeue dismisses a dead letter: it leaves the page in place (no reload), and the
    store holds it CANCELLED with its attempt."""
    from selenium.webdriver.common.by import By

    dismissed, kept = served.schedule_dead_letter("unwanted"), served.schedule_dead_letter("kept")
    wait_for(browser, lambda _: served.status(dismissed) == served.status(kept) == "FAILED", "both dead-lettered")

    login(browser, served.url, "/dead-letters")
    wait_for(browser, lambda d: element(d, f"dead-row-{dismissed}") and element(d, f"dead-row-{kept}"), "listed")
    browser.execute_script("window.e2eMarker = 'dead letters';")
    cancel = browser.find_element(By.ID, f"dead-cancel-{dismissed}")
    assert cancel.accessible_name == f"Cancel entry {dismissed}"
    assert browser.find_element(By.ID, f"dead-requeue-{dismissed}").accessible_name == f"Requeue entry {dismissed}"

    press_enter(browser, By.ID, f"dead-cancel-{dismissed}")
    wait_for(browser, lambda d: f"Cancelled entry {dismissed}." in d.find_element(By.ID, "announcer").text, "announced")
    wait_for(browser, lambda d: element(d, f"dead-row-{dismissed}") is None, "the dismissed entry leaves the page")
    assert element(browser, f"dead-row-{kept}") is not None
    assert browser.execute_script("return window.e2eMarker;") == "dead letters"
    screenshot(browser, "dead-letters-dismissed")
    assert served.status(dismissed) == "CANCELLED"
    assert served.status(kept) == "FAILED"
    attempts = served.call(served.store.get_attempts(dismissed))
    assert [a.outcome for a in attempts] == ["failed"]

    # Its own page shows it CANCELLED, with no buttons left.
    browser.get(f"{served.url}/entries/{dismissed}")
    wait_for(browser, lambda d: live_status(d) == "CANCELLED", "the entry page shows CANCELLED")
    assert action_buttons(browser) == []


def test_pause_and_resume_a_recurring_schedule(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    served.call(served.scheduler.schedule_recurring("hourly-sync", Flaky(key="sync"), interval=timedelta(hours=1)))
    login(browser, served.url, "/recurring")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-name="hourly-sync"]')
    assert "every 1 h" in row.text and "Active" in row.text
    browser.execute_script("window.e2eMarker = 'recurring';")

    click(browser, By.ID, "pause-1")
    wait_for(browser, lambda d: "Paused" in d.find_element(By.ID, "schedule-row-1").text, "shown as paused")
    wait_for(browser, lambda d: d.find_element(By.ID, "announcer").text == "Paused schedule hourly-sync.", "announced")
    paused = served.call(served.scheduler.get_recurring("hourly-sync"))
    assert paused is not None and paused.paused
    screenshot(browser, "recurring")

    press_enter(browser, By.ID, "resume-1")
    wait_for(browser, lambda d: "Active" in d.find_element(By.ID, "schedule-row-1").text, "shown as active again")
    resumed = served.call(served.scheduler.get_recurring("hourly-sync"))
    assert resumed is not None and not resumed.paused
    assert browser.execute_script("return window.e2eMarker;") == "recurring"


def test_pause_and_resume_a_queue_and_see_it_audited(served: Served, browser: Any) -> None:
    """The Queues page's Pause stops the fleet claiming the queue (stored), the row and the announcer say so, the
    Audit page shows who paused which queue; Resume undoes it."""
    from selenium.webdriver.common.by import By

    served.call(served.scheduler.schedule(Flaky(key="queued"), ScheduleOptions(delay=timedelta(days=1))))
    login(browser, served.url, "/queues")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-name="default"]')
    assert "Active" in row.text and row.get_attribute("data-paused") == "false"

    click(browser, By.ID, "queue-pause-1")
    wait_for(browser, lambda d: d.find_element(By.ID, "queue-state-1").text == "Paused", "shown as paused")
    wait_for(browser, lambda d: d.find_element(By.ID, "announcer").text == "Paused queue default.", "announced")
    assert [q.paused for q in served.call(served.store.list_queues()) if q.name == "default"] == [True]
    screenshot(browser, "queues")

    browser.get(f"{served.url}/audit")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-action="pause_queue"]')
    assert "session (dashboard)" in row.text and "default" in row.text

    browser.get(f"{served.url}/queues")
    click(browser, By.ID, "queue-resume-1")
    wait_for(browser, lambda d: d.find_element(By.ID, "queue-state-1").text == "Active", "shown as active again")
    assert [q.paused for q in served.call(served.store.list_queues()) if q.name == "default"] == [False]
    browser.get(f"{served.url}/audit")
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-action="resume_queue"]')


def test_a_requeue_from_the_dashboard_is_on_the_audit_page_and_the_entry_page(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    entry_id = served.schedule_dead_letter("audited")
    wait_for(browser, lambda _: served.status(entry_id) == "FAILED", "dead-lettered")
    login(browser, served.url, "/dead-letters")
    wait_for(browser, lambda d: element(d, f"dead-requeue-{entry_id}") is not None, "the dead letter is listed")
    click(browser, By.ID, f"dead-requeue-{entry_id}")
    wait_for(browser, lambda d: f"Requeued entry {entry_id}." in d.find_element(By.ID, "announcer").text, "announced")

    browser.get(f"{served.url}/audit")
    row = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-action="requeue"]').text, "audit row")
    assert "session (dashboard)" in row and entry_id[:8] in row
    screenshot(browser, "audit")
    click(browser, By.CSS_SELECTOR, 'tr[data-action="requeue"] a')
    wait_for(browser, lambda d: element(d, "entry-audit") is not None, "the entry page")
    assert "requeue" in browser.find_element(By.ID, "entry-audit").text


def test_read_only_mode_shows_no_buttons_and_refuses_changes(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    entry_id = served.schedule_dead_letter("read-only")
    wait_for(browser, lambda _: served.status(entry_id) == "FAILED", "dead-lettered")

    login(browser, served.read_only_url, "/dead-letters")
    wait_for(browser, lambda d: element(d, f"dead-row-{entry_id}") is not None, "the dead letter is listed")
    assert "Read-only mode" in browser.find_element(By.TAG_NAME, "header").text
    for path in ("/dead-letters", f"/entries/{entry_id}", "/entries", "/recurring", "/workers", "/"):
        browser.get(f"{served.read_only_url}{path}")
        wait_for(browser, lambda d: d.find_elements(By.TAG_NAME, "h1"), f"{path} loads")
        assert action_buttons(browser) == [], path
    # Even a request crafted in the page itself, with the CSRF token, is refused.
    status = browser.execute_async_script(
        """
        var done = arguments[arguments.length - 1];
        var token = document.querySelector('meta[name="csrf-token"]').content;
        fetch(arguments[0], {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": token}})
          .then(function (r) { done(r.status); });
        """,
        f"{served.read_only_url}/api/entries/{entry_id}/requeue",
    )
    assert status == 403
    assert served.status(entry_id) == "FAILED"


def test_a_cross_site_form_post_requeues_nothing(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    entry_id = served.schedule_dead_letter("cross-site")
    wait_for(browser, lambda _: served.status(entry_id) == "FAILED", "dead-lettered")
    login(browser, served.url, "/dead-letters")  # the browser holds a valid session cookie

    # Another origin of the same site (127.0.0.1, another port): the SameSite=Strict cookie is sent along, so
    # only the dashboard's own checks stand between this form and the requeue.
    browser.get(served.evil_url)
    target = f"{served.url}/api/dead-letters/requeue"
    wait_for(browser, lambda d: d.current_url == target, "the form was submitted")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "refused" in body, body
    assert served.status(entry_id) == "FAILED"

    # The session itself still works from the dashboard's own page.
    browser.get(f"{served.url}/dead-letters")
    wait_for(browser, lambda d: element(d, f"dead-requeue-{entry_id}") is not None, "the dashboard still works")


def csp_violations(driver: Any) -> list[str]:
    """Console messages about the Content Security Policy since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_the_pages_work_under_the_content_security_policy_and_log_out(served: Served, browser: Any) -> None:
    """The login form (its inline style allowed by hash), every page, its stylesheet, script and live updates run
    under ``default-src 'self'`` with no violation; Log out ends the browser's session."""
    from selenium.webdriver.common.by import By

    entry_id = served.schedule_dead_letter("csp")
    wait_for(browser, lambda _: served.status(entry_id) == "FAILED", "dead-lettered")
    browser.get(f"{served.url}/dead-letters")
    button = browser.find_element(By.CSS_SELECTOR, 'button[type="submit"]')
    assert button.value_of_css_property("background-color") == "rgba(11, 87, 208, 1)"  # the login page's style
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    button.click()
    wait_for(browser, lambda d: element(d, f"dead-row-{entry_id}") is not None, "logged in, the dead letter listed")
    for path in ("/", "/entries", f"/entries/{entry_id}", "/recurring", "/workers", "/dead-letters"):
        browser.get(f"{served.url}{path}")
        wait_for(browser, lambda d: d.find_elements(By.TAG_NAME, "h1"), f"{path} loads")
        header = browser.find_element(By.CSS_SELECTOR, "header.site-header")
        assert header.value_of_css_property("background-color") == "rgba(31, 41, 55, 1)", path  # dashboard.css
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.refreshSeconds") is not None, "ok")
    click(browser, By.ID, f"dead-requeue-{entry_id}")  # dashboard.js runs: the action is posted
    wait_for(browser, lambda _: served.status(entry_id) != "FAILED", "requeued from the page")
    assert csp_violations(browser) == []

    click(browser, By.ID, "logout")
    wait_for(browser, lambda d: d.current_url == f"{served.url}/login", "logged out")
    browser.get(f"{served.url}/entries")
    wait_for(browser, lambda d: element(d, "token") is not None, "the login form again")
    assert csp_violations(browser) == []
