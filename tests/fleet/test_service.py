"""Registry rules on both backends: install, no double bindings, swaps, history, retire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from fleet import service
from fleet.errors import Conflict, Invalid, NotFound
from fleet.validation import iccid_for
from store.db import Database
from store.tables.registry import installations, terminals
from tests.fleet.support import T0, build_registry

DAY = timedelta(days=1)


def test_install_binds_terminal_sim_and_vehicle(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        record = service.install(
            conn,
            device_id=reg.imeis[0],
            plate=reg.plates[0],
            iccid=reg.iccids[0],
            at=T0,
            installed_by="Zhang",
        )
        assert record["valid_to"] is None and record["valid_from"] == T0
        terminal = service.terminal_by_device_id(conn, reg.imeis[0])
        assert terminal["status"] == "installed"
        assert service.sim_by_iccid(conn, reg.iccids[0])["status"] == "active"


def test_no_terminal_in_two_vehicles_at_once(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        with pytest.raises(Conflict) as caught:
            service.install(conn, device_id=reg.imeis[0], plate=reg.plates[1], at=T0 + DAY)
        assert caught.value.field == "device_id"
        assert reg.plates[0] in caught.value.message  # says where it is


def test_no_sim_in_two_terminals_at_once(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        with pytest.raises(Conflict) as caught:
            service.install(
                conn, device_id=reg.imeis[1], plate=reg.plates[1], iccid=reg.iccids[0], at=T0 + DAY
            )
        assert caught.value.field == "iccid"


def test_backdated_install_may_not_overlap_closed_history(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.uninstall(conn, device_id=reg.imeis[0], at=T0 + 10 * DAY)
        with pytest.raises(Conflict):
            service.install(conn, device_id=reg.imeis[0], plate=reg.plates[1], at=T0 + 5 * DAY)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[1], at=T0 + 10 * DAY)


def test_the_database_refuses_a_second_open_installation(database: Database) -> None:
    """The partial unique index holds even if a writer skipped the service's check."""
    from sqlalchemy.exc import IntegrityError

    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        terminal_id = service.terminal_by_device_id(conn, reg.imeis[0])["id"]
        vehicle_id = service.vehicle_by_plate(conn, reg.plates[1])["id"]
    with pytest.raises(IntegrityError), database.engine.begin() as conn:
        conn.execute(
            installations.insert().values(
                terminal_id=terminal_id, vehicle_id=vehicle_id, valid_from=T0 + DAY, created_at=T0
            )
        )


