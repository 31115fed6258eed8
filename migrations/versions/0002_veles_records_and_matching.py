"""veles records and matching

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:40:32.349749
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "veles_customers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("domain", sa.Text(), nullable=True),
        sa.Column("email_key", sa.Text(), nullable=True),
        sa.Column("domain_key", sa.Text(), nullable=True),
        sa.Column("name_key", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(length=16), server_default="veles", nullable=False),
        sa.Column("src_created", sa.BigInteger(), server_default=sa.text("-1"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_veles_customers")),
    )
    op.create_index(
        op.f("ix_veles_customers_domain_key"), "veles_customers", ["domain_key"], unique=False
    )
    op.create_index(
        op.f("ix_veles_customers_email_key"), "veles_customers", ["email_key"], unique=False
    )
    op.create_index(
        op.f("ix_veles_customers_name_key"), "veles_customers", ["name_key"], unique=False
    )
    op.create_table(
        "veles_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_veles_events")),
    )
    op.create_index(
        "ix_veles_events_status_received_at",
        "veles_events",
        ["status", "received_at"],
        unique=False,
    )
    op.create_index("ix_veles_events_type", "veles_events", ["type"], unique=False)
    op.create_table(
        "veles_products",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("unit_label", sa.Text(), nullable=True),
        sa.Column("prices", sa.JSON(), nullable=True),
        sa.Column("name_key", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(length=16), server_default="veles", nullable=False),
        sa.Column("src_created", sa.BigInteger(), server_default=sa.text("-1"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_veles_products")),
    )
    op.create_index(
        op.f("ix_veles_products_name_key"), "veles_products", ["name_key"], unique=False
    )
    op.add_column("customers", sa.Column("email_key", sa.Text(), nullable=True))
    op.add_column("customers", sa.Column("domain_key", sa.Text(), nullable=True))
    op.add_column("customers", sa.Column("name_key", sa.Text(), nullable=True))
    op.add_column(
        "customers",
        sa.Column(
            "match_status", sa.String(length=16), server_default="not_matched", nullable=False
        ),
    )
    op.add_column("customers", sa.Column("veles_customer_id", sa.String(length=255), nullable=True))
    op.add_column("customers", sa.Column("match_method", sa.String(length=16), nullable=True))
    op.add_column("customers", sa.Column("match_candidates", sa.JSON(), nullable=True))
    op.add_column(
        "customers",
        sa.Column("match_manual", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_index(op.f("ix_customers_domain_key"), "customers", ["domain_key"], unique=False)
    op.create_index(op.f("ix_customers_email_key"), "customers", ["email_key"], unique=False)
    op.create_index(op.f("ix_customers_match_status"), "customers", ["match_status"], unique=False)
    op.create_index(op.f("ix_customers_name_key"), "customers", ["name_key"], unique=False)
    op.create_index(
        op.f("ix_customers_veles_customer_id"), "customers", ["veles_customer_id"], unique=False
    )
    op.add_column("products", sa.Column("name_key", sa.Text(), nullable=True))
    op.add_column(
        "products",
        sa.Column(
            "match_status", sa.String(length=16), server_default="not_matched", nullable=False
        ),
    )
    op.add_column("products", sa.Column("veles_product_id", sa.String(length=255), nullable=True))
    op.add_column("products", sa.Column("match_candidates", sa.JSON(), nullable=True))
    op.add_column(
        "products",
        sa.Column("match_manual", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_index(op.f("ix_products_match_status"), "products", ["match_status"], unique=False)
    op.create_index(op.f("ix_products_name_key"), "products", ["name_key"], unique=False)
    op.create_index(
        op.f("ix_products_veles_product_id"), "products", ["veles_product_id"], unique=False
    )


def downgrade() -> None:

    op.drop_index(op.f("ix_products_veles_product_id"), table_name="products")
    op.drop_index(op.f("ix_products_name_key"), table_name="products")
    op.drop_index(op.f("ix_products_match_status"), table_name="products")
    op.drop_column("products", "match_manual")
    op.drop_column("products", "match_candidates")
    op.drop_column("products", "veles_product_id")
    op.drop_column("products", "match_status")
    op.drop_column("products", "name_key")
    op.drop_index(op.f("ix_customers_veles_customer_id"), table_name="customers")
    op.drop_index(op.f("ix_customers_name_key"), table_name="customers")
    op.drop_index(op.f("ix_customers_match_status"), table_name="customers")
    op.drop_index(op.f("ix_customers_email_key"), table_name="customers")
    op.drop_index(op.f("ix_customers_domain_key"), table_name="customers")
    op.drop_column("customers", "match_manual")
    op.drop_column("customers", "match_candidates")
    op.drop_column("customers", "match_method")
    op.drop_column("customers", "veles_customer_id")
    op.drop_column("customers", "match_status")
    op.drop_column("customers", "name_key")
    op.drop_column("customers", "domain_key")
    op.drop_column("customers", "email_key")
    op.drop_index(op.f("ix_veles_products_name_key"), table_name="veles_products")
    op.drop_table("veles_products")
    op.drop_index("ix_veles_events_type", table_name="veles_events")
    op.drop_index("ix_veles_events_status_received_at", table_name="veles_events")
    op.drop_table("veles_events")
    op.drop_index(op.f("ix_veles_customers_name_key"), table_name="veles_customers")
    op.drop_index(op.f("ix_veles_customers_email_key"), table_name="veles_customers")
    op.drop_index(op.f("ix_veles_customers_domain_key"), table_name="veles_customers")
    op.drop_table("veles_customers")
