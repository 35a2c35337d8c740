"""TCP end to end: real sockets, each protocol's handshake and replies, rows in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.db import Database
from tests.gateway.support import (
    Terminal,
    fix,
    imei,
    phone,
    register,
    run,
    running_gateway,
    settings_for,
    stored_fixes,
)


@pytest.mark.parametrize("protocol", ["jt808", "teltonika", "gt06"])
def test_terminal_handshake_positions_and_acknowledgements(
    protocol: str, database: Database, db_url: str, tmp_path: Path
) -> None:
    device_id = phone(1) if protocol == "jt808" else imei(1)
    register(database, protocol, [device_id])
    settings = settings_for(db_url, tmp_path)

    async def scenario() -> list[bool]:
        async with running_gateway(settings, database) as gateway:
            terminal = Terminal(protocol, device_id, "127.0.0.1", gateway.ports[protocol]["tcp"])
            await terminal.connect()
            await terminal.handshake()
            assert terminal.handshake_done and not terminal.rejected
            results = []
            for index in range(5):
                out = terminal.codec.position(fix(index))
                results.append(await terminal.send(out))
                if out.needs_ack:  # acknowledged means committed: the row is there already
                    assert len(stored_fixes(database, device_id)) == index + 1
            await terminal.close()
            return results

    assert run(scenario()) == [True] * 5
    rows = stored_fixes(database, device_id)
    assert len(rows) == 5
    assert [round(r.lat, 4) for r in rows] == [round(31.2 + i * 0.0001, 4) for i in range(5)]
    assert all(r.flags == 0 and r.protocol == protocol for r in rows)