def test_terminal_swap_moves_vehicle_and_sim_and_tags_the_returned_terminal(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        swap = service.swap_terminal(
            conn,
            old_device_id=reg.imeis[0],
            new_device_id=reg.imeis[1],
            performed_by="Zhang",
            reason="no GNSS fix",
            symptom="antenna cut alarm",
            at=T0 + 30 * DAY,
            ticket_ref="R-17",
        )
        assert swap["old_device_id"] == reg.imeis[0] and swap["new_device_id"] == reg.imeis[1]
        assert swap["plate"] == reg.plates[0] and swap["performed_by"] == "Zhang"
        old = service.terminal_by_device_id(conn, reg.imeis[0])
        new = service.terminal_by_device_id(conn, reg.imeis[1])
        assert old["status"] == "returned_for_repair"
        assert old["return_plate"] == reg.plates[0] and old["return_symptom"] == "antenna cut alarm"
        assert new["status"] == "installed" and new["replaces_terminal_id"] == old["id"]
        now = service.open_installation(conn, terminal_id=new["id"])
        assert now is not None and now["sim_id"] == service.sim_by_iccid(conn, reg.iccids[0])["id"]
        # History: which terminal was in the vehicle before and after the swap.
        vehicle_id = service.vehicle_by_plate(conn, reg.plates[0])["id"]
        before = service.installations_during(conn, T0 + 3 * DAY, vehicle_id=vehicle_id)
        after = service.installations_during(conn, T0 + 31 * DAY, vehicle_id=vehicle_id)
        assert [r["device_id"] for r in before] == [reg.imeis[0]]
        assert [r["device_id"] for r in after] == [reg.imeis[1]]
        # On the day of the swap both were in it.
        day = T0 + 30 * DAY - timedelta(hours=8)
        both = service.installations_during(conn, day, day + DAY, vehicle_id=vehicle_id)
        assert [r["device_id"] for r in both] == [reg.imeis[0], reg.imeis[1]]
        history = service.terminal_history(conn, reg.imeis[0])
        assert history["installations"][0]["end_reason"] == "terminal swap: no GNSS fix"
        assert history["swaps"][0]["ticket_ref"] == "R-17"


def test_terminal_swap_with_a_new_sim_too(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        swap = service.swap_terminal(
            conn,
            old_device_id=reg.imeis[0],
            new_device_id=reg.imeis[1],
            new_iccid=reg.iccids[1],
            performed_by="Zhang",
            reason="water damage",
            at=T0 + DAY,
        )
        assert swap["old_iccid"] == reg.iccids[0] and swap["new_iccid"] == reg.iccids[1]
        assert service.sim_by_iccid(conn, reg.iccids[0])["status"] == "stock"
        assert service.sim_by_iccid(conn, reg.iccids[1])["status"] == "active"


def test_swap_refuses_a_new_terminal_not_in_stock(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.install(conn, device_id=reg.imeis[1], plate=reg.plates[1], at=T0)
        with pytest.raises(Conflict) as caught:
            service.swap_terminal(
                conn, old_device_id=reg.imeis[0], new_device_id=reg.imeis[1], performed_by="Z", reason="x"
            )
        assert caught.value.field == "new_device_id"
        with pytest.raises(Conflict):  # not installed: nothing to swap
            service.swap_terminal(
                conn, old_device_id=reg.imeis[2], new_device_id=reg.imeis[3], performed_by="Z", reason="x"
            )


def test_work_on_site_is_recorded_once_done_never_ahead(database: Database) -> None:
    tomorrow = service.utcnow() + timedelta(days=1)
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        swap = {"performed_by": "Z", "reason": "x"}
        attempts = {
            "install": lambda at: service.install(conn, device_id=reg.imeis[1], plate=reg.plates[1], at=at),
            "terminal swap": lambda at: service.swap_terminal(
                conn, old_device_id=reg.imeis[0], new_device_id=reg.imeis[2], at=at, **swap
            ),
            "SIM swap": lambda at: service.swap_sim(
                conn, old_iccid=reg.iccids[0], new_iccid=reg.iccids[1], at=at, **swap
            ),
            "uninstall": lambda at: service.uninstall(conn, device_id=reg.imeis[0], at=at),
        }
        for what, attempt in attempts.items():
            with pytest.raises(Invalid, match="is in the future") as caught:
                attempt(tomorrow)
            assert caught.value.field == "at", what
        nothing_moved = service.open_installation(
            conn, terminal_id=service.terminal_by_device_id(conn, reg.imeis[0])["id"]
        )
        skewed = attempts["SIM swap"](service.utcnow() + timedelta(minutes=1))  # a phone a bit ahead
    assert nothing_moved is not None and nothing_moved["valid_from"] == T0
    assert skewed["new_iccid"] == reg.iccids[1]


def test_a_sim_in_a_vehicle_goes_back_to_stock_only_by_uninstall_or_swap(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        with pytest.raises(Conflict, match=f"is in terminal {reg.imeis[0]} in vehicle") as caught:
            service.update_sim(conn, reg.iccids[0], status="stock")
        assert caught.value.field == "status"
        suspended = service.update_sim(conn, reg.iccids[0], status="suspended")  # by its carrier
        service.uninstall(conn, device_id=reg.imeis[0])
        back = service.update_sim(conn, reg.iccids[0], status="stock")  # already stock: nothing to say
        spare = service.update_sim(conn, reg.iccids[1], status="terminated")
        restocked = service.update_sim(conn, reg.iccids[1], status="stock")
    assert suspended["status"] == "suspended"
    assert (back["status"], spare["status"], restocked["status"]) == ("stock", "terminated", "stock")


def test_sim_moved_between_terminals_keeps_both_histories(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        service.install(conn, device_id=reg.imeis[1], plate=reg.plates[1], iccid=reg.iccids[1], at=T0)
        # The SIM of terminal 1 may not go into terminal 2 while terminal 1 still holds it.
        with pytest.raises(Conflict):
            service.swap_sim(
                conn,
                old_iccid=reg.iccids[1],
                new_iccid=reg.iccids[0],
                performed_by="Z",
                reason="x",
                at=T0 + DAY,
            )
        swap = service.swap_sim(
            conn,
            old_iccid=reg.iccids[0],
            new_iccid=reg.iccids[2],
            performed_by="Wang",
            reason="SIM unreadable",
            at=T0 + 5 * DAY,
        )
        assert swap["kind"] == "sim" and swap["old_iccid"] == reg.iccids[0]
        service.swap_sim(
            conn,
            old_iccid=reg.iccids[1],
            new_iccid=reg.iccids[0],
            performed_by="Wang",
            reason="plan",
            at=T0 + 9 * DAY,
        )
        t1 = service.terminal_by_device_id(conn, reg.imeis[0])["id"]
        t2 = service.terminal_by_device_id(conn, reg.imeis[1])["id"]
        assert [r["iccid"] for r in service.installations_during(conn, T0 + DAY, terminal_id=t1)] == [
            reg.iccids[0]
        ]
        assert [r["iccid"] for r in service.installations_during(conn, T0 + 6 * DAY, terminal_id=t1)] == [
            reg.iccids[2]
        ]
        assert [r["iccid"] for r in service.installations_during(conn, T0 + 10 * DAY, terminal_id=t2)] == [
            reg.iccids[0]
        ]
        sim_id = service.sim_by_iccid(conn, reg.iccids[0])["id"]
        where = service.installations_during(conn, T0, T0 + 30 * DAY, sim_id=sim_id)
        assert [r["device_id"] for r in where] == [reg.imeis[0], reg.imeis[1]]


def test_validation_errors_name_the_field(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        with pytest.raises(Invalid) as caught:
            service.create_terminal(conn, device_id="123456789012345", model_id=reg.model_id)
        assert caught.value.field == "device_id"
        with pytest.raises(Invalid) as caught:
            good = iccid_for(77)
            service.create_sim(conn, iccid=good[:-1] + str((int(good[-1]) + 1) % 10))
        assert caught.value.field == "iccid"
        with pytest.raises(Invalid) as caught:
            service.create_vehicle(conn, plate="粤B99999", customer_id=reg.customer_id, vin="TOO-SHORT")
        assert caught.value.field == "vin"
        with pytest.raises(Invalid) as caught:
            service.create_customer(conn, name="X", kind="alien")
        assert caught.value.field == "kind"
        with pytest.raises(Conflict):
            service.create_vehicle(conn, plate=reg.plates[0], customer_id=reg.customer_id)


def test_jt808_model_takes_phone_number_ids(database: Database) -> None:
    with database.engine.begin() as conn:
        model = service.create_terminal_model(conn, name="JT-1", protocol="jt808")
        assert model["id_kind"] == "phone"
        terminal = service.create_terminal(conn, device_id="13800138000", model_id=model["id"])
        assert terminal["device_id"] == "013800138000"
        assert service.terminal_by_device_id(conn, "13800138000")["id"] == terminal["id"]


def test_history_needs_records_so_delete_is_refused_and_retire_offered(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        terminal_id = service.terminal_by_device_id(conn, reg.imeis[0])["id"]
        with pytest.raises(Conflict, match="retire it instead"):
            service.delete_record(conn, "terminal", terminal_id)
        with pytest.raises(Conflict, match="installed"):
            service.retire_record(conn, "terminal", terminal_id)
        service.uninstall(conn, device_id=reg.imeis[0], at=T0 + DAY)
        retired = service.retire_record(conn, "terminal", terminal_id)
        assert retired["retired_at"] is not None and retired["enabled"] is False
        with pytest.raises(Conflict, match="retired"):
            service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0 + 2 * DAY)
        # A record nothing refers to may be deleted.
        unused = service.terminal_by_device_id(conn, reg.imeis[3])["id"]
        service.delete_record(conn, "terminal", unused)
        assert conn.execute(select(terminals).where(terminals.c.id == unused)).first() is None
        with pytest.raises(NotFound):
            service.delete_record(conn, "terminal", unused)


def test_customer_code_follows_id_and_update_checks_fields(database: Database) -> None:
    with database.engine.begin() as conn:
        customer = service.create_customer(conn, name="Solo", kind="individual")
        assert customer["code"] == f"C{customer['id']:06d}"
        updated = service.update_customer(conn, customer["id"], phone="555")
        assert updated["phone"] == "555" and updated["name"] == "Solo"
        with pytest.raises(Invalid):
            service.update_customer(conn, customer["id"], name=" ")
