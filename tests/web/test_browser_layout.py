"""Every page of the dashboard in headless Chromium at desktop width (1280 px) and phone width (390 px), in one
browser session: nothing scrolls sideways, at 390 px every table is a stack of labelled rows, and a screenshot of
each page at each width is written to ``test-artifacts/dashboard/`` (git-ignored; ``$CQRS_SCHEDULING_TEST_ARTIFACTS``
names another directory). Also in the browser: the overview's range links and Run now on a schedule's page, with
the audit record it leaves.

The servers, the worker and the browser are those of ``test_browser.py`` (its fixtures).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import test_browser
from test_browser import ARTIFACTS, ARTIFACTS_ENV, Flaky, Served, click, element, login, wait_for

from scheduling import ScheduleOptions

DESKTOP, PHONE = 1280, 390

#: The servers, worker and browser of ``test_browser.py``.
served = test_browser.served
browser = test_browser.browser


def artifacts() -> Path:
    """Where the screenshots go: ``$CQRS_SCHEDULING_TEST_ARTIFACTS/dashboard`` or ``test-artifacts/dashboard``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or ARTIFACTS) / "dashboard"


def emulate(driver: Any, width: int, height: int = 900) -> None:
    """Lay the page out at ``width`` CSS pixels, as a phone would (a window cannot be made that narrow)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def full_page_shot(driver: Any, width: int, name: str) -> None:
    """A screenshot of the whole page at ``width``, written as ``{name}.png``."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight;"))
    emulate(driver, width, min(max(height, 600), 6000))
    png: bytes = driver.get_screenshot_as_png()
    emulate(driver, width)
    assert png.startswith(b"\x89PNG"), name
    directory = artifacts()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.png").write_bytes(png)


#: At phone width: how wide the page is, what it scrolls to, and per table row whether it is a block whose cells
#: (those with content) all show a label.
_LAYOUT = """
const tables = Array.from(document.querySelectorAll("main table"));
const rows = tables.flatMap(t => Array.from(t.querySelectorAll("tbody tr")));
const unlabelled = [];
for (const row of rows) {
  for (const cell of row.children) {
    if (cell.hasAttribute("colspan") || !cell.textContent.trim()) continue;
    const label = getComputedStyle(cell, "::before").content;
    if (!label || label === "none" || label === "normal") unlabelled.push(row.id + ": " + cell.textContent.trim());
  }
}
return {
  inner: window.innerWidth,
  scroll: document.documentElement.scrollWidth,
  tables: tables.length,
  blockRows: rows.filter(r => getComputedStyle(r).display === "block").length,
  rows: rows.length,
  unlabelled: unlabelled,
};
"""


def test_every_page_fits_a_phone_and_is_shot_at_both_widths(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    dead = served.schedule_dead_letter("layout")
    wait_for(browser, lambda _: served.status(dead) == "FAILED", "dead-lettered")
    served.call(served.scheduler.schedule(Flaky(key="later"), ScheduleOptions(delay=timedelta(days=1))))
    served.call(served.scheduler.schedule_recurring("nightly-report", Flaky(key="n"), cron="0 3 * * *"))

    login(browser, served.url, "/recurring/nightly-report")
    # Run now on the schedule's page: announced, the occurrence listed, and on the Audit page.
    click(browser, By.ID, "run-now")
    wait_for(browser, lambda d: "due now" in d.find_element(By.ID, "announcer").text, "run now announced")
    wait_for(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#occurrences tbody tr[data-status]")) == 2,
        "the occurrence run now is listed beside the regular one",
    )
    browser.get(f"{served.url}/audit")
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-action="run-now"]')

    # The overview's ranges are plain links.
    browser.get(f"{served.url}/")
    click(browser, By.ID, "range-7d")
    wait_for(browser, lambda d: "7 days" in d.find_element(By.ID, "outcomes-heading").text, "the 7 d range")
    assert element(browser, "range-7d").get_attribute("aria-current") == "true"
    assert element(browser, "outcome-total-failed").text == "1"

    pages = {
        "overview": "/",
        "overview-24h": "/?range=24h",
        "entries": "/entries",
        "entry": f"/entries/{dead}",
        "dead-letters": "/dead-letters",
        "recurring": "/recurring",
        "recurring-schedule": "/recurring/nightly-report",
        "queues": "/queues",
        "workers": "/workers",
        "audit": "/audit",
    }
    for width, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        emulate(browser, width)
        for name, path in pages.items():
            browser.get(f"{served.url}{path}")
            wait_for(browser, lambda d: d.find_elements(By.TAG_NAME, "h1"), f"{path} loads")
            layout = browser.execute_script(_LAYOUT)
            assert layout["inner"] == width, (name, layout)
            assert layout["scroll"] <= width, f"{name} scrolls sideways at {width} px: {layout}"
            if width == PHONE:
                assert layout["blockRows"] == layout["rows"], (name, layout)
                assert layout["unlabelled"] == [], (name, layout["unlabelled"])
            full_page_shot(browser, width, f"{name}-{label}")
    shots = {p.name for p in artifacts().glob("*.png")}
    assert shots >= {f"{name}-{label}.png" for name in pages for label in ("desktop", "phone")}
