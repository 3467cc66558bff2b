"""Test plugin: a SQL store with an application rule on a token claim, as a team would write one.

Store `plans` applies a user's writes only when the claims carried with the command say the
user is on the `pro` plan (`COMMAND_CLAIMS=plan`), or when the user is an operator; any other
write is refused as `Forbidden`. Every command it is handed is noted in SEEN, with the claims
and operator flag it carried, for the tests to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plugins.hookspecs import hookimpl
from plugins.sql_store import SqlStore
from plugins.store import Command, Forbidden, Outcome
from settings import Settings

SEEN: list[dict[str, Any]] = []


class PlanStore(SqlStore):
    name = "plans"

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        refused: dict[int, Outcome] = {}
        for index, command in enumerate(commands):
            operator = command.access is not None and command.access.operator
            SEEN.append(
                {"command_id": command.command_id, "claims": dict(command.claims), "operator": operator}
            )
            if command.claims.get("plan") != "pro" and not operator:
                refused[index] = Forbidden(f"{command.user} is not on the pro plan")
        allowed = [c for i, c in enumerate(commands) if i not in refused]
        applied = iter(super().apply(allowed))
        return [refused[i] if i in refused else next(applied) for i in range(len(commands))]


@hookimpl
def register_stores(settings: Settings) -> list[SqlStore]:
    return [PlanStore(settings.database_url)]
