"""A list as CSV or XLSX: its filters, search and sort, the records in the user's read scope and only the fields they
may view, streamed page by page (never the whole list in memory).

Values are written so that an import reads them back: option labels in the reader's language, lists joined by
", ", users by name, references as "Title #12", dates and moments in ISO (moments in UTC), numbers plain. CSV is
UTF-8 with a BOM (Excel then reads Cyrillic right); XLSX (openpyxl's write-only mode) gets typed cells: numbers,
dates and moments. A text a spreadsheet would take for a formula (=, @, or + and - before anything but a number) is
written with a leading apostrophe, so opening an export never runs anything.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any

from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.cells import safe_text
from kartoteka.records.lookup import record_titles
from kartoteka.records.model import ListQuery, Principal, Record, ids_in
from kartoteka.records.scopes import require
from kartoteka.records.service import RecordService
from kartoteka.users import user_names

PAGE = 500
FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
SYSTEM_HEADERS = {"id": {"en": "id", "ru": "id"}, "owner": {"en": "Owner", "ru": "Владелец"},
                  "created_at": {"en": "Created (UTC)", "ru": "Создано (UTC)"},
                  "updated_at": {"en": "Updated (UTC)", "ru": "Изменено (UTC)"}}
_YES = {"en": ("yes", "no"), "ru": ("да", "нет")}


@dataclass(frozen=True)
class ExportColumn:
    """A column of the export: a field the user may view, or a system column."""

    name: str
    field: FieldDef | None
    header: str


def export_columns(entity: EntityDef, user: Principal, language: str, list_only: bool = False) -> list[ExportColumn]:
    """id, every field the user may view in the card's order, then owner, created and updated; `list_only`: id, the
    title and the list's own columns (`list.columns` in the metadata) that the user may view."""
    visible = viewable_fields(entity, user)
    columns = [ExportColumn("id", None, SYSTEM_HEADERS["id"][language])]
    if list_only:
        columns.append(ExportColumn("title", None, entity.label.get(language)))
        for name in entity.list.columns:
            if name in entity.fields and name in visible:
                columns.append(ExportColumn(name, entity.fields[name], entity.fields[name].label.get(language)))
            elif name in SYSTEM_HEADERS and name not in entity.fields and name != "id":
                columns.append(ExportColumn(name, None, SYSTEM_HEADERS[name].get(language, SYSTEM_HEADERS[name]["en"])))
        return columns
    columns += [ExportColumn(name, f, f.label.get(language)) for name, f in entity.fields.items() if name in visible]
    columns += [ExportColumn(n, None, SYSTEM_HEADERS[n].get(language, SYSTEM_HEADERS[n]["en"]))
                for n in ("owner", "created_at", "updated_at")]
    return columns


def export_records(service: RecordService, entity_name: str, user: Principal, query: ListQuery
                   ) -> Iterator[Record]:
    """Every record of the list `query` (its filters, search and sort) that `user` may read, page by page."""
    entity = service.entity(entity_name)
    require(service.metadata, user, entity, "read")
    cursor = None
    while True:
        page = service.list(entity.name, user, dataclasses.replace(query, limit=PAGE, cursor=cursor))
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor


