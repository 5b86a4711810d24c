"""``admin.parse_duration``: the ``--older-than`` / ``older_than`` durations of purge, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduling.admin import MAX_DURATION, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 1d 2h ", timedelta(days=1, hours=2)),
        ("P7D", timedelta(days=7)),
        ("PT1H30M", timedelta(minutes=90)),
        ("365250d", MAX_DURATION),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert datetime.now(UTC) - parse_duration(text) > datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "not a duration: 'soon'"),
        ("", "not a duration: ''"),
        ("-1d", "must be positive, got '-1d'"),
        ("0s", "must be positive, got '0s'"),
        ("365251d", "'365251d' is too long"),
        ("999999999d", "'999999999d' is too long"),  # a timedelta, but "now" minus it is before year 1
        ("99999999999d", "'99999999999d' is too long"),  # not even a timedelta
        ("1" * 400 + "s", "is too long"),  # a float overflow
        ("P999999999D", "'P999999999D' is too long"),
        ("P99999999999D", "not a duration: 'P99999999999D'"),
    ],
)
def test_refusals_name_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    assert message in str(raised.value)
