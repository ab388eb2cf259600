"""The outcomes of a user action other than success, shared by every front end.

Each names what the caller may be told, never more: the HTTP API maps them to status codes
(joinedup/api.py), the CLI to messages and exit codes, the demo to its step notes. This
module imports nothing of the project, so every other module of `joinedup` can use it.
"""

from __future__ import annotations

WITHHELD_MESSAGE = "Not allowed, or there is nothing here that you may see."


class OperationError(Exception):
    """Base of every outcome below."""


class NotAvailable(OperationError):
    """A piece of the deployment this request needs is missing (e.g. no link run yet)."""


class Refused(OperationError):
    """The policy said no, and the caller may know why: the reasons are safe to show."""

    def __init__(self, reasons: list[str], decision_id: str | None = None) -> None:
        super().__init__("; ".join(reasons) or "not allowed")
        self.reasons = list(reasons) or ["not allowed"]
        self.decision_id = decision_id


class Withheld(OperationError):
    """Refused, or not found, told to a caller whose role may not know which: the two look
    the same (same status, same body) so that the answer says nothing about the person."""

    def __init__(self, decision_id: str | None = None) -> None:
        super().__init__(WITHHELD_MESSAGE)
        self.decision_id = decision_id


class NotFound(OperationError):
    """The thing asked for does not exist, told to a caller who may know that."""


class Conflict(OperationError):
    """The request contradicts the current state (e.g. withdrawing a consent twice)."""


class InvalidInput(OperationError, ValueError):
    """The request itself is unusable: (field, reason) per problem, never the value."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


# The collation engine's name for the same thing (kept: the CLI and tests catch it).
CollationInputError = InvalidInput


class InvalidIdentifiers(InvalidInput):
    """The standardiser refused identifiers the caller gave: (field, reason) per problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("the identifiers cannot identify a person: "
                         + "; ".join(f"{f}: {r}" for f, r in problems),
                         [(f"identifiers.{f}", r) for f, r in problems])
        self.identifier_problems = list(problems)
