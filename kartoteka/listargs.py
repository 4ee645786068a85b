"""A list request's query string (`?stage__in=a,b&amount__gte=10&q=..&sort=-amount`) as a ListQuery.

The API and the web lists read the same syntax, so a list's URL is also its API query.
"""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from kartoteka.errors import BadRequest
from kartoteka.messages import Message
from kartoteka.records.model import Filter, ListQuery

# Keys that are not filters; `board` names the select a kanban board groups by.
LIST_PARAMS = frozenset({"sort", "limit", "cursor", "q", "total", "board"})
# A filter form has a dozen controls (two for a range); ticked boxes of one field make one `__in` filter.
MAX_FILTERS = 50


def list_query(args: MultiDict[str, str], default_limit: int = 50, *, skip_empty: bool = False) -> ListQuery:
    """Filters (`field=value`, `field__op=value`, repeatable), search, sort, limit and cursor.

    `skip_empty` ignores filters with no value, as an empty box of a filter form means "any"; the
    API keeps them, so `name__contains=` is an error there rather than a silently wider result.
    """
    filters = []
    for key in args:
        if key in LIST_PARAMS or key.startswith("_"):
            continue
        name, _, op = key.partition("__")
        values = [v for v in args.getlist(key) if v != "" or not skip_empty]
        if op == "in" and values:
            # Ticked boxes (stage__in=a&stage__in=b) and a typed list (stage__in=a,b) are one filter.
            filters.append(Filter(name, op, [part for v in values for part in v.split(",")]))
            continue
        filters.extend(Filter(name, op or "eq", value) for value in values)
    if len(filters) > MAX_FILTERS:  # each is a clause and a parse: refuse before building any
        raise BadRequest(Message("list.too_many_filters", "At most {limit} filters in one list (has {count}).",
                                 limit=MAX_FILTERS, count=len(filters)))
    try:
        limit = int(args.get("limit", str(default_limit)))
    except ValueError:
        raise BadRequest(Message("limit.not_a_number", "limit must be a whole number.")) from None
    return ListQuery(tuple(filters), args.get("q"), args.get("sort") or None, limit, args.get("cursor") or None)


def without(args: MultiDict[str, str], *keys: str, **replace: Any) -> list[tuple[str, str]]:
    """The query as pairs, without `keys`, with `replace` keys set: for next-page and sort links."""
    pairs = [(k, v) for k, v in args.items(multi=True) if k not in keys and k not in replace and v != ""]
    pairs += [(k, str(v)) for k, v in replace.items() if v is not None]
    return pairs
