"""CSV import and export of the registry: customers, drivers, vehicles, terminals, SIMs, installations.

Rows are upserted by their natural key (customer code, licence number, plate, device id,
ICCID, terminal + installation start), so importing the same file twice changes nothing
the second time: unchanged rows are counted as such.  A bad row is reported with its row
number (the header is row 1) and the field, and skipped; the other rows still import.
``dry_run`` validates and plans everything and writes nothing.  The ``units`` kind takes a
terminal, its SIM and its installation in one row.  Export writes the same columns back.

The path is bulk-friendly: existing natural keys are loaded once into maps, rows are
validated in memory, then written with batched executemany in one transaction (a batch the
database refuses is retried row by row inside savepoints, so only its bad rows fail).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TextIO

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from fleet import service
from fleet import validation as v
from fleet.errors import FleetError, Invalid
from store.db import Database
from store.tables.registry import (
    customers,
    drivers,
    installations,
    sims,
    terminal_models,
    terminals,
    vehicles,
)

BATCH_ROWS = 5000

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("code", "name", "kind", "contact_name", "phone", "email", "address", "notes"),
    "drivers": ("licence_number", "name", "phone", "customer_code"),
    "vehicles": ("plate", "vin", "make", "model", "colour", "customer_code", "driver_licence"),
    "terminals": (
        "device_id",
        "model",
        "serial_number",
        "firmware",
        "purchased_on",
        "delivered_on",
        "status",
        "enabled",
        "tz",
        "lenient",
        "notes",
    ),
    "sims": ("iccid", "msisdn", "imsi", "carrier", "plan", "status"),
    "installations": (
        "device_id",
        "iccid",
        "plate",
        "valid_from",
        "valid_to",
        "installed_by",
        "mount_location",
    ),
    "units": (
        "device_id",
        "model",
        "serial_number",
        "firmware",
        "purchased_on",
        "iccid",
        "msisdn",
        "imsi",
        "carrier",
        "plan",
        "plate",
        "valid_from",
        "installed_by",
        "mount_location",
    ),
}
KINDS = tuple(COLUMNS)
REQUIRED: dict[str, tuple[str, ...]] = {
    "customers": ("code", "name"),
    "drivers": ("licence_number", "name"),
    "vehicles": ("plate", "customer_code"),
    "terminals": ("device_id", "model"),
    "sims": ("iccid",),
    "installations": ("device_id", "plate", "valid_from"),
    "units": ("device_id", "model", "iccid", "plate", "valid_from"),
}


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # the header is row 1
    field: str
    message: str


@dataclass
class ImportReport:
    kind: str
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len({e.row for e in self.errors})

    def summary(self) -> str:
        mode = " (dry run: nothing written)" if self.dry_run else ""
        return (
            f"{self.kind}: {self.rows} rows, {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.failed} with errors{mode}"
        )


class ImportFileError(ValueError):
    """The file cannot be imported at all (unknown kind, wrong header)."""


# --- one entity: how its rows are checked, compared and written -------------------------------


@dataclass
class _Planned:
    row: int
    key: Any
    values: dict[str, Any]


class _Entity:
    """Upsert of one table by its natural key, with the existing keys loaded once."""

    def __init__(self, table: Table, key: str, compare: tuple[str, ...], what: str) -> None:
        self.table = table
        self.key = key
        self.compare = compare
        self.what = what
        self.existing: dict[Any, tuple[int, dict[str, Any]]] = {}
        self.seen: dict[Any, int] = {}  # key -> row of its first occurrence in this file
        self.creates: list[_Planned] = []
        self.updates: list[tuple[int, _Planned]] = []
        self._pseudo_id = 0

    def load(self, conn: Connection) -> None:
        columns = [self.table.c.id, self.table.c[self.key], *(self.table.c[c] for c in self.compare)]
        for row in conn.execute(select(*columns)):
            mapping = row._mapping
            self.existing[mapping[self.key]] = (
                mapping["id"],
                {c: mapping[c] for c in self.compare},
            )

    def id_of(self, key: Any) -> int | None:
        found = self.existing.get(key)
        return found[0] if found else None

    def check_duplicate(self, row: int, key: Any) -> None:
        first = self.seen.get(key)
        if first is not None:
            raise Invalid(
                f"{self.what} {key} appears twice in the file (first on row {first})", field=self.key
            )

    def plan(self, row: int, values: dict[str, Any]) -> str:
        """'created', 'updated' or 'unchanged' for this row; remembers what to write."""
        key = values[self.key]
        self.seen[key] = row
        found = self.existing.get(key)
        planned = _Planned(row, key, values)
        if found is None:
            self._pseudo_id -= 1
            self.existing[key] = (self._pseudo_id, {c: values.get(c) for c in self.compare})
            self.creates.append(planned)
            return "created"
        record_id, current = found
        if all(current.get(c) == values.get(c) for c in self.compare):
            return "unchanged"
        self.existing[key] = (record_id, {c: values.get(c) for c in self.compare})
        self.updates.append((record_id, planned))
        return "updated"

    def write(self, conn: Connection, now: datetime, report: _Reporter) -> None:
        """Insert the planned creates and apply the updates, then learn the new ids."""
        create_rows = [
            {
                self.key: p.key,
                **{c: p.values.get(c) for c in self.compare},
                "created_at": now,
                "updated_at": now,
            }
            for p in self.creates
        ]
        for record_id, key in _insert_rows(
            conn, self.table, create_rows, self.creates, report, self.what, self.key
        ):
            self.existing[key] = (record_id, self.existing[key][1])  # the real id replaces the stand-in
        if self.updates:
            statement = (
                update(self.table)
                .where(self.table.c.id == bindparam("_id"))
                .values({c: bindparam(c) for c in (*self.compare, "updated_at")})
            )
            update_rows = [
                {"_id": record_id, **{c: p.values.get(c) for c in self.compare}, "updated_at": now}
                for record_id, p in self.updates
            ]
            _write_batches(conn, statement, update_rows, [p for _, p in self.updates], report, self.what)
        self.creates, self.updates = [], []


class _Reporter:
    """Collects per-row errors found while writing, so a failed row is not counted as done."""

    def __init__(self) -> None:
        self.failed_rows: dict[int, RowError] = {}

    def fail(self, row: int, field_name: str, message: str) -> None:
        self.failed_rows.setdefault(row, RowError(row, field_name, message))


def _write_batches(
    conn: Connection,
    statement: Any,
    rows: list[dict[str, Any]],
    planned: list[_Planned],
    report: _Reporter,
    what: str,
    *,
    returns: bool = False,
) -> list[Any]:
    """executemany in batches; a batch the database refuses is retried row by row, so one
    bad row (a key taken meanwhile by another writer) fails alone.  Returns the rows a
    RETURNING statement gives back."""
    returned: list[Any] = []
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start : start + BATCH_ROWS]
        try:
            with conn.begin_nested():
                result = conn.execute(statement, batch)
                if returns:
                    returned.extend(result.all())
            continue
        except DBAPIError:
            pass
        for values, plan in zip(batch, planned[start : start + BATCH_ROWS], strict=True):
            try:
                with conn.begin_nested():
                    result = conn.execute(statement, [values])
                    if returns:
                        returned.extend(result.all())
            except DBAPIError as exc:
                report.fail(
                    plan.row, "row", f"{what} {plan.key}: the database refused it: {_first_line(exc)}"
                )
    return returned


def _insert_rows(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    planned: list[_Planned],
    report: _Reporter,
    what: str,
    key: str | None,
) -> list[tuple[int, Any]]:
    """Insert ``rows``; returns (id, key) of the new rows when ``key`` is given.

    On PostgreSQL each batch goes through COPY (many-row INSERTs cost more to parse than
    to run); a batch COPY refuses, or any batch on SQLite, goes through ``_write_batches``.
    """
    if conn.dialect.name != "postgresql":
        statement = table.insert().returning(table.c.id, table.c[key]) if key else table.insert()
        return [
            tuple(r) for r in _write_batches(conn, statement, rows, planned, report, what, returns=bool(key))
        ]
    import psycopg

    created: list[tuple[int, Any]] = []
    for start in range(0, len(rows), BATCH_ROWS):
        batch, batch_plans = rows[start : start + BATCH_ROWS], planned[start : start + BATCH_ROWS]
        if not batch:
            continue
        columns = list(batch[0])
        try:
            with conn.begin_nested():
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for values in batch:
                        copy.write_row([values[c] for c in columns])
        except psycopg.Error:
            statement = table.insert().returning(table.c.id, table.c[key]) if key else table.insert()
            returned = _write_batches(conn, statement, batch, batch_plans, report, what, returns=bool(key))
            created.extend(tuple(r) for r in returned)
            continue
        if key:
            found = conn.execute(
                text(f"SELECT id, {key} FROM {table.name} WHERE {key} = ANY(:keys)"),
                {"keys": [values[key] for values in batch]},
            )
            created.extend((int(r[0]), r[1]) for r in found)
    return created


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- the kinds ---------------------------------------------------------------------------------


def _cell(row: Mapping[str, str | None], name: str) -> str | None:
    """A cell of a row cleaned by ``_clean``: stripped text, or None when empty or absent."""
    return row.get(name)


def _clean(row: Mapping[str, str | None]) -> dict[str, str | None]:
    return {name: (value.strip() or None) if isinstance(value, str) else value for name, value in row.items()}


class _Importer:
    """One import run: the entities involved, their maps, and the per-row outcomes."""

    def __init__(self, conn: Connection, kind: str, now: datetime) -> None:
        self.conn = conn
        self.kind = kind
        self.now = now
        self.customers = _Entity(
            customers,
            "code",
            ("name", "kind", "contact_name", "phone", "email", "address", "notes"),
            "customer",
        )
        self.drivers = _Entity(drivers, "licence_number", ("name", "phone", "customer_id"), "driver")
        self.vehicles = _Entity(
            vehicles, "plate", ("vin", "make", "model", "colour", "customer_id", "driver_id"), "vehicle"
        )
        self.terminals = _Entity(
            terminals,
            "device_id",
            ("model_id", *COLUMNS["terminals"][2:]),
            "terminal",
        )
        self.sims = _Entity(sims, "iccid", ("msisdn", "imsi", "carrier", "plan", "status"), "SIM")
        self.models: dict[str, dict[str, Any]] = {}
        self.vins: dict[str, str] = {}  # vin -> plate
        self.msisdns: dict[str, str] = {}  # msisdn -> iccid
        self.installations = _Installations()
        self.sims_in_use: set[int] = set()  # ids of SIMs in an open installation (kind "sims")

    def load(self) -> None:
        conn = self.conn
        self.models = {r.name: dict(r._mapping) for r in conn.execute(select(terminal_models))}
        needs = {
            "customers": [self.customers],
            "drivers": [self.customers, self.drivers],
            "vehicles": [self.customers, self.drivers, self.vehicles],
            "terminals": [self.terminals],
            "sims": [self.sims],
            "installations": [self.terminals, self.sims, self.vehicles],
            "units": [self.terminals, self.sims, self.vehicles],
        }[self.kind]
        for entity in needs:
            entity.load(conn)
        if self.kind == "sims":
            self.sims_in_use = set(
                conn.execute(
                    select(installations.c.sim_id).where(
                        installations.c.valid_to.is_(None), installations.c.sim_id.is_not(None)
                    )
                ).scalars()
            )
        if self.kind == "vehicles":
            self.vins = {
                r.vin: r.plate for r in conn.execute(select(vehicles.c.vin, vehicles.c.plate)) if r.vin
            }
        if self.kind in ("sims", "units"):
            self.msisdns = {
                r.msisdn: r.iccid for r in conn.execute(select(sims.c.msisdn, sims.c.iccid)) if r.msisdn
            }
        if self.kind in ("installations", "units"):
            self.installations.load(conn)

    # Each check_* returns checked values for one entity or raises Invalid naming the field.

    def customer_values(self, row: Mapping[str, str | None]) -> dict[str, Any]:
        return service.customer_values(**{c: _cell(row, c) for c in COLUMNS["customers"]})

    def driver_values(self, row: Mapping[str, str | None]) -> dict[str, Any]:
        values = service.driver_values(**{c: _cell(row, c) for c in ("name", "phone", "licence_number")})
        if not values["licence_number"]:
            raise Invalid("licence_number is required", field="licence_number")
        values["customer_id"] = self._ref(self.customers, _cell(row, "customer_code"), "customer_code", False)
        return values

    def vehicle_values(self, row: Mapping[str, str | None]) -> dict[str, Any]:
        values = service.vehicle_values(
            **{c: _cell(row, c) for c in ("plate", "vin", "make", "model", "colour")}
        )
        values["customer_id"] = self._ref(self.customers, _cell(row, "customer_code"), "customer_code", True)
        values["driver_id"] = self._ref(self.drivers, _cell(row, "driver_licence"), "driver_licence", False)
        if values["vin"]:
            owner = self.vins.get(values["vin"])
            if owner is not None and owner != values["plate"]:
                raise Invalid(f"VIN {values['vin']} belongs to vehicle {owner}", field="vin")
        return values

    def terminal_values(self, row: Mapping[str, str | None]) -> dict[str, Any]:
        model_name = _cell(row, "model")
        model = self.models.get(model_name or "")
        if model is None:
            raise Invalid(f"terminal model {model_name!r} does not exist", field="model")
        values = service.terminal_values(
            model,
            device_id=_cell(row, "device_id"),
            serial_number=_cell(row, "serial_number"),
            firmware=_cell(row, "firmware"),
            purchased_on=v.parse_date(_cell(row, "purchased_on"), "purchased_on"),
            delivered_on=v.parse_date(_cell(row, "delivered_on"), "delivered_on"),
            status=_cell(row, "status"),
            enabled=v.parse_bool(_cell(row, "enabled"), "enabled", True),
            tz=_cell(row, "tz"),
            lenient=v.parse_bool(_cell(row, "lenient"), "lenient"),
            notes=_cell(row, "notes"),
        )
        existing = self.terminals.existing.get(values["device_id"])
        current_status = existing[1]["status"] if existing else None
        if "status" not in row or _cell(row, "status") is None:
            values["status"] = current_status or "stock"  # a column left out changes nothing
        if values["status"] != current_status and "installed" in (values["status"], current_status):
            if existing is None:
                values["status"] = "stock"  # installed by the installations import, not by this column
            else:
                raise Invalid(
                    f"status changes to or from 'installed' only by installations and swaps "
                    f"(terminal is {current_status})",
                    field="status",
                )
        if existing is not None and existing[1]["status"] == "installed" and self.kind == "units":
            values["status"] = "installed"
        return values

    def sim_values(self, row: Mapping[str, str | None]) -> dict[str, Any]:
        values = service.sim_values(**{c: _cell(row, c) for c in COLUMNS["sims"]})
        existing = self.sims.existing.get(values["iccid"])
        if _cell(row, "status") is None and existing is not None:
            values["status"] = existing[1]["status"]
        if (
            existing is not None
            and values["status"] == "stock"
            and existing[1]["status"] != "stock"
            and existing[0] in self.sims_in_use
        ):
            raise Invalid(
                f"SIM {values['iccid']} is in a terminal in a vehicle: it goes back to stock by "
                "uninstall or a SIM swap",
                field="status",
            )
        if values["msisdn"]:
            owner = self.msisdns.get(values["msisdn"])
            if owner is not None and owner != values["iccid"]:
                raise Invalid(f"MSISDN {values['msisdn']} belongs to SIM {owner}", field="msisdn")
        return values

    def _ref(self, entity: _Entity, key: str | None, field_name: str, required: bool) -> int | None:
        if key is None:
            if required:
                raise Invalid(f"{field_name} is required", field=field_name)
            return None
        found = entity.id_of(key)
        if found is None:
            raise Invalid(f"{entity.what} {key} does not exist", field=field_name)
        return found


_NEVER = datetime.min.replace(tzinfo=UTC)  # marks "no installation seen yet"


class _Installations:
    """What the import needs to know of installation history, loaded once."""

    def __init__(self) -> None:
        self.by_start: dict[tuple[int, datetime], dict[str, Any]] = {}  # (terminal_id, valid_from) -> row
        self.terminal_busy_until: dict[int, datetime | None] = {}  # None: installed now
        self.sim_busy_until: dict[int, datetime | None] = {}
        self.creates: list[_Planned] = []
        self.updates: list[tuple[int, _Planned]] = []

    def load(self, conn: Connection) -> None:
        for row in conn.execute(select(installations)):
            record = dict(row._mapping)
            self.by_start[(record["terminal_id"], record["valid_from"])] = record
            self._occupy(record["terminal_id"], record["sim_id"], record["valid_to"])

    def _occupy(self, terminal_id: int, sim_id: int | None, valid_to: datetime | None) -> None:
        for busy, key in ((self.terminal_busy_until, terminal_id), (self.sim_busy_until, sim_id)):
            if key is None:
                continue
            current = busy.get(key, _NEVER)
            if current is _NEVER or (current is not None and (valid_to is None or valid_to > current)):
                busy[key] = valid_to


_INSTALLATION_FIELDS = ("installed_by", "mount_location", "valid_to")


def _plan_installation(
    imp: _Importer,
    row_no: int,
    row: Mapping[str, str | None],
    device_id: str,
    terminal_id: int,
    iccid: str | None,
    sim_id: int | None,
) -> str:
    """Plan one installation row; ids may be negative stand-ins for records this file creates."""
    hist = imp.installations
    plate = v.plate(_cell(row, "plate") or "")
    vehicle_id = imp.vehicles.id_of(plate)
    if vehicle_id is None:
        raise Invalid(f"vehicle {plate} does not exist", field="plate")
    valid_from = v.parse_time(_cell(row, "valid_from"), "valid_from")
    if valid_from is None:
        raise Invalid("valid_from is required", field="valid_from")
    valid_from = service.done_at(valid_from, "valid_from")
    valid_to = v.parse_time(_cell(row, "valid_to"), "valid_to")
    if valid_to is not None:
        valid_to = service.done_at(valid_to, "valid_to")
    if valid_to is not None and valid_to <= valid_from:
        raise Invalid("valid_to must be after valid_from", field="valid_to")
    values = {
        "terminal_id": terminal_id,
        "sim_id": sim_id,
        "vehicle_id": vehicle_id,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "installed_by": v.optional(_cell(row, "installed_by"), "installed_by"),
        "mount_location": v.optional(_cell(row, "mount_location"), "mount_location"),
    }
    existing = hist.by_start.get((terminal_id, valid_from))
    if existing is not None:
        for column, label in (("vehicle_id", "plate"), ("sim_id", "iccid")):
            if existing[column] != values[column]:
                raise Invalid(
                    f"terminal {device_id} has an installation from {valid_from.isoformat()} with another "
                    f"{label}; history changes through swaps, not imports",
                    field=label,
                )
        if existing.get("_row"):
            raise Invalid(
                f"installation of {device_id} from {valid_from.isoformat()} appears twice "
                f"(first on row {existing['_row']})",
                field="valid_from",
            )
        if all(existing[c] == values[c] for c in _INSTALLATION_FIELDS):
            existing["_row"] = row_no
            return "unchanged"
        if existing["valid_to"] is not None and valid_to != existing["valid_to"]:
            raise Invalid("a closed installation's end cannot change", field="valid_to")
        existing.update(values, _row=row_no)
        hist.updates.append((existing["id"], _Planned(row_no, (device_id, iccid), values)))
        return "updated"
    for busy, key, label, what in (
        (hist.terminal_busy_until, terminal_id, "device_id", f"terminal {device_id}"),
        (hist.sim_busy_until, sim_id, "iccid", f"SIM {iccid}"),
    ):
        if key is None or key not in busy:
            continue
        until = busy[key]
        if until is None:
            raise Invalid(
                f"{what} is already installed (no terminal in two vehicles, no SIM in two terminals)",
                field=label,
            )
        if valid_from < until:
            raise Invalid(f"{what} was installed until {until.isoformat()}; start after that", field=label)
    hist.by_start[(terminal_id, valid_from)] = {**values, "id": None, "_row": row_no}
    hist._occupy(terminal_id, sim_id, valid_to)
    hist.creates.append(_Planned(row_no, (device_id, iccid), values))
    return "created"


def _write_installations(imp: _Importer, report: _Reporter, *, set_statuses: bool) -> None:
    hist = imp.installations
    conn, now = imp.conn, imp.now
    create_rows = [{**p.values, "created_at": now} for p in hist.creates]
    _insert_rows(conn, installations, create_rows, hist.creates, report, "installation", None)
    if hist.updates:
        statement = (
            update(installations)
            .where(installations.c.id == bindparam("_id"))
            .values({c: bindparam(c) for c in _INSTALLATION_FIELDS})
        )
        rows = [{"_id": i, **{c: p.values[c] for c in _INSTALLATION_FIELDS}} for i, p in hist.updates]
        _write_batches(conn, statement, rows, [p for _, p in hist.updates], report, "installation")
    written = [p for p in hist.creates + [p for _, p in hist.updates] if p.row not in report.failed_rows]
    if set_statuses:
        _follow_statuses(conn, written, now)
    hist.creates, hist.updates = [], []


def _follow_statuses(conn: Connection, written: list[_Planned], now: datetime) -> None:
    """Terminal and SIM statuses follow the imported installations: installed/active while
    an installation is open, back to stock when the import closed the last one."""
    for table, column, busy in ((terminals, "terminal_id", "installed"), (sims, "sim_id", "active")):
        ids_open = {p.values[column] for p in written if p.values["valid_to"] is None and p.values[column]}
        ids_closed = {
            p.values[column] for p in written if p.values["valid_to"] is not None and p.values[column]
        }
        still_open = (
            select(installations.c.id)
            .where(installations.c[column] == table.c.id, installations.c.valid_to.is_(None))
            .exists()
        )
        for ids, statement in (
            (
                ids_open,
                update(table).where(table.c.id == bindparam("_id")).values(status=busy, updated_at=now),
            ),
            (
                ids_closed - ids_open,
                update(table)
                .where(table.c.id == bindparam("_id"), table.c.status == busy, ~still_open)
                .values(status="stock", updated_at=now),
            ),
        ):
            rows = [{"_id": record_id} for record_id in sorted(ids)]
            for start in range(0, len(rows), BATCH_ROWS):
                conn.execute(statement, rows[start : start + BATCH_ROWS])


# --- running an import -------------------------------------------------------------------------


def _header(names: Sequence[str] | None, kind: str) -> list[str]:
    """The header row's column names, checked: the file's first line must name columns of ``kind``
    (a byte-order mark, as spreadsheet programs write, is ignored)."""
    columns = ", ".join(COLUMNS[kind])
    header = [name.replace("\ufeff", "").strip() for name in names or []]
    if not header:
        raise ImportFileError(f"the file is empty: its first line must be the header ({columns} for {kind})")
    if len(header) == 1 and (separator := next((s for s in ";\t|" if s in header[0]), None)):
        raise ImportFileError(
            f"the header is one column {header[0]!r}: columns are separated by commas, not "
            f"{'tabs' if separator == chr(9) else repr(separator)}; save the file as comma-separated CSV"
        )
    unknown = [h for h in header if h not in COLUMNS[kind]]
    if unknown:
        raise ImportFileError(f"unknown column(s) {', '.join(unknown)} for kind {kind}; columns: {columns}")
    return header


def import_csv(
    database: Database,
    source: TextIO,
    kind: str,
    *,
    dry_run: bool = False,
    progress: bool | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import ``source`` (CSV with a header) as ``kind``; see the module docstring."""
    if kind not in COLUMNS:
        raise ImportFileError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    reader = csv.DictReader(source)
    header = _header(reader.fieldnames, kind)
    reader.fieldnames = header
    missing = [c for c in REQUIRED[kind] if c not in header]
    if missing:
        raise ImportFileError(f"the header lacks required column(s) {', '.join(missing)} for kind {kind}")
    rows = list(reader)
    report = ImportReport(kind=kind, dry_run=dry_run, rows=len(rows))
    now = now or datetime.now(UTC)
    bar = _progress(len(rows), f"import {kind}", progress)
    try:
        with database.engine.connect() as conn:
            importer = _Importer(conn, kind, now)
            importer.load()
            outcomes = _plan_all(importer, rows, report, bar)
            writer = _Reporter()
            if not dry_run:
                _write_all(importer, writer)
                conn.commit()
    finally:
        if bar is not None:
            bar.close()
    for row_no, error in writer.failed_rows.items():
        outcomes.pop(row_no, None)
        report.errors.append(error)
    report.errors.sort(key=lambda e: e.row)
    for outcome in outcomes.values():
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _plan_all(
    importer: _Importer, rows: list[dict[str, str | None]], report: ImportReport, bar: Any
) -> dict[int, str]:
    outcomes: dict[int, str] = {}
    kind = importer.kind
    plan_one = _PLANNERS[kind]
    for index, row in enumerate(rows):
        row_no = index + 2
        try:
            if None in row:  # more cells than the header has columns
                raise Invalid("the row has more cells than the header has columns", field="row")
            outcomes[row_no] = plan_one(importer, row_no, _clean(row))
        except FleetError as exc:
            report.errors.append(RowError(row_no, exc.field or "row", exc.message))
        if bar is not None and index % 1000 == 999:
            bar.update(1000)
    if bar is not None:
        bar.update(len(rows) % 1000)
    return outcomes


