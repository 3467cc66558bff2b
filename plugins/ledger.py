"""The per-entity ledger fold: which commands of a batch apply, and what they leave behind.

Every store keeps, per entity, the `seq` of the last command it applied, and skips any command
whose `seq` is not greater (`plugins.store`). Given what a store read for a batch's entities (the
ledger's seqs, the documents), `fold` works out in memory each command's outcome and each changed
entity's new document and seq; the store then writes those in the same transaction. Several
commands of one entity fold into one write.

A batch may be delivered again after its commit, before its outcomes were recorded (a worker
killed, Redis lost). The seq alone would then call a command the store refused "applied before"
once a later command of its entity applied, so a store also keeps, per entity, its refusals
(seq, error type, message), written with the ledger: a re-delivered refused command gets its
refusal again. An entity keeps its newest MAX_REFUSALS_KEPT refusals: commands are delivered
again only until their outcomes are recorded, which happens for a partition's batch (BATCH_SIZE
commands at most, 500 by default) before its next one is applied, so the older refusals of an
entity belong to commands already recorded. Not only the last batch's: when a batch fails, the
gateway applies its commands one by one, each in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plugins.store import Command, Document, Forbidden, Outcome, Rejected

#: How a command changes an entity's document: `Command.apply_to`, or a store's stricter form of it.
Apply = Callable[[Command, Document | None], Document | None]
#: An entity's kept refusals: the seq of each refused command, and its refusal.
Refusals = dict[int, Rejected]
MAX_MESSAGE = 1000  # characters of a refusal's message kept
MAX_REFUSALS_KEPT = 500  # per entity: the newest, enough for a batch of BATCH_SIZE commands


@dataclass
class Folded:
    """A batch folded into an entity's state: what to answer, what to write."""

    outcomes: list[Outcome] = field(default_factory=list)  # one per command, in order
    documents: dict[str, Document | None] = field(default_factory=dict)  # changed: new doc, None: absent
    seqs: dict[str, int] = field(default_factory=dict)  # changed: the seq of the last command applied
    owners: dict[str, str | None] = field(default_factory=dict)  # changed: the owner after (None: none)
    refusals: dict[str, Refusals] = field(default_factory=dict)  # changed: the refusals to keep now


def fold(
    commands: Sequence[Command],
    last_seqs: Mapping[str, int],
    documents: Mapping[str, Document | None],
    apply: Apply = Command.apply_to,
    owners: Mapping[str, str | None] | None = None,
    refusals: Mapping[str, Mapping[int, Rejected]] | None = None,
) -> Folded:
    """Fold `commands` (of one collection, in order) into their entities, by id.

    `last_seqs` holds the ledger's seq of each entity that has one, `documents` the stored
    document of each entity that has one. A command whose seq is not above its entity's last is
    skipped (outcome None: applied before); one that `apply` rejects gets the reason as outcome
    and changes nothing. `owners` holds the recorded owner of each entity that has one: a
    command another user may not make (`Command.owner_after`) is refused the same way, and
    `Folded.owners` holds each changed entity's owner after the batch.

    `refusals` holds each entity's kept refusals, by seq: a command found there gets its refusal
    again (a re-delivery). `Folded.refusals` holds all the refusals to keep of each entity that
    has new ones (the newest MAX_REFUSALS_KEPT).
    """
    owners = owners or {}
    refusals = refusals or {}
    folded = Folded()
    new: dict[str, Refusals] = {}  # per entity: the refusals first answered by this batch
    for command in commands:
        entity = command.entity_id
        kept = refusals.get(entity, {}).get(command.seq)
        if kept is not None:
            folded.outcomes.append(kept)  # refused before: a re-delivery
            continue
        if command.seq <= folded.seqs.get(entity, last_seqs.get(entity, -1)):
            folded.outcomes.append(None)  # applied before: a re-delivery, or a stale worker
            continue
        current = folded.documents[entity] if entity in folded.documents else documents.get(entity)
        owner = folded.owners[entity] if entity in folded.owners else owners.get(entity)
        try:
            owner = command.owner_after(current, owner)
            document = apply(command, current)
        except Rejected as reason:
            folded.outcomes.append(reason)
            new.setdefault(entity, {})[command.seq] = reason
            continue
        folded.documents[entity] = document
        folded.owners[entity] = owner if document is not None else None
        folded.seqs[entity] = command.seq
        folded.outcomes.append(None)
    for entity, refused in new.items():
        kept_now = {**refusals.get(entity, {}), **refused}
        newest = sorted(kept_now, reverse=True)[:MAX_REFUSALS_KEPT]
        folded.refusals[entity] = {seq: kept_now[seq] for seq in sorted(newest)}
    return folded


def encode_refusals(refusals: Refusals) -> list[list[Any]]:
    """Refusals as JSON: `[seq, error type, message]` each, in seq order."""
    return [[seq, r.error_type, str(r)[:MAX_MESSAGE]] for seq, r in sorted(refusals.items())]


def decode_refusals(rows: Iterable[Sequence[Any]]) -> Refusals:
    """Refusals from `encode_refusals`' rows (or a table's `(seq, error type, message)` rows)."""
    return {int(seq): refusal(error_type, message) for seq, error_type, message in rows}


def refusal(error_type: str, message: str) -> Rejected:
    """A kept refusal as the store first answered it (`Forbidden` for the type `forbidden`)."""
    return Forbidden(message) if error_type == "forbidden" else Rejected(message, error_type)  # type: ignore[arg-type]


def by_collection(commands: Sequence[Command]) -> dict[str, list[int]]:
    """The positions of `commands` in the batch, grouped by collection, in order."""
    groups: dict[str, list[int]] = {}
    for index, command in enumerate(commands):
        groups.setdefault(command.collection, []).append(index)
    return groups