class _Writer:
    """Turns records into rows of values for the columns, a page at a time (names of users and titles looked up)."""

    def __init__(self, service: RecordService, entity: EntityDef, user: Principal, columns: list[ExportColumn],
                 language: str, typed: bool) -> None:
        self.service = service
        self.entity = entity
        self.user = user
        self.columns = columns
        self.language = language
        self.typed = typed  # XLSX: numbers, dates and moments as such; CSV: everything as text

    def rows(self, found: Iterator[Record]) -> Iterator[list[Any]]:
        page: list[Record] = []
        for record in found:
            page.append(record)
            if len(page) >= PAGE:
                yield from self._page(page)
                page = []
        if page:
            yield from self._page(page)

    def _page(self, page: list[Record]) -> Iterator[list[Any]]:
        people: set[int] = {r.owner for r in page if r.owner is not None}
        wanted: dict[str, set[int]] = {}
        for c in self.columns:
            if c.field is None:
                continue
            if c.field.type.refers == "user":
                people.update(v for r in page for v in ids_in(r.values.get(c.name)))
            elif c.field.type.refers == "record":
                wanted.setdefault(c.field.to or "", set()).update(
                    v for r in page for v in ids_in(r.values.get(c.name)))
        names = user_names(self.service.engine, people) if people else {}
        titles = {target: record_titles(self.service, target, ids, self.user) for target, ids in wanted.items() if ids}
        for record in page:
            yield [self._cell(record, c, names, titles) for c in self.columns]

    def _cell(self, record: Record, column: ExportColumn, names: Mapping[int, str],
              titles: Mapping[str, Mapping[int, str]]) -> Any:
        if column.field is None:
            value = getattr(record, column.name)
            if column.name == "owner":
                return names.get(value, f"#{value}") if value is not None else ""
            if isinstance(value, datetime):
                return self._moment(value)
            return value
        value = record.values.get(column.name)
        if value is None or value == []:
            return ""
        field = column.field
        if field.multiple or isinstance(value, list):
            return ", ".join(str(self._one(field, v, names, titles)) for v in value)
        return self._one(field, value, names, titles)

    def _moment(self, value: datetime) -> Any:
        moment = value.astimezone(UTC).replace(tzinfo=None)
        return moment if self.typed else moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _one(self, field: FieldDef, value: Any, names: Mapping[int, str],
             titles: Mapping[str, Mapping[int, str]]) -> Any:
        kind = field.value_type
        if field.options:
            option = field.option(str(value))
            return option.label.get(self.language) if option is not None else str(value)
        if kind.refers == "user":
            return names.get(value, f"#{value}")
        if kind.refers == "record":
            title = titles.get(field.to or "", {}).get(value)
            return f"{title} #{value}" if title else f"#{value}"
        if isinstance(value, bool):
            yes, no = _YES.get(self.language, _YES["en"])
            return yes if value else no
        if isinstance(value, Mapping):  # a consent, a file
            if "given" in value:
                yes, no = _YES.get(self.language, _YES["en"])
                return yes if value.get("given") else no
            return str(value.get("name") or value.get("id") or "")
        if isinstance(value, datetime):
            return self._moment(value)
        if isinstance(value, date):
            return value if self.typed else value.isoformat()
        if isinstance(value, Decimal | int | float):
            return value if self.typed else (format(value, "f") if isinstance(value, Decimal) else str(value))
        return str(value)


def csv_chunks(service: RecordService, entity_name: str, user: Principal, query: ListQuery, language: str,
               list_only: bool = False) -> Iterator[bytes]:
    """The list as CSV (UTF-8 with a BOM, comma-separated), in chunks of some 64 KB."""
    entity = service.entity(entity_name)
    require(service.metadata, user, entity, "read")
    columns = export_columns(entity, user, language, list_only)
    writer_rows = _Writer(service, entity, user, columns, language, typed=False).rows(
        export_records(service, entity.name, user, query))
    # The first page is read before anything is sent: a filter the list refuses is an error, not a cut file.
    first = next(writer_rows, None)
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow([safe_text(c.header) for c in columns])
    yield codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    for row in itertools.chain([first] if first is not None else [], writer_rows):
        out.writerow([safe_text("" if v is None else v) for v in row])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def write_xlsx(service: RecordService, entity_name: str, user: Principal, query: ListQuery, language: str,
               target: IO[bytes], list_only: bool = False) -> int:
    """The list as an XLSX workbook written to `target` (openpyxl write-only: rows go to a temporary file as they
    come); how many records."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    entity = service.entity(entity_name)
    require(service.metadata, user, entity, "read")
    columns = export_columns(entity, user, language, list_only)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=_sheet_title(entity.label_plural.get(language)))
    sheet.append([_text_cell(sheet, c.header, WriteOnlyCell) for c in columns])
    count = 0
    for row in _Writer(service, entity, user, columns, language, typed=True).rows(
            export_records(service, entity.name, user, query)):
        sheet.append([_text_cell(sheet, v, WriteOnlyCell) if isinstance(v, str) else v for v in row])
        count += 1
    workbook.save(target)
    return count


def _text_cell(sheet: Any, value: str, cell_type: Any) -> Any:
    """A cell holding `value` as text, never as a formula (openpyxl takes a text starting with = for one)."""
    cell = cell_type(sheet, value=value)
    if cell.data_type != "s":
        cell.data_type = "s"
    return cell


def _sheet_title(text: str) -> str:
    return re.sub(r"[\\/*?:\[\]]", " ", text)[:31] or "Sheet"
