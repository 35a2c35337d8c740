"""Notifications of new alerts and tickets: webhooks (HTTP POST of JSON signed with HMAC-SHA256)
and e-mail over SMTP, per role or customer, delivered by one thread from a bounded queue with
retries and backoff; each final outcome is logged in the ``notifications`` table.

The signature header is ``X-Gpsfleet-Signature: sha256=<hex of HMAC-SHA256(secret, body)>``
over the exact request body; receivers recompute it with the shared secret.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import queue
import smtplib
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import insert

from core.settings import NotificationSettings, WebhookSettings
from store.db import Database
from store.tables.alerts import notifications

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Gpsfleet-Signature"
EVENT_HEADER = "X-Gpsfleet-Event"
DELIVERY_HEADER = "X-Gpsfleet-Delivery"

# Which staff roles an event concerns (webhooks and mail lists configured per role).
AUDIENCE: dict[str, frozenset[str]] = {
    "alert.raised": frozenset({"admin", "manager", "noc"}),
    "ticket.opened": frozenset({"admin", "manager", "noc", "clerk"}),
    "ticket.reopened": frozenset({"admin", "manager", "noc", "clerk"}),
}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(slots=True)
class Delivery:
    event: str
    channel: str  # webhook, email
    target: str  # URL or address list
    body: bytes
    payload: dict[str, Any]
    webhook: WebhookSettings | None = None
    recipients: list[str] = field(default_factory=list)
    attempts: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    delivery_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    last_error: str | None = None


@dataclass(slots=True)
class NotifierStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0


class Notifier:
    def __init__(
        self, settings: NotificationSettings, database: Database | None, *, backoff_base_s: float = 1.0
    ) -> None:
        self.settings = settings
        self.database = database
        self.backoff_base_s = backoff_base_s
        self.stats = NotifierStats()
        self._queue: queue.Queue[Delivery] = queue.Queue(maxsize=settings.queue_max)
        self._retries: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhooks) or bool(
            self.settings.smtp.host and self.settings.email_recipients
        )

    # ------------------------------------------------------------------ what goes where

    def deliveries(self, event: str, payload: dict[str, Any], customer_id: int | None) -> list[Delivery]:
        audience = AUDIENCE.get(event, frozenset())
        message = {
            "event": event,
            "sent_at": datetime.now(UTC).isoformat(),
            "customer_id": customer_id,
            "data": payload,
        }
        body = json.dumps(message, default=str, separators=(",", ":")).encode()
        out: list[Delivery] = []
        for hook in self.settings.webhooks:
            if event not in hook.events:
                continue
            if hook.roles and not audience & set(hook.roles):
                continue
            if hook.customer_id is not None and hook.customer_id != customer_id:
                continue
            out.append(Delivery(event, "webhook", hook.url, body, message, webhook=hook))
        if self.settings.smtp.host:
            recipients: list[str] = []
            for key, addresses in self.settings.email_recipients.items():
                if key.startswith("customer:"):
                    wanted = customer_id is not None and key.split(":", 1)[1] == str(customer_id)
                else:
                    wanted = key in audience
                if wanted:
                    recipients += [a for a in addresses if a not in recipients]
            if recipients:
                out.append(
                    Delivery(event, "email", ", ".join(recipients), body, message, recipients=recipients)
                )
        return out

    def publish(self, event: str, payload: dict[str, Any], customer_id: int | None = None) -> None:
        """Queue the notifications of one event; never blocks (a full queue is counted and logged)."""
        for delivery in self.deliveries(event, payload, customer_id):
            try:
                self._queue.put_nowait(delivery)
                self.stats.queued += 1
            except queue.Full:
                self.stats.dropped += 1
                log.warning(
                    "notification queue full (%d): %s to %s dropped (%d so far)",
                    self._queue.maxsize,
                    event,
                    delivery.target,
                    self.stats.dropped,
                )

    # ------------------------------------------------------------------ delivery thread

    def start(self) -> None:
        if self._thread is not None or not self.enabled:
            return
        self._stopping.clear()
        self._http = httpx.Client(timeout=10.0)
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is due within ``timeout``; pending retries are logged as failed."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout)
        self._thread = None
        for _, _, delivery in self._retries:
            self._finish(delivery, "failed", "gave up at shutdown")
        self._retries.clear()
        if self._http is not None:
            self._http.close()
            self._http = None

    def _run(self) -> None:
        while True:
            wait = 0.2
            if self._retries:
                wait = max(0.0, min(wait, self._retries[0][0] - time.monotonic()))
            try:
                self._attempt(self._queue.get(timeout=wait) if wait else self._queue.get_nowait())
            except queue.Empty:
                pass
            while self._retries and self._retries[0][0] <= time.monotonic():
                self._attempt(heapq.heappop(self._retries)[2])
            if self._stopping.is_set() and self._queue.empty():
                return

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        try:
            if delivery.channel == "webhook":
                self._post(delivery)
            else:
                self._mail(delivery)
        except Exception as exc:
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:500]
            if delivery.attempts >= self.settings.max_attempts or self._stopping.is_set():
                log.warning(
                    "notification %s to %s failed for good: %s",
                    delivery.event,
                    delivery.target,
                    delivery.last_error,
                )
                self._finish(delivery, "failed", delivery.last_error)
                return
            self.stats.retried += 1
            delay = min(self.backoff_base_s * 2 ** (delivery.attempts - 1), 300.0)
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._order), delivery))
            return
        self._finish(delivery, "sent", None)

    def _post(self, delivery: Delivery) -> None:
        assert self._http is not None and delivery.webhook is not None
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.delivery_id,
        }
        if delivery.webhook.secret is not None:
            headers[SIGNATURE_HEADER] = sign(delivery.webhook.secret.get_secret_value(), delivery.body)
        response = self._http.post(delivery.webhook.url, content=delivery.body, headers=headers)
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code} from {delivery.webhook.url}")

    def _mail(self, delivery: Delivery) -> None:
        smtp = self.settings.smtp
        data = delivery.payload["data"]
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = ", ".join(delivery.recipients)
        message["Subject"] = _subject(delivery.event, data)
        message.set_content(json.dumps(delivery.payload, indent=2, default=str))
        with smtplib.SMTP(smtp.host or "localhost", smtp.port, timeout=10) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username and smtp.password is not None:
                client.login(smtp.username, smtp.password.get_secret_value())
            client.send_message(message)

    def _finish(self, delivery: Delivery, state: str, error: str | None) -> None:
        if state == "sent":
            self.stats.sent += 1
        else:
            self.stats.failed += 1
        if self.database is None:
            return
        try:
            with self.database.engine.begin() as conn:
                conn.execute(
                    insert(notifications).values(
                        event=delivery.event,
                        channel=delivery.channel,
                        target=delivery.target[:300],
                        state=state,
                        attempts=delivery.attempts,
                        last_error=error,
                        created_at=delivery.created_at,
                        finished_at=datetime.now(UTC),
                        payload=delivery.payload,
                    )
                )
        except Exception as exc:  # the log is for audit; a database hiccup must not stop delivery
            log.warning("could not log notification %s: %s", delivery.event, exc)


def _subject(event: str, data: dict[str, Any]) -> str:
    terminal = data.get("terminal_id", "?")
    fault = str(data.get("fault", "?")).replace("_", " ")
    if event.startswith("ticket."):
        return f"[gpsfleet] repair ticket {data.get('number', '')} {event.split('.')[1]}: {fault} on terminal {terminal}"
    return f"[gpsfleet] {data.get('severity', '')} alert: {fault} on terminal {terminal}"
