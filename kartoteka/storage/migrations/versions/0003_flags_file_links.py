"""Record flags (checks over fields the saving user could not see, failing), file links and attachment times.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("flags", Json))
    with op.batch_alter_table("files") as batch:
        # Uploads never attached to a record are removed after a while; attached ones are kept.
        batch.add_column(sa.Column("attached_at", sa.DateTime(timezone=True)))
    op.create_table(
        "file_links",
        sa.Column("file_id", sa.String(32), nullable=False),
        sa.Column("record_id", Id, nullable=False),
        sa.Column("field", sa.String(63), nullable=False),
        sa.Column("source_entity", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "record_id", "field", name="pk_file_links"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name="fk_file_links_file_id_files", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_file_links_record_id_records",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_file_links_record_id", "file_links", ["record_id"])
    # Files already held by records before this migration keep their links.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text(
            "INSERT INTO file_links (file_id, record_id, field, source_entity) "
            "SELECT DISTINCT f.id, r.id, kv.key, r.entity FROM records r "
            "CROSS JOIN LATERAL jsonb_each(r.data) kv "
            "JOIN files f ON f.id = kv.value->>'id' OR kv.value @> jsonb_build_array(jsonb_build_object('id', f.id))"
            " WHERE jsonb_typeof(kv.value) IN ('object', 'array')"))
    else:
        bind.execute(sa.text(
            "INSERT OR IGNORE INTO file_links (file_id, record_id, field, source_entity) "
            "SELECT f.id, r.id, kv.key, r.entity FROM records r, json_each(r.data) kv, files f "
            "WHERE (kv.type = 'object' AND json_extract(kv.value, '$.id') = f.id) "
            "OR (kv.type = 'array' AND EXISTS (SELECT 1 FROM json_each(kv.value) item "
            "WHERE item.type = 'object' AND json_extract(item.value, '$.id') = f.id))"))
    bind.execute(sa.text("UPDATE files SET attached_at = created_at "
                         "WHERE id IN (SELECT file_id FROM file_links)"))


def downgrade() -> None:
    op.drop_index("ix_file_links_record_id", table_name="file_links")
    op.drop_table("file_links")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("attached_at")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("flags")
