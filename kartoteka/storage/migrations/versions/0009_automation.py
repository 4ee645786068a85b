"""Automation: tasks, notifications, the timeline, the rule run log, rule states, the outbox, date timers and
scheduled rules (docs/automation.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def _user_fk(table: str, column: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], ["users.id"], name=f"fk_{table}_{column}_users", ondelete=ondelete)


def _record_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=f"fk_{table}_record_id_records",
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.String(5000), nullable=False, server_default=""),
        sa.Column("assignee", Id),
        sa.Column("due_at", Timestamp),
        sa.Column("done_at", Timestamp),
        sa.Column("entity", sa.String(63)),
        sa.Column("record_id", Id),
        sa.Column("rule_key", sa.String(127)),
        sa.Column("created_by", Id),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        _user_fk("tasks", "assignee", "SET NULL"),
        _record_fk("tasks"),
        _user_fk("tasks", "created_by", "SET NULL"),
    )
    op.create_index("ix_tasks_assignee_done_at_due_at", "tasks", ["assignee", "done_at", "due_at"])
    op.create_index("ix_tasks_record_id", "tasks", ["record_id"])

    op.create_table(
        "notifications",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("entity", sa.String(63)),
        sa.Column("record_id", Id),
        sa.Column("rule_key", sa.String(127)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("read_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        _user_fk("notifications", "user_id", "CASCADE"),
        _record_fk("notifications"),
    )
    op.create_index("ix_notifications_user_id_read_at_id", "notifications", ["user_id", "read_at", "id"])

    op.create_table(
        "timeline",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("record_id", Id, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("body", sa.String(10000), nullable=False, server_default=""),
        sa.Column("payload", Json),
        sa.Column("user_id", Id),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_timeline"),
        _record_fk("timeline"),
        _user_fk("timeline", "user_id", "SET NULL"),
    )
    op.create_index("ix_timeline_record_id_created_at", "timeline", ["record_id", "created_at"])

    op.create_table(
        "rule_runs",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("rule_key", sa.String(127), nullable=False),
        sa.Column("record_id", Id),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("result", sa.String(20), nullable=False),
        sa.Column("actions", Json),
        sa.Column("error", sa.String(2000)),
        sa.Column("duration_us", sa.Integer, nullable=False, server_default="0"),
        sa.Column("depth", sa.Integer, nullable=False, server_default="0"),
        sa.Column("user_id", Id),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rule_runs"),
        _user_fk("rule_runs", "user_id", "SET NULL"),
    )
    op.create_index("ix_rule_runs_entity_record_id_id", "rule_runs", ["entity", "record_id", "id"])
    op.create_index("ix_rule_runs_entity_rule_key_id", "rule_runs", ["entity", "rule_key", "id"])

    op.create_table(
        "rule_states",
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("rule_key", sa.String(127), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("disabled_at", Timestamp),
        sa.Column("disabled_reason", sa.String(2000)),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("entity", "rule_key", name="pk_rule_states"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("destination", sa.String(2000), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("state", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("leased_until", Timestamp),
        sa.Column("last_error", sa.String(2000)),
        sa.Column("entity", sa.String(63)),
        sa.Column("record_id", Id),
        sa.Column("rule_key", sa.String(127)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("delivery_id", name="uq_outbox_delivery_id"),
    )
    op.create_index("ix_outbox_state_next_attempt_at", "outbox", ["state", "next_attempt_at"])

    op.create_table(
        "rule_timers",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("rule_key", sa.String(127), nullable=False),
        sa.Column("record_id", Id, nullable=False),
        sa.Column("due_at", Timestamp, nullable=False),
        sa.Column("fired_at", Timestamp),
        sa.Column("leased_until", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_rule_timers"),
        _record_fk("rule_timers"),
        sa.UniqueConstraint("entity", "rule_key", "record_id", name="uq_rule_timers_entity_rule_key_record_id"),
    )
    op.create_index("ix_rule_timers_fired_at_due_at", "rule_timers", ["fired_at", "due_at"])
    op.create_index("ix_rule_timers_record_id", "rule_timers", ["record_id"])

    op.create_table(
        "rule_schedules",
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("rule_key", sa.String(127), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("next_run_at", Timestamp, nullable=False),
        sa.Column("last_run_at", Timestamp),
        sa.Column("leased_until", Timestamp),
        sa.PrimaryKeyConstraint("entity", "rule_key", name="pk_rule_schedules"),
    )


def downgrade() -> None:
    for table in ("rule_schedules", "rule_timers", "outbox", "rule_states", "rule_runs", "timeline", "notifications",
                  "tasks"):
        op.drop_table(table)
