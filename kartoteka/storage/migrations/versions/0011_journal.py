"""The change journal: one row per save of a record, with each changed value old -> new.

Every create, update, delete, restore, merge, import and rule change writes its row in the saving transaction
(kartoteka/records/journal.py); replaying the rows backwards from the record's current values rebuilds it exactly as
it was at any version. `batch` names the import or merge a save belongs to, so it can be undone as one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("record_id", Id, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("user_id", Id),
        sa.Column("token_id", Id),
        sa.Column("rule_key", sa.String(127)),
        sa.Column("batch", sa.String(64)),
        sa.Column("reverts", sa.Integer),
        sa.Column("changes", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_journal_user_id_users", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], name="fk_journal_token_id_api_tokens",
                                ondelete="SET NULL"),
    )
    op.create_index("ix_journal_entity_record_id_id", "journal", ["entity", "record_id", "id"])
    op.create_index("ix_journal_batch", "journal", ["batch"])


def downgrade() -> None:
    op.drop_table("journal")