def _merge(*outcomes: str) -> str:
    if "created" in outcomes:
        return "created"
    return "updated" if "updated" in outcomes else "unchanged"


def _plan_simple(
    entity_name: str, check: Callable[[_Importer, Mapping[str, str | None]], dict[str, Any]]
) -> Any:
    def plan(importer: _Importer, row_no: int, row: Mapping[str, str | None]) -> str:
        entity: _Entity = getattr(importer, entity_name)
        values = check(importer, row)
        entity.check_duplicate(row_no, values[entity.key])
        return entity.plan(row_no, values)

    return plan


def _plan_installation_row(importer: _Importer, row_no: int, row: Mapping[str, str | None]) -> str:
    device_id = _cell(row, "device_id") or ""
    candidates = v.device_id_candidates(device_id)
    device_id = next((c for c in candidates if c in importer.terminals.existing), device_id)
    terminal_id = importer.terminals.id_of(device_id)
    if terminal_id is None:
        raise Invalid(f"terminal {device_id} does not exist", field="device_id")
    iccid = _cell(row, "iccid")
    sim_id = None
    if iccid is not None:
        iccid = v.iccid(iccid)
        sim_id = importer.sims.id_of(iccid)
        if sim_id is None:
            raise Invalid(f"SIM {iccid} does not exist", field="iccid")
    return _plan_installation(importer, row_no, row, device_id, terminal_id, iccid, sim_id)


