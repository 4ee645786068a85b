"""Preview, dry run and import of a file through the record service, in batches, with an upsert key.

Every row is saved by `RecordService.create` or `update` (validation, formulas, conditions, rules unless automation
is off), each batch of rows in one transaction, every save journalled with `batch = "import:<id>"`. Without
`skip_invalid` the whole file is first run as a dry run (every batch rolled back): one invalid row and nothing is
imported. If a batch fails anyway (a row changed by someone meanwhile), it is rolled back and the batches already
committed are undone from the journal: a failed import leaves nothing half-done. With `skip_invalid` the valid rows
are imported and the invalid ones reported (each save is a savepoint, so a refused row leaves its batch intact).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import (
    BadRequest,
    Conflict,
    KartotekaError,
    NotFound,
    PermissionDenied,
    RecordValidationError,
)
from kartoteka.imports.matching import ID, OWNER, Column, Mapping_, match_columns, missing_required
from kartoteka.imports.reader import Table, open_table
from kartoteka.imports.values import CellError, CellReader
from kartoteka.messages import Message, json_params, message_code, stored_message
from kartoteka.metadata.fieldtypes import FieldValueError
from kartoteka.metadata.model import EntityDef
from kartoteka.records.bulk import create_many
from kartoteka.records.hooks import Origin
from kartoteka.records.model import Principal
from kartoteka.records.pipeline import parse_value
from kartoteka.records.query import QueryBuilder
from kartoteka.records.scopes import readable_where, require
from kartoteka.records.service import RecordService
from kartoteka.storage.tables import imports, records

ON_DUPLICATE = ("skip", "update", "create")
STATUSES = ("queued", "running", "done", "failed", "undone")
BATCH_SIZE = 500
STORED_ERRORS = 100  # row errors kept in the imports table (a dry run's caller gets every one as it is found)
PREVIEW_ROWS = 10


def batch_name(import_id: int) -> str:
    """The journal's `batch` of an import's saves."""
    return f"import:{import_id}"


@dataclass(frozen=True)
class ImportOptions:
    """How to import: the upsert key and what a duplicate does, invalid rows, automation, the columns' mapping."""

    key: str | None = None  # a field (or "id") whose value finds the record a row stands for
    on_duplicate: str = "skip"  # skip | update | create, when the key finds a record
    skip_invalid: bool = False  # import the valid rows and report the others (else: all or nothing)
    automation: bool = True  # the card's rules run on each save (False: explicitly off)
    mapping: Mapping[str, str] = field(default_factory=dict)  # column -> field ("" leaves the column out)
    encoding: str | None = None  # of a CSV file (default: UTF-8, or cp1251 when the text is not UTF-8)
    batch_size: int = BATCH_SIZE
    dry_run: bool = False  # check every row and save none

    def as_json(self) -> dict[str, Any]:
        """The options as the imports table keeps them."""
        return {"key": self.key, "on_duplicate": self.on_duplicate, "skip_invalid": self.skip_invalid,
                "automation": self.automation, "mapping": dict(self.mapping), "encoding": self.encoding,
                "batch_size": self.batch_size, "dry_run": self.dry_run}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImportOptions:
        """The options the imports table kept."""
        return cls(key=data.get("key"), on_duplicate=data.get("on_duplicate") or "skip",
                   skip_invalid=bool(data.get("skip_invalid")), automation=data.get("automation", True) is not False,
                   mapping=dict(data.get("mapping") or {}), encoding=data.get("encoding"),
                   batch_size=int(data.get("batch_size") or BATCH_SIZE), dry_run=bool(data.get("dry_run")))


