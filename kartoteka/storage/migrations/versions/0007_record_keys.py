"""Key columns on records: typed copies of indexed fields' values for lists (kartoteka/storage/keys.py).

Added empty and without indexes: `sync_indexes` fills each for the entities that use it, from their JSON, in the
transaction that builds its index. Adding a column without a default changes no stored row on either database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Spelled out, not imported: a migration stays as it was written whatever the application's code becomes.
TEXT_KEYS = tuple(f"kt{i}" for i in range(1, 13))
NUMBER_KEYS = tuple(f"kn{i}" for i in range(1, 7))


def upgrade() -> None:
    for name in TEXT_KEYS:
        op.add_column("records", sa.Column(name, sa.String()))
    for name in NUMBER_KEYS:
        op.add_column("records", sa.Column(name, sa.Numeric()))


def downgrade() -> None:
    bind = op.get_bind()
    # Their indexes go with them (SQLite cannot drop a column an index names): the key columns' own (kkx_) and the
    # owner indexes that hold them (kox_, storage/indexes.py owner_indexes).
    if bind.dialect.name == "postgresql":
        query = ("SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND schemaname = current_schema() "
                 "AND (indexname LIKE 'kkx\\_%' OR indexname LIKE 'kox\\_%')")
    else:
        query = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' "
                 "AND (name LIKE 'kkx\\_%' ESCAPE '\\' OR name LIKE 'kox\\_%' ESCAPE '\\')")
    names = [row[0] for row in bind.execute(sa.text(query))]
    for name in names:
        op.drop_index(name, table_name="records")
    with op.batch_alter_table("records") as batch:
        for name in (*NUMBER_KEYS[::-1], *TEXT_KEYS[::-1]):
            batch.drop_column(name)
