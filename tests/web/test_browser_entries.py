"""The Entries page in a real headless Chromium: search, the count, page jump, a bulk action on a selection, and a
bulk requeue of a whole search result through its confirmation, its progress and the audit record it leaves.

The servers, the worker and the browser are those of ``test_browser.py`` (its fixtures, imported): a real uvicorn
server over a SQLite file, a real ``ScheduledCommandService``, Chromium driven by chromedriver.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from test_browser import Flaky, Served, browser, click, element, login, screenshot, served, wait_for

from scheduling import ScheduleOptions

__all__ = ["browser", "served"]  # the fixtures, imported for pytest


def pending(served: Served, key: str) -> str:
    """A Flaky command due tomorrow: PENDING for the whole test."""
    return served.call(served.scheduler.schedule(Flaky(key=key), ScheduleOptions(delay=timedelta(days=1))))


def text_of(driver: Any, element_id: str) -> str:
    """The element's text as shown, read in one script call (the live region may swap it at any moment)."""
    shown = driver.execute_script(
        "var e = document.getElementById(arguments[0]); return e ? e.innerText.trim() : '';", element_id
    )
    return str(shown)


def test_search_count_page_jump_and_cancel_a_selection(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    dead = [served.schedule_dead_letter(f"dead{i}") for i in range(3)]
    later = [pending(served, f"later{i}") for i in range(2)]
    wait_for(browser, lambda _: all(served.status(i) == "FAILED" for i in dead), "dead-lettered")

    login(browser, served.url, "/entries")
    assert text_of(browser, "entries-total") == "5 entries match."
    browser.find_element(By.ID, "filter-error").send_keys("FIRST ATTEMPT AT DEAD1")
    click(browser, By.ID, "filter-apply")
    wait_for(browser, lambda d: text_of(d, "entries-total") == "1 entry matches.", "the error search")
    assert element(browser, f"entries-row-{dead[1]}") is not None

    browser.get(f"{served.url}/entries?limit=2&id_prefix=")
    assert text_of(browser, "page-number") == "page 1 of 3"
    jump = browser.find_element(By.ID, "page-jump-number")
    jump.clear()
    jump.send_keys("3")
    click(browser, By.ID, "page-jump-go")
    wait_for(browser, lambda d: text_of(d, "page-range") == "Entries 5 to 5", "page 3")
    assert text_of(browser, "page-number") == "page 3 of 3"
    assert element(browser, f"entries-row-{dead[0]}") is not None  # the oldest entry, last
    browser.execute_script("document.getElementById('page-previous').click();")
    wait_for(browser, lambda d: text_of(d, "page-range") == "Entries 3 to 4", "back to page 2")

    browser.get(f"{served.url}/entries?status=PENDING")
    wait_for(browser, lambda d: text_of(d, "entries-total") == "2 entries match.", "the pending ones")
    # Clicked in one script call: the live region may swap the checkbox between finding and clicking it.
    browser.execute_script("document.getElementById('entries-select-page').click();")
    assert text_of(browser, "bulk-selected-count") == "2 entries selected."
    click(browser, By.ID, "bulk-selected-cancel")
    wait_for(browser, lambda d: d.find_element(By.ID, "bulk-confirm").is_displayed(), "the confirmation")
    assert text_of(browser, "bulk-question").startswith("Cancel 2 entries selected?")
    screenshot(browser, "entries-bulk-confirm")
    click(browser, By.ID, "bulk-confirm-yes")
    wait_for(browser, lambda _: all(served.status(i) == "CANCELLED" for i in later), "both cancelled")
    wait_for(browser, lambda d: "Cancelled 2 entries of 2 selected." in text_of(d, "bulk-progress-text"), "reported")
    assert [served.status(i) for i in dead] == ["FAILED"] * 3


def test_requeue_every_dead_letter_of_a_search_after_confirming_the_count(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    dead = [served.schedule_dead_letter(f"bulk{i}") for i in range(3)]
    untouched = pending(served, "untouched")
    wait_for(browser, lambda _: all(served.status(i) == "FAILED" for i in dead), "dead-lettered")

    login(browser, served.url, "/entries")
    click(browser, By.ID, "bulk-all-requeue")
    wait_for(browser, lambda d: d.find_element(By.ID, "bulk-confirm").is_displayed(), "the confirmation")
    assert text_of(browser, "bulk-question").startswith("Requeue 3 entries (FAILED, matching every entry)?")
    assert text_of(browser, "bulk-confirm-yes") == "Requeue 3 entries"
    assert [served.status(i) for i in dead] == ["FAILED"] * 3  # nothing happens before the confirmation
    click(browser, By.ID, "bulk-confirm-yes")
    wait_for(browser, lambda d: text_of(d, "bulk-progress-text") == "Requeued 3 of 3 entries.", "the run's end")
    assert browser.find_element(By.ID, "bulk-progress").get_attribute("value") == "3"
    screenshot(browser, "entries-bulk-done")
    wait_for(browser, lambda _: all(served.status(i) == "COMPLETED" for i in dead), "run again and completed")
    assert served.status(untouched) == "PENDING"

    browser.get(f"{served.url}/audit")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-action="bulk_requeue"]')
    assert "session (dashboard)" in row.text and "every entry (batch 1)" in row.text
    assert all(entry_id[:8] in row.text for entry_id in dead)
