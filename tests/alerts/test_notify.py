"""Notifications against a local HTTP server (signature checked, failures first) and a local
SMTP sink, routed per role and customer."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from alerts.engine import AlertEngine
from alerts.notify import SIGNATURE_HEADER, Notifier
from core.settings import NotificationSettings
from store.tables.alerts import notifications
from tests.alerts.support import batch, build_fleet, fast_settings, open_db, position
from tests.services import free_port

SECRET = "shared-webhook-secret"


class Hook:
    """A webhook receiver that answers 503 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.accepted: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if self.headers.get(SIGNATURE_HEADER) != expected:
                    self.send_response(401)
                elif len(hook.requests) <= hook.fail_first:
                    self.send_response(503)
                else:
                    hook.accepted.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield sink, controller.port
    controller.stop()


def _wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_webhook_is_signed_and_retried_until_the_receiver_accepts(sqlite_url: str) -> None:
    hook = Hook(fail_first=2)
    database = open_db(sqlite_url)
    settings = NotificationSettings(webhooks=[{"url": hook.url, "secret": SECRET}], max_attempts=5)
    notifier = Notifier(settings, database, backoff_base_s=0.1)
    notifier.start()
    try:
        notifier.publish("alert.raised", {"terminal_id": "1", "fault": "power_cut"}, customer_id=7)
        _wait(lambda: hook.accepted)
    finally:
        notifier.stop()
        hook.close()
    assert len(hook.requests) == 3 and hook.accepted[0]["data"]["fault"] == "power_cut"
    assert hook.accepted[0]["event"] == "alert.raised" and hook.accepted[0]["customer_id"] == 7
    with database.engine.connect() as conn:
        [logged] = conn.execute(select(notifications)).mappings().all()
    assert (logged["state"], logged["attempts"], logged["channel"]) == ("sent", 3, "webhook")


def test_a_receiver_that_never_accepts_is_given_up_and_logged(sqlite_url: str) -> None:
    hook = Hook(fail_first=100)
    database = open_db(sqlite_url)
    notifier = Notifier(
        NotificationSettings(webhooks=[{"url": hook.url, "secret": SECRET}], max_attempts=3),
        database,
        backoff_base_s=0.05,
    )
    notifier.start()
    try:
        notifier.publish("ticket.opened", {"terminal_id": "1", "fault": "offline"})
        _wait(lambda: notifier.stats.failed)
    finally:
        notifier.stop()
        hook.close()
    assert len(hook.requests) == 3 and notifier.stats.failed == 1
    with database.engine.connect() as conn:
        [logged] = conn.execute(select(notifications)).mappings().all()
    assert logged["state"] == "failed" and "503" in logged["last_error"]


def test_routing_per_role_and_customer() -> None:
    settings = NotificationSettings(
        webhooks=[
            {"url": "http://noc.example/", "roles": ["noc"]},
            {"url": "http://finance.example/", "roles": ["finance"]},
            {"url": "http://acme.example/", "customer_id": 1, "events": ["ticket.opened"]},
        ],
        smtp={"host": "127.0.0.1"},
        email_recipients={
            "clerk": ["desk@example.com"],
            "customer:1": ["fleet@acme.example"],
            "customer:2": ["x@other"],
        },
    )
    notifier = Notifier(settings, None)
    alert = notifier.deliveries("alert.raised", {}, 1)
    assert [d.target for d in alert] == ["http://noc.example/", "fleet@acme.example"]
    ticket = notifier.deliveries("ticket.opened", {}, 1)
    assert [d.target for d in ticket] == [
        "http://noc.example/",
        "http://acme.example/",
        "desk@example.com, fleet@acme.example",
    ]


def test_new_alert_and_ticket_reach_webhook_and_mail(sqlite_url: str, smtp: tuple[Sink, int]) -> None:
    sink, port = smtp
    hook = Hook()
    database = open_db(sqlite_url)
    fleet = build_fleet(database)
    settings = fast_settings(
        sqlite_url,
    ).model_copy(
        update={
            "notifications": NotificationSettings(
                webhooks=[{"url": hook.url, "secret": SECRET}],
                smtp={"host": "127.0.0.1", "port": port},
                email_recipients={
                    "manager": ["gps-division@example.com"],
                    f"customer:{fleet.customer_id}": ["fleet@acme.example"],
                },
            )
        }
    )
    engine = AlertEngine(settings, database)
    engine.notifier.start()
    try:
        engine.process(
            [("batch", batch(position(fleet.in_warranty, datetime.now(UTC), alarms=["gnss_antenna_cut"])))]
        )
        _wait(lambda: len(hook.accepted) == 2 and len(sink.messages) == 2)
    finally:
        engine.notifier.stop()
        hook.close()
    assert sorted(m["event"] for m in hook.accepted) == ["alert.raised", "ticket.opened"]
    ticket = next(m for m in hook.accepted if m["event"] == "ticket.opened")["data"]
    assert ticket["terminal_id"] == fleet.in_warranty and ticket["in_warranty"] is True
    subjects = sorted(m.content.decode() for m in sink.messages)
    assert all("gnss antenna cut" in s for s in subjects)
    assert any("repair ticket RSO-" in s for s in subjects)
    assert {tuple(sorted(m.rcpt_tos)) for m in sink.messages} == {
        ("fleet@acme.example", "gps-division@example.com")
    }
