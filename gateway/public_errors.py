"""What users see of a command's failure: an error type and a stable public message.

A store's own words (SQL, driver messages, the names of tables and constraints) can tell an
attacker about the database and change with every driver version, so users never see them: the
status route, events and pushes carry the type's public message, and the raw text goes only to
the worker's log and the dead letter, where operators look.
"""

from __future__ import annotations

from typing import get_args

from plugins.store import ErrorType, Outcome, Rejected

ERROR_TYPES: tuple[ErrorType, ...] = get_args(ErrorType)

MESSAGES: dict[ErrorType, str] = {
    "forbidden": "You may not change this document: it belongs to another user.",
    "conflict": "The document already exists.",
    "not_found": "The document does not exist.",
    "invalid": "The store refused the document.",
    "store_error": "The store could not apply the write.",
}


def message(error_type: ErrorType) -> str:
    """The public message of an error type."""
    return MESSAGES[error_type]


def type_of(outcome: Outcome | BaseException) -> ErrorType:
    """The error type of a store's refusal (an outcome or a raised exception)."""
    if isinstance(outcome, Rejected):
        return outcome.error_type
    if isinstance(outcome, str):
        return "invalid"
    return "store_error"
