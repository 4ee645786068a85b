"""Which version of each date rule's trigger the stored timers were computed for.

A date rule added to a card (or whose field or offset changed) needs timers for the records that already exist; the
worker compares each rule's trigger with the one recorded here and recomputes its timers when they differ
(kartoteka/rules/timer_sync.py).

The card's timeline reads rule runs from the run log (rule_runs) instead of a copy of each run in the timeline
table: the copies go.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rule_date_syncs",
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("rule_key", sa.String(127), nullable=False),
        sa.Column("trigger", sa.String(500)),
        sa.Column("synced_at", Timestamp),
        sa.Column("leased_until", Timestamp),
        sa.PrimaryKeyConstraint("entity", "rule_key", name="pk_rule_date_syncs"),
    )
    op.execute("DELETE FROM timeline WHERE kind = 'rule'")


def downgrade() -> None:
    op.drop_table("rule_date_syncs")
