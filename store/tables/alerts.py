"""Tables of terminal health, fault alerts, repair tickets and notification deliveries (ALERTS)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from store.tables.base import JsonType, UtcDateTime, metadata

# One row per terminal ever heard from: each health dimension with the time it last changed.
terminal_health = Table(
    "terminal_health",
    metadata,
    Column("terminal_id", String(64), primary_key=True),
    Column("protocol", String(20)),
    Column("model_name", String(80)),
    Column("connectivity", String(12), nullable=False),  # online, offline, never_seen
    Column("connectivity_since", UtcDateTime),
    Column("last_seen", UtcDateTime),
    Column("connected", Boolean),  # a live connection (None: the protocol has none)
    Column("connected_since", UtcDateTime),
    Column("gnss", String(12), nullable=False),  # fix, no_fix, frozen, unknown
    Column("gnss_since", UtcDateTime),
    Column("last_fix_time", UtcDateTime),
    Column("last_lat", Float),
    Column("last_lon", Float),
    Column("power", String(12), nullable=False),  # on, cut, low, unknown
    Column("power_since", UtcDateTime),
    Column("power_v", Float),
    Column("battery", String(12), nullable=False),  # ok, low, unknown
    Column("battery_since", UtcDateTime),
    Column("battery_v", Float),
    Column("battery_level", Float),
    Column("gsm", String(12), nullable=False),  # ok, weak, unknown
    Column("gsm_since", UtcDateTime),
    Column("gsm_signal", Float),
    Column("sim", String(12), nullable=False),  # match, mismatch, unknown
    Column("sim_since", UtcDateTime),
    Column("iccid_reported", String(24)),
    Column("iccid_registered", String(24)),
    Column("clock", String(12), nullable=False),  # ok, drift, unknown
    Column("clock_since", UtcDateTime),
    Column("clock_drift_s", Float),
    Column("data_quality", String(12), nullable=False),  # ok, poor, unknown
    Column("data_quality_since", UtcDateTime),
    Column("decode_errors_1h", Integer, nullable=False, server_default="0"),
    Column("checksum_errors_1h", Integer, nullable=False, server_default="0"),
    Column("error_buckets", JsonType),  # {"<minute epoch>": [decode, checksum]} for the last hour
    Column("conditions", JsonType),  # fault -> {active, since, raised, evidence}: sustain/clear timers
    Column("pending", Boolean, nullable=False, server_default=text("false")),  # a timer must look
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_terminal_health_pending", terminal_health.c.pending)
Index(
    "ix_terminal_health_connectivity_last_seen", terminal_health.c.connectivity, terminal_health.c.last_seen
)

OPEN_ALERT = "state <> 'cleared'"

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", String(64), nullable=False),
    Column("fault", String(40), nullable=False),
    Column("severity", String(10), nullable=False),  # critical, major, minor
    Column("device_fault", Boolean, nullable=False),
    Column("state", String(14), nullable=False),  # raised, acknowledged, cleared
    Column("customer_id", Integer),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("raised_at", UtcDateTime, nullable=False),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledged_by", String(120)),
    Column("ack_comment", Text),
    Column("cleared_at", UtcDateTime),
    Column("ticket_id", Integer),
    Column("evidence", JsonType),
)
# One open alert per terminal and fault, across processes: the database says no to a second.
Index(
    "uq_alerts_open_terminal_fault",
    alerts.c.terminal_id,
    alerts.c.fault,
    unique=True,
    sqlite_where=text(OPEN_ALERT),
    postgresql_where=text(OPEN_ALERT),
)
Index("ix_alerts_state_fault", alerts.c.state, alerts.c.fault)
Index("ix_alerts_customer_id", alerts.c.customer_id)

OPEN_TICKET = "state IN ('open', 'approved', 'dispatched', 'in_progress')"

tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(10), nullable=False),  # auto, manual
    Column("state", String(12), nullable=False),
    Column("verification", String(20)),  # "cleared_to_verify" when the fault went away before dispatch
    Column("terminal_id", String(64), nullable=False),
    Column("fault", String(40), nullable=False),
    Column("symptoms", Text),
    Column("priority", String(8), nullable=False),  # urgent, high, normal, low
    Column("alert_id", Integer),
    Column("model_name", String(80)),
    Column("sim_iccid", String(24)),
    Column("sim_msisdn", String(24)),
    Column("vehicle_plate", String(20)),
    Column("vehicle_vin", String(20)),
    Column("customer_id", Integer),
    Column("customer_name", String(200)),
    Column("contact", String(200)),
    Column("phone", String(40)),
    Column("address", Text),
    Column("in_warranty", Boolean),
    Column("warranty_until", Date),
    Column("warranty_reason", Text),
    Column("warranty_source", String(40)),
    Column("first_seen", UtcDateTime),
    Column("last_seen", UtcDateTime),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    Column("evidence", JsonType),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("response_due", UtcDateTime, nullable=False),
    Column("repair_due", UtcDateTime, nullable=False),
    Column("responded_at", UtcDateTime),
    Column("resolved_at", UtcDateTime),
    Column("closed_at", UtcDateTime),
    Column("fault_cleared_at", UtcDateTime),
    Column("reopened", Integer, nullable=False, server_default="0"),
    Column("purchased_on", Date),  # the terminal's, from the registry (migration 7)
)
# At most one open ticket per terminal and fault, whichever process or replay tries a second.
Index(
    "uq_tickets_open_terminal_fault",
    tickets.c.terminal_id,
    tickets.c.fault,
    unique=True,
    sqlite_where=text(OPEN_TICKET),
    postgresql_where=text(OPEN_TICKET),
)
Index("ix_tickets_state", tickets.c.state)
Index("ix_tickets_customer_id", tickets.c.customer_id)
Index("ix_tickets_terminal_id_fault", tickets.c.terminal_id, tickets.c.fault)

ticket_history = Table(
    "ticket_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(120), nullable=False),
    Column(
        "action", String(20), nullable=False
    ),  # created, transition, fault_cleared, fault_returned, reopened
    Column("from_state", String(12)),
    Column("to_state", String(12)),
    Column("comment", Text),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event", String(30), nullable=False),  # alert.raised, ticket.opened, ...
    Column("channel", String(10), nullable=False),  # webhook, email
    Column("target", String(300), nullable=False),
    Column("state", String(10), nullable=False),  # sent, failed
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("payload", JsonType),
)
Index("ix_notifications_created_at", notifications.c.created_at)
