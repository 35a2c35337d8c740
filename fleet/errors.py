"""The registry's error tree: what went wrong, in words a clerk understands, and its HTTP meaning."""

from __future__ import annotations


class FleetError(Exception):
    """Base of registry errors; ``status`` is the HTTP code a router answers with."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(FleetError):
    status = 404


class Conflict(FleetError):
    """The request breaks a registry rule (a terminal already installed, history needs a record)."""

    status = 409


class Invalid(FleetError):
    """A value is malformed; ``field`` names it."""

    status = 422
