"""The look-ups other parts call: the gateway's directory, customer scope, a ticket's context."""

from __future__ import annotations

from datetime import timedelta

from fleet import service
from fleet.context import terminal_context
from fleet.directory import TerminalDirectory
from fleet.scope import customer_owns_terminal, customer_terminal_ids
from store.db import Database
from tests.fleet.support import T0, build_registry


def test_directory_resolves_installed_stock_disabled_and_unknown(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.update_terminal(conn, reg.imeis[1], enabled=False)
        service.update_terminal(conn, reg.imeis[2], status="scrapped", tz="+08:00", lenient=True)
    directory = TerminalDirectory(database)
    installed = directory.resolve(reg.imeis[0])
    assert installed is not None
    assert installed.enabled and installed.status == "installed" and installed.customer_id == reg.customer_id
    assert installed.model_name == "GT-100" and installed.protocol == "gt06" and installed.tz is None
    assert directory.resolve("0" + reg.imeis[0]) == installed  # GT06's 16-digit form
    disabled = directory.resolve(reg.imeis[1])
    assert disabled is not None and not disabled.enabled and disabled.customer_id is None
    scrapped = directory.resolve(reg.imeis[2])
    assert (
        scrapped is not None and not scrapped.enabled and scrapped.tz == "+08:00" and scrapped.lenient is True
    )
    stock = directory.resolve(reg.imeis[3])
    assert stock is not None and stock.enabled and stock.status == "stock"
    assert directory.resolve("490154203237518") is None


def test_customer_scope_follows_current_installations(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.install(conn, device_id=reg.imeis[1], plate=reg.plates[2], at=T0)  # other customer
        assert customer_terminal_ids(conn, reg.customer_id) == {reg.imeis[0]}
        assert customer_owns_terminal(conn, reg.customer_id, reg.imeis[0])
        assert not customer_owns_terminal(conn, reg.customer_id, reg.imeis[1])
        assert customer_terminal_ids(conn, reg.other_customer_id) == {reg.imeis[1]}
        service.uninstall(conn, device_id=reg.imeis[0], at=T0 + timedelta(days=1))
        assert customer_terminal_ids(conn, reg.customer_id) == set()


def test_terminal_context_at_a_moment(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        service.swap_sim(
            conn,
            old_iccid=reg.iccids[0],
            new_iccid=reg.iccids[1],
            performed_by="W",
            reason="r",
            at=T0 + timedelta(days=10),
        )
        before = terminal_context(conn, reg.imeis[0], T0 + timedelta(days=1))
        after = terminal_context(conn, reg.imeis[0], T0 + timedelta(days=11))
        never = terminal_context(conn, reg.imeis[0], T0 - timedelta(days=1))
        assert terminal_context(conn, "490154203237518", T0) is None
    assert before is not None and after is not None and never is not None
    assert before.iccid == reg.iccids[0] and after.iccid == reg.iccids[1]
    assert before.plate == reg.plates[0] and before.vin == "LSVAU2180N2183294"
    assert before.customer_name == "Acme Logistics" and before.customer_contact == "Li Wei"
    assert before.customer_phone == "13800000001" and before.customer_address == "1 Road"
    assert before.model_name == "GT-100"
    assert never.plate is None and never.customer_id is None and never.model_name == "GT-100"
