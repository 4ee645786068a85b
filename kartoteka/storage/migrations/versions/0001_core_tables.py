"""Core tables: users, API tokens, records, record links, files.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(150), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_used_at", Timestamp),
        sa.Column("revoked_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_tokens_user_id_users", ondelete="CASCADE"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("title", sa.String(300), nullable=False, server_default=""),
        sa.Column("owner", Id),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("created_by", Id),
        sa.Column("updated_by", Id),
        sa.Column("deleted_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.ForeignKeyConstraint(["owner"], ["users.id"], name="fk_records_owner_users", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_records_created_by_users",
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name="fk_records_updated_by_users",
                                ondelete="SET NULL"),
    )
    op.create_index("ix_records_entity_id", "records", ["entity", "id"])
    op.create_index("ix_records_entity_updated_at", "records", ["entity", "updated_at"])
    op.create_index("ix_records_entity_owner", "records", ["entity", "owner"])
    op.create_table(
        "record_links",
        sa.Column("source_id", Id, nullable=False),
        sa.Column("field", sa.String(63), nullable=False),
        sa.Column("target_id", Id, nullable=False),
        sa.Column("source_entity", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("source_id", "field", "target_id", name="pk_record_links"),
        sa.ForeignKeyConstraint(["source_id"], ["records.id"], name="fk_record_links_source_id_records",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["records.id"], name="fk_record_links_target_id_records",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_record_links_target", "record_links", ["target_id", "source_entity", "field"])
    op.create_table(
        "files",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("created_by", Id),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_files_created_by_users", ondelete="SET NULL"),
    )


def downgrade() -> None:
    for table in ("files", "record_links", "records", "api_tokens", "users"):
        op.drop_table(table)
