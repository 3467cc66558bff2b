"""The SQL store's ledger: per entity, the seq of the last command applied and the refusals kept
for a re-delivery (`plugins.ledger`), read and written in the batch's own transaction."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from plugins.ledger import MAX_MESSAGE, Folded, Refusals, refusal
from plugins.sql_documents import EntityId, create_table

LEDGER = "_gateway_applied"  # no collection can take these names: collections start with a letter
REFUSED = "_gateway_refused"


class SqlLedger:
    """Two tables: `_gateway_applied` (collection, entity id, seq) and `_gateway_refused`
    (collection, entity id, seq, error type, message), one row per kept refusal."""

    def __init__(self, metadata: sa.MetaData) -> None:
        self.applied = sa.Table(
            LEDGER,
            metadata,
            sa.Column("collection", sa.String(63), primary_key=True),
            sa.Column("entity_id", EntityId, primary_key=True),
            sa.Column("seq", sa.BigInteger, nullable=False),
        )
        self.refused = sa.Table(
            REFUSED,
            metadata,
            sa.Column("collection", sa.String(63), primary_key=True),
            sa.Column("entity_id", EntityId, primary_key=True),
            sa.Column("seq", sa.BigInteger, primary_key=True),
            sa.Column("error_type", sa.String(32), nullable=False),
            sa.Column("message", sa.Text, nullable=False),
        )

    def create(self, writer: Engine) -> None:
        create_table(writer, self.applied)
        create_table(writer, self.refused)

    def read(
        self, conn: Connection, collection: str, ids: list[str]
    ) -> tuple[dict[str, int], dict[str, Refusals]]:
        """The entities' last seqs (their rows locked for the transaction) and kept refusals."""
        applied, refused = self.applied, self.refused
        seqs: dict[str, int] = dict(
            conn.execute(
                sa.select(applied.c.entity_id, applied.c.seq)
                .where(applied.c.collection == collection, applied.c.entity_id.in_(ids))
                .with_for_update()
            ).all()
        )
        refusals: dict[str, Refusals] = {}
        rows = conn.execute(
            sa.select(refused.c.entity_id, refused.c.seq, refused.c.error_type, refused.c.message).where(
                refused.c.collection == collection, refused.c.entity_id.in_(ids)
            )
        )
        for entity_id, seq, error_type, message in rows:
            refusals.setdefault(entity_id, {})[int(seq)] = refusal(error_type, message)
        return seqs, refusals

    def write(
        self,
        conn: Connection,
        collection: str,
        seqs: Mapping[str, int],
        kept: Mapping[str, Refusals],
        folded: Folded,
    ) -> None:
        """Write what `folded` changed: the entities' seqs (`seqs`: as read before) and their
        kept refusals (`kept`: as read before; only the rows added or dropped are written)."""
        applied = self.applied
        inserts = [
            {"collection": collection, "entity_id": k, "seq": v}
            for k, v in folded.seqs.items()
            if k not in seqs
        ]
        updates = [{"_id": k, "seq": v} for k, v in folded.seqs.items() if k in seqs]
        if inserts:
            conn.execute(applied.insert(), inserts)
        if updates:
            conn.execute(
                applied.update().where(
                    applied.c.collection == collection, applied.c.entity_id == sa.bindparam("_id")
                ),
                updates,
            )
        refused = self.refused
        rows = []
        for entity, keep in folded.refusals.items():
            before = kept.get(entity, {})
            dropped = [seq for seq in before if seq not in keep]  # past MAX_REFUSALS_KEPT: the oldest
            if dropped:
                conn.execute(
                    refused.delete().where(
                        refused.c.collection == collection,
                        refused.c.entity_id == entity,
                        refused.c.seq.in_(dropped),
                    )
                )
            rows += [
                {
                    "collection": collection,
                    "entity_id": entity,
                    "seq": seq,
                    "error_type": r.error_type,
                    "message": str(r)[:MAX_MESSAGE],
                }
                for seq, r in keep.items()
                if seq not in before
            ]
        if rows:
            conn.execute(refused.insert(), rows)
