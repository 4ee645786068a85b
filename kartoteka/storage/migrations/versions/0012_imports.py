"""Imports of CSV and XLSX files: options, status, counts and the first row errors of each.

The records an import saves carry `batch = "import:<id>"` in the journal (0011), which is how an import is undone.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("user_id", Id),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("options", Json, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("invalid", sa.Integer, nullable=False, server_default="0"),
        sa.Column("errors", Json),
        sa.Column("detail", Json),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp),
        sa.Column("undone_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_imports"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_imports_user_id_users", ondelete="SET NULL"),
    )
    op.create_index("ix_imports_status", "imports", ["status"])


def downgrade() -> None:
    op.drop_table("imports")
