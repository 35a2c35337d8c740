"""CSV import and export: per-row errors, dry run, re-import changes nothing, round trip, CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.cli import main
from fleet import service
from fleet.importer import ImportFileError, export_csv, import_csv, rows_to_csv
from fleet.validation import iccid_for, imei_for
from store.db import Database
from store.tables.registry import installations, sims, terminals, vehicles

CUSTOMERS = """code,name,kind,contact_name,phone
ACME,Acme Logistics,company,Li Wei,13800000001
SOLO,Wang Fang,individual,,13900000002
"""


def _vehicles() -> str:
    return rows_to_csv(
        "vehicles",
        [
            {"plate": "粤B10001", "vin": "LSVAU2180N2183294", "make": "Foton", "customer_code": "ACME"},
            {"plate": "粤B10002", "customer_code": "ACME"},
            {"plate": "粤B10003", "customer_code": "SOLO"},
        ],
    )


def _units(bad_imei_row: bool = False) -> str:
    rows = []
    for n, plate in enumerate(["粤B10001", "粤B10002", "粤B10003"], start=1):
        rows.append(
            {
                "device_id": imei_for(n),
                "model": "GT-100",
                "iccid": iccid_for(n),
                "msisdn": f"1480000{n:04d}",
                "plate": plate,
                "valid_from": "2025-03-01T08:00:00Z",
                "installed_by": "Zhang",
            }
        )
    if bad_imei_row:
        good = imei_for(9)
        rows.insert(1, {**rows[0], "device_id": good[:-1] + str((int(good[-1]) + 1) % 10)})
    return rows_to_csv("units", rows)


def _load(database: Database, kind: str, text: str, **kwargs: object) -> object:
    return import_csv(database, io.StringIO(text), kind, **kwargs)  # type: ignore[arg-type]


def _count(database: Database, table: object) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def catalogue(database: Database) -> Database:
    with database.engine.begin() as conn:
        service.create_terminal_model(conn, name="GT-100", protocol="gt06", warranty_months=12)
    return database


def test_import_then_reimport_changes_nothing(catalogue: Database) -> None:
    database = catalogue
    first = [
        _load(database, kind, text)
        for kind, text in (("customers", CUSTOMERS), ("vehicles", _vehicles()), ("units", _units()))
    ]
    assert [(r.created, r.updated, r.unchanged, r.errors) for r in first] == [
        (2, 0, 0, []),
        (3, 0, 0, []),
        (3, 0, 0, []),
    ]
    again = [
        _load(database, kind, text)
        for kind, text in (("customers", CUSTOMERS), ("vehicles", _vehicles()), ("units", _units()))
    ]
    assert [(r.created, r.updated, r.unchanged) for r in again] == [(0, 0, 2), (0, 0, 3), (0, 0, 3)]
    assert _count(database, installations) == 3
    with database.engine.connect() as conn:
        terminal = service.terminal_by_device_id(conn, imei_for(1))
        assert terminal["status"] == "installed"
        assert service.sim_by_iccid(conn, iccid_for(1))["status"] == "active"
        vehicle = service.vehicle_by_plate(conn, "粤B10003")
        assert service.get_customer(conn, vehicle["customer_id"])["code"] == "SOLO"
    changed = _load(database, "customers", CUSTOMERS.replace("13900000002", "13900000003"))
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 1)


def test_invalid_rows_are_reported_and_the_others_import(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    text = _vehicles().replace("LSVAU2180N2183294", "LSVAU2180N218329O") + "粤B10004,,,,,NOBODY,\n"
    report = _load(database, "vehicles", text)
    assert (report.created, report.failed) == (2, 2)
    assert [(e.row, e.field) for e in report.errors] == [(2, "vin"), (5, "customer_code")]
    assert "NOBODY" in report.errors[1].message
    _load(database, "vehicles", _vehicles())
    units = _load(database, "units", _units(bad_imei_row=True))
    assert units.created == 3 and [(e.row, e.field) for e in units.errors] == [(3, "device_id")]
    assert "Luhn" in units.errors[0].message
    assert _count(database, terminals) == 3


def test_an_installation_dated_ahead_is_a_row_error(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    _load(database, "vehicles", _vehicles())
    text = _units().replace("2025-03-01T08:00:00Z", "2035-03-01T08:00:00Z", 1)  # 2025 mistyped
    units = _load(database, "units", text)
    assert (units.created, [(e.row, e.field) for e in units.errors]) == (2, [(2, "valid_from")])
    assert "2035-03-01T08:00:00+00:00 is in the future" in units.errors[0].message
    ended = rows_to_csv(
        "installations",
        [
            {
                "device_id": imei_for(2),
                "plate": "粤B10002",
                "valid_from": "2025-03-01T08:00:00Z",
                "valid_to": "2099-01-01",
            }
        ],
    )
    report = _load(database, "installations", ended)
    assert [(e.row, e.field) for e in report.errors] == [(2, "valid_to")]
    assert _count(database, installations) == 2


def test_a_sim_in_a_vehicle_is_not_put_back_in_stock_by_a_sims_file(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    _load(database, "vehicles", _vehicles())
    _load(database, "units", _units())
    rows = [
        {"iccid": iccid_for(1), "status": "stock"},
        {"iccid": iccid_for(2), "status": "suspended"},  # by its carrier: still in the terminal
        {"iccid": iccid_for(50), "status": "stock"},  # a new one
    ]
    report = _load(database, "sims", rows_to_csv("sims", rows))
    assert [(e.row, e.field) for e in report.errors] == [(2, "status")]
    assert "uninstall or a SIM swap" in report.errors[0].message
    assert (report.updated, report.created) == (1, 1)
    with database.engine.connect() as conn:
        statuses = dict(conn.execute(select(sims.c.iccid, sims.c.status)).all())
    assert (statuses[iccid_for(1)], statuses[iccid_for(2)]) == ("active", "suspended")


def test_dry_run_writes_nothing_but_reports(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    _load(database, "vehicles", _vehicles())
    report = _load(database, "units", _units(bad_imei_row=True), dry_run=True)
    assert report.dry_run and report.created == 3 and report.failed == 1
    assert (
        _count(database, terminals) == 0
        and _count(database, sims) == 0
        and _count(database, installations) == 0
    )


def test_no_double_binding_through_import(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    _load(database, "vehicles", _vehicles())
    _load(database, "units", _units())
    moved = rows_to_csv(
        "installations",
        [
            {"device_id": imei_for(1), "plate": "粤B10002", "valid_from": "2025-04-01T00:00:00Z"},
            {
                "device_id": imei_for(2),
                "iccid": iccid_for(1),
                "plate": "粤B10002",
                "valid_from": "2025-03-01T08:00:00Z",
            },
        ],
    )
    report = _load(database, "installations", moved)
    assert [(e.row, e.field) for e in report.errors] == [(2, "device_id"), (3, "iccid")]
    assert _count(database, installations) == 3


def test_export_round_trip(catalogue: Database, tmp_path: Path) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    _load(database, "vehicles", _vehicles())
    _load(database, "units", _units())
    with database.engine.begin() as conn:  # history with a closed installation and a SIM swap
        service.swap_sim(conn, old_iccid=iccid_for(1), new_iccid=_new_sim(conn), performed_by="W", reason="r")
    for kind in ("customers", "vehicles", "terminals", "sims", "installations", "units"):
        out = io.StringIO()
        count = export_csv(database, kind, out)
        assert count >= 2
        report = _load(database, kind, out.getvalue())
        assert (report.created, report.updated, report.errors) == (0, 0, []), kind
        assert report.unchanged == count


def _new_sim(conn: object) -> str:
    iccid = iccid_for(500)
    service.create_sim(conn, iccid=iccid)  # type: ignore[arg-type]
    return iccid


def test_bad_header_is_refused_before_any_row(catalogue: Database) -> None:
    with pytest.raises(ImportFileError, match="unknown column"):
        _load(catalogue, "customers", "code,name,shoe_size\nA,B,44\n")
    with pytest.raises(ImportFileError, match="lacks required"):
        _load(catalogue, "vehicles", "plate\nX1\n")


def test_cli_import_prints_summary_and_exits_1_on_bad_rows(
    catalogue: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = catalogue.url
    customers = tmp_path / "customers.csv"
    customers.write_text(CUSTOMERS + ",No Code,company\n", encoding="utf-8")
    assert main(["fleet", "import", str(customers), "--kind", "customers", "--db", url, "--dry-run"]) == 1
    out = capsys.readouterr()
    assert "row 4: code: code is required" in out.err
    assert "2 created" in out.out and "dry run" in out.out
    assert _count(catalogue, vehicles) == 0
    customers.write_text(CUSTOMERS, encoding="utf-8")
    assert main(["fleet", "import", str(customers), "--kind", "customers", "--db", url]) == 0
    assert main(["fleet", "import", str(customers), "--kind", "customers", "--db", url]) == 0
    assert "0 created, 0 updated, 2 unchanged, 0 with errors" in capsys.readouterr().out
    exported = tmp_path / "out.csv"
    assert main(["fleet", "export", "--kind", "customers", "--out", str(exported), "--db", url]) == 0
    assert (
        exported.read_text(encoding="utf-8").splitlines()[1].startswith("ACME,Acme Logistics,company,Li Wei")
    )


def test_a_row_the_database_refuses_fails_alone(database: Database) -> None:
    """A key taken by another writer after planning: the batch falls back row by row."""
    from datetime import UTC, datetime

    from fleet.importer import _insert_rows, _Planned, _Reporter
    from store.tables.registry import customers

    with database.engine.begin() as conn:
        service.create_customer(conn, name="Taken", code="TAKEN")
    now = datetime.now(UTC)
    rows = [
        {"code": code, "name": code, "kind": "company", "created_at": now, "updated_at": now}
        for code in ("NEW-1", "TAKEN", "NEW-2")
    ]
    planned = [_Planned(row, row_values["code"], row_values) for row, row_values in enumerate(rows, start=2)]
    report = _Reporter()
    with database.engine.begin() as conn:
        created = _insert_rows(conn, customers, rows, planned, report, "customer", "code")
    assert sorted(key for _, key in created) == ["NEW-1", "NEW-2"]
    assert list(report.failed_rows) == [3] and "TAKEN" in report.failed_rows[3].message
    assert _count(database, customers) == 3


def test_progress_bar_on_stderr_only_when_asked(
    catalogue: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _load(catalogue, "customers", CUSTOMERS, progress=False)
    assert capsys.readouterr().err == ""  # and by default only when stderr is a terminal (not here)
    _load(catalogue, "customers", CUSTOMERS)
    assert capsys.readouterr().err == ""
    _load(catalogue, "customers", CUSTOMERS, progress=True)
    assert "import customers" in capsys.readouterr().err


def test_drivers_are_referenced_by_licence_from_vehicles(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    drivers = "licence_number,name,phone,customer_code\nGD-001,Chen Jie,13700000000,ACME\n"
    assert _load(database, "drivers", drivers).created == 1
    text = "plate,customer_code,driver_licence\n粤B20001,ACME,GD-001\n粤B20002,ACME,GD-404\n"
    report = _load(database, "vehicles", text)
    assert report.created == 1 and [(e.row, e.field) for e in report.errors] == [(3, "driver_licence")]
    with database.engine.connect() as conn:
        vehicle = service.vehicle_by_plate(conn, "粤B20001")
    assert vehicle["driver_id"] is not None
    out = io.StringIO()
    export_csv(database, "drivers", out)
    assert _load(database, "drivers", out.getvalue()).unchanged == 1


def test_importing_an_end_closes_the_installation_and_frees_terminal_and_sim(catalogue: Database) -> None:
    database = catalogue
    _load(database, "customers", CUSTOMERS)
    _load(database, "vehicles", _vehicles())
    _load(database, "units", _units())
    closing = rows_to_csv(
        "installations",
        [
            {
                "device_id": imei_for(1),
                "iccid": iccid_for(1),
                "plate": "粤B10001",
                "valid_from": "2025-03-01T08:00:00Z",
                "valid_to": "2025-05-01T00:00:00Z",
                "installed_by": "Zhang",
            }
        ],
    )
    report = _load(database, "installations", closing)
    assert (report.updated, report.errors) == (1, [])
    with database.engine.connect() as conn:
        assert service.terminal_by_device_id(conn, imei_for(1))["status"] == "stock"
        assert service.sim_by_iccid(conn, iccid_for(1))["status"] == "stock"
        assert service.terminal_by_device_id(conn, imei_for(2))["status"] == "installed"
    assert _load(database, "installations", closing).unchanged == 1
    reopened = closing.replace("2025-05-01T00:00:00Z", "2025-06-01T00:00:00Z")
    refused = _load(database, "installations", reopened)
    assert [(e.row, e.field) for e in refused.errors] == [(2, "valid_to")]


def test_export_into_a_reader_that_stops_early_ends_without_a_traceback(sqlite_database: Database) -> None:
    """``gpsfleet fleet export --kind customers | head -1``: more than a pipe buffer of rows."""
    import subprocess

    from tests.api.support import GPSFLEET, clean_env

    with sqlite_database.engine.begin() as conn:
        for number in range(1500):
            service.create_customer(conn, name=f"Customer {number:05d}", address="x" * 60)
    export = subprocess.Popen(
        [GPSFLEET, "fleet", "export", "--kind", "customers", "--db", sqlite_database.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        text=True,
    )
    assert export.stdout is not None and export.stderr is not None
    assert export.stdout.readline().startswith("code,name,")
    export.stdout.close()  # what head does after its line
    errors = export.stderr.read()
    assert export.wait(timeout=120) == 1
    assert "Traceback" not in errors and "BrokenPipeError" not in errors


def test_a_spreadsheets_csv_is_read_or_its_problem_named(catalogue: Database) -> None:
    with_bom = "\ufeff" + CUSTOMERS.replace("\n", "\r\n")  # Excel's "CSV UTF-8", read from stdin
    assert _load(catalogue, "customers", with_bom, dry_run=True).rows == 2  # type: ignore[attr-defined]
    with pytest.raises(ImportFileError, match="the file is empty: its first line must be the header"):
        _load(catalogue, "customers", "")
    with pytest.raises(ImportFileError, match="separated by commas, not ';'"):
        _load(catalogue, "customers", "code;name\nACME;Acme Logistics\n")
    with pytest.raises(ImportFileError, match="separated by commas, not tabs"):
        _load(catalogue, "customers", "code\tname\nACME\tAcme Logistics\n")
