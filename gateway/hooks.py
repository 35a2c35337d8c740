"""What the gateway needs from the rest of the product, as protocols: a terminal resolver and
after-commit hooks.  ``app`` injects the registry and the alert engine; the gateway imports
neither."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from store.records import IngestBatch

log = logging.getLogger(__name__)


class ResolvedTerminal(Protocol):
    """The part of ``fleet.directory.TerminalInfo`` the gateway reads."""

    @property
    def device_id(self) -> str: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def tz(self) -> str | None: ...

    @property
    def lenient(self) -> bool | None: ...


class TerminalResolver(Protocol):
    """Looks a device id up in the registry (blocking: the gateway calls it in a thread)."""

    def resolve(self, device_id: str) -> ResolvedTerminal | None: ...


class GatewayHooks(Protocol):
    """Called by the gateway on its event loop; implementations must not block (enqueue)."""

    def after_commit(self, batch: IngestBatch) -> None:
        """The batch is durable and its terminals were acknowledged."""

    def decode_error(self, device_id: str | None, protocol: str, kind: str, at: datetime) -> None:
        """A frame could not be decoded (kind: framing, checksum, malformed, ...)."""

    def connection(self, device_id: str, protocol: str, connected: bool, at: datetime) -> None:
        """A terminal's connection (or serial port, or MQTT topic session) came or went."""


class NullHooks:
    """Hooks that do nothing: a gateway without an alert engine."""

    def after_commit(self, batch: IngestBatch) -> None:
        return None

    def decode_error(self, device_id: str | None, protocol: str, kind: str, at: datetime) -> None:
        return None

    def connection(self, device_id: str, protocol: str, connected: bool, at: datetime) -> None:
        return None


def call_hook(name: str, hook: object, *args: object) -> None:
    """Call one hook, logging (never raising) its failure: a broken consumer must not stop
    the gateway from acknowledging terminals."""
    try:
        getattr(hook, name)(*args)
    except Exception:
        log.exception("gateway hook %s failed", name)
