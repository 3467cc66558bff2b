"""The per-entity ledger fold: which commands of a batch apply, and what they leave behind.

Every store keeps, per entity, the `seq` of the last command it applied, and skips any command
whose `seq` is not greater (`plugins.store`). Given what a store read for a batch's entities (the
ledger's seqs, the documents), `fold` works out in memory each command's outcome and each changed
entity's new document and seq; the store then writes those in the same transaction. Several
commands of one entity fold into one write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from plugins.store import Command, Document, Outcome, Rejected

#: How a command changes an entity's document: `Command.apply_to`, or a store's stricter form of it.
Apply = Callable[[Command, Document | None], Document | None]


@dataclass
class Folded:
    """A batch folded into an entity's state: what to answer, what to write."""

    outcomes: list[Outcome] = field(default_factory=list)  # one per command, in order
    documents: dict[str, Document | None] = field(default_factory=dict)  # changed: new doc, None: absent
    seqs: dict[str, int] = field(default_factory=dict)  # changed: the seq of the last command applied
    owners: dict[str, str | None] = field(default_factory=dict)  # changed: the owner after (None: none)


def fold(
    commands: Sequence[Command],
    last_seqs: Mapping[str, int],
    documents: Mapping[str, Document | None],
    apply: Apply = Command.apply_to,
    owners: Mapping[str, str | None] | None = None,
) -> Folded:
    """Fold `commands` (of one collection, in order) into their entities, by id.

    `last_seqs` holds the ledger's seq of each entity that has one, `documents` the stored
    document of each entity that has one. A command whose seq is not above its entity's last is
    skipped (outcome None: applied before); one that `apply` rejects gets the reason as outcome
    and changes nothing. `owners` holds the recorded owner of each entity that has one: a
    command another user may not make (`Command.owner_after`) is refused the same way, and
    `Folded.owners` holds each changed entity's owner after the batch.
    """
    owners = owners or {}
    folded = Folded()
    for command in commands:
        entity = command.entity_id
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
            continue
        folded.documents[entity] = document
        folded.owners[entity] = owner if document is not None else None
        folded.seqs[entity] = command.seq
        folded.outcomes.append(None)
    return folded


def by_collection(commands: Sequence[Command]) -> dict[str, list[int]]:
    """The positions of `commands` in the batch, grouped by collection, in order."""
    groups: dict[str, list[int]] = {}
    for index, command in enumerate(commands):
        groups.setdefault(command.collection, []).append(index)
    return groups