def _plan_unit(importer: _Importer, row_no: int, row: Mapping[str, str | None]) -> str:
    """A terminal, its SIM and its installation from one row: all three or none."""
    terminal = importer.terminal_values(row)
    sim = importer.sim_values(row)
    importer.terminals.check_duplicate(row_no, terminal["device_id"])
    importer.sims.check_duplicate(row_no, sim["iccid"])
    terminal_id = importer.terminals.id_of(terminal["device_id"]) or -row_no
    sim_id = importer.sims.id_of(sim["iccid"]) or -row_no
    installation = _plan_installation(
        importer, row_no, row, terminal["device_id"], terminal_id, sim["iccid"], sim_id
    )
    if installation == "created" and importer.installations.creates[-1].values["valid_to"] is None:
        terminal["status"], sim["status"] = "installed", "active"
    return _merge(importer.terminals.plan(row_no, terminal), importer.sims.plan(row_no, sim), installation)


_PLANNERS: dict[str, Callable[[_Importer, int, Mapping[str, str | None]], str]] = {
    "customers": _plan_simple("customers", _Importer.customer_values),
    "drivers": _plan_simple("drivers", _Importer.driver_values),
    "vehicles": _plan_simple("vehicles", _Importer.vehicle_values),
    "terminals": _plan_simple("terminals", _Importer.terminal_values),
    "sims": _plan_simple("sims", _Importer.sim_values),
    "installations": _plan_installation_row,
    "units": _plan_unit,
}


