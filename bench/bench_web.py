"""Kartoteka's web pages vs hand-written fixed-schema Flask views: server time per request, in process.

    .venv/bin/python -m bench.bench_web [--records 100000] [--database postgresql|sqlite] [--repeat N]

Two pages, each requested through Flask's test client (no network, no browser) from Kartoteka's app
(metadata in bench/config_web) and from a plain Flask app in the same process whose views, SQL and
templates (bench/templates_web) were written by hand for typed tables:

1. the edit form of one card with 60 fields in 3 tabs (`/cards/wide/<id>/edit`);
2. a 50-row list over N deals filtered by stage and sorted by amount, with its total count, and the
   page after it (keyset cursor), for an administrator and for a sales rep who sees only their deals.

Both sides hold the same data under the same ids; the pages are cross-checked (form values, list rows)
before timing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from html import unescape
from html.parser import HTMLParser
from importlib import metadata as dist
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent
from flask import Flask, abort, g, render_template, request, session
from werkzeug.datastructures import MultiDict

from bench.bench_records import server_version
from kartoteka import STATIC_DIR, create_app
from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.records.model import SYSTEM
from kartoteka.records.pipeline import Pipeline
from kartoteka.records.service import RecordService
from kartoteka.records.views import save_view
from kartoteka.storage.database import _json_dumps, create_engine, read_engine, upgrade
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.keys import key_values
from kartoteka.storage.tables import record_links, records, saved_views, users
from kartoteka.users import create_user, session_stamp, start_session

BENCH_DIR = Path(__file__).resolve().parent
CONFIG_DIR = BENCH_DIR / "config_web"
TEMPLATES_DIR = BENCH_DIR / "templates_web"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PAGE_SIZE = 50
WARMUP = 15                       # untimed requests per page and side before timing
REPS = 10                         # sales reps; each owns 1/REPS of the deals
LIST_FILTER = "stage__in=proposal,negotiation&sort=-amount"
CENT = Decimal("0.01")
HUNDRED = Decimal(100)
COUNT_CAP = 10_000                # lists count exactly up to this many (Kartoteka's default list_count_cap)

# --- the fixed-schema tables -----------------------------------------------------------------------

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(17, 2)
Percent = sa.Numeric(5, 2)
Timestamp = sa.DateTime(timezone=True)
fixed_schema = sa.MetaData()


def _system_columns() -> list[sa.Column[Any]]:
    """What every hand-written table keeps besides its fields (the same as Kartoteka's records row)."""
    return [
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("owner", Id, sa.ForeignKey(users.c.id, ondelete="SET NULL")),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("created_by", Id, sa.ForeignKey(users.c.id, ondelete="SET NULL")),
        sa.Column("updated_by", Id, sa.ForeignKey(users.c.id, ondelete="SET NULL")),
        sa.Column("deleted_at", Timestamp),
    ]


bench_accounts = sa.Table(
    "bench_accounts", fixed_schema,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("city", sa.Text),
    *_system_columns(),
)

bench_deals = sa.Table(
    "bench_deals", fixed_schema,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("company_id", Id, sa.ForeignKey("bench_accounts.id")),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("amount", Money),
    sa.Column("probability", Percent, nullable=False),
    sa.Column("expected_revenue", Money),
    sa.Column("close_date", sa.Date),
    sa.Column("source", sa.String(20)),
    sa.Column("tags", sa.JSON),
    sa.Column("contact_email", sa.String(254)),
    sa.Column("next_step", sa.String(500)),
    sa.Column("lost_reason", sa.String(20)),
    *_system_columns(),
)
# A btree per field deal.yaml indexes, (value, id) for keyset pages as Kartoteka has, plus the owner and updated_at
# (Kartoteka: (entity, owner), (entity, updated_at)). As a careful hand-written schema with soft deletes has them,
# they cover live rows only, so the list's count can be answered from the index alone (Kartoteka's partial indexes
# are per entity instead). Kartoteka's roles.yaml gives sales reps their own deals, so Kartoteka indexes a deal's
# owner with its indexed fields (kox_deal: owner, entity, company, stage, amount, close_date, id): the typed table has
# the same but the entity (owner_keys), which also serves its owner's foreign key (Kartoteka has ix_records_owner for
# that, as kox_ indexes are partial per card). See "Index shapes" in bench/README.md.
_live = bench_deals.c.deleted_at.is_(None)
for _name, *_columns in (("stage", "stage", "id"), ("amount", "amount", "id"), ("close_date", "close_date", "id"),
                         ("company", "company_id", "id"), ("updated_at", "updated_at"),
                         ("owner_keys", "owner", "company_id", "stage", "amount", "close_date", "id")):
    sa.Index(f"ix_bench_deals_{_name}", *(bench_deals.c[c] for c in _columns), postgresql_where=_live,
             sqlite_where=_live)

# The 60 fields of wide.yaml as typed columns; lists (e-mails, phones, tags, choices) as JSON.
WIDE_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("name", sa.String(200), nullable=False), sa.Column("code", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False), sa.Column("priority", sa.String(20)),
    sa.Column("account_id", Id, sa.ForeignKey("bench_accounts.id")),
    sa.Column("manager_id", Id, sa.ForeignKey(users.c.id)),
    sa.Column("segments", sa.JSON), sa.Column("tags", sa.JSON),
    sa.Column("emails", sa.JSON), sa.Column("phones", sa.JSON), sa.Column("website", sa.String(2000)),
    sa.Column("contact_name", sa.String(200)), sa.Column("contact_title", sa.String(200)),
    sa.Column("billing_email", sa.String(254)), sa.Column("fax", sa.String(20)),
    sa.Column("preferred_channel", sa.String(20)), sa.Column("country", sa.String(2)),
    sa.Column("region", sa.Text), sa.Column("city", sa.Text), sa.Column("street", sa.Text),
    sa.Column("postcode", sa.String(6)), sa.Column("address_note", sa.Text), sa.Column("description", sa.Text),
    sa.Column("next_step", sa.String(500)),
    sa.Column("quantity", sa.Integer), sa.Column("unit_price", Money), sa.Column("discount", Percent),
    sa.Column("subtotal", Money), sa.Column("tax_rate", Percent), sa.Column("tax", Money), sa.Column("total", Money),
    sa.Column("budget", Money), sa.Column("cost", Money), sa.Column("margin", Money),
    sa.Column("probability", Percent), sa.Column("expected", Money),
    sa.Column("start_date", sa.Date), sa.Column("end_date", sa.Date), sa.Column("duration_days", sa.Integer),
    sa.Column("signed_at", Timestamp), sa.Column("next_call_at", Timestamp), sa.Column("renewal_date", sa.Date),
    sa.Column("employees", sa.Integer), sa.Column("rating", sa.SmallInteger),
    sa.Column("payment_terms", sa.String(20)), sa.Column("invoice_email", sa.String(254)),
    sa.Column("po_number", sa.String(40)), sa.Column("paid", sa.Boolean),
    sa.Column("is_active", sa.Boolean), sa.Column("newsletter", sa.Boolean), sa.Column("vip", sa.Boolean),
    sa.Column("nda_signed", sa.Boolean),
    sa.Column("source", sa.String(20)), sa.Column("campaign", sa.Text), sa.Column("channels", sa.JSON),
    sa.Column("utm_source", sa.Text),
    sa.Column("lost_reason", sa.String(20)), sa.Column("lost_comment", sa.Text), sa.Column("competitor", sa.Text),
    sa.Column("internal_notes", sa.Text),
)
assert len(WIDE_COLUMNS) == 60
WIDE_COMPUTED = frozenset({"subtotal", "tax", "total", "margin", "expected", "duration_days"})
bench_wide = sa.Table("bench_wide", fixed_schema, sa.Column("id", Id, primary_key=True, autoincrement=True),
                      *WIDE_COLUMNS, *_system_columns())

