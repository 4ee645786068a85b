"""Dates and moments in form inputs are written by compiled str.format templates: the same text Babel writes."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from babel.dates import format_date, format_datetime

from kartoteka.metadata.types.scalar import _DATE_INPUT_PATTERNS, _ISO_DATE_PATTERN, _TIME_INPUT_PATTERN, input_digits

DATE_PATTERNS = sorted({*_DATE_INPUT_PATTERNS.values(), _ISO_DATE_PATTERN})


def _days() -> list[date]:
    rng = random.Random(20261201)
    edges = [date.min, date.max, date(1, 1, 1), date(9, 9, 9), date(999, 12, 31), date(1000, 1, 1), date(2024, 2, 29)]
    return edges + [date.min + timedelta(days=rng.randrange((date.max - date.min).days)) for _ in range(2000)]


@pytest.mark.parametrize("pattern", DATE_PATTERNS)
def test_dates_are_written_as_babel_writes_them(pattern):
    for day in _days():
        assert input_digits(day, pattern) == format_date(day, pattern, locale="en"), day


@pytest.mark.parametrize("pattern", DATE_PATTERNS)
@pytest.mark.parametrize("seconds", ["", ":ss"])
def test_moments_are_written_as_babel_writes_them(pattern, seconds):
    rng = random.Random(7)
    full = f"{pattern} {_TIME_INPUT_PATTERN}{seconds}"
    for day in _days()[:500]:
        moment = datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60), rng.randrange(60))
        assert input_digits(moment, full) == format_datetime(moment, full, locale="en"), moment
        aware = moment.replace(tzinfo=UTC).replace(tzinfo=None)
        assert input_digits(aware, full) == format_datetime(aware, full, locale="en")


@pytest.mark.parametrize("pattern", ["d MMM y", "EEEE", "dd 'of' MM", "yyyy{0}"])
def test_a_pattern_with_words_or_quotes_is_refused_not_misread(pattern):
    with pytest.raises(ValueError, match="digits-only"):
        input_digits(date(2026, 12, 1), pattern)
