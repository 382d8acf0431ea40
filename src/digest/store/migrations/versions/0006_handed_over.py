"""Batches claimed ahead: ``batches.handed_over``, false until the batch goes to the transport.

A send builds its next batch while the one before it is in flight, so a batch can be claimed
(its deliveries ``submitting``) and not yet handed over. A crash then must put those deliveries
back to pending, not make them ``unknown``: nothing of them went out. Every batch recorded before
this revision was handed over as soon as it was claimed, hence the default.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("handed_over", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("handed_over")
