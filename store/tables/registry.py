"""The fleet registry and warranty tables: customers, vehicles, terminals, SIMs, installations.

Nothing that history needs is ever deleted: records carry ``retired_at`` instead.  An
installation binds one terminal, its SIM and a vehicle for ``[valid_from, valid_to)``;
``valid_to`` NULL means "still installed".  Partial unique indexes guarantee that a
terminal, and a SIM, have at most one open installation even under concurrent writers.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from store.tables.base import UtcDateTime, metadata

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(40), nullable=False, unique=True),  # customer number, the import key
    Column("name", String(200), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # company | individual
    Column("contact_name", String(200), nullable=True),
    Column("phone", String(40), nullable=True),
    Column("email", String(200), nullable=True),
    Column("address", Text, nullable=True),
    Column("notes", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

drivers = Table(
    "drivers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(40), nullable=True),
    Column("licence_number", String(40), nullable=True, unique=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=True, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

vehicles = Table(
    "vehicles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plate", String(20), nullable=False, unique=True),
    Column("vin", String(17), nullable=True, unique=True),
    Column("make", String(80), nullable=True),
    Column("model", String(80), nullable=True),
    Column("colour", String(40), nullable=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("driver_id", Integer, ForeignKey("drivers.id"), nullable=True, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

terminal_models = Table(
    "terminal_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("protocol", String(20), nullable=False),
    Column("id_kind", String(10), nullable=False),  # imei | phone: what the device id is
    Column("warranty_months", Integer, nullable=True),  # NULL: settings.warranty.default_months
    Column("warranty_from", String(20), nullable=True),  # installation | purchase | NULL: settings
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

terminal_model_parts = Table(
    "terminal_model_parts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("terminal_models.id"), nullable=False),
    Column("part_number", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("price_minor", BigInteger, nullable=False),  # catalogue price in cents of the model currency
    Column("retired_at", UtcDateTime, nullable=True),
    UniqueConstraint("model_id", "part_number"),
)

terminals = Table(
    "terminals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(20), nullable=False, unique=True),  # IMEI or JT/T 808 phone number
    Column("serial_number", String(60), nullable=True),
    Column("model_id", Integer, ForeignKey("terminal_models.id"), nullable=False, index=True),
    Column("firmware", String(80), nullable=True),
    Column("purchased_on", Date, nullable=True),
    Column("delivered_on", Date, nullable=True),
    Column("status", String(20), nullable=False),  # stock | installed | returned_for_repair | scrapped
    Column("enabled", Boolean, nullable=False),
    Column("tz", String(40), nullable=True),  # overrides the protocol's time zone
    Column("lenient", Boolean, nullable=True),  # overrides the protocol's checksum leniency
    Column("replaces_terminal_id", Integer, ForeignKey("terminals.id"), nullable=True),
    Column("return_plate", String(20), nullable=True),  # tag on a returned terminal (rule 5)
    Column("return_symptom", Text, nullable=True),
    Column("warranty_void_reason", Text, nullable=True),
    Column("warranty_voided_on", Date, nullable=True),
    Column("notes", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

sims = Table(
    "sims",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("iccid", String(20), nullable=False, unique=True),
    Column("msisdn", String(20), nullable=True, unique=True),
    Column("imsi", String(15), nullable=True),
    Column("carrier", String(80), nullable=True),
    Column("plan", String(80), nullable=True),
    Column("status", String(20), nullable=False),  # stock | active | suspended | returned | terminated
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

installations = Table(
    "installations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", Integer, ForeignKey("terminals.id"), nullable=False),
    Column("sim_id", Integer, ForeignKey("sims.id"), nullable=True),
    Column("vehicle_id", Integer, ForeignKey("vehicles.id"), nullable=False),
    Column("valid_from", UtcDateTime, nullable=False),
    Column("valid_to", UtcDateTime, nullable=True),
    Column("installed_by", String(200), nullable=True),
    Column("mount_location", String(200), nullable=True),
    Column("ended_by", String(200), nullable=True),
    Column("end_reason", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_installations_terminal_id_valid_from", "terminal_id", "valid_from"),
    Index("ix_installations_sim_id_valid_from", "sim_id", "valid_from"),
    Index("ix_installations_vehicle_id_valid_from", "vehicle_id", "valid_from"),
)

# At most one open installation per terminal and per SIM: the database enforces the rule.
Index(
    "uq_installations_open_terminal",
    installations.c.terminal_id,
    unique=True,
    sqlite_where=installations.c.valid_to.is_(None),
    postgresql_where=installations.c.valid_to.is_(None),
)
Index(
    "uq_installations_open_sim",
    installations.c.sim_id,
    unique=True,
    sqlite_where=installations.c.valid_to.is_(None),
    postgresql_where=installations.c.valid_to.is_(None),
)

swaps = Table(
    "swaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False),  # terminal | sim
    Column("vehicle_id", Integer, ForeignKey("vehicles.id"), nullable=True, index=True),
    Column("plate", String(20), nullable=True),
    Column("old_terminal_id", Integer, ForeignKey("terminals.id"), nullable=True, index=True),
    Column("new_terminal_id", Integer, ForeignKey("terminals.id"), nullable=True, index=True),
    Column("old_sim_id", Integer, ForeignKey("sims.id"), nullable=True, index=True),
    Column("new_sim_id", Integer, ForeignKey("sims.id"), nullable=True, index=True),
    Column("performed_by", String(200), nullable=False),
    Column("performed_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("symptom", Text, nullable=True),
    Column("ticket_ref", String(60), nullable=True),  # the repair ticket the swap was made for
    Column("created_at", UtcDateTime, nullable=False),
)

warranty_contracts = Table(
    "warranty_contracts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", Integer, ForeignKey("terminals.id"), nullable=False, index=True),
    Column("reference", String(60), nullable=True),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),  # last covered day, inclusive
    Column("notes", Text, nullable=True),
    Column("void_reason", Text, nullable=True),
    Column("voided_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)