# --- the hand-written app's own option lists (what wide.yaml and deal.yaml say, typed out) -----------

STATUSES = (("new", "New", "#90caf9"), ("active", "Active", "#2e7d32"), ("on_hold", "On hold", "#fb8c00"),
            ("won", "Won", "#1b5e20"), ("lost", "Lost", "#c62828"))
PRIORITIES = (("low", "Low", "#9e9e9e"), ("normal", "Normal", "#1e88e5"), ("high", "High", "#fb8c00"),
              ("urgent", "Urgent", "#c62828"))
SEGMENTS = (("smb", "Small business", "#64b5f6"), ("mid", "Mid-market", "#1e88e5"),
            ("enterprise", "Enterprise", "#0d47a1"), ("public", "Public sector", "#8e24aa"),
            ("partner", "Partner", "#00897b"))
TAG_SUGGESTIONS = ("VIP", "newsletter", "partner", "reseller", "priority")
PREFERRED_CHANNELS = (("email", "E-mail"), ("phone", "Phone"), ("messenger", "Messenger"), ("visit", "Visit"))
COUNTRIES = (("ru", "Russia"), ("kz", "Kazakhstan"), ("by", "Belarus"), ("gb", "United Kingdom"), ("de", "Germany"))
PAYMENT_TERMS = (("prepaid", "Prepaid"), ("net15", "Net 15"), ("net30", "Net 30"), ("net60", "Net 60"))
SOURCES = (("referral", "Referral", "#2e7d32"), ("tender", "Tender", "#6d4c41"), ("partner", "Partner", "#00897b"),
           ("outbound", "Outbound", "#5e35b1"), ("website", "Website", "#1e88e5"))
CHANNELS = (("email", "E-mail"), ("ads", "Ads"), ("events", "Events"), ("referrals", "Referrals"))
LOST_REASONS = (("price", "Price too high"), ("competitor", "Chose a competitor"), ("no_budget", "No budget"),
                ("other", "Other"))

STAGE_OPTIONS = (("new", "New"), ("qualification", "Qualification"), ("proposal", "Proposal"),
                 ("negotiation", "Negotiation"), ("won", "Won"), ("lost", "Lost"))
STAGE_LABELS = dict(STAGE_OPTIONS)
STAGE_WEIGHTS = (30, 20, 15, 10, 15, 10)  # a funnel: proposal + negotiation are 25% of the deals
DEAL_SOURCES = (("referral", "Referral"), ("tender", "Tender"), ("partner", "Partner"), ("outbound", "Outbound"))
DEAL_TAGS = (("vip", "vip"), ("renewal", "renewal"), ("urgent", "urgent"))
DEAL_LOST = (("price", "Price too high"), ("competitor", "Chose a competitor"), ("no_budget", "No budget"))
DEAL_COLUMNS = (("company", "Company"), ("stage", "Stage"), ("amount", "Amount"), ("probability", "Probability"),
                ("close_date", "Close date"), ("owner", "Owner"))

# --- the hand-written fixed-schema app -------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# Values shown on the pages are written by Babel from CLDR, called directly as a hand-written Flask app that
# offers English and Russian would (the pages here are the English ones): amounts, percentages, counts and
# dates as the reader's language writes them. CLDR's English currency pattern is "¤#,##0.00"; Babel leaves out
# CLDR's currency spacing ("RUB19,973,805.36"), so the RUB pattern adds the no-break space CLDR asks for.
LANGUAGE = "en"
RUB_PATTERN = "\u00a4\u00a0#,##0.00"
PERCENT_PATTERN = "#,##0.00%"
INPUT_PATTERN = "#,##0.00"  # a two-decimal column in an input: grouped, every digit kept


def _usd(value: Decimal | None) -> str:
    return "—" if value is None else format_currency(value, "USD", locale=LANGUAGE)


def _rub(value: Decimal | None) -> str:
    return "" if value is None else format_currency(value, "RUB", RUB_PATTERN, locale=LANGUAGE,
                                                    currency_digits=False)


def _pct(value: Decimal | None) -> str:
    """A percentage stored in points (7.50 is 7.5%): Babel's percent pattern multiplies by 100."""
    return "" if value is None else format_percent(value / HUNDRED, PERCENT_PATTERN, locale=LANGUAGE)


def _grouped(value: int | None) -> str:
    return "—" if value is None else format_decimal(value, locale=LANGUAGE)


def _day(value: date | None) -> str:
    return "" if value is None else format_date(value, "medium", locale=LANGUAGE)


def _number_input(value: Decimal | None) -> str:
    """A two-decimal amount or percentage as its input shows it, grouped in the reader's language (1,500,000.00)."""
    return "" if value is None else format_decimal(value, INPUT_PATTERN, locale=LANGUAGE,
                                                   decimal_quantization=False)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _day_input(value: date | None) -> str:
    """A date input's text as an English reader types it: ISO 8601 (a Russian one would get %d.%m.%Y)."""
    return "" if value is None else value.isoformat()


