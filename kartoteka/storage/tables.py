"""Core tables (managed by Alembic migrations); every card's values live in records.data."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from kartoteka.storage.keys import KEY_COLUMNS, NUMBER_KEYS, TEXT_KEYS

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite needs INTEGER PRIMARY KEY to autoincrement (rowid alias); PostgreSQL gets a bigint identity.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
FlagsJson = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = sa.DateTime(timezone=True)
# The types of the key columns: those the JSON expressions they stand for have (storage/json_sql.py JsonValue).
KeyText = sa.String()
KeyNumber = sa.Numeric()

users = sa.Table(
    "users", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254)),
    sa.Column("password_hash", sa.String(300)),
    sa.Column("roles", Json, nullable=False),
    sa.Column("department", sa.String(63)),
    sa.Column("language", sa.String(8), nullable=False, server_default="en"),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", Timestamp),
    sa.Column("last_login_at", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_used_at", Timestamp),
    sa.Column("revoked_at", Timestamp),
)

records = sa.Table(
    "records", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("title", sa.String(300), nullable=False, server_default=""),
    sa.Column("owner", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("created_by", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("updated_by", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("deleted_at", Timestamp),
    # Checks over fields the saving user could not see, which the saved values break (their sources). None is SQL
    # NULL, not JSON null: a listed row then reads nothing to decode (rows written before hold 'null', read alike).
    sa.Column("flags", FlagsJson),
    # Key columns: copies of indexed fields' values that lists filter, sort and count by (storage/keys.py).
    *(sa.Column(name, KeyText) for name in TEXT_KEYS),
    *(sa.Column(name, KeyNumber) for name in NUMBER_KEYS),
    # A list's live rows are one range of these (migration 0008); owner-scoped lists have their entity's kox_ index.
    sa.Index("ix_records_entity_live", "entity", "deleted_at", "id"),
    sa.Index("ix_records_entity_live_updated_at", "entity", "deleted_at", "updated_at"),
    sa.Index("ix_records_owner", "owner"),
)

# The columns a record is read with: all but the key columns, which only lists' SQL reads.
RECORD_COLUMNS = tuple(c for c in records.c if c.name not in KEY_COLUMNS)

# One row per reference value, so "which deals point at this company" is an index lookup.
record_links = sa.Table(
    "record_links", metadata,
    sa.Column("source_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("field", sa.String(63), primary_key=True),
    sa.Column("target_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("source_entity", sa.String(63), nullable=False),
    sa.Index("ix_record_links_target", "target_id", "source_entity", "field"),
)

files = sa.Table(
    "files", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(127), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    # When a record first held it; uploads never attached are cleaned up after a day.
    sa.Column("attached_at", Timestamp),
    # Upload limits count a user's pending and stored files on every upload.
    sa.Index("ix_files_created_by_attached_at", "created_by", "attached_at"),
)

# Which records hold which uploaded file: a download is allowed to whoever may read one of them.
file_links = sa.Table(
    "file_links", metadata,
    sa.Column("file_id", sa.String(32), sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("record_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("field", sa.String(63), primary_key=True),
    sa.Column("source_entity", sa.String(63), nullable=False),
    sa.Index("ix_file_links_record_id", "record_id"),
)

# Saved list filters ("segments"): a list URL's query string under a name, private or shared per entity.
saved_views = sa.Table(
    "saved_views", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("query", sa.String(2000), nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_saved_views_entity_user_id", "entity", "user_id"),
    sa.UniqueConstraint("user_id", "entity", "name"),
)

# Signed-in browser sessions: the cookie carries a random id, the table only its SHA-256, so signing out
# (or an administrator's "sign out everywhere", or a password change) ends a session for good.
user_sessions = sa.Table(
    "user_sessions", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    # A digest of the password hash the session was made with: a password changed in any way ends it.
    sa.Column("password_stamp", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_seen_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_agent", sa.String(300), nullable=False, server_default=""),
)

# Failed sign-ins per (user name as typed, client address), and per address alone (username ''), shared
# by every process; blocked_until is when the pair (or the address) may try again.
sign_in_attempts = sa.Table(
    "sign_in_attempts", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(150), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", Timestamp, nullable=False, index=True),
    sa.Column("blocked_until", Timestamp),
    # Attempts counted but not yet ended (their password is being checked), and when the last was counted.
    sa.Column("pending", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pending_since", Timestamp),
    sa.UniqueConstraint("username", "address"),
)

# --- automation (docs/automation.md) ----------------------------------------------------------------

# Tasks: a to-do for one user, usually about a card; made by people or by rules (rule_key).
tasks = sa.Table(
    "tasks", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("description", sa.String(5000), nullable=False, server_default=""),
    sa.Column("assignee", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("due_at", Timestamp),
    sa.Column("done_at", Timestamp),
    sa.Column("entity", sa.String(63)),
    sa.Column("record_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE")),
    sa.Column("rule_key", sa.String(127)),
    sa.Column("created_by", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index("ix_tasks_assignee_done_at_due_at", "assignee", "done_at", "due_at"),
    sa.Index("ix_tasks_record_id", "record_id"),
)

# In-app notifications: one row per recipient, its text rendered with the fields that recipient may view.
notifications = sa.Table(
    "notifications", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("text", sa.String(2000), nullable=False),
    sa.Column("entity", sa.String(63)),
    sa.Column("record_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE")),
    sa.Column("rule_key", sa.String(127)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("read_at", Timestamp),
    sa.Index("ix_notifications_user_id_read_at_id", "user_id", "read_at", "id"),
)

# A card's timeline: notes, logged calls and meetings, e-mails sent, rule runs (tasks come from `tasks`).
timeline = sa.Table(
    "timeline", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("record_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # note | call | meeting | email | rule
    sa.Column("body", sa.String(10000), nullable=False, server_default=""),
    sa.Column("payload", Json),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_timeline_record_id_created_at", "record_id", "created_at"),
)

# Every rule that fired (its condition held), was stopped or failed: what ran, on what, why, how long.
rule_runs = sa.Table(
    "rule_runs", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("rule_key", sa.String(127), nullable=False),
    sa.Column("record_id", Id),  # no foreign key: the log outlives a purged record
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("result", sa.String(20), nullable=False),  # done | blocked | failed | stopped | dry_run
    sa.Column("actions", Json),
    sa.Column("error", sa.String(2000)),
    sa.Column("duration_us", sa.Integer, nullable=False, server_default="0"),
    sa.Column("depth", sa.Integer, nullable=False, server_default="0"),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_rule_runs_entity_record_id_id", "entity", "record_id", "id"),
    sa.Index("ix_rule_runs_entity_rule_key_id", "entity", "rule_key", "id"),
)

# Per rule: failures in a row, and when it was disabled for them (a rule failing too often stops firing).
rule_states = sa.Table(
    "rule_states", metadata,
    sa.Column("entity", sa.String(63), primary_key=True),
    sa.Column("rule_key", sa.String(127), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("disabled_at", Timestamp),
    sa.Column("disabled_reason", sa.String(2000)),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# Side effects written in the saving transaction and delivered after commit by `kartoteka worker`:
# at least once, `delivery_id` the idempotency key (a webhook's webhook-id), backoff, then dead.
outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),  # email | webhook
    sa.Column("destination", sa.String(2000), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("state", sa.String(12), nullable=False, server_default="pending"),  # pending | done | dead
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Timestamp, nullable=False),
    sa.Column("leased_until", Timestamp),
    sa.Column("last_error", sa.String(2000)),
    sa.Column("entity", sa.String(63)),
    sa.Column("record_id", Id),
    sa.Column("rule_key", sa.String(127)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp),
    sa.Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
)

# Durable timers of date-triggered rules: when each (rule, record) is due; moved when the date changes.
rule_timers = sa.Table(
    "rule_timers", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("rule_key", sa.String(127), nullable=False),
    sa.Column("record_id", Id, sa.ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    sa.Column("due_at", Timestamp, nullable=False),
    sa.Column("fired_at", Timestamp),
    sa.Column("leased_until", Timestamp),
    sa.UniqueConstraint("entity", "rule_key", "record_id"),
    sa.Index("ix_rule_timers_fired_at_due_at", "fired_at", "due_at"),
    sa.Index("ix_rule_timers_record_id", "record_id"),
)

# Scheduled (cron) rules: when each runs next; a worker claims a due one, runs it, sets the next run.
rule_schedules = sa.Table(
    "rule_schedules", metadata,
    sa.Column("entity", sa.String(63), primary_key=True),
    sa.Column("rule_key", sa.String(127), primary_key=True),
    sa.Column("cron", sa.String(100), nullable=False),
    sa.Column("next_run_at", Timestamp, nullable=False),
    sa.Column("last_run_at", Timestamp),
    sa.Column("leased_until", Timestamp),
)

# The trigger each date rule's timers were last computed for: a new or changed date rule gets timers for the records
# that already exist (kartoteka/rules/timer_sync.py); `leased_until` lets one worker do it.
rule_date_syncs = sa.Table(
    "rule_date_syncs", metadata,
    sa.Column("entity", sa.String(63), primary_key=True),
    sa.Column("rule_key", sa.String(127), primary_key=True),
    sa.Column("trigger", sa.String(500)),
    sa.Column("synced_at", Timestamp),
    sa.Column("leased_until", Timestamp),
)

# The change journal (kartoteka/records/journal.py): one row per save of a record, each changed value old -> new as
# stored ("owner" for the owner column), enough to rebuild any version. No foreign key to records: a purge removes a
# record's rows itself.
journal = sa.Table(
    "journal", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("record_id", Id, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("action", sa.String(20), nullable=False),  # created | updated | deleted | restored | merged | reverted
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("token_id", Id, sa.ForeignKey("api_tokens.id", ondelete="SET NULL")),
    sa.Column("rule_key", sa.String(127)),
    sa.Column("batch", sa.String(64)),  # the import or merge the save belongs to
    sa.Column("reverts", sa.Integer),  # the version a revert went back to
    sa.Column("changes", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_journal_entity_record_id_id", "entity", "record_id", "id"),
    sa.Index("ix_journal_batch", "batch"),
)

# Imports of CSV and XLSX files (kartoteka/imports/): who imported what into which card, with which options, how it
# went (counts and the first row errors), and whether it was undone. The saves of an import carry
# `batch = "import:<id>"` in the journal, which is how it is undone.
imports = sa.Table(
    "imports", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("format", sa.String(8), nullable=False),  # csv | xlsx
    sa.Column("options", Json, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # queued | running | done | failed | undone
    sa.Column("rows", sa.Integer, nullable=False, server_default="0"),  # data rows read so far
    sa.Column("created", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("invalid", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors", Json),  # the first row errors: [{row, column, field, code, message, params}]
    sa.Column("detail", Json),  # why it failed, or what its undo left alone (a message as stored)
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp),
    sa.Column("undone_at", Timestamp),
    sa.Index("ix_imports_status", "status"),
)

# Merges of duplicates (kartoteka/records/merging.py): which records went into the survivor, and the timeline entries,
# tasks and notifications moved to it, so that the merge can be undone; its saves carry batch "merge:<id>".
merges = sa.Table(
    "merges", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("survivor_id", Id, nullable=False),
    sa.Column("others", Json, nullable=False),
    sa.Column("moved", Json, nullable=False),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("undone_at", Timestamp),
    sa.Column("undone_by", Id, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Index("ix_merges_entity_survivor_id", "entity", "survivor_id"),
)

# The consent archive (kartoteka/records/consent.py): append-only, kept at least six years, outliving purged cards;
# the database refuses updates and early deletes (triggers of migration 0014).
consents = sa.Table(
    "consents", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(63), nullable=False),
    sa.Column("record_id", Id, nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),  # the card's title when the consent was recorded
    sa.Column("field", sa.String(63), nullable=False),
    sa.Column("purpose", sa.String(300), nullable=False),
    sa.Column("given", sa.Boolean, nullable=False),
    sa.Column("decided_at", Timestamp, nullable=False),
    sa.Column("user_id", Id),  # no foreign key: the archive keeps who, even once the user is gone
    sa.Column("user_name", sa.String(150)),
    sa.Column("policy_version", sa.String(100)),
    sa.Column("policy_url", sa.String(2000)),
    sa.Column("channel", sa.String(20), nullable=False),  # ui | api | import | rule | merge ...
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_consents_entity_record_id", "entity", "record_id"),
    sa.Index("ix_consents_created_at", "created_at"),
)
