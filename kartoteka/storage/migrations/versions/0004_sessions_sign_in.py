"""Server-side browser sessions (revocable) and failed sign-ins per user name and client address.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("password_stamp", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_seen_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("address", sa.String(64), nullable=False, server_default=""),
        sa.Column("user_agent", sa.String(300), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_user_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_user_sessions_user_id_users", ondelete="CASCADE"),
        sa.UniqueConstraint("token_hash", name="uq_user_sessions_token_hash"),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])
    op.create_index("ix_user_sessions_expires_at", "user_sessions", ["expires_at"])
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", Timestamp, nullable=False),
        sa.Column("blocked_until", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_attempts"),
        sa.UniqueConstraint("username", "address", name="uq_sign_in_attempts_username_address"),
    )
    op.create_index("ix_sign_in_attempts_last_failure_at", "sign_in_attempts", ["last_failure_at"])
    # Accounts locked by the old per-account counter are free again: the counters now live above.
    op.execute(sa.text("UPDATE users SET failed_logins = 0, locked_until = NULL"))


def downgrade() -> None:
    op.drop_index("ix_sign_in_attempts_last_failure_at", table_name="sign_in_attempts")
    op.drop_table("sign_in_attempts")
    op.drop_index("ix_user_sessions_expires_at", table_name="user_sessions")
    op.drop_index("ix_user_sessions_user_id", table_name="user_sessions")
    op.drop_table("user_sessions")