def _minutes_input(value: datetime | None) -> str:
    """A date-and-time input's text in UTC as an English reader types it (2026-03-10 09:00); seconds when set."""
    if value is None:
        return ""
    moment = _utc(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def _minutes(value: datetime | None) -> str:
    """A moment as the form posts it unchanged in `_base` (ISO, in UTC)."""
    return "" if value is None else _utc(value).strftime("%Y-%m-%dT%H:%M")


def wide_formulas(row: Mapping[str, Any]) -> dict[str, Any]:
    """The wide card's computed columns, by hand (what a fixed-schema app does on save)."""
    def q(number: Decimal) -> Decimal:
        return number.quantize(CENT, rounding=ROUND_HALF_UP)

    quantity, price, discount = row.get("quantity"), row.get("unit_price"), row.get("discount")
    subtotal = (q(quantity * price * (1 - discount / HUNDRED))
                if None not in (quantity, price, discount) else None)
    tax = q(subtotal * row["tax_rate"] / HUNDRED) if subtotal is not None and row.get("tax_rate") is not None else None
    total = subtotal + tax if subtotal is not None and tax is not None else None
    cost = row.get("cost")
    margin = q((subtotal - cost) / subtotal * HUNDRED) if subtotal and cost is not None else None
    probability = row.get("probability")
    expected = q(total * probability / HUNDRED) if total is not None and probability is not None else None
    start, end = row.get("start_date"), row.get("end_date")
    duration = (end - start).days if start and end else None
    return {"subtotal": subtotal, "tax": tax, "total": total, "margin": margin, "expected": expected,
            "duration_days": duration}


def wide_texts(row: Mapping[str, Any]) -> dict[str, list[str]]:
    """The form's editable values as it sends them, for merging a save after a concurrent edit (`_base`)."""
    texts: dict[str, list[str]] = {}
    for column in WIDE_COLUMNS:
        name = column.name
        value = row[name]
        if name in WIDE_COMPUTED:
            continue
        key = {"account_id": "account", "manager_id": "manager"}.get(name, name)
        if value is None:
            texts[key] = []
        elif name == "tags":
            texts[key] = [", ".join(value)] if value else []
        elif isinstance(value, list):
            texts[key] = [str(v) for v in value]
        elif isinstance(value, bool):
            texts[key] = ["true" if value else "false"]
        elif isinstance(value, datetime):
            texts[key] = [_minutes(value)]
        elif isinstance(value, Decimal):
            texts[key] = [format(value, "f")]
        else:
            texts[key] = [str(value)]
    return texts


@dataclass(frozen=True)
class FixedUser:
    id: int
    username: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def fixed_app(engine: sa.Engine, secret_key: str) -> Flask:
    """A plain Flask app with hand-written views, SQL and templates for the same pages."""
    app = Flask("bench_fixed", template_folder=str(TEMPLATES_DIR), static_folder=str(STATIC_DIR))
    app.config.update(SECRET_KEY=secret_key, SESSION_COOKIE_NAME="fixed_session")
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.filters.update(v=_text, usd=_usd, rub=_rub, pct=_pct, grouped=_grouped, day=_day,
                                 number_input=_number_input, day_input=_day_input, minutes_input=_minutes_input)
    app.jinja_env.globals.update(
        csrf_token=lambda: session["csrf"], STATUSES=STATUSES, PRIORITIES=PRIORITIES, SEGMENTS=SEGMENTS,
        TAG_SUGGESTIONS=TAG_SUGGESTIONS, PREFERRED_CHANNELS=PREFERRED_CHANNELS, COUNTRIES=COUNTRIES,
        PAYMENT_TERMS=PAYMENT_TERMS, SOURCES=SOURCES, CHANNELS=CHANNELS, LOST_REASONS=LOST_REASONS,
        STAGE_OPTIONS=STAGE_OPTIONS, STAGE_LABELS=STAGE_LABELS, SOURCE_OPTIONS=DEAL_SOURCES, TAG_OPTIONS=DEAL_TAGS,
        LOST_OPTIONS=DEAL_LOST, OPTION_COLORS_VERSION="1")

    # Statements built once; values are bound per request.
    user_by_id = sa.select(users.c.id, users.c.username, users.c.roles, users.c.password_hash).where(
        users.c.id == sa.bindparam("uid"), users.c.is_active)
    people_query = (sa.select(users.c.id, users.c.display_name).where(users.c.is_active)
                    .order_by(users.c.display_name).limit(500))
    w, a, d = bench_wide, bench_accounts, bench_deals
    wide_query = (sa.select(w, a.c.name.label("account_name")).select_from(w.outerjoin(a, a.c.id == w.c.account_id))
                  .where(w.c.id == sa.bindparam("wide_id"), w.c.deleted_at.is_(None)))
    views_query = (sa.select(saved_views.c.id, saved_views.c.user_id, saved_views.c.name, saved_views.c.query,
                             saved_views.c.shared)
                   .where(saved_views.c.entity == "deal",
                          sa.or_(saved_views.c.user_id == sa.bindparam("uid"), saved_views.c.shared))
                   .order_by(sa.case((saved_views.c.user_id == sa.bindparam("uid"), 0), else_=1),
                             sa.func.lower(saved_views.c.name), saved_views.c.id))
    owner = users.alias("owner_user")
    deal_rows = (sa.select(d.c.id, d.c.name, d.c.stage, d.c.amount, d.c.probability, d.c.close_date, d.c.company_id,
                           d.c.owner, a.c.name.label("company_name"), owner.c.display_name.label("owner_name"))
                 .select_from(d.outerjoin(a, a.c.id == d.c.company_id).outerjoin(owner, owner.c.id == d.c.owner)))
    sorts: dict[str, sa.ColumnElement[Any]] = {"company": d.c.company_id, "stage": d.c.stage, "amount": d.c.amount,
                                                "probability": d.c.probability, "close_date": d.c.close_date,
                                                "owner": d.c.owner}
    cursor_values: dict[str, Callable[[str], Any]] = {
        "company": int, "stage": str, "amount": Decimal, "probability": Decimal, "close_date": date.fromisoformat,
        "owner": int}
    choices = {"stage": set(STAGE_LABELS), "source": {v for v, _ in DEAL_SOURCES},
               "lost_reason": {v for v, _ in DEAL_LOST}, "tags": {v for v, _ in DEAL_TAGS}}
    ranges: dict[str, Callable[[str], Any]] = {"amount": Decimal, "probability": Decimal,
                                               "close_date": date.fromisoformat}
    postgres = engine.dialect.name == "postgresql"

    @app.before_request
    def load_user() -> None:
        uid, stamp = session.get("uid"), session.get("stamp")
        g.user = None
        if isinstance(uid, int) and isinstance(stamp, str):
            with engine.connect() as conn:
                row = conn.execute(user_by_id, {"uid": uid}).first()
            if row is not None and session_stamp(row.password_hash) == stamp:
                g.user = FixedUser(row.id, row.username, tuple(row.roles or ()))
        if g.user is None:
            abort(401)

    def may_read(row_owner: int | None) -> bool:
        return g.user.is_admin or row_owner == g.user.id

    @app.get("/fixed/wide/<int:wide_id>/edit")
    def wide_edit(wide_id: int) -> str:
        with engine.connect() as conn:
            row = conn.execute(wide_query, {"wide_id": wide_id}).mappings().first()
            if row is None or not may_read(row["owner"]):
                abort(404)
            people = conn.execute(people_query).all()
        lost = row["status"] == "lost"
        hidden = [] if lost else ["lost_reason", "lost_comment"]
        if not (lost and row["lost_reason"] == "competitor"):
            hidden.append("competitor")
        state = {"hidden": hidden, "required": ["name", "lost_reason"] if lost else ["name"], "readonly": [],
                 "hiddenSections": []}
        return render_template("fixed_form.html", w=row, people=people, lost=lost, section="wide",
                               state_json=json.dumps(state), base_json=json.dumps(wide_texts(row), ensure_ascii=False))

    def after_cursor(column: sa.ColumnElement[Any], descending: bool, value: Any, last_id: int
                     ) -> sa.ColumnElement[bool]:
        """Rows after (value, id) in this order; NULLs where the database puts them (PG: first in DESC)."""
        later_id = d.c.id < last_id if descending else d.c.id > last_id
        nulls_first = (not postgres) != descending
        if value is None:
            tie = sa.and_(column.is_(None), later_id)
            return sa.or_(tie, column.isnot(None)) if nulls_first else tie
        if postgres:  # a row comparison walks the (column, id) index
            beyond = (sa.tuple_(column, d.c.id) < sa.tuple_(value, last_id) if descending
                      else sa.tuple_(column, d.c.id) > sa.tuple_(value, last_id))
        else:  # SQLite searches the index only with the expanded form
            edge, strict = (column <= value, column < value) if descending else (column >= value, column > value)
            beyond = sa.and_(edge, sa.or_(strict, later_id))
        return beyond if nulls_first else sa.or_(beyond, column.is_(None))

    def pairs(args: MultiDict[str, str], *drop: str, **replace: str) -> list[tuple[str, str]]:
        kept = [(k, v) for k, v in args.items(multi=True) if k not in drop and k not in replace]
        return kept + list(replace.items())

    @app.get("/fixed/deals/")
    def deals() -> str:
        args = request.args
        where: list[sa.ColumnElement[bool]] = [d.c.deleted_at.is_(None)]
        if not g.user.is_admin:
            where.append(d.c.owner == g.user.id)
        try:
            for key in args:
                name, _, op = key.partition("__")
                values = [v for v in args.getlist(key) if v]
                if key in ("sort", "cursor", "total") or not values:
                    continue
                if key == "q":
                    where.append(sa.func.lower(d.c.name).contains(values[0].lower(), autoescape=True))
                elif op == "in" and name in choices:
                    wanted = [part for v in values for part in v.split(",") if part]
                    if not set(wanted) <= choices[name]:
                        abort(400)
                    if name == "tags":  # any of the tags: the JSON text holds '"vip"'
                        where.append(sa.or_(*(sa.cast(d.c.tags, sa.Text).contains(f'"{t}"') for t in wanted)))
                    else:
                        where.append(d.c[name].in_(wanted))
                elif op in ("gte", "lte") and name in ranges:
                    bound = ranges[name](values[0])
                    where.append(d.c[name] >= bound if op == "gte" else d.c[name] <= bound)
                elif op == "isnull" and (name in sorts or name in choices):
                    column = sorts.get(name, d.c.get(name))
                    where.append(column.is_(None) if values[0] == "true" else column.isnot(None))
                elif key in ("company", "owner"):
                    where.append(sorts[key] == int(values[0].rpartition("#")[2]))
                else:
                    abort(400)
            sort = args.get("sort") or "-close_date"
            descending = sort.startswith("-")
            key = sort.lstrip("-")
            if key not in sorts:
                abort(400)
            column = sorts[key]
            page_where = list(where)
            cursor = args.get("cursor")
            if cursor:
                raw, _, last_id = cursor.rpartition("~")
                value = None if raw == "" else cursor_values[key](raw)
                page_where.append(after_cursor(column, descending, value, int(last_id)))
        except (ValueError, ArithmeticError):
            abort(400)
        order = (column.desc(), d.c.id.desc()) if descending else (column.asc(), d.c.id.asc())
        with engine.connect() as conn:
            rows = conn.execute(deal_rows.where(*page_where).order_by(*order).limit(PAGE_SIZE + 1)).all()
            # Exact up to the cap, "more than" beyond it, exact when asked (as Kartoteka's lists).
            exact = args.get("total") == "exact" or not COUNT_CAP
            counted = (sa.select(sa.func.count()).select_from(d).where(*where) if exact else
                       sa.select(sa.func.count()).select_from(sa.select(d.c.id).where(*where).limit(COUNT_CAP + 1)
                                                              .subquery()))
            total = conn.execute(counted).scalar_one()
            views = conn.execute(views_query, {"uid": g.user.id}).all()
            people = conn.execute(people_query).all()
        next_url = None
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            last = rows[-1]
            last_value = getattr(last, "company_id" if key == "company" else key)
            next_url = "?" + urlencode(pairs(args, "cursor", cursor=f"{_text(last_value)}~{last.id}"))
        headers = []
        for name, text in DEAL_COLUMNS:
            aria = "ascending" if sort == name else "descending" if sort == f"-{name}" else "none"
            target = f"-{name}" if sort == name else name
            headers.append((name, text, "?" + urlencode(pairs(args, "cursor", sort=target)), aria))
        total_exact = exact or total <= COUNT_CAP
        return render_template(
            "fixed_list.html", rows=rows, total=total if total_exact else COUNT_CAP, total_exact=total_exact,
            exact_total_url="?" + urlencode(pairs(args, "total", total="exact")), args=args, sort=sort, views=views,
            people=people,
            headers=headers, next_url=next_url, first_url="?" + urlencode(pairs(args, "cursor")) if cursor else None,
            query_string=urlencode(pairs(args, "cursor", "total")), section="deals",
            filtered=any(k not in ("sort", "cursor", "q", "view", "total") for k in args))

    # The app's other pages, linked from these two (not measured).
    def elsewhere(**_: Any) -> str:
        return ""

    for rule, endpoint, methods in (
            ("/fixed/", "home", ["GET"]), ("/fixed/accounts/", "accounts", ["GET"]),
            ("/fixed/wide/", "wides", ["GET"]), ("/fixed/wide/<int:wide_id>", "wide_card", ["GET"]),
            ("/fixed/wide/<int:wide_id>/live", "wide_live", ["POST"]),
            ("/fixed/accounts/lookup", "account_lookup", ["GET"]), ("/fixed/language", "choose_language", ["POST"]),
            ("/fixed/logout", "logout", ["POST"]), ("/fixed/deals/kanban", "deals_kanban", ["GET"]),
            ("/fixed/deals/new", "deal_new", ["GET", "POST"]), ("/fixed/deals/<int:deal_id>", "deal_card", ["GET"]),
            ("/fixed/deals/views", "deal_view_save", ["POST"]),
            ("/fixed/deals/views/<int:view_id>/delete", "deal_view_delete", ["POST"]),
            ("/fixed/option-colors.css", "option_colors", ["GET"]), ("/fixed/admin/users", "admin_users", ["GET"]),
            ("/vendor/<name>", "vendor", ["GET"])):
        app.add_url_rule(rule, endpoint, elsewhere, methods=methods)
    return app


# --- data ------------------------------------------------------------------------------------------

WORDS = ("Alfa", "Beta", "Gamma", "Delta", "Omega", "Sever", "Vostok", "Ural", "Volga", "Neva", "Baikal",
         "Altai", "Amur", "Kama", "Oka", "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware")
KINDS = ("Trade", "Steel", "Soft", "Logistics", "Foods", "Energy", "Bank", "Media", "Build", "Pharma",
         "Retail", "Agro", "Telecom", "Systems", "Group")
CITIES = ("Moscow", "Kazan", "Perm", "Omsk", "London", "Berlin", "Almaty", "Minsk")
PEOPLE = ("Ivan.Petrov", "Olga.Smirnova", "Anna.Kuznetsova", "Pavel.Sokolov", "Maria.Popova", "Oleg.Lebedev")
STEPS = ("Call back", "Send the proposal", "Schedule a demo", "Wait for the budget", "Negotiate the discount")


def account_values(i: int) -> dict[str, Any]:
    return {"name": f"{WORDS[i % len(WORDS)]} {KINDS[i // len(WORDS) % len(KINDS)]} {i:04d}",
            "city": CITIES[i % len(CITIES)]}


def deal_values(rng: random.Random, i: int, account_ids: Sequence[int], account_names: Mapping[int, str]
                ) -> dict[str, Any]:
    """The typed values of one deal, as the record service holds them after parsing (formula included)."""
    stage = rng.choices(STAGE_OPTIONS, STAGE_WEIGHTS)[0][0]
    company = rng.choice(account_ids)
    amount = (Decimal(rng.randint(10_000, 2_000_000_000)) / 100).quantize(CENT)
    probability = Decimal(rng.choice((10, 20, 25, 50, 75, 90))).quantize(CENT)
    tags = rng.sample(("vip", "renewal", "urgent"), rng.choice((1, 2))) if rng.random() < 0.3 else None
    return {
        "name": f"Deal {i:06d} for {account_names[company]}",
        "company": company,
        "stage": stage,
        "amount": amount,
        "probability": probability,
        "expected_revenue": (amount * probability / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP),
        "close_date": date(2026, 1, 1) + timedelta(days=rng.randint(0, 729)) if rng.random() < 0.95 else None,
        "source": rng.choice(DEAL_SOURCES)[0] if rng.random() < 0.8 else None,
        "tags": tags,
        "contact_email": f"{rng.choice(PEOPLE).lower()}{i % 97}@example.com",
        "next_step": rng.choice(STEPS),
        "lost_reason": rng.choice(DEAL_LOST)[0] if stage == "lost" else None,
    }


def api_input(values: Mapping[str, Any], computed: Sequence[str] = ()) -> dict[str, Any]:
    """What an API client or a form would send for these values (numbers and dates as text)."""
    out = {}
    for name, value in values.items():
        if value is None or name in computed:
            continue
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif isinstance(value, date):  # datetime too
            value = value.isoformat()
        out[name] = value
    return out


def wide_values(account_id: int, manager_id: int) -> dict[str, Any]:
    """The one 60-field card both sides show in the edit form (typed; formulas left to each side)."""
    return {
        "name": "Northwind Trading — framework agreement 2026", "code": "AC-0042", "status": "active",
        "priority": "high", "account": account_id, "manager": manager_id, "segments": ["mid", "partner"],
        "tags": ["VIP", "reseller", "Q3 focus"],
        "emails": ["anna.petrova@northwind.example", "sales@northwind.example"],
        "phones": ["+79123456789", "+442079460958"], "website": "https://northwind.example/contact",
        "contact_name": "Anna Petrova", "contact_title": "Head of procurement",
        "billing_email": "billing@northwind.example", "fax": "+74951234567", "preferred_channel": "email",
        "country": "gb", "region": "Greater London", "city": "London", "street": "221B Baker Street",
        "postcode": "123456", "address_note": "Reception on the 2nd floor;\nask for Anna.",
        "description": "Framework agreement for 2026: licences, rollout & support.\n<b>Not bold</b>, \"quoted\".",
        "next_step": "Send the revised proposal",
        "quantity": 12, "unit_price": Decimal("1499.90"), "discount": Decimal("7.50"), "tax_rate": Decimal("20.00"),
        "budget": Decimal("1500000.00"), "cost": Decimal("9800.00"), "probability": Decimal("60.00"),
        "start_date": date(2026, 3, 1), "end_date": date(2027, 2, 28),
        "signed_at": datetime(2026, 2, 20, 14, 30, tzinfo=UTC), "next_call_at": datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
        "renewal_date": date(2027, 1, 15), "employees": 1250, "rating": 4, "payment_terms": "net30",
        "invoice_email": "invoices@northwind.example", "po_number": "PO-2026-0117", "paid": False,
        "is_active": True, "newsletter": True, "vip": True, "nda_signed": False, "source": "referral",
        "campaign": "Spring 2026 webinar", "channels": ["email", "events"], "utm_source": "newsletter",
        "lost_reason": None, "lost_comment": None, "competitor": None,
        "internal_notes": "Discount approved by the head of sales.",
    }


# --- loading ---------------------------------------------------------------------------------------

def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bulk_insert(engine: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY FROM STDIN (JSON columns as text); SQLite: executemany in one transaction."""
    if not rows:
        return
    with engine.begin() as conn:
        if engine.dialect.name != "postgresql":
            conn.execute(sa.insert(table), rows)
            return
        names = list(rows[0])
        json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_json_dumps(row[n]) if n in json_columns and row[n] is not None else row[n]
                                for n in names])


def reset_sequences(engine: sa.Engine, tables: Sequence[str]) -> None:
    """Rows were loaded with explicit ids: move PostgreSQL's sequences past them (SQLite does it itself)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for name in tables:
            conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                 f"(SELECT coalesce(max(id), 1) FROM {name}))")


@dataclass
class Loaded:
    deal_ids: list[int]
    account_ids: list[int]
    seconds: dict[str, float]
    verified: int


def load_data(engine: sa.Engine, service: RecordService, clock: Clock, n: int, reps: Sequence[int], seed: int
              ) -> Loaded:
    """Accounts and N deals on both sides under the same ids; Kartoteka's rows hold what its service stores."""
    rng = random.Random(seed)
    metadata = service.metadata
    account_entity, deal_entity = metadata.entities["account"], metadata.entities["deal"]
    now = clock.now()
    seconds: dict[str, float] = {}
    n_accounts = max(20, n // 200)
    account_ids = list(range(1, n_accounts + 1))
    account_names = {}
    k_accounts, f_accounts = [], []
    for i in account_ids:
        values = account_values(i)
        account_names[i] = values["name"]
        system = {"id": i, "owner": None, "created_at": now, "updated_at": now}
        k_accounts.append({"id": i, "entity": "account", "data": service._storage(account_entity, values),
                           "title": service._title(account_entity, values, system), "owner": None, "version": 1,
                           "created_at": now, "updated_at": now, "created_by": None, "updated_by": None,
                           **key_values(account_entity, service._storage(account_entity, values))})
        f_accounts.append({"id": i, **values, "version": 1, "owner": None, "created_at": now, "updated_at": now,
                           "created_by": None, "updated_by": None})
    say(f"building {n} deals ...")
    started = time.perf_counter()
    k_rows, links, f_rows = [], [], []
    first_deal = n_accounts + 1
    pipeline = Pipeline(deal_entity, clock, ParseContext())
    order = list(deal_entity.fields)
    verified = 0
    for i in range(n):
        record_id = first_deal + i
        values = deal_values(rng, i, account_ids, account_names)
        values = {name: values[name] for name in order}  # the service's key order
        owner = reps[i % len(reps)]
        created = now - timedelta(minutes=n - i)
        system = {"id": record_id, "owner": owner, "created_at": created, "updated_at": created}
        data = service._storage(deal_entity, values)
        title = service._title(deal_entity, values, system)
        if i < 200 or i % 250 == 0:  # what the service itself makes of the same input
            prepared = pipeline.run(api_input(values, ("expected_revenue",)), None, SYSTEM, system)
            stored = service._storage(deal_entity, prepared.values)
            if prepared.errors or stored != data or service._title(deal_entity, prepared.values, system) != title:
                raise SystemExit(f"deal {i}: the bulk row differs from what the record service would store:\n"
                                 f"  bulk:    {data}\n  service: {stored} {prepared.errors}")
            verified += 1
        k_rows.append({"id": record_id, "entity": "deal", "data": data, "title": title, "owner": owner, "version": 1,
                       "created_at": created, "updated_at": created, "created_by": owner, "updated_by": owner,
                       **key_values(deal_entity, data)})  # the key columns, as the service writes them
        links.append({"source_id": record_id, "field": "company", "target_id": values["company"],
                      "source_entity": "deal"})
        row = {k: v for k, v in values.items() if k != "company"}
        f_rows.append({"id": record_id, **row, "company_id": values["company"], "version": 1, "owner": owner,
                       "created_at": created, "updated_at": created, "created_by": owner, "updated_by": owner})
    seconds["build"] = time.perf_counter() - started
    say(f"loading {n} deals into records (+ record_links) ...")
    started = time.perf_counter()
    bulk_insert(engine, records, k_accounts)
    for start in range(0, n, 50_000):
        bulk_insert(engine, records, k_rows[start:start + 50_000])
    bulk_insert(engine, record_links, links)
    seconds["kartoteka load"] = time.perf_counter() - started
    say(f"loading {n} deals into bench_deals ...")
    started = time.perf_counter()
    bulk_insert(engine, bench_accounts, f_accounts)
    for start in range(0, n, 50_000):
        bulk_insert(engine, bench_deals, f_rows[start:start + 50_000])
    seconds["fixed load"] = time.perf_counter() - started
    reset_sequences(engine, ("records", "bench_accounts", "bench_deals"))
    return Loaded([r["id"] for r in k_rows], account_ids, seconds, verified)



def analyze(engine: sa.Engine) -> str:
    """Statistics (and PostgreSQL's visibility map, as autovacuum would after a bulk load) for both sides."""
    tables = ("records", "record_links", "bench_accounts", "bench_deals", "bench_wide", "users", "saved_views")
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in tables:
                conn.exec_driver_sql(f"VACUUM (ANALYZE) {name}")
        return "VACUUM (ANALYZE) ran on both sides' tables after loading (what autovacuum does after bulk inserts)"
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return "ANALYZE ran after loading"


# --- databases -------------------------------------------------------------------------------------

@contextmanager
def database(kind: str, pg_url: str, keep: bool) -> Iterator[tuple[str, str]]:
    """(url, description) of a fresh database: a temporary SQLite file or a new PostgreSQL schema."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="kartoteka-bench-web-"))
        try:
            yield f"sqlite:///{folder / 'bench.db'}", str(folder / "bench.db")
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    schema = f"bench_web_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    separator = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{separator}options=-csearch_path%3D{schema}", f"schema {schema}"
    finally:
        if not keep:
            with admin.begin() as conn:
                conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def environment(version: str) -> str:
    def v(name: str) -> str:
        try:
            return dist.version(name)
        except dist.PackageNotFoundError:
            return "?"

    return " | ".join([f"Python {platform.python_version()}", f"Flask {v('flask')}", f"Jinja2 {v('jinja2')}",
                       f"Werkzeug {v('werkzeug')}", f"SQLAlchemy {sa.__version__}", f"psycopg {v('psycopg')}",
                       version, f"{platform.system()} {platform.release()} {platform.machine()}",
                       f"{os.cpu_count()} CPUs"])


# --- measuring -------------------------------------------------------------------------------------

@dataclass
class Side:
    times: list[float] = field(default_factory=list)  # seconds per request
    size: int = 0                                       # bytes of the page
    queries: int = 0                                    # SQL statements per request
    sql_ms: float = 0.0                                 # time in cursor.execute per request

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile in ms."""
        ordered = sorted(self.times)
        return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1] * 1000

    @property
    def median(self) -> float:
        ordered = sorted(self.times)
        middle = len(ordered) // 2
        value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        return value * 1000


@dataclass
class Comparison:
    page: str
    who: str  # admin | rep: whose clients request it
    k_url: str
    f_url: str
    kartoteka: Side = field(default_factory=Side)
    fixed: Side = field(default_factory=Side)
    note: str = ""


def get(client: Any, url: str) -> str:
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}:\n{response.get_data(as_text=True)[:2000]}")
    return response.get_data(as_text=True)


