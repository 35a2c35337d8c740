"""Serial adapter (pyserial): one reader thread per configured port; a port that disappears
is reopened with capped backoff, and its state is in metrics and the gateway status."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from core.settings import SerialPortSettings
from gateway import metrics
from gateway.transports import Receiver

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.2
BACKOFF_START_S = 0.2


class SerialPort:
    """A ``Link`` for the session of one serial port (device path or pyserial URL)."""

    def __init__(self, settings: SerialPortSettings, factory: Callable[[SerialPort, str], Receiver]) -> None:
        self.settings = settings
        self.device = settings.device
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._paused_by_gateway = False
        self._pauses = 0
        self._port: serial.SerialBase | None = None
        self.receiver: Receiver | None = None
        self.state = "closed"
        self.last_error: str | None = None
        self.opens = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        metrics.SERIAL_PORT_UP.labels(self.device).set(0)
        self._thread = threading.Thread(target=self._run, name=f"serial {self.device}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        self._drop_receiver()

    # ------------------------------------------------------------------ reader thread

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stopping.is_set():
            metrics.SERIAL_REOPENS.labels(self.device).inc()
            try:
                port = serial.serial_for_url(
                    self.device, baudrate=self.settings.baudrate, timeout=READ_TIMEOUT_S
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self._down(f"cannot open: {exc}")
                self._stopping.wait(backoff)
                backoff = min(self.settings.reopen_max_backoff_s, backoff * 2)
                continue
            self._port = port
            self.opens += 1
            self.state = "open"
            self.last_error = None
            metrics.SERIAL_PORT_UP.labels(self.device).set(1)
            log.info("serial port %s open at %d baud", self.device, self.settings.baudrate)
            backoff = BACKOFF_START_S
            try:
                self._read(port)
            except (serial.SerialException, OSError) as exc:
                self._down(f"lost: {exc}")
            finally:
                self._port = None
                try:
                    port.close()
                except Exception:
                    pass
                self._call(self._drop_receiver)
            if not self._stopping.is_set():
                self._stopping.wait(backoff)
        self.state = "closed"
        metrics.SERIAL_PORT_UP.labels(self.device).set(0)

    def _read(self, port: serial.SerialBase) -> None:
        while not self._stopping.is_set():
            if self._pauses or self._paused_by_gateway:
                time.sleep(0.02)
                continue
            data = port.read(max(1, min(port.in_waiting, 65536)))
            if data:
                self._call(self._deliver, bytes(data))

    def _down(self, reason: str) -> None:
        if self.state != "down":
            log.warning("serial port %s %s; reopening with backoff", self.device, reason)
        self.state = "down"
        self.last_error = reason
        metrics.SERIAL_PORT_UP.labels(self.device).set(0)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass

    # ------------------------------------------------------------------ loop side

    def _deliver(self, data: bytes) -> None:
        if self.receiver is None:
            self.receiver = self._factory(self, f"serial:{self.device}")
        self.receiver.feed(data)

    def _drop_receiver(self) -> None:
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.close()

    # Link
    def send(self, data: bytes) -> None:
        port = self._port
        if port is None:
            return
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            log.warning("serial port %s: reply not written: %s", self.device, exc)

    def acknowledge(self, token: Any) -> None:
        return None

    def close(self) -> None:
        self.receiver = None  # the port stays open; a fresh session starts with the next bytes

    def pause(self) -> None:
        self._pauses += 1

    def resume(self) -> None:
        self._pauses = max(0, self._pauses - 1)

    def set_paused(self, paused: bool) -> None:
        self._paused_by_gateway = paused

    def status(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "protocol": self.settings.protocol,
            "terminal_id": self.settings.terminal_id,
            "state": self.state,
            "opens": self.opens,
            "last_error": self.last_error,
        }
