"""JSON columns are written and read by orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math

from kartoteka.storage.database import _json_dumps, _json_loads


def test_records_json_is_compact_unescaped_and_reads_back_the_same():
    value = {"name": "ООО «Ромашка» 🌼", "price": 9892.73, "quantity": 9, "tiny": 1e-05, "big": 1e16,
             "tags": ["a", "б"], "flags": None, "ok": True}
    text = _json_dumps(value)
    assert "Ромашка" in text and ", " not in text and ": " not in text
    assert _json_loads(text) == value == json.loads(text)
    assert _json_loads(text.encode()) == value


def test_what_orjson_refuses_the_standard_library_writes_and_reads():
    assert _json_dumps({"id": 2**70}) == '{"id":1180591620717411303424}'  # beyond 64 bits
    assert _json_dumps({"text": "\ud800"}) == json.dumps({"text": "\ud800"}, ensure_ascii=False, separators=(",", ":"))
    assert math.isnan(_json_loads('{"x": NaN}')["x"])  # not written by Kartoteka, read if found
