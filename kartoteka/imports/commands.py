"""`kartoteka import`, `kartoteka export` and `kartoteka undo-import` (registered in kartoteka/cli.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from kartoteka.errors import KartotekaError, RecordValidationError


def _principal(state: Any, name: str | None) -> Any:
    from kartoteka.cli import _fail
    from kartoteka.records.model import SYSTEM
    from kartoteka.users import get_user

    if name is None:
        return SYSTEM
    try:
        return get_user(state.engine, username=name)
    except KartotekaError as exc:
        _fail(exc.detail)


def _problem(exc: KartotekaError) -> str:
    if isinstance(exc, RecordValidationError):
        return "\n".join(str(m) for messages in exc.errors.values() for m in messages) or exc.detail
    return exc.detail


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        column, equals, field = pair.partition("=")
        if not equals or not column.strip():
            raise click.BadParameter(f"'{pair}' is not COLUMN=FIELD (COLUMN= leaves the column out)",
                                     param_hint="'--map'")
        found[column.strip()] = field.strip()
    return found


@click.command("import")
@click.argument("entity")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and save none; list every invalid row.")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows and report the invalid ones (default: "
              "all or nothing).")
@click.option("--key", default=None, metavar="FIELD", help="A field (or id) whose value finds the record a row "
              "stands for.")
@click.option("--on-duplicate", type=click.Choice(["skip", "update", "create"]), default="skip", show_default=True,
              help="What a row whose key finds a record does.")
@click.option("--encoding", default=None, help="The CSV file's encoding (default: UTF-8, or cp1251 when the text is "
              "not UTF-8).")
@click.option("--no-automation", is_flag=True, help="Do not run the card's rules on the imported records.")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD", help="Fill FIELD from COLUMN (repeatable; "
              "COLUMN= leaves the column out).")
@click.option("--user", "username", default=None, metavar="NAME", help="Import as this user, with their rights; "
              "the records are theirs (default: the system, records without an owner).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Rows saved per transaction.")
def import_command(entity: str, file: Path, dry_run: bool, skip_invalid: bool, key: str | None, on_duplicate: str,
                   encoding: str | None, no_automation: bool, maps: tuple[str, ...], username: str | None,
                   batch_size: int) -> None:
    """Import FILE (CSV or XLSX) into the card ENTITY through the record service; exit 1 when a row is invalid and
    nothing was imported."""
    from kartoteka.cli import _fail, _platform
    from kartoteka.imports.runner import ImportOptions, RowError, run_import

    options = ImportOptions(key=key, on_duplicate=on_duplicate, skip_invalid=skip_invalid,
                            automation=not no_automation, mapping=_mapping(maps), encoding=encoding,
                            batch_size=batch_size, dry_run=dry_run)
    with _platform() as (_app, state):
        user = _principal(state, username)
        started = time.perf_counter()
        shown = [0]

        def on_error(error: RowError) -> None:
            where = f"row {error.row}" + (f", column '{error.column}'" if error.column else "")
            click.echo(f"{where}: {error.message}", err=True)

        label = "Checking" if dry_run else "Importing" if skip_invalid else "Checking, then importing"
        with click.progressbar(length=1000, label=label, file=sys.stderr,
                               show_eta=True, item_show_func=lambda text: text) as bar:
            def progress(counts: Any, fraction: float) -> None:
                rate = counts.rows / max(time.perf_counter() - started, 1e-6)
                target = int(fraction * 1000)
                bar.update(max(0, target - shown[0]), f"{counts.rows} rows, {rate:,.0f} rows/s")
                shown[0] = max(shown[0], target)

            try:
                outcome = run_import(state.service, entity, file, file.name, user, options, on_error=on_error,
                                     progress=progress)
            except KartotekaError as exc:
                _fail(_problem(exc))
        counts = outcome.counts
        for column in outcome.mapping.columns:
            if column.field is None and column.ignored is None:
                hint = f" (did you mean '{column.suggestion}'?)" if column.suggestion else ""
                click.echo(f"column '{column.name}' fills no field{hint}: left out", err=True)
            elif column.ignored is not None:
                click.echo(f"column '{column.name}' left out: {column.ignored}", err=True)
        took = max(outcome.seconds, 1e-6)
        summary = (f"{counts.rows} rows: {counts.created} created, {counts.updated} updated, {counts.skipped} skipped, "
                   f"{counts.invalid} invalid ({counts.rows / took:,.0f} rows/s)")
        if dry_run:
            click.echo(f"Dry run of import #{outcome.import_id}, nothing saved. {summary}.")
            if counts.invalid:
                sys.exit(1)
            return
        if outcome.status != "done":
            click.echo(f"Import #{outcome.import_id} failed: {outcome.detail or ''} {summary}.", err=True)
            sys.exit(1)
        click.echo(f"Import #{outcome.import_id} done. {summary}. Undo it with `kartoteka undo-import "
                   f"{outcome.import_id}`.")
        if counts.invalid and not (counts.created or counts.updated):
            sys.exit(1)


@click.command("undo-import")
@click.argument("import_id", type=int)
@click.option("--user", "username", default=None, metavar="NAME", help="Undo as this user (the import's author or an "
              "administrator; default: the system).")
def undo_import_command(import_id: int, username: str | None) -> None:
    """Undo import IMPORT_ID: records it created go to the trash, records it updated get their values back; a record
    changed since the import is named and left as it is."""
    from kartoteka.cli import _fail, _platform
    from kartoteka.imports.undo import undo_import

    with _platform() as (_app, state):
        user = _principal(state, username)
        try:
            result = undo_import(state.service, import_id, user)
        except KartotekaError as exc:
            _fail(exc.detail)
    for kept in result.kept:
        click.echo(f"left as it is: {kept.reason}", err=True)
    click.echo(f"Import #{import_id} undone: {result.deleted} created records deleted, {result.reverted} updated "
               f"records reverted, {len(result.kept)} left as they are.")


@click.command("export")
@click.argument("entity")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("filters", nargs=-1)
@click.option("--format", "kind", type=click.Choice(["csv", "xlsx"]), default=None,
              help="Default: by FILE's extension.")
@click.option("--user", "username", default=None, metavar="NAME", help="Export what this user may read (default: "
              "the system, everything).")
@click.option("--language", type=click.Choice(["en", "ru"]), default="en", show_default=True,
              help="The language of the headers and the options' labels.")
@click.option("--list-columns", is_flag=True, help="Only the list's columns (default: every field the user may "
              "view).")
def export_command(entity: str, file: Path, filters: tuple[str, ...], kind: str | None, username: str | None,
                   language: str, list_columns: bool) -> None:
    """Export the records of ENTITY to FILE (CSV or XLSX); FILTERS as the list's URL writes them: stage__in=new,won
    amount__gte=1000 q=text sort=-amount."""
    from werkzeug.datastructures import MultiDict

    from kartoteka.cli import _fail, _platform
    from kartoteka.imports.export import csv_chunks, export_records, write_xlsx
    from kartoteka.listargs import list_query

    kind = kind or file.suffix.lstrip(".").lower()
    if kind not in ("csv", "xlsx"):
        raise click.BadParameter("give a .csv or .xlsx file, or --format", param_hint="'FILE'")
    args: MultiDict[str, str] = MultiDict()
    for item in filters:
        name, equals, value = item.partition("=")
        if not equals:
            raise click.BadParameter(f"'{item}' is not NAME=VALUE (stage__in=new,won)", param_hint="'FILTERS'")
        args.add(name, value)
    with _platform() as (_app, state):
        user = _principal(state, username)
        try:
            query = list_query(args)
            count = 0
            with file.open("wb") as out:
                if kind == "csv":
                    for chunk in csv_chunks(state.service, entity, user, query, language, list_columns):
                        out.write(chunk)
                    count = sum(1 for _ in export_records(state.service, entity, user, query))
                else:
                    count = write_xlsx(state.service, entity, user, query, language, out, list_columns)
        except KartotekaError as exc:
            file.unlink(missing_ok=True)
            _fail(exc.detail)
    click.echo(f"Exported {count} record{'' if count == 1 else 's'} of {entity} to {file}.")
