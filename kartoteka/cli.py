"""The `kartoteka` command: init, serve, demo, check-config, user create/signout/deactivate/activate/unlock/password,
address, token create/list/revoke."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask

from kartoteka.config import Settings
from kartoteka.errors import KartotekaError, MetadataError
from kartoteka.extensions import PlatformState


def _settings() -> Settings:
    return Settings.from_env()


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _platform(settings: Settings | None = None) -> Iterator[tuple[Flask, PlatformState]]:
    """The app with its database migrated and indexes in step with the metadata; closed on exit."""
    from kartoteka import create_app
    from kartoteka.storage.database import upgrade
    from kartoteka.storage.indexes import sync_indexes

    try:
        app = create_app(settings or _settings())
    except MetadataError as exc:
        _fail(f"The metadata is broken:\n{exc}")
    state: PlatformState = app.extensions["kartoteka"]
    try:
        upgrade(state.engine)
        try:
            created, dropped = sync_indexes(state.engine, state.metadata)
        except KartotekaError as exc:
            _fail(exc.detail)
        state.service.refresh_key_columns()  # the key columns the sync just filled
        _report_indexes(created, dropped)
        yield app, state
    finally:
        state.engine.dispose()


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _report_indexes(created: list[str], dropped: list[str]) -> None:
    """One line about the indexes a start built or dropped; each of them with `kartoteka -v`."""
    context = click.get_current_context(silent=True)
    if context is not None and context.find_root().params.get("verbose"):
        for name in created:
            click.echo(f"created index {name}", err=True)
        for name in dropped:
            click.echo(f"dropped index {name}", err=True)
    elif created or dropped:
        click.echo(f"Indexes: {len(created)} created, {len(dropped)} dropped (kartoteka -v ... lists them).",
                   err=True)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Say more: every index created or dropped.")
def main(verbose: bool) -> None:
    """Kartoteka: cards described in metadata, stored in JSON, served by one record service."""


@main.command("check-config")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def check_config_command(directory: Path | None) -> None:
    """Check the metadata in DIRECTORY (default: KARTOTEKA_CONFIG_DIR or ./config); exit 1 on problems."""
    from kartoteka.config import phone_region
    from kartoteka.metadata.fieldtypes import ParseContext
    from kartoteka.metadata.loader import check_config

    root = directory or Path(os.environ.get("KARTOTEKA_CONFIG_DIR", "config"))
    metadata, problems = check_config(root, ParseContext(phone_region=phone_region()))
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found.", err=True)
        sys.exit(1)
    assert metadata is not None
    entities, roles = len(metadata.entities), len(metadata.roles)
    click.echo(f"OK: {entities} entit{'y' if entities == 1 else 'ies'} ({', '.join(metadata.entities)}), "
               f"{roles} role{'' if roles == 1 else 's'}.")


@main.command("init")
def init_command() -> None:
    """Create or upgrade the tables and the metadata indexes (safe to run again)."""
    settings = _settings()
    with _platform(settings):
        pass
    click.echo(f"Database ready: {settings.database_url}")


@main.command("demo")
@click.option("--per-entity", default=60, show_default=True, help="Records to create per card.")
def demo_command(per_entity: int) -> None:
    """Initialise and load demo users and records (idempotent)."""
    from kartoteka.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo

    with _platform() as (_app, state):
        counts = seed_demo(state.service, state.engine, _now(), per_entity=per_entity)
    for entity, count in counts.items():
        click.echo(f"{entity}: {count} live records")
    click.echo(f"Demo logins (password '{DEMO_PASSWORD}' for all):")
    for user in DEMO_USERS:
        click.echo(f"  {user.username:<14} {', '.join(user.roles):<22} {user.department:<10} {user.display_name}")
    click.echo("For the API: TOKEN=$(.venv/bin/kartoteka token create admin), then "
               "curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:5000/api/v1/records/deal")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes [default: 2 × CPUs + 1, at most 8].")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Threads per worker [default: 4].")
@click.option("--timeout", type=click.IntRange(1, 3600), default=30, show_default=True,
              help="Seconds before a silent worker is replaced, and the grace given to requests on shutdown.")
@click.option("--dev", is_flag=True, help="Werkzeug's development server instead: one process, not for production.")
def serve_command(host: str, port: int, workers: int | None, threads: int | None, timeout: int, dev: bool) -> None:
    """Serve the application with gunicorn (initialising the database first)."""
    if dev and (workers or threads):
        raise click.UsageError("--workers and --threads are gunicorn's; the development server (--dev) has neither.")
    settings = _settings()
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    with _platform(settings) as (app, _state):
        if dev:
            click.echo(f"Kartoteka on {base}/  (API: {base}/api/v1/entities), development server")
            app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
            return
    # The master's engine is closed (above) before gunicorn forks; each worker creates its own app.
    from kartoteka.server import DEFAULT_THREADS, default_workers, serve

    workers = workers or default_workers()
    click.echo(f"Kartoteka on {base}/  (API: {base}/api/v1/entities), "
               f"{workers} worker{'' if workers == 1 else 's'} × {threads or DEFAULT_THREADS} threads")
    serve(settings, host, port, workers=workers, threads=threads, timeout=timeout)


@main.group("user")
def user_group() -> None:
    """Manage users."""


@user_group.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="A role from config/roles.yaml (repeatable).")
@click.option("--password", default=None, help="Password for signing in (prompted when omitted).")
@click.option("--department", default=None, help="Department (selects layout variants).")
@click.option("--language", default="en", type=click.Choice(["en", "ru"]), show_default=True)
@click.option("--display-name", default=None)
def user_create_command(name: str, roles: tuple[str, ...], password: str | None, department: str | None,
                        language: str, display_name: str | None) -> None:
    """Create user NAME with one or more roles."""
    with _platform() as (_app, state):
        _create_user(state, name, roles, password, department, language, display_name)


def _create_user(state: PlatformState, name: str, roles: tuple[str, ...], password: str | None,
                 department: str | None, language: str, display_name: str | None) -> None:
    from kartoteka.metadata.expressions import suggest
    from kartoteka.users import create_user

    known = set(state.metadata.roles) or None
    for role in roles:
        if known is not None and role not in known:
            _fail(f"Unknown role '{role}'{suggest(role, known) or '.'} Known roles: {', '.join(sorted(known))}.")
    departments = state.metadata.departments
    if department and departments and department not in departments:
        _fail(f"Unknown department '{department}'{suggest(department, departments) or '.'} "
              f"Known: {', '.join(departments)}.")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(state.engine, name, roles, _now(), password=password, department=department,
                           language=language, display_name=display_name, known_roles=known)
    except KartotekaError as exc:
        _fail(exc.detail)
    click.echo(f"Created user '{user.username}' (id {user.id}) with roles: {', '.join(sorted(user.roles))}.")


def _user_named(state: PlatformState, name: str) -> Any:
    from kartoteka.users import get_user

    try:
        return get_user(state.engine, username=name)
    except KartotekaError as exc:
        _fail(exc.detail)


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


@user_group.command("signout")
@click.argument("name")
def user_signout_command(name: str) -> None:
    """Sign user NAME out everywhere: end all their browser sessions and revoke their API tokens."""
    from kartoteka.users import end_user_sessions

    with _platform() as (_app, state):
        user = _user_named(state, name)
        ended = end_user_sessions(state.engine, user.id, state.clock.now())
    if ended.sessions == 0:
        click.echo(f"'{user.username}' had no active sessions.")
    else:
        click.echo(f"Signed '{user.username}' out everywhere ({_plural(ended.sessions, 'session')} ended).")
    if ended.tokens:
        click.echo(f"Revoked {_plural(ended.tokens, 'API token')} of '{user.username}'.")


def _set_active(name: str, active: bool) -> Any:
    """Deactivate or activate user NAME (kartoteka.users.set_active), failing with its message."""
    from kartoteka.users import set_active

    with _platform() as (_app, state):
        try:
            return set_active(state.engine, name, active, state.clock.now())
        except KartotekaError as exc:
            _fail(exc.detail)


@user_group.command("deactivate")
@click.argument("name")
def user_deactivate_command(name: str) -> None:
    """Deactivate user NAME: no signing in, their sessions end, their API tokens are refused."""
    change = _set_active(name, False)
    if not change.changed:
        click.echo(f"'{change.username}' was already deactivated.")
    else:
        click.echo(f"Deactivated '{change.username}': they can no longer sign in.")
    if change.sessions:
        click.echo(f"Ended {_plural(change.sessions, 'active session')}.")
    if change.tokens:
        click.echo(f"{_plural(change.tokens, 'API token')} of '{change.username}' "
                   f"{'is' if change.tokens == 1 else 'are'} refused while the user is inactive "
                   "(`kartoteka token revoke --user NAME` revokes them for good).")


@user_group.command("activate")
@click.argument("name")
def user_activate_command(name: str) -> None:
    """Activate user NAME again: they may sign in, and their unrevoked API tokens work again."""
    change = _set_active(name, True)
    if not change.changed:
        click.echo(f"'{change.username}' was already active.")
    else:
        click.echo(f"Activated '{change.username}': they may sign in again.")
        if change.tokens:
            click.echo(f"{_plural(change.tokens, 'unrevoked API token')} of '{change.username}' "
                       f"work{'s' if change.tokens == 1 else ''} again.")


@user_group.command("unlock")
@click.argument("name")
def user_unlock_command(name: str) -> None:
    """Forget the failed sign-ins of user NAME from every address; say which addresses still wait for all names."""
    from kartoteka.users import address_blocks, forget_name_failures

    with _platform() as (_app, state):
        user = _user_named(state, name)
        cleared = sorted(set(forget_name_failures(state.engine, user.username)))
        blocked, total = address_blocks(state.engine, state.clock.now())
    if cleared:
        places = f"{len(cleared)} address{'' if len(cleared) == 1 else 'es'}"
        click.echo(f"Forgot the failed sign-ins of '{user.username}' (from {places}).")
    else:
        click.echo(f"'{user.username}' had no failed sign-ins to forget.")
    if blocked:
        click.echo(f"{total} address{'' if total == 1 else 'es'} still wait{'s' if total == 1 else ''} for every name "
                   f"(too many failures over all names): {', '.join(b.address for b in blocked[:5])}"
                   f"{' …' if total > 5 else ''}. Clear one with `kartoteka address clear ADDRESS`.")


@main.group("address")
def address_group() -> None:
    """Client addresses that must wait before signing in (too many failures over all names)."""


@address_group.command("list")
def address_list_command() -> None:
    """List the addresses waiting now, the latest to end first."""
    from kartoteka.users import address_blocks

    with _platform() as (_app, state):
        blocked, total = address_blocks(state.engine, state.clock.now(), limit=1000)
    if not blocked:
        click.echo("No address is blocked.")
    for block in blocked:
        click.echo(f"{block.address}\t{block.failures} failed attempts\tblocked until "
                   f"{block.blocked_until.isoformat(timespec='seconds')}")
    if total > len(blocked):
        click.echo(f"… and {total - len(blocked)} more.")


@address_group.command("clear")
@click.argument("address")
def address_clear_command(address: str) -> None:
    """Let ADDRESS try again: forget its failures over all names (single names' waits there stay)."""
    from kartoteka.users import clear_address_block, name_blocks_at

    with _platform() as (_app, state):
        forgotten = clear_address_block(state.engine, address)
        waiting = name_blocks_at(state.engine, address, state.clock.now())
    if forgotten is None:
        click.echo(f"{address} had no failed attempts to forget.")
    else:
        click.echo(f"{address} is no longer blocked ({forgotten} failed attempt{'' if forgotten == 1 else 's'} "
                   "forgotten).")
    if waiting:
        click.echo(f"From {address}, {waiting} name{' still waits' if waiting == 1 else 's still wait'} after "
                   "their own failed attempts; unlock them with `kartoteka user unlock NAME`.")


@user_group.command("password")
@click.argument("name")
@click.option("--password", default=None, help="The new password (prompted when omitted).")
def user_password_command(name: str, password: str | None) -> None:
    """Set a new password for user NAME; this ends all their browser sessions and revokes their API tokens."""
    from kartoteka.users import set_password

    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with _platform() as (_app, state):
        try:
            ended = set_password(state.engine, name, password, state.clock.now())
        except KartotekaError as exc:
            _fail(exc.detail)
    click.echo(f"Password of '{name}' changed; {_plural(ended.sessions, 'active session')} ended, "
               f"{_plural(ended.tokens, 'API token')} revoked.")


@main.group("token")
def token_group() -> None:
    """Manage API tokens."""


@token_group.command("create")
@click.argument("name")
@click.option("--label", default="cli", show_default=True, help="What the token is for.")
def token_create_command(name: str, label: str) -> None:
    """Create an API token for user NAME and print it (it is shown only once)."""
    from kartoteka.users import create_token

    with _platform() as (_app, state):
        try:
            token = create_token(state.engine, name, label, _now())
        except KartotekaError as exc:
            _fail(exc.detail)
    click.echo(token)


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "never"


@token_group.command("list")
@click.argument("name", required=False)
@click.option("--revoked", is_flag=True, help="Show revoked tokens too.")
def token_list_command(name: str | None, revoked: bool) -> None:
    """List API tokens (of user NAME, or everybody's): id, user, label, first characters, created, last used."""
    from kartoteka.users import list_tokens

    with _platform() as (_app, state):
        tokens = list_tokens(state.engine, name, revoked=revoked)
    if not tokens:
        whose = f" of '{name}'" if name else ""
        click.echo(f"No {'' if revoked else 'unrevoked '}API tokens{whose}.")
        return
    click.echo("id\tuser\tlabel\ttoken\tcreated\tlast used\tstate")
    for token in tokens:
        status = (f"revoked {_when(token.revoked_at)}" if token.revoked_at else
                  "refused: user inactive" if not token.user_active else "live")
        click.echo(f"{token.id}\t{token.username}\t{token.name}\t{token.prefix}…\t{_when(token.created_at)}\t"
                   f"{_when(token.last_used_at)}\t{status}")


@token_group.command("revoke")
@click.argument("token_ids", nargs=-1, type=click.IntRange(1, 2**63 - 1))
@click.option("--user", "username", default=None, help="Revoke every token of this user.")
def token_revoke_command(token_ids: tuple[int, ...], username: str | None) -> None:
    """Revoke API tokens by id (see `kartoteka token list`), or all of one user with --user NAME."""
    from kartoteka.users import revoke_token, revoke_user_tokens

    if not token_ids and not username:
        raise click.UsageError("Name the tokens to revoke by id, or a user with --user NAME.")
    missing = []
    with _platform() as (_app, state):
        now = state.clock.now()
        for token_id in token_ids:
            try:
                token, revoked = revoke_token(state.engine, token_id, now)
            except KartotekaError:
                missing.append(token_id)
                continue
            if revoked:
                click.echo(f"Revoked token {token.id} of '{token.username}' ({token.name}, {token.prefix}…).")
            else:
                click.echo(f"Token {token.id} of '{token.username}' was already revoked "
                           f"({_when(token.revoked_at)}).")
        if username:
            try:
                count = revoke_user_tokens(state.engine, username, now)
            except KartotekaError as exc:
                _fail(exc.detail)
            click.echo(f"Revoked {_plural(count, 'API token')} of '{username}'." if count else
                       f"'{username}' had no unrevoked API tokens.")
    if missing:
        _fail(f"No API token with id {', '.join(map(str, missing))}.")


@main.group("files")
def files_group() -> None:
    """Manage uploaded files."""


@files_group.command("purge")
def files_purge_command() -> None:
    """Delete uploads no record ever held that are more than a day old (each upload also does this)."""
    from kartoteka.records.files import purge_unattached

    with _platform() as (_app, state):
        count = purge_unattached(state.engine, state.settings.instance_dir / "files", _now())
    click.echo(f"Removed {count} abandoned upload{'' if count == 1 else 's'}.")


@files_group.command("sweep")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@click.option("--older-than", type=click.FloatRange(min=0, min_open=True, max=24 * 366), metavar="HOURS",
              help="Delete uploads no record ever held once this old (default: KARTOTEKA_UPLOAD_PENDING_HOURS, 24).")
def files_sweep_command(dry_run: bool, older_than: float | None) -> None:
    """Delete files no record holds: uploads never saved into a card once old enough, and files a card held
    before its field was cleared or replaced. Files of records in the trash are kept."""
    from datetime import timedelta

    from kartoteka.records.files import size_text, sweep_files
    from kartoteka.storage.times import utc

    if older_than is not None and older_than != older_than:  # NaN passes click's range check (no comparison holds)
        raise click.BadParameter("must be a number of hours, e.g. 48", param_hint="'--older-than'")
    with _platform() as (_app, state):
        lifetime = timedelta(hours=older_than) if older_than is not None else state.settings.uploads.pending_lifetime
        swept = sweep_files(state.engine, state.settings.instance_dir / "files", _now(), lifetime, dry_run=dry_run)
    for row in swept:
        why = "no record holds it any more" if row.attached_at is not None else \
            f"never saved into a card, uploaded {utc(row.created_at):%Y-%m-%d %H:%M} UTC"
        click.echo(f"{row.id}  {size_text(row.size):>10}  {row.name}  ({why})")
    count, total = len(swept), sum(row.size for row in swept)
    freed = size_text(total) if total < 1024 else f"{size_text(total)} ({total} bytes)"
    files_text = f"{count} file{'' if count == 1 else 's'}"
    click.echo(f"Would delete {files_text}, freeing {freed}." if dry_run else f"Deleted {files_text}, freed {freed}.")


# --- kartoteka worker: the outbox (docs/automation.md, "Outbox and worker") ---------------------------------------


@main.command("worker")
@click.option("--once", is_flag=True, help="Run passes until nothing is due, then exit (cron, tests).")
def worker_command(once: bool) -> None:
    """Deliver the outbox's e-mails and webhooks (and run what else is due) until SIGTERM or Ctrl+C."""
    import logging
    import threading

    from kartoteka.rules.worker import run_worker, worker_jobs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings()
    except ValueError as exc:  # a KARTOTEKA_* variable that is not a valid value
        _fail(str(exc))
    with _platform(settings) as (_app, state):
        stop = threading.Event()
        try:
            jobs = worker_jobs(state, stop.is_set)
        except ValueError as exc:  # KARTOTEKA_SMTP_URL or KARTOTEKA_WEBHOOK_HOSTS the worker cannot use
            _fail(str(exc))
        run_worker(state.engine, state.settings, state.clock, once=once, stop=stop, jobs=jobs)


@main.group("rules")
def rules_group() -> None:
    """See, test and re-enable the cards' rules (docs/automation.md)."""


def _trigger_text(rule: Any) -> str:
    trigger = rule.trigger
    if trigger.kind == "save":
        events = ", ".join(sorted(trigger.events))
        if trigger.fields:
            events += f" of {', '.join(trigger.fields)}"
        if trigger.field is not None:
            events += f" {trigger.field}"
            if trigger.from_values is not None:
                events += f" from {'/'.join(map(str, trigger.from_values))}"
            if trigger.to_values is not None:
                events += f" to {'/'.join(map(str, trigger.to_values))}"
        return events
    if trigger.kind == "date":
        days = trigger.offset.total_seconds() / 86400
        return f"date {trigger.field} {'+' if days >= 0 else ''}{days:g} days"
    if trigger.kind == "schedule":
        return f"schedule '{trigger.cron}'"
    return "manual" + (f" ({', '.join(sorted(trigger.roles))})" if trigger.roles else "")


@rules_group.command("list")
@click.argument("entity", required=False)
def rules_list_command(entity: str | None) -> None:
    """Every rule (of ENTITY): key, stage, trigger, actions, and whether it is enabled."""
    with _platform() as (_app, state):
        engine = state.service.hooks
        names = [entity] if entity else list(state.metadata.entities)
        for name in names:
            card = state.metadata.entities.get(name)
            if card is None:
                _fail(f"There is no card '{name}'; known: {', '.join(state.metadata.entities)}")
            for rule in card.rules:
                disabled = getattr(engine, "states", None) is not None and engine.states.disabled(name, rule.key)
                status = "off" if not rule.enabled else "DISABLED (failing)" if disabled else "on"
                click.echo(f"{name}.{rule.key:<28} {status:<8} {rule.stage:<6} {_trigger_text(rule):<40} "
                           f"{', '.join(a.name for a in rule.actions)}")


@rules_group.command("test")
@click.argument("entity")
@click.argument("record_id", type=int)
@click.argument("key")
def rules_test_command(entity: str, record_id: int, key: str) -> None:
    """Run rule KEY on record RECORD_ID of ENTITY as a dry run (rolled back; nothing is delivered): print the trace."""
    import json

    from kartoteka.records.model import SYSTEM
    from kartoteka.rules.engine import RuleEngine
    from kartoteka.rules.manual import dry_run

    with _platform() as (_app, state):
        engine = state.service.hooks
        if not isinstance(engine, RuleEngine):
            _fail("This app has no rules engine.")
        try:
            result = dry_run(engine, entity, record_id, key, SYSTEM)
        except KartotekaError as exc:
            _fail(exc.detail)
        run = result.run
        click.echo(f"rule {entity}.{key} on #{record_id}: {run.result}" + (f" ({run.error})" if run.error else ""))
        for action in run.actions:
            click.echo("  " + json.dumps(action, ensure_ascii=False, default=str))
        for delivery in result.deliveries:
            click.echo(f"  would deliver {delivery['kind']} to {delivery['to']}: "
                       + json.dumps(delivery["payload"], ensure_ascii=False, default=str)[:500])
        click.echo("Rolled back: nothing was saved or sent.")


@rules_group.command("enable")
@click.argument("entity")
@click.argument("key")
def rules_enable_command(entity: str, key: str) -> None:
    """Enable again a rule disabled for failing (its failure count starts from 0)."""
    import sqlalchemy as sa

    from kartoteka.storage.tables import rule_states

    with _platform() as (_app, state):
        card = state.metadata.entities.get(entity)
        if card is None or not any(rule.key == key for rule in card.rules):
            _fail(f"There is no rule '{key}' on '{entity}'; `kartoteka rules list` shows them.")
        with state.engine.begin() as conn:
            changed = conn.execute(sa.update(rule_states).where(
                rule_states.c.entity == entity, rule_states.c.rule_key == key).values(
                failures=0, disabled_at=None, disabled_reason=None, updated_at=_now())).rowcount
        click.echo(f"{entity}.{key} enabled." if changed else f"{entity}.{key} was not disabled.")


@main.command("history")
@click.argument("entity")
@click.argument("record_id", type=int)
@click.option("--as", "as_user", metavar="USERNAME", help="Show only what this user may view (default: everything).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
def history_command(entity: str, record_id: int, as_user: str | None, limit: int) -> None:
    """Print the change journal of record RECORD_ID of ENTITY, newest first: who changed what, old -> new."""
    import json

    from kartoteka.records.model import SYSTEM
    from kartoteka.records.versions import history

    with _platform() as (_app, state):
        viewer = _principal_named(state, as_user) if as_user else SYSTEM
        try:
            page = history(state.service, entity, record_id, viewer, limit=limit)
        except KartotekaError as exc:
            _fail(exc.detail)
        click.echo(f"{page.entity} #{page.record_id}: version {page.version}" + (" (in the trash)" if page.deleted
                                                                                 else ""))
        for entry in page.entries:
            who = f"rule {entry.rule_key}" if entry.rule_key else entry.user or "system"
            token = f", token #{entry.token_id}" if entry.token_id else ""
            reverts = f" to version {entry.reverts}" if entry.reverts else ""
            batch = f" [{entry.batch}]" if entry.batch else ""
            click.echo(f"v{entry.version} {entry.created_at:%Y-%m-%d %H:%M:%S} UTC {entry.action}{reverts} by {who} "
                       f"({entry.source}{token}){batch}")
            for name, (old, new) in entry.changes.items():
                click.echo(f"    {name}: {json.dumps(old, ensure_ascii=False, default=str)} -> "
                           f"{json.dumps(new, ensure_ascii=False, default=str)}")
            if entry.hidden:
                click.echo(f"    ({_plural(entry.hidden, 'more field')} changed, not viewable by {as_user})")
        if page.next_before is not None:
            click.echo(f"(older entries left out: raise --limit above {limit})")


def _principal_named(state: PlatformState, username: str) -> Any:
    from kartoteka.users import get_user

    try:
        return get_user(state.engine, username=username)
    except KartotekaError as exc:
        _fail(exc.detail)


@main.command("purge")
@click.option("--older-than", "older_than", default="90d", show_default=True, metavar="AGE",
              help="Remove records in the trash for longer than this: a number and d (days) or h (hours).")
@click.option("--entity", metavar="ENTITY", help="Only this card's trash.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def purge_command(older_than: str, entity: str | None, dry_run: bool) -> None:
    """Remove for good the records that have been in the trash longer than AGE (run it daily from cron).

    Their links, tasks, timeline and journal go with them; the consent archive stays (it is kept by law)."""
    import re
    from datetime import timedelta

    import sqlalchemy as sa

    from kartoteka.records.consent import purge_expired
    from kartoteka.records.trash import purge
    from kartoteka.storage.tables import records

    match = re.fullmatch(r"(\d{1,5})([dh])", older_than.strip())
    if match is None:
        _fail(f"--older-than must be a number of days or hours, like 90d or 12h, not {older_than!r}.")
    age = timedelta(days=int(match.group(1))) if match.group(2) == "d" else timedelta(hours=int(match.group(1)))
    with _platform() as (_app, state):
        if entity is not None and entity not in state.metadata.entities:
            _fail(f"There is no card called {entity!r}; cards: {', '.join(sorted(state.metadata.entities))}.")
        now = _now()
        if dry_run:
            where = [records.c.deleted_at.is_not(None), records.c.deleted_at <= now - age]
            if entity is not None:
                where.append(records.c.entity == entity)
            with state.engine.connect() as conn:
                count = conn.execute(sa.select(sa.func.count()).select_from(records).where(*where)).scalar() or 0
            click.echo(f"Would remove {_plural(count, 'record')} deleted before {now - age:%Y-%m-%d %H:%M} UTC.")
            return
        count = purge(state.service, now, age, entity=entity)
        click.echo(f"Removed {_plural(count, 'record')} deleted before {now - age:%Y-%m-%d %H:%M} UTC.")
        expired = purge_expired(state.engine, now, state.settings.consent_years)
        if expired:
            click.echo(f"Removed {_plural(expired, 'consent decision')} of removed cards older than "
                       f"{state.settings.consent_years} years.")


@main.group("consent")
def consent_group() -> None:
    """The consent archive: every consent to personal-data processing given or withdrawn."""


@consent_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
@click.option("--entity", metavar="ENTITY", help="Only this card's consents.")
@click.option("--since", metavar="DATE", help="Only decisions recorded on or after this day (YYYY-MM-DD).")
def consent_export_command(file: str, entity: str | None, since: str | None) -> None:
    """Write the consent archive to FILE as CSV (UTF-8), oldest first, for an inspector ('-' for the output)."""
    from kartoteka.records.consent import write_csv

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
            start = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
        except ValueError:
            _fail(f"--since must be a day like 2026-01-31, not {since!r}.")
    with _platform() as (_app, state):
        if entity is not None and entity not in state.metadata.entities:
            _fail(f"There is no card called {entity!r}; cards: {', '.join(sorted(state.metadata.entities))}.")
        if file == "-":
            write_csv(state.engine, sys.stdout, entity=entity, since=start)
            return
        with open(file, "w", encoding="utf-8", newline="") as out:  # the csv module writes its own line ends
            count = write_csv(state.engine, out, entity=entity, since=start)
        click.echo(f"Wrote {_plural(count, 'decision')} to {file}.")


from kartoteka.imports.commands import export_command, import_command, undo_import_command  # noqa: E402

main.add_command(import_command)
main.add_command(export_command)
main.add_command(undo_import_command)

from kartoteka.records.duplicates_cli import duplicates_command  # noqa: E402

main.add_command(duplicates_command)

if __name__ == "__main__":
    main()
