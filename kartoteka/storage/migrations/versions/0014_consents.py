"""The consent archive: every consent given or withdrawn, append-only, kept at least six years.

One row per change of a consent field (kartoteka/records/consent.py): who (the record, its title then), for which
purpose (the field), given or withdrawn, when, by whom, under which policy version and link, and through which channel.
No tie to the records table: the archive outlives a purged card. The database itself refuses to change a row, and to
delete one younger than six years (the legal minimum; the retention setting may keep them longer).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

_SQLITE_GUARDS = (
    "CREATE TRIGGER consents_append_only BEFORE UPDATE ON consents "
    "BEGIN SELECT RAISE(ABORT, 'consent records are append-only'); END",
    "CREATE TRIGGER consents_kept_six_years BEFORE DELETE ON consents "
    "WHEN OLD.created_at > datetime('now', '-6 years') "
    "BEGIN SELECT RAISE(ABORT, 'consent records are kept for six years'); END",
)
_POSTGRESQL_GUARDS = (
    "CREATE FUNCTION consents_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'UPDATE' THEN RAISE EXCEPTION 'consent records are append-only'; END IF; "
    "IF OLD.created_at > now() - interval '6 years' THEN "
    "RAISE EXCEPTION 'consent records are kept for six years'; END IF; "
    "RETURN OLD; END $$",
    "CREATE TRIGGER consents_guard BEFORE UPDATE OR DELETE ON consents FOR EACH ROW "
    "EXECUTE FUNCTION consents_guard()",
)


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(63), nullable=False),
        sa.Column("record_id", Id, nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("field", sa.String(63), nullable=False),
        sa.Column("purpose", sa.String(300), nullable=False),
        sa.Column("given", sa.Boolean, nullable=False),
        sa.Column("decided_at", Timestamp, nullable=False),
        sa.Column("user_id", Id),
        sa.Column("user_name", sa.String(150)),
        sa.Column("policy_version", sa.String(100)),
        sa.Column("policy_url", sa.String(2000)),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
    )
    op.create_index("ix_consents_entity_record_id", "consents", ["entity", "record_id"])
    op.create_index("ix_consents_created_at", "consents", ["created_at"])
    for statement in _POSTGRESQL_GUARDS if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARDS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER consents_guard ON consents")
        op.execute("DROP FUNCTION consents_guard()")
    op.drop_table("consents")
