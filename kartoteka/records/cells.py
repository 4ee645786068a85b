"""Texts written into files people open in a spreadsheet (exports, the consent archive)."""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"[+-][\d\s().-]*")


def safe_text(value: Any) -> Any:
    """A text a spreadsheet would run as a formula, written with a leading apostrophe; anything else as it is."""
    if not isinstance(value, str) or not value:
        return value
    first = value[0]
    if first in "=@\t\r" or (first in "+-" and not _NUMBER.fullmatch(value)):
        return "'" + value
    return value