@dataclass(frozen=True)
class RowError:
    """Why one row of the file cannot be imported: its number in the file, the column and the message."""

    row: int
    column: str | None
    field: str | None
    message: Message | str

    def as_json(self, stored: bool = False) -> dict[str, Any]:
        """The error as the API gives it (the message in English; `code` and `params`); `stored` adds the message as
        the imports table keeps it, to be shown again in any language (`stored`, see messages.stored_message)."""
        found = {"row": self.row, "column": self.column, "field": self.field, "code": message_code(self.message),
                 "message": str(self.message), "params": json_params(self.message)}
        if stored:
            found["stored"] = stored_message(self.message)
        return found


@dataclass
class Counts:
    """What an import did so far."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0

    def as_json(self) -> dict[str, int]:
        """The counts by name."""
        return {"rows": self.rows, "created": self.created, "updated": self.updated, "skipped": self.skipped,
                "invalid": self.invalid}


@dataclass
class Outcome:
    """The result of a dry run or an import."""

    status: str  # done | failed (an import); valid | invalid (a dry run)
    counts: Counts
    errors: list[RowError]
    mapping: Mapping_
    import_id: int | None = None
    detail: Message | str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class PreviewRow:
    """One row as it would be saved: its values (typed) or its errors."""

    row: int
    values: Mapping[str, Any]
    errors: list[RowError]
    action: str  # create | update | skip


Progress = Callable[[Counts, float], None]


class _RowInvalid(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Aborted(Exception):
    """A row failed during the import proper (without skip_invalid): the batch is rolled back."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(errors)
        self.errors = errors


def check_options(entity: EntityDef, options: ImportOptions, mapping: Mapping_, user: Principal) -> None:
    """BadRequest for options that cannot work with this file: an unknown key, a key no column fills."""
    if options.on_duplicate not in ON_DUPLICATE:
        raise BadRequest(Message("import.on_duplicate_unknown", "on_duplicate must be skip, update or create, not "
                                 "'{value}'.", value=str(options.on_duplicate)[:40]))
    if options.batch_size < 1 or options.batch_size > 10_000:
        raise BadRequest(Message("import.batch_size", "The batch size must be between 1 and 10,000."))
    key = options.key
    if key is None:
        return
    if key != ID:
        from kartoteka.records.access import viewable_fields

        found = entity.fields.get(key)
        if found is None or key not in viewable_fields(entity, user):
            raise BadRequest(Message("import.key_unknown", "The key '{key}' is not a field of {what}.", key=key[:60],
                                     what=entity.label))
        if found.multiple or found.value_type.storage == "json":
            raise BadRequest(Message("import.key_unusable", "'{key}' holds several values or a structure: it "
                                     "cannot find records; use a field of one value (an e-mail, an INN, a code).",
                                     key=key))
    if key not in mapping.by_field():
        raise BadRequest(Message("import.key_not_in_file", "No column of the file fills the key '{key}'.", key=key))