def sql_profile(engines: Sequence[sa.Engine], call: Callable[[], Any], runs: int = 21) -> tuple[int, float]:
    """(statements per request, median ms inside cursor.execute per request), with event hooks (untimed pass)."""
    count = 0
    spent: list[float] = []
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(*_: Any) -> None:
        nonlocal count
        count += 1
        spent[-1] += time.perf_counter() - started.pop()

    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", before)
        sa.event.listen(engine, "after_cursor_execute", after)
    try:
        for _ in range(runs):
            spent.append(0.0)
            call()
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", before)
            sa.event.remove(engine, "after_cursor_execute", after)
    return round(count / runs), statistics.median(spent) * 1000


def measure(comparisons: Sequence[Comparison], k_client: Any, f_client: Any, repeat: int) -> None:
    """Every page of both sides, round-robin over pages, alternating which side goes first."""
    perf = time.perf_counter
    for c in comparisons:
        for _ in range(WARMUP):
            get(k_client, c.k_url)
            get(f_client, c.f_url)
    for i in range(repeat):
        for c in comparisons:
            order = ((k_client, c.k_url, c.kartoteka), (f_client, c.f_url, c.fixed))
            for client, url, side in order if i % 2 == 0 else reversed(order):
                start = perf()
                response = client.get(url)
                response.get_data()
                side.times.append(perf() - start)
                if response.status_code != 200:
                    raise SystemExit(f"GET {url} answered {response.status_code}")