def _write_all(importer: _Importer, writer: _Reporter) -> None:
    conn, now = importer.conn, importer.now
    for entity in (
        importer.customers,
        importer.drivers,
        importer.vehicles,
        importer.terminals,
        importer.sims,
    ):
        entity.write(conn, now, writer)
    if importer.kind in ("installations", "units"):
        hist = importer.installations
        hist.creates = [p for p in hist.creates if p.row not in writer.failed_rows]
        for planned in hist.creates:  # terminals and SIMs created above now have their real ids
            device_id, iccid = planned.key
            planned.values["terminal_id"] = importer.terminals.id_of(device_id)
            planned.values["sim_id"] = importer.sims.id_of(iccid) if iccid else None
        _write_installations(importer, writer, set_statuses=importer.kind == "installations")


def _progress(total: int, description: str, enabled: bool | None) -> Any:
    """A tqdm bar on stderr: when asked, or by default when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="row", file=sys.stderr, mininterval=0.5)


# --- export ------------------------------------------------------------------------------------


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _export_query(kind: str) -> Any:
    if kind == "customers":
        return select(*(customers.c[c] for c in COLUMNS["customers"])).order_by(customers.c.id)
    if kind == "drivers":
        return (
            select(
                drivers.c.licence_number,
                drivers.c.name,
                drivers.c.phone,
                customers.c.code.label("customer_code"),
            )
            .select_from(drivers.outerjoin(customers))
            .where(drivers.c.licence_number.is_not(None))
            .order_by(drivers.c.id)
        )
    if kind == "vehicles":
        return (
            select(
                *(vehicles.c[c] for c in ("plate", "vin", "make", "model", "colour")),
                customers.c.code.label("customer_code"),
                drivers.c.licence_number.label("driver_licence"),
            )
            .select_from(vehicles.join(customers).outerjoin(drivers, drivers.c.id == vehicles.c.driver_id))
            .order_by(vehicles.c.id)
        )
    if kind == "terminals":
        columns = [terminals.c[c] for c in COLUMNS["terminals"] if c != "model"]
        return (
            select(*columns, terminal_models.c.name.label("model"))
            .select_from(terminals.join(terminal_models))
            .order_by(terminals.c.id)
        )
    if kind == "sims":
        return select(*(sims.c[c] for c in COLUMNS["sims"])).order_by(sims.c.id)
    if kind in ("installations", "units"):
        query = (
            select(
                terminals.c.device_id,
                sims.c.iccid,
                vehicles.c.plate,
                installations.c.valid_from,
                installations.c.valid_to,
                installations.c.installed_by,
                installations.c.mount_location,
                terminal_models.c.name.label("model"),
                *(terminals.c[c] for c in ("serial_number", "firmware", "purchased_on")),
                *(sims.c[c] for c in ("msisdn", "imsi", "carrier", "plan")),
            )
            .select_from(
                installations.join(terminals)
                .join(terminal_models)
                .join(vehicles)
                .outerjoin(sims, sims.c.id == installations.c.sim_id)
            )
            .order_by(installations.c.id)
        )
        if kind == "units":  # a unit is a terminal as installed now
            query = query.where(installations.c.valid_to.is_(None))
        return query
    raise ImportFileError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def export_rows(conn: Connection, kind: str) -> Iterator[dict[str, str]]:
    for row in conn.execute(_export_query(kind)):
        mapping = row._mapping
        yield {column: _format(mapping[column]) for column in COLUMNS[kind]}


def export_csv(database: Database, kind: str, out: TextIO) -> int:
    """Write every record of ``kind`` as CSV in the import format; returns the row count."""
    if kind not in COLUMNS:
        raise ImportFileError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    writer = csv.DictWriter(out, fieldnames=COLUMNS[kind], lineterminator="\n")
    writer.writeheader()
    count = 0
    with database.engine.connect() as conn:
        for record in export_rows(conn, kind):
            writer.writerow(record)
            count += 1
    return count


def rows_to_csv(kind: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of ``rows`` in the format of ``kind`` (tests, benchmarks)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS[kind], lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _format(row.get(c)) for c in COLUMNS[kind]})
    return buffer.getvalue()
