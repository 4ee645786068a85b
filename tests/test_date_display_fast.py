"""Dates shown on pages are written field by field from compiled patterns: the very text Babel writes."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from babel import dates as babel_dates

from kartoteka.web.formatting import _DATE_PATTERNS, _day_writer, _locale, format_date


def _days() -> list[date]:
    rng = random.Random(20261201)
    edges = [date.min, date.max, date(1, 1, 1), date(9, 9, 9), date(99, 1, 31), date(999, 12, 31), date(1000, 2, 1),
             date(2024, 2, 29), date(2026, 12, 31), date(2027, 1, 1)]
    return edges + [date.min + timedelta(days=rng.randrange((date.max - date.min).days)) for _ in range(3000)]


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_pages_dates_are_babels(language):
    pattern = babel_dates.parse_pattern(_DATE_PATTERNS[language])
    for day in _days():
        assert format_date(day, language) == pattern.apply(day, _locale(language)), day
    moment = datetime(2026, 3, 5, 23, 59)
    assert format_date(moment, language) == pattern.apply(moment.date(), _locale(language))


@pytest.mark.parametrize("pattern", ["MMMM d, yyyy", "d MMM yy", "y-M-d", "dd/MM/yyy", "d 'de' MMMM 'de' y",
                                     "EEE, d MMM y", "LLLL y", "d MMMMM y", "QQQ y", "'%' d.M.y"])
@pytest.mark.parametrize("language", ["en", "ru", "de"])
def test_any_pattern_is_written_as_babel_writes_it_or_left_to_babel(pattern, language):
    parsed, locale = babel_dates.parse_pattern(pattern), _locale(language)
    write = _day_writer(pattern, language)
    for day in _days()[:600]:
        assert write(day) == parsed.apply(day, locale), (pattern, day)
