"""JSON columns are written and read by orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math

import pytest

from kartoteka.storage.database import _json_dumps, _json_loads


def test_records_json_is_compact_unescaped_and_reads_back_the_same():
    value = {"name": "ООО «Ромашка» 🌼", "price": 9892.73, "quantity": 9, "tiny": 1e-05, "big": 1e16,
             "tags": ["a", "б"], "flags": None, "ok": True}
    text = _json_dumps(value)
    assert "Ромашка" in text and ", " not in text and ": " not in text
    assert _json_loads(text) == value == json.loads(text)
    assert _json_loads(text.encode()) == value


def test_what_would_not_read_back_the_same_is_refused_not_stored():
    with pytest.raises(ValueError, match="cannot be stored as JSON"):
        _json_dumps({"id": 2**64})  # orjson would read it back as a float
    with pytest.raises(ValueError, match="cannot be stored as JSON"):
        _json_dumps({"text": "\ud800"})
    assert math.isnan(_json_loads('{"x": NaN}')["x"])  # not written by Kartoteka, read if found
