"""Merges of duplicate records: which records went into which, and what was moved, so a merge can be undone.

The saves of a merge (the survivor's new values, the records whose references were repointed, the merged records'
deletion) carry `batch = "merge:<id>"` in the journal; timeline entries, tasks and notifications moved to the
survivor are listed in `moved` (kartoteka/records/merging.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("survivor_id", Id, nullable=False),
        sa.Column("others", Json, nullable=False),
        sa.Column("moved", Json, nullable=False),
        sa.Column("user_id", Id),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("undone_at", Timestamp),
        sa.Column("undone_by", Id),
        sa.PrimaryKeyConstraint("id", name="pk_merges"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_merges_user_id_users", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["undone_by"], ["users.id"], name="fk_merges_undone_by_users", ondelete="SET NULL"),
    )
    op.create_index("ix_merges_entity_survivor_id", "merges", ["entity", "survivor_id"])


def downgrade() -> None:
    op.drop_table("merges")
