"""An index on files by uploader, so upload limits count a user's files without scanning them all.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_files_created_by_attached_at", "files", ["created_by", "attached_at"])


def downgrade() -> None:
    op.drop_index("ix_files_created_by_attached_at", table_name="files")
