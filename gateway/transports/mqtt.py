"""MQTT adapter (paho-mqtt 2.x): frames published to ``<prefix>/<protocol>/<terminal>/up``,
replies to ``.../down``; QoS 1, a persistent session (fixed client id, clean session off),
manual acknowledgements sent only once the frame is durable, an optional shared
subscription, resubscription on every (re)connect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.settings import MqttSettings
from gateway import metrics
from gateway.transports import Receiver

log = logging.getLogger(__name__)

SessionFactory = Callable[[str, str, "MqttTopicLink"], Receiver | None]
DeadLetter = Callable[[str, bytes, str, str, str | None, str | None], "asyncio.Future[object]"]


class MqttTopicLink:
    """The ``Link`` for one terminal's topic pair."""

    def __init__(self, bridge: MqttBridge, protocol: str, terminal_id: str) -> None:
        self.bridge = bridge
        self.protocol = protocol
        self.terminal_id = terminal_id
        self.up = f"{bridge.settings.topic_prefix}/{protocol}/{terminal_id}/up"
        self.down = f"{bridge.settings.topic_prefix}/{protocol}/{terminal_id}/down"
        self.receiver: Receiver | None = None
        self._dead_letters: dict[Any, asyncio.Future[object]] = {}

    def send(self, data: bytes) -> None:
        self.bridge.publish(self.down, data)

    def acknowledge(self, token: Any) -> None:
        pending = self._dead_letters.pop(token, None)
        if pending is None:
            self.bridge.ack(token)
            return

        def after(future: asyncio.Future[object]) -> None:
            if future.cancelled() or future.exception() is not None:
                # Not acknowledged: the broker delivers it again after a reconnect.
                log.error(
                    "dead letter for %s not stored: %s",
                    self.up,
                    None if future.cancelled() else future.exception(),
                )
                return
            self.bridge.ack(token)

        pending.add_done_callback(after)

    def undecodable(self, payload: bytes, kind: str, reason: str, token: Any) -> None:
        """Keep the payload in the dead-letter table; its ack waits for that write."""
        metrics.MQTT_DEAD_LETTERS.labels(kind).inc()
        if token is not None:
            self._dead_letters[token] = self.bridge.dead_letter(
                self.up, payload, kind, reason, self.protocol, self.terminal_id
            )

    def close(self) -> None:
        self.receiver = None

    def pause(self) -> None:
        return None  # unacknowledged messages hold the broker back (its in-flight window)

    def resume(self) -> None:
        return None


class MqttBridge:
    def __init__(
        self, settings: MqttSettings, session_factory: SessionFactory, dead_letter: DeadLetter
    ) -> None:
        self.settings = settings
        parts = urlsplit(settings.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.broker = f"{self.host}:{self.port}"
        self._session_factory = session_factory
        self.dead_letter = dead_letter
        self._links: dict[tuple[str, str], MqttTopicLink] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self._stopping = False
        self.messages = 0
        topic = f"{settings.topic_prefix}/+/+/up"
        self.subscription = f"$share/{settings.shared_group}/{topic}" if settings.shared_group else topic
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if parts.scheme == "mqtts":
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        metrics.MQTT_CONNECTED.set(0)
        self.client.connect_async(self.host, self.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()

    async def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self.client.loop_stop)
        self.connected = False
        metrics.MQTT_CONNECTED.set(0)

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s refused the connection: %s", self.broker, reason)
            return
        self.connected = True
        metrics.MQTT_CONNECTED.set(1)
        session_present = getattr(flags, "session_present", False)
        log.info(
            "MQTT connected to %s (session present: %s); subscribing %s",
            self.broker,
            session_present,
            self.subscription,
        )
        client.subscribe(self.subscription, qos=self.settings.qos)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._stopping:
            log.info("MQTT disconnected from %s: the gateway stopping", self.broker)
        elif self.connected:
            log.warning("MQTT disconnected from %s: %s; reconnecting", self.broker, reason)
        self.connected = False
        metrics.MQTT_CONNECTED.set(0)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        token = (message.mid, message.qos) if message.qos else None
        try:
            loop.call_soon_threadsafe(self._deliver, message.topic, bytes(message.payload), token)
        except RuntimeError:
            pass  # the loop is ending; unacknowledged, so the broker keeps it

    # ------------------------------------------------------------------ loop side

    def _deliver(self, topic: str, payload: bytes, token: Any) -> None:
        self.messages += 1
        parts = topic.split("/")
        prefix = self.settings.topic_prefix.split("/")
        if len(parts) != len(prefix) + 3 or parts[: len(prefix)] != prefix or parts[-1] != "up":
            self._dead_letter_and_ack(
                topic, payload, "topic", "topic is not <prefix>/<protocol>/<terminal>/up", token
            )
            return
        protocol, terminal_id = parts[len(prefix)], parts[len(prefix) + 1]
        link = self._links.get((protocol, terminal_id))
        if link is None:
            link = MqttTopicLink(self, protocol, terminal_id)
            self._links[(protocol, terminal_id)] = link
        if link.receiver is None:
            link.receiver = self._session_factory(protocol, terminal_id, link)
            if link.receiver is None:
                self._dead_letter_and_ack(topic, payload, "protocol", f"unknown protocol {protocol!r}", token)
                return
        link.receiver.feed(payload, token)

    def _dead_letter_and_ack(self, topic: str, payload: bytes, kind: str, reason: str, token: Any) -> None:
        metrics.MQTT_DEAD_LETTERS.labels(kind).inc()
        future = self.dead_letter(topic, payload, kind, reason, None, None)

        def after(done: asyncio.Future[object]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.ack(token)
            else:
                log.error("dead letter for %s not stored; left unacknowledged", topic)

        future.add_done_callback(after)

    def ack(self, token: Any) -> None:
        if token is None:
            return
        mid, qos = token
        self.client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=self.settings.qos)

    def set_paused(self, paused: bool) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "connected": self.connected,
            "subscription": self.subscription,
            "topics": len(self._links),
            "messages": self.messages,
        }
