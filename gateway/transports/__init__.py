"""Transport adapters: each moves bytes between one library and a session, knowing no protocol."""

from __future__ import annotations

from typing import Any, Protocol


class Receiver(Protocol):
    """The session side of a transport: bytes in, and the end of the conversation."""

    def feed(self, data: bytes, token: Any = None) -> None: ...

    def close(self) -> None: ...
