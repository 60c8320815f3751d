"""foundation: departments, clients, users, issued tokens, audit log

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_departments"),
    )
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=True),
        sa.Column("public_jwks", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_clients_department_code_departments"),
        sa.PrimaryKeyConstraint("client_id", name="pk_clients"),
    )
    op.create_index("ix_clients_department_code", "clients", ["department_code"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("department_code", sa.String(32), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["department_code"], ["departments.code"], name="fk_users_department_code_departments"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "issued_tokens",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"], name="fk_issued_tokens_client_id_clients"),
        sa.PrimaryKeyConstraint("jti", name="pk_issued_tokens"),
    )
    op.create_index("ix_issued_tokens_client_id", "issued_tokens", ["client_id"])
    op.create_index("ix_issued_tokens_expires_at", "issued_tokens", ["expires_at"])
    op.create_table(
        "used_assertions",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(200), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_used_assertions"),
    )
    op.create_index("ix_used_assertions_expires_at", "used_assertions", ["expires_at"])
    op.create_table(
        "audit_entries",
        sa.Column("seq", BIGINT, autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(100), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entries"),
    )
    op.create_index("ix_audit_entries_subject", "audit_entries", ["subject"])
    op.create_index("ix_audit_entries_action_at", "audit_entries", ["action", "at"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", BIGINT, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    for table in ("audit_head", "audit_entries", "used_assertions", "issued_tokens", "users", "clients", "departments"):
        op.drop_table(table)