# --- cross-checks ----------------------------------------------------------------------------------

class FormControls(HTMLParser):
    """What a browser with JavaScript would submit from the card form (name, value), plus formula outputs, hidden
    fields and the `_base` snapshot (decoded). `<template>` and `<noscript>` contents are not controls."""

    SKIP = frozenset({"csrf_token", "_present", "_touched", "_base", "version"})
    INERT = frozenset({"template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pairs: list[tuple[str, str]] = []
        self.outputs: dict[str, str] = {}
        self.hidden_fields: set[str] = set()
        self.in_form = self.in_template = False
        self.select: str | None = None
        self.option: tuple[str, bool] | None = None
        self.textarea: str | None = None
        self.output: str | None = None
        self.text = ""
        self.base: Any = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "card-form":
            self.in_form = True
        if not self.in_form:
            return
        if tag in self.INERT:
            self.in_template = True
        if self.in_template:
            return
        if "data-field" in a and "hidden" in a:
            self.hidden_fields.add(a["data-field"])
        name = a.get("name", "")
        if tag == "input" and name == "_base":
            self.base = json.loads(a.get("value", "null"))
        if tag == "input" and name not in self.SKIP:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a and "disabled" not in a:
                    self.pairs.append((name, a.get("value", "on")))
            elif kind not in ("submit", "button", "file"):
                self.pairs.append((name, a.get("value", "")))
        elif tag == "select":
            self.select = name
        elif tag == "option" and self.select:
            self.option = (a.get("value", ""), "selected" in a)
        elif tag == "textarea":
            self.textarea, self.text = name, ""
        elif tag == "output":
            self.output, self.text = a.get("id", ""), ""

    def handle_endtag(self, tag: str) -> None:
        if tag in self.INERT:
            self.in_template = False
        elif tag == "form" and self.in_form:
            self.in_form = False
        elif tag == "select":
            self.select = None
        elif tag == "option" and self.option is not None and self.select:
            if self.option[1]:
                self.pairs.append((self.select, self.option[0]))
            self.option = None
        elif tag == "textarea" and self.textarea is not None:
            self.pairs.append((self.textarea, self.text.removeprefix("\n")))
            self.textarea = None
        elif tag == "output" and self.output is not None:
            self.outputs[self.output] = self.text.strip()
            self.output = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None or self.output is not None:
            self.text += data


def form_summary(page: str) -> FormControls:
    parser = FormControls()
    parser.feed(page)
    return parser


def compare_forms(k_page: str, f_page: str) -> list[str]:
    k, f = form_summary(k_page), form_summary(f_page)
    problems = []
    # Only named controls are compared: a control without a name submits nothing (the calendar picker beside a
    # date input is a nameless hidden <input type="date"> that only app.js reads), so it is no part of what the
    # two forms send.
    k_pairs = sorted(((n, v) for n, v in k.pairs if n), key=lambda p: p[0])
    f_pairs = sorted(((n, v) for n, v in f.pairs if n), key=lambda p: p[0])
    if k_pairs != f_pairs:
        only_k = [p for p in k_pairs if p not in f_pairs]
        only_f = [p for p in f_pairs if p not in k_pairs]
        problems.append(f"form values differ: only kartoteka {only_k[:6]}, only fixed {only_f[:6]}")
    if k.outputs != f.outputs:
        problems.append(f"formula outputs differ: {k.outputs} vs {f.outputs}")
    if k.hidden_fields != f.hidden_fields:
        problems.append(f"hidden fields differ: {sorted(k.hidden_fields)} vs {sorted(f.hidden_fields)}")
    if k.base != f.base:
        keys = sorted(set(k.base or {}) | set(f.base or {}))
        differ = [(n, (k.base or {}).get(n), (f.base or {}).get(n)) for n in keys
                  if (k.base or {}).get(n) != (f.base or {}).get(n)]
        problems.append(f"_base snapshots differ: {differ[:6]}")
    if len({n for n, _ in k_pairs}) < 40:
        problems.append(f"only {len({n for n, _ in k_pairs})} named controls found on the form")
    return problems


_ROW = re.compile(r'<th scope="row"><a href="[^"]*/(\d+)">(.*?)</a></th>\s*((?:<td>.*?</td>)*)', re.S)
_CELL = re.compile(r"<td>(.*?)</td>", re.S)
_TOTAL = re.compile(r'id="total">(.*?)</p>', re.S)
_TAGS = re.compile(r"<[^>]+>")
_NEXT = re.compile(r'<a href="([^"]*)" rel="next">')


def list_rows(page: str) -> list[tuple[int, str, tuple[str, ...]]]:
    return [(int(i), unescape(title), tuple(unescape(c) for c in _CELL.findall(cells)))
            for i, title, cells in _ROW.findall(page)]


def total_text(page: str) -> str | None:
    """The list's total as the user reads it ("1,234 records", "More than 10,000 records. Count all")."""
    match = _TOTAL.search(page)
    return " ".join(unescape(_TAGS.sub(" ", match.group(1))).split()) if match else None


def next_link(page: str) -> str | None:
    match = _NEXT.search(page)
    return unescape(match.group(1)) if match else None


def compare_lists(k_page: str, f_page: str) -> tuple[list[str], int, str | None]:
    k_rows, f_rows = list_rows(k_page), list_rows(f_page)
    problems = []
    if len(k_rows) != PAGE_SIZE:
        problems.append(f"kartoteka shows {len(k_rows)} rows, not {PAGE_SIZE}")
    if [r[:2] for r in k_rows] != [r[:2] for r in f_rows]:
        first = next((i for i, (a, b) in enumerate(zip(k_rows, f_rows, strict=False)) if a[:2] != b[:2]),
                     min(len(k_rows), len(f_rows)))
        problems.append(f"rows differ (ids/titles) from row {first}: {k_rows[first:first + 1]} vs "
                        f"{f_rows[first:first + 1]}")
    elif k_rows != f_rows:
        first = next(i for i, (a, b) in enumerate(zip(k_rows, f_rows, strict=True)) if a != b)
        problems.append(f"cells differ in row {first}: {k_rows[first]} vs {f_rows[first]}")
    k_total, f_total = total_text(k_page), total_text(f_page)
    if k_total != f_total or k_total is None:
        problems.append(f"totals differ: {k_total!r} vs {f_total!r}")
    return problems, len(k_rows), k_total


# --- one run ---------------------------------------------------------------------------------------

@dataclass
class Run:
    version: str
    n: int
    comparisons: list[Comparison]
    notes: list[str]
    seconds: float
    plans: list[str] = field(default_factory=list)


def sign_in(client: Any, user_id: int, csrf: str) -> None:
    """A session for the user without the password round trip (as tests/test_web.py does).

    Kartoteka keeps sessions in the database (the cookie holds their id); the fixed app checks uid and stamp.
    """
    state = client.application.extensions.get("kartoteka")
    with client.session_transaction() as s:
        if state is not None:
            s.update(sid=start_session(state.engine, user_id, state.clock.now()), csrf=csrf)
        else:
            s.update(uid=user_id, stamp=session_stamp(None), csrf=csrf)


def bench(url: str, n: int, repeat: int, seed: int, explain: bool, dump: Path | None = None) -> Run:
    began = time.perf_counter()
    notes: list[str] = []
    clock = Clock(lambda: datetime.now(UTC))
    engine = create_engine(url)
    instance = Path(tempfile.mkdtemp(prefix="kartoteka-bench-web-instance-"))
    try:
        upgrade(engine)
        fixed_schema.create_all(engine)
        now = clock.now()
        admin = create_user(engine, "admin", ["admin"], now, display_name="Administrator")
        reps = [create_user(engine, f"rep{i:02d}", ["sales"], now, display_name=f"Rep {i:02d}", department="sales")
                for i in range(1, REPS + 1)]
        app = create_app(Settings(database_url=url, config_dir=CONFIG_DIR, secret_key=secrets.token_hex(16),
                                  instance_dir=instance, list_count_cap=COUNT_CAP), clock)
        state = app.extensions["kartoteka"]
        sync_indexes(engine, state.metadata)
        version = server_version(engine)
        say(f"[{version}] N={n}")
        loaded = load_data(engine, state.service, clock, n, [r.id for r in reps], seed)
        notes.append(f"loaded {n:,} deals + {len(loaded.account_ids)} accounts per side: build "
                     f"{loaded.seconds['build']:.1f} s, Kartoteka rows {loaded.seconds['kartoteka load']:.1f} s, "
                     f"fixed rows {loaded.seconds['fixed load']:.1f} s ("
                     f"{'COPY' if engine.dialect.name == 'postgresql' else 'executemany, one transaction'}); "
                     f"{loaded.verified} sampled deals re-made by the record service's pipeline matched exactly")

        # The wide card: through the record service on Kartoteka's side, by hand (formulas too) on the fixed side.
        typed = wide_values(loaded.account_ids[0], reps[0].id)
        record = state.service.create("wide", api_input(typed), admin, owner=admin.id)
        row = {("account_id" if k == "account" else "manager_id" if k == "manager" else k): v
               for k, v in typed.items()}
        row.update(wide_formulas(row))
        bulk_insert(engine, bench_wide, [{"id": record.id, **row, "version": 1, "owner": admin.id,
                                          "created_at": now, "updated_at": now, "created_by": admin.id,
                                          "updated_by": admin.id}])
        save_view(engine, admin, "deal", "Big proposals", "stage__in=proposal&sort=-amount", False, now)
        save_view(engine, reps[1], "deal", "Closing this half-year", "close_date__lte=2026-06-30", True, now)
        notes.append(analyze(engine))

        fixed_engine = create_engine(url)
        fixed = fixed_app(fixed_engine, secrets.token_hex(16))
        csrf = secrets.token_urlsafe(24)
        k_admin, f_admin, k_rep, f_rep = (app.test_client(), fixed.test_client(), app.test_client(),
                                          fixed.test_client())
        for client, user in ((k_admin, admin), (f_admin, admin), (k_rep, reps[0]), (f_rep, reps[0])):
            sign_in(client, user.id, csrf)

        # Cross-checks first (they also find the second pages' cursors).
        sides = {"admin": (k_admin, f_admin), "rep": (k_rep, f_rep)}
        k_form, f_form = f"/cards/wide/{record.id}/edit", f"/fixed/wide/{record.id}/edit"
        problems = compare_forms(get(k_admin, k_form), get(f_admin, f_form))
        failures = [f"edit form: {p}" for p in problems]
        notes += failures or [
            "edit form: both pages submit the same values for the 60 fields (and owner), show the same formula "
            "results and hide the same fields"]
        comparisons = [Comparison("edit form, 60 fields, 3 tabs", "admin", k_form, f_form)]
        k_list, f_list = f"/cards/deal/?{LIST_FILTER}", f"/fixed/deals/?{LIST_FILTER}"
        for who, label in (("admin", "admin"), ("rep", "sales rep, own scope")):
            k_client, f_client = sides[who]
            k_page, f_page = get(k_client, k_list), get(f_client, f_list)
            problems, shown, total = compare_lists(k_page, f_page)
            note = f"{total}, of {n:,}" if total is not None else ""
            comparisons.append(Comparison(f"list page 1, {label}", who, k_list, f_list, note=note))
            k_next, f_next = next_link(k_page), next_link(f_page)
            if k_next is None or f_next is None:
                problems.append("no link to a next page")
            else:
                k_next, f_next = "/cards/deal/" + k_next, "/fixed/deals/" + f_next
                more, _, _ = compare_lists(get(k_client, k_next), get(f_client, f_next))
                problems += [f"page 2: {p}" for p in more]
                comparisons.append(Comparison(f"list page 2 (cursor), {label}", who, k_next, f_next, note=note))
            failures += [f"list ({label}): {p}" for p in problems]
            if who == "admin":  # the same page counted to the end ("Count all")
                k_exact, f_exact = f"{k_list}&total=exact", f"{f_list}&total=exact"
                more, _, exact_total = compare_lists(get(k_client, k_exact), get(f_client, f_exact))
                problems += [f"exact total: {p}" for p in more]
                comparisons.append(Comparison(f"list page 1, {label}, exact total", who, k_exact, f_exact,
                                              note=f"{exact_total}, of {n:,}"))
            notes += [f"list ({label}): {p}" for p in problems] or [
                f"list ({label}): both sides show the same {shown} rows (ids, titles and every cell, in order) on "
                f"pages 1 and 2 and the same total ({total})"]

        if failures:
            if dump is not None:
                write_pages(dump, comparisons, sides)
            raise SystemExit("CROSS-CHECK FAILED: the two sides' pages differ, so their timings would compare "
                             "different pages; nothing was timed (--dump DIR writes both sides' pages):\n  "
                             + "\n  ".join(failures))

        for number, c in enumerate(comparisons, start=1):
            k_client, f_client = sides[c.who]
            k_page, f_page = get(k_client, c.k_url), get(f_client, c.f_url)
            c.kartoteka.size, c.fixed.size = len(k_page.encode()), len(f_page.encode())
            if dump is not None:
                dump.mkdir(parents=True, exist_ok=True)
                (dump / f"{number}-kartoteka.html").write_text(k_page)
                (dump / f"{number}-fixed.html").write_text(f_page)
            # Kartoteka reads on an engine of their own (storage/reading.py), writes on the app's.
            c.kartoteka.queries, c.kartoteka.sql_ms = sql_profile([state.engine, read_engine(state.engine)],
                                                                  lambda k=k_client, u=c.k_url: get(k, u))
            c.fixed.queries, c.fixed.sql_ms = sql_profile([fixed_engine], lambda f=f_client, u=c.f_url: get(f, u))

        say(f"[{version}] timing {len(comparisons)} pages x {repeat} requests per side ...")
        # The bench's own objects (metadata, clients, loaded ids) stay out of the collector's full passes, so a
        # pass that happens to start in one side's request does not charge it for the whole process heap.
        gc.collect()
        gc.freeze()
        for who, (k_client, f_client) in sides.items():
            measure([c for c in comparisons if c.who == who], k_client, f_client, repeat)
        lists = [c for c in comparisons if c.page.startswith("list")]
        plans = explain_lists(state.engine, fixed_engine, sides, lists) if explain else []
        fixed_engine.dispose()
        state.engine.dispose()
        return Run(version, n, comparisons, notes, time.perf_counter() - began, plans)
    finally:
        engine.dispose()
        shutil.rmtree(instance, ignore_errors=True)


def write_pages(dump: Path, comparisons: Sequence[Comparison], sides: Mapping[str, tuple[Any, Any]]) -> None:
    """Both sides' pages as DIR/<n>-kartoteka.html and DIR/<n>-fixed.html."""
    dump.mkdir(parents=True, exist_ok=True)
    for number, c in enumerate(comparisons, start=1):
        k_client, f_client = sides[c.who]
        (dump / f"{number}-kartoteka.html").write_text(get(k_client, c.k_url))
        (dump / f"{number}-fixed.html").write_text(get(f_client, c.f_url))


def explain_lists(k_engine: sa.Engine, f_engine: sa.Engine, sides: Mapping[str, tuple[Any, Any]],
                  pages: Sequence[Comparison]) -> list[str]:
    """EXPLAIN ANALYZE of every statement of the list pages that reads the deals (or their accounts)."""
    lines = []
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if k_engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    for page in pages:
        k_client, f_client = sides[page.who]
        for side, engine, client, url in (("kartoteka", k_engine, k_client, page.k_url),
                                          ("fixed", f_engine, f_client, page.f_url)):
            captured: list[tuple[str, Any]] = []

            def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool,
                        into: list[tuple[str, Any]] = captured) -> None:
                into.append((statement, parameters))

            listened = {engine, read_engine(engine)}  # Kartoteka reads on an engine of its own
            for one in listened:
                sa.event.listen(one, "before_cursor_execute", capture)
            try:
                get(client, url)
            finally:
                for one in listened:
                    sa.event.remove(one, "before_cursor_execute", capture)
            for statement, parameters in captured:
                if "FROM records" not in statement and "FROM bench_deals" not in statement:
                    continue
                lines.append(f"{side}, {page.page}: " + " ".join(statement.split()))
                lines.append(f"    parameters: {parameters}")
                with engine.connect() as conn:
                    for row in conn.exec_driver_sql(prefix + statement, parameters):
                        lines.append("    " + " | ".join(str(c) for c in row))
    return lines


# --- output ----------------------------------------------------------------------------------------

def table(run: Run) -> str:
    header = ("page", "kartoteka median", "p95", "fixed median", "p95", "ratio median", "ratio p95",
              "KB k/f", "SQL k/f", "SQL ms k/f")
    rows = [header]
    for c in run.comparisons:
        k, f = c.kartoteka, c.fixed
        rows.append((c.page + (f" ({c.note})" if c.note else ""), f"{k.median:.2f} ms", f"{k.quantile(0.95):.2f}",
                     f"{f.median:.2f} ms", f"{f.quantile(0.95):.2f}", f"{k.median / f.median:.2f}x",
                     f"{k.quantile(0.95) / f.quantile(0.95):.2f}x", f"{k.size / 1024:.1f}/{f.size / 1024:.1f}",
                     f"{k.queries}/{f.queries}", f"{k.sql_ms:.2f}/{f.sql_ms:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}"
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="deals on each side (default 100000)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("KARTOTEKA_BENCH_DATABASE_URL", DEFAULT_PG_URL),
                        help="PostgreSQL URL; a schema is created for the run and dropped after it")
    parser.add_argument("--repeat", type=int, default=200, help="timed requests per page and side (default 200)")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--explain", action="store_true", help="also print the plans of the list queries")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file / PostgreSQL schema")
    parser.add_argument("--dump", type=Path, help="write both sides' pages into this folder, to compare them")
    args = parser.parse_args(argv)
    if args.records < 5000:
        parser.error("--records must be at least 5000 (a sales rep's filtered list needs a second page)")
    if args.repeat < 20:
        parser.error("--repeat must be at least 20 (for a p95)")
    warnings.filterwarnings("ignore", message=".*does \\*not\\* support Decimal objects natively.*")

    with database(args.database, args.pg_url, args.keep) as (url, where):
        say(f"[{args.database}] {where}")
        run = bench(url, args.records, args.repeat, args.seed, args.explain, args.dump)

    print(f"Kartoteka pages vs hand-written fixed-schema Flask views: N={run.n:,} deals per side, "
          f"{args.repeat} timed requests per page and side (+{WARMUP} warm-up), seed {args.seed}")
    print(environment(run.version))
    print(f"list URL: ?{LIST_FILTER} (50 rows, total count shown); times are server time per request through "
          f"Flask's test client, in process")
    print()
    print(table(run))
    print()
    print("ratio = Kartoteka time / fixed-schema time (2.00x: Kartoteka takes twice as long); KB = page size; "
          "SQL = statements per request; SQL ms = time inside cursor.execute per request (separate pass)")
    for note in run.notes:
        print(f"  - {note}")
    print(f"total {run.seconds:.0f} s")
    if run.plans:
        print()
        print(f"Query plans on {run.version}:")
        print("\n".join(run.plans))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