class Importer:
    """One import (or dry run, or preview) of a file into `entity` as `user`."""

    def __init__(self, service: RecordService, entity_name: str, user: Principal, options: ImportOptions, *,
                 import_id: int | None = None) -> None:
        self.service = service
        self.entity = service.entity(entity_name)
        self.user = user
        self.options = options
        self.import_id = import_id
        # Importing creates records; updating them by a key needs the right to change them too.
        require(service.metadata, user, self.entity, "create")
        if options.key is not None and options.on_duplicate == "update":
            require(service.metadata, user, self.entity, "update")
        self.cells = CellReader(service, self.entity, user)
        self.origin = Origin("import", automation=options.automation,
                             batch=None if import_id is None else batch_name(import_id))
        self._query = QueryBuilder(self.entity, service.dialect, service.ctx, self.entity.fields)
        self._readable = readable_where(service.metadata, user, self.entity) or [sa.false()]
        self.mapping: Mapping_ | None = None
        self._columns: list[Column] = []
        self._key_column: Column | None = None
        self._owner_column: Column | None = None
        self._header_width = 0

    # --- the file -----------------------------------------------------------------------------------------------

    def open(self, path: Path, file_name: str | None = None) -> Table:
        """The file as a table, its columns matched (RecordValidationError / BadRequest for a mapping that cannot
        work: a field filled twice, a key no column fills, required fields no column fills)."""
        table = open_table(path, file_name, encoding=self.options.encoding)
        try:
            self.mapping = match_columns(self.entity, table.header, self.user, self.options.mapping)
            check_options(self.entity, self.options, self.mapping, self.user)
            # Updating by a key, a file may hold only the columns to change: a row that finds no record is then
            # refused on its own (the record it would create lacks the required values).
            updating = self.options.key is not None and self.options.on_duplicate == "update"
            missing = [] if updating else missing_required(self.entity, self.mapping)
            if missing:
                labels = ", ".join(f"{self.entity.fields[n].label} ({n})" for n in missing)
                raise RecordValidationError({"mapping": [Message.counted(
                    "import.required_missing", "No column fills the required field {fields}: every new record needs "
                    "it. Add the column or map one to it.", "No column fills the required fields {fields}: every new "
                    "record needs them. Add the columns or map some to them.", count=len(missing), fields=labels)]})
        except BaseException:
            table.close()
            raise
        self._columns = self.mapping.used()
        self._key_column = self.mapping.by_field().get(self.options.key) if self.options.key else None
        self._owner_column = self.mapping.by_field().get(OWNER)
        self._header_width = len(table.header)
        return table

    # --- one row ------------------------------------------------------------------------------------------------

    def _values(self, number: int, cells: list[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        values: dict[str, Any] = {}
        problems: dict[str, list[Any]] = {}
        for column in self._columns:
            text = cells[column.position] if column.position < len(cells) else ""
            if not text.strip():
                continue
            name = column.field or ""
            try:
                values[name] = self.cells.reader(name)(text)
            except CellError as exc:
                problems.setdefault(name, []).append(exc.message)
        return values, problems

    def _owner(self, number: int, cells: list[str], problems: dict[str, list[Any]]) -> int | None:
        """The owner the row's owner column names (a login, a name or an id), None when there is none or it is
        empty; a name no user has is a problem of the row under `owner`."""
        column = self._owner_column
        if column is None:
            return None
        text = cells[column.position].strip() if column.position < len(cells) else ""
        if not text:
            return None
        try:
            found = self.cells.user_id(text)
        except CellError as exc:
            problems.setdefault(OWNER, []).append(exc.message)
            return None
        digits = str(found).lstrip("#")
        if not (digits.isdigit() and digits.isascii() and len(digits) < 19):
            problems.setdefault(OWNER, []).append(Message("import.user_unknown", "There is no active user called "
                                                          "'{text}' (give a login, a name or an id).", text=text[:60]))
            return None
        return int(digits)

    def _find(self, conn: sa.Connection, number: int, cells: list[str]) -> tuple[int, int] | None:
        """(id, version) of the live readable record the row's key names, None when none; _RowInvalid when the key
        is not a value of its field or names several records."""
        column = self._key_column
        if column is None or column.field is None:
            return None
        text = cells[column.position].strip() if column.position < len(cells) else ""
        if not text:
            return None
        name = column.field
        if name == ID:
            digits = text.lstrip("#").strip()
            if not (digits.isdigit() and digits.isascii() and len(digits) < 19):
                raise _RowInvalid([RowError(number, column.name, ID, Message(
                    "import.id_invalid", "'{text}' is not a record number.", text=text[:40]))])
            clause = records.c.id == int(digits)
        else:
            found = self.entity.fields[name]
            try:
                value = parse_value(found, self.cells.reader(name)(text), self.service.ctx)
            except (FieldValueError, CellError) as exc:
                message = exc.message if isinstance(exc, CellError) else exc.messages[0]
                raise _RowInvalid([RowError(number, column.name, name, message)]) from None
            if value is None:
                return None
            clause = self._query.column(name, found) == self._query.bind(found, value)
        rows = conn.execute(sa.select(records.c.id, records.c.version).where(
            records.c.entity == self.entity.name, records.c.deleted_at.is_(None), clause, *self._readable)
            .order_by(records.c.id).limit(2)).all()
        if len(rows) > 1:
            raise _RowInvalid([RowError(number, column.name, name, Message(
                "import.key_ambiguous", "'{text}' finds several {what} records (#{first}, #{second}); the key must "
                "name one.", text=text[:60], what=self.entity.label, first=rows[0].id, second=rows[1].id))])
        if not rows:
            if name == ID:
                raise _RowInvalid([RowError(number, column.name, ID, Message(
                    "import.id_unknown", "There is no {what} #{id} to update (a new record gets its number when it "
                    "is saved: leave the id empty).", what=self.entity.label, id=text.lstrip("#").strip()))])
            return None
        return rows[0].id, rows[0].version

    def _errors(self, number: int, exc: KartotekaError) -> list[RowError]:
        columns = {c.field: c.name for c in self.mapping.columns if c.field} if self.mapping else {}
        if isinstance(exc, RecordValidationError):
            return [RowError(number, columns.get(name), name if name in self.entity.fields or name == OWNER else None,
                             message)
                    for name, messages in exc.errors.items() for message in messages]
        return [RowError(number, None, None, exc.detail)]

    def row(self, conn: sa.Connection, number: int, cells: list[str]) -> tuple[str, Any]:
        """Save one row in `conn`'s transaction: ("created" | "updated" | "skipped", the record or None);
        _RowInvalid with its errors."""
        extra = [c for c in cells[self._header_width:] if c.strip()]
        if extra:
            raise _RowInvalid([RowError(number, None, None, Message(
                "import.extra_cells", "The row has {count} values, more than the {columns} columns the header names.",
                count=self._header_width + len(extra), columns=self._header_width))])
        values, problems = self._values(number, cells)
        owner = self._owner(number, cells, problems)
        existing = self._find(conn, number, cells)
        options = self.options
        try:
            if existing is not None and options.on_duplicate == "skip":
                return "skipped", None
            if existing is not None and options.on_duplicate == "update":
                record_id, version = existing
                saved = self.service.update(self.entity.name, record_id, values, self.user, expected_version=version,
                                            owner=owner, connection=conn, origin=self.origin,
                                            input_errors=problems or None)
                return ("skipped" if saved.version == version else "updated"), saved
            saved = self.service.create(self.entity.name, values, self.user, owner=owner, connection=conn,
                                        origin=self.origin, input_errors=problems or None)
            return "created", saved
        except (RecordValidationError, PermissionDenied, NotFound, Conflict) as exc:
            raise _RowInvalid(self._errors(number, exc)) from None

    def rows(self, conn: sa.Connection, batch: list[tuple[int, list[str]]]
             ) -> Iterator[tuple[int, tuple[str, Any] | _RowInvalid]]:
        """Save a batch of rows in `conn`'s transaction: each row's number and ("created" | "updated" | "skipped",
        the record) or its _RowInvalid. Without a key every row is a new record: they are saved together through
        the record service's create_many (one pipeline run per row, the database's checks and writes once for the
        batch); with a key each row may find one made by an earlier row, so they are saved one by one."""
        if self._key_column is not None:
            for number, cells in batch:
                try:
                    yield number, self.row(conn, number, cells)
                except _RowInvalid as exc:
                    yield number, exc
            return
        together: list[tuple[int, dict[str, Any], int | None]] = []
        alone: dict[int, _RowInvalid] = {}
        for number, cells in batch:
            extra = [c for c in cells[self._header_width:] if c.strip()]
            if extra:
                alone[number] = _RowInvalid([RowError(number, None, None, Message(
                    "import.extra_cells", "The row has {count} values, more than the {columns} columns the header "
                    "names.", count=self._header_width + len(extra), columns=self._header_width))])
                continue
            values, problems = self._values(number, cells)
            owner = self._owner(number, cells, problems)
            if problems:  # one save, so that its errors and the pipeline's are told together
                try:
                    self.service.create(self.entity.name, values, self.user, owner=owner, connection=conn,
                                        origin=self.origin, input_errors=problems)
                except (RecordValidationError, PermissionDenied, NotFound, Conflict) as exc:
                    alone[number] = _RowInvalid(self._errors(number, exc))
                continue
            together.append((number, values, owner))
        try:
            outcomes = create_many(self.service, self.entity.name, [v for _, v, _ in together], self.user,
                                   connection=conn, origin=self.origin, owners=[o for _, _, o in together])
        except (PermissionDenied, NotFound, Conflict) as exc:
            outcomes = [exc] * len(together)  # type: ignore[list-item]
        saved = {number: outcome for (number, _, _), outcome in zip(together, outcomes, strict=True)}
        for number, _cells in batch:
            if number in alone:
                yield number, alone[number]
                continue
            outcome = saved[number]
            if isinstance(outcome, KartotekaError):
                yield number, _RowInvalid(self._errors(number, outcome))
            else:
                yield number, ("created", outcome)

    # --- many rows ----------------------------------------------------------------------------------------------

    def _batches(self, table: Table) -> Iterator[list[tuple[int, list[str]]]]:
        batch: list[tuple[int, list[str]]] = []
        for item in table.rows:
            batch.append(item)
            if len(batch) >= self.options.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def preview(self, table: Table, limit: int = PREVIEW_ROWS) -> list[PreviewRow]:
        """The first `limit` rows as they would be saved (all rolled back)."""
        shown: list[PreviewRow] = []
        with self.service.engine.connect() as conn:
            transaction = conn.begin()
            try:
                for number, cells in table.rows:
                    if len(shown) >= limit:
                        break
                    try:
                        action, saved = self.row(conn, number, cells)
                        values = dict(saved.values) if saved is not None else {}
                        shown.append(PreviewRow(number, values, [], {"created": "create", "updated": "update"}
                                                .get(action, "skip")))
                    except _RowInvalid as exc:
                        shown.append(PreviewRow(number, {}, exc.errors, "invalid"))
            finally:
                transaction.rollback()
        return shown

    def dry_run(self, table: Table, *, on_error: Callable[[RowError], None] | None = None,
                progress: Progress | None = None) -> Outcome:
        """Every row saved and rolled back, batch by batch: the counts an import would have and every invalid row."""
        counts, errors = Counts(), []
        started = time.perf_counter()
        for batch in self._batches(table):
            with self.service.engine.connect() as conn:
                transaction = conn.begin()
                try:
                    for _number, result in self.rows(conn, batch):
                        counts.rows += 1
                        if isinstance(result, _RowInvalid):
                            counts.invalid += 1
                            for error in result.errors:
                                errors.append(error) if on_error is None else on_error(error)
                        else:
                            setattr(counts, result[0], getattr(counts, result[0]) + 1)
                finally:
                    transaction.rollback()
            if progress is not None:
                progress(counts, table.fraction())
        assert self.mapping is not None
        return Outcome("invalid" if counts.invalid else "valid", counts, errors, self.mapping,
                       self.import_id, seconds=time.perf_counter() - started)

    def write(self, table: Table, *, on_error: Callable[[RowError], None] | None = None,
              progress: Progress | None = None) -> Outcome:
        """Import the rows, a batch per transaction. Without skip_invalid a failing row stops the import: its batch
        is rolled back and the batches before it undone (the outcome is `failed`)."""
        counts, errors = Counts(), []
        started = time.perf_counter()
        assert self.mapping is not None
        try:
            for batch in self._batches(table):
                done = Counts()
                with self.service.engine.begin() as conn:
                    for _number, result in self.rows(conn, batch):
                        done.rows += 1
                        if not isinstance(result, _RowInvalid):
                            setattr(done, result[0], getattr(done, result[0]) + 1)
                            continue
                        if not self.options.skip_invalid:
                            raise _Aborted(result.errors)
                        done.invalid += 1
                        for error in result.errors:
                            if on_error is not None:
                                on_error(error)
                            if len(errors) < STORED_ERRORS:
                                errors.append(error)
                for name in ("rows", "created", "updated", "skipped", "invalid"):
                    setattr(counts, name, getattr(counts, name) + getattr(done, name))
                if progress is not None:
                    progress(counts, table.fraction())
        except _Aborted as exc:
            for error in exc.errors:
                if on_error is not None:
                    on_error(error)
            left = self._roll_back_done()
            detail = Message("import.failed_rolled_back", "Row {row} could not be saved, so nothing was imported "
                             "(the {count} rows saved before it were undone).", row=exc.errors[0].row,
                             count=counts.created + counts.updated)
            if left:
                detail = Message("import.failed_left", "Row {row} could not be saved; undoing the rows saved before "
                                 "it left {count} records as they are (changed meanwhile): {ids}.",
                                 row=exc.errors[0].row, count=len(left), ids=", ".join(f"#{i}" for i in left[:20]))
            return Outcome("failed", counts, list(exc.errors)[:STORED_ERRORS], self.mapping, self.import_id,
                           detail, time.perf_counter() - started)
        except BaseException:
            self._roll_back_done()
            raise
        return Outcome("done", counts, errors, self.mapping, self.import_id, seconds=time.perf_counter() - started)

    def _roll_back_done(self) -> list[int]:
        """Undo the batches this import committed (as the system: the importer may lack the right to delete)."""
        if self.import_id is None:
            return []
        from kartoteka.imports.undo import undo_saves

        result = undo_saves(self.service, self.entity.name, batch_name(self.import_id))
        return [item.record_id for item in result.kept]


# --- the imports table ----------------------------------------------------------------------------------------------


def new_import(engine: sa.Engine, entity: str, user: Principal, file_name: str, format: str,
               options: ImportOptions, now: datetime, status: str = "running") -> int:
    """A row of `imports` for an import about to run (or queued); its id."""
    with engine.begin() as conn:
        inserted = conn.execute(sa.insert(imports).values(
            entity=entity, user_id=user.id, file_name=file_name[:255], format=format, options=options.as_json(),
            status=status, created_at=now)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def save_progress(engine: sa.Engine, import_id: int, counts: Counts) -> None:
    """The import's counts so far (the page polling it shows them)."""
    with engine.begin() as conn:
        conn.execute(sa.update(imports).where(imports.c.id == import_id).values(**counts.as_json()))


def finish_import(engine: sa.Engine, import_id: int, outcome: Outcome, now: datetime) -> None:
    """The import's result: status, counts, the first row errors, why it failed."""
    detail = None if outcome.detail is None else said(outcome.detail)
    with engine.begin() as conn:
        conn.execute(sa.update(imports).where(imports.c.id == import_id).values(
            status=outcome.status, **outcome.counts.as_json(),
            errors=[e.as_json(stored=True) for e in outcome.errors[:STORED_ERRORS]], detail=detail, finished_at=now))


def fail_import(engine: sa.Engine, import_id: int, reason: Message | str, now: datetime,
                counts: Counts | None = None) -> None:
    """The import failed before or outside its rows (a broken file, a mapping that cannot work)."""
    values: dict[str, Any] = {"status": "failed", "finished_at": now, "detail": said(reason)}
    if counts is not None:
        values.update(counts.as_json())
    with engine.begin() as conn:
        conn.execute(sa.update(imports).where(imports.c.id == import_id).values(**values))


def said(message: Message | str) -> dict[str, Any]:
    """A message as the imports table keeps it: `code`, `message` (English) and `params` as the API gives them, and
    `stored` to show it again in any language."""
    return {"code": message_code(message), "message": str(message), "params": json_params(message),
            "stored": stored_message(message)}


def import_row(engine: sa.Engine, import_id: int) -> Any:
    """The imports row, or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(imports).where(imports.c.id == import_id)).first()


def run_import(service: RecordService, entity_name: str, path: Path, file_name: str, user: Principal,
               options: ImportOptions, *, import_id: int | None = None,
               on_error: Callable[[RowError], None] | None = None, progress: Progress | None = None) -> Outcome:
    """Dry-run or import the file at `path`, recorded in the imports table (`import_id`: a queued row to run).

    Without skip_invalid the file is dry-run first; any invalid row and nothing is imported (status `failed`, every
    invalid row reported through `on_error`, the first ones kept)."""
    engine, clock = service.engine, service.clock
    entity = service.entity(entity_name)
    dry_run = options.dry_run
    if import_id is None:
        from kartoteka.imports.reader import format_of

        import_id = new_import(engine, entity.name, user, file_name, format_of(file_name), options, clock.now())
    else:
        with engine.begin() as conn:
            conn.execute(sa.update(imports).where(imports.c.id == import_id).values(status="running"))
    try:
        importer = Importer(service, entity.name, user, options, import_id=import_id)
        kept: list[RowError] = []

        def remember(error: RowError) -> None:
            if len(kept) < STORED_ERRORS:
                kept.append(error)
            if on_error is not None:
                on_error(error)

        # Without skip_invalid the file is read twice (checked, then imported): each pass is half of the progress,
        # and while it is checked the imports row counts the rows read and the invalid ones, nothing as saved.
        passes = 1 if dry_run or options.skip_invalid else 2

        def checking(counts: Counts, fraction: float) -> None:
            shown = counts if passes == 1 else Counts(rows=counts.rows, invalid=counts.invalid)
            save_progress(engine, import_id, shown)
            if progress is not None:
                progress(counts, fraction / passes)

        def saved(counts: Counts, fraction: float) -> None:
            save_progress(engine, import_id, counts)
            if progress is not None:
                progress(counts, (passes - 1 + fraction) / passes)

        if dry_run or not options.skip_invalid:
            with importer.open(path, file_name) as table:
                checked = importer.dry_run(table, on_error=remember, progress=checking)
            checked.errors = kept
            if dry_run or checked.counts.invalid:
                checked.status = "failed" if checked.counts.invalid else "done"
                if checked.counts.invalid:
                    checked.detail = Message.counted(
                        "import.invalid_rows", "{count} row is invalid: nothing was imported.",
                        "{count} rows are invalid: nothing was imported.", count=checked.counts.invalid)
                finish_import(engine, import_id, checked, clock.now())
                if dry_run:
                    checked.status = "invalid" if checked.counts.invalid else "valid"
                return checked
            kept.clear()
        with importer.open(path, file_name) as table:
            outcome = importer.write(table, on_error=remember, progress=saved)
        outcome.errors = kept if outcome.status == "done" else outcome.errors
        finish_import(engine, import_id, outcome, clock.now())
        return outcome
    except KartotekaError as exc:
        fail_import(engine, import_id, _problem_text(exc), clock.now())
        raise
    except BaseException:
        fail_import(engine, import_id, Message("import.crashed", "The import stopped on an unexpected error; "
                                               "nothing of it was kept."), clock.now())
        raise


def _problem_text(exc: KartotekaError) -> Message | str:
    """An error as the imports row keeps it: a mapping's problems joined into the message."""
    if isinstance(exc, RecordValidationError):
        messages = [m for ms in exc.errors.values() for m in ms]
        if len(messages) == 1 and isinstance(messages[0], Message):
            return messages[0]
        return " ".join(str(m) for m in messages) or exc.detail
    return exc.detail
