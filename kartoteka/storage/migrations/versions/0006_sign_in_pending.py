"""Sign-in attempts being checked are counted apart from failures, so a success takes back exactly its own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sign_in_attempts", sa.Column("pending", sa.Integer, nullable=False, server_default="0"))
    op.add_column("sign_in_attempts", sa.Column("pending_since", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("sign_in_attempts") as batch:
        batch.drop_column("pending_since")
        batch.drop_column("pending")
