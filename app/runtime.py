"""The running service: API (uvicorn), gateway and alert engine in one asyncio loop.

``run(settings, database, role)`` is what ``gpsfleet serve`` calls; ``Runtime`` is the same
thing for code that wants it inside its own loop (the demo, tests).

THE SEAM FOR GATEWAY AND ALERTS is ``build_components`` below.  A component is any object
with ``async start()`` and ``async stop()`` (stop drains and returns; see ``Component``).
``build_components`` creates them for the role (nothing for role "api"), in start order;
they are stopped in reverse order.  When a component has a ``health_check`` attribute (a
callable returning ``api.health.Check``) it joins ``/health``; put the handle in
``app.state.services[name]`` so routers can reach it.

Lifecycle: migrate (done by the command) → bind the API socket → start components in
order → serve.  SIGTERM or SIGINT: stop components in reverse (the gateway drains first, then
the alert engine), then the API finishes its in-flight requests; exit 0.  A second signal
stops waiting and exits 1.  Role "gateway" still serves /health and /metrics (no domain
routers), so a gateway-only process can be probed and scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal, Protocol, cast

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from core.settings import Settings
from store.db import Database

log = logging.getLogger(__name__)

ServeRole = Literal["all", "gateway", "api"]
STOP_TIMEOUT_S = 60.0  # per component: a drain that takes longer is abandoned, logged


class Component(Protocol):
    """Something the runtime starts before serving and stops (drains) on shutdown."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_components(
    settings: Settings, database: Database, app: FastAPI, role: ServeRole
) -> list[tuple[str, Component]]:
    """The components to run next to the API for ``role``, in start order (name, component).

    ALERTS adds the alert engine first (it must be ready before batches reach it); GATEWAY
    adds the gateway after it, with the registry as resolver and the engine as hooks::

        engine = AlertEngine(settings, database)
        gateway = Gateway(settings, database, resolver=TerminalDirectory(database), hooks=engine)
        components += [("alerts", engine), ("gateway", gateway)]
    """
    components: list[tuple[str, Component]] = []
    if role in ("all", "gateway"):
        from alerts.engine import AlertEngine
        from gateway.protocols import PROTOCOLS

        disconnecting = [name for name, spec in PROTOCOLS.items() if spec.disconnects_between_reports]
        components.append(("alerts", AlertEngine(settings, database, disconnecting_protocols=disconnecting)))
        from fleet.directory import TerminalDirectory
        from gateway.hooks import GatewayHooks
        from gateway.router import health_check
        from gateway.server import Gateway

        engine = cast(GatewayHooks, components[-1][1])  # the alert engine consumes the gateway's hooks
        gateway = Gateway(settings, database, resolver=TerminalDirectory(database), hooks=engine)
        app.state.health_checks.append(health_check(gateway))
        components.append(("gateway", gateway))
    return components


class StartupError(RuntimeError):
    """The service could not start (port taken, a component failed); the message says why."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn versions
        return None


class Runtime:
    """API and components for one role; ``start()``, then ``stop()`` (idempotent)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        role: ServeRole,
        *,
        components: list[tuple[str, Component]] | None = None,
    ) -> None:
        """``components`` replaces ``build_components`` (tests, embedding)."""
        self.settings = settings
        self.database = database
        self.role = role
        self.app = create_app(settings, database, routers=() if role == "gateway" else None)
        self.components = (
            build_components(settings, database, self.app, role) if components is None else components
        )
        for name, component in self.components:
            self.app.state.services.setdefault(name, component)
            check = getattr(component, "health_check", None)
            if callable(check):
                self.app.state.health_checks.append(check)
        self._started: list[tuple[str, Component]] = []
        self._server: _Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self.api_port: int | None = None

    async def start(self) -> None:
        # The API port first: when it is taken, fail before the gateway accepts any terminal.
        sock = _listen_socket(self.settings.api_host, self.settings.api_port)
        self.api_port = int(sock.getsockname()[1])
        for name, component in self.components:
            log.info("starting %s", name)
            try:
                await component.start()
            except Exception as exc:
                sock.close()
                await self.stop()
                raise StartupError(f"{name} failed to start: {exc}") from exc
            self._started.append((name, component))
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=self.settings.log_level.upper() == "DEBUG",  # else /metrics counts them
            server_header=False,
            lifespan="off",
        )
        self._server = _Server(config)
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api")
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()  # raises what stopped it
                raise StartupError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info(
            "gpsfleet %s serving on http://%s:%d (database %s, %s loop)",
            self.role,
            self.settings.api_host,
            self.api_port,
            self.database.masked_url,
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )

    async def wait(self) -> None:
        """Until the API server stops by itself (which only an error makes it do)."""
        if self._server_task is not None:
            await self._server_task

    async def stop(self) -> None:
        for name, component in reversed(self._started):
            log.info("stopping %s", name)
            try:
                await asyncio.wait_for(component.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("%s did not stop within %gs; going on", name, STOP_TIMEOUT_S)
            except Exception:
                log.exception("%s failed while stopping; going on", name)
        self._started.clear()
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._server_task
            self._server = None
            self._server_task = None
        log.info("stopped")


def run(settings: Settings, database: Database, role: ServeRole) -> int:
    """Serve until SIGTERM/SIGINT, then drain; the process exit status."""
    return _run_loop(_serve_until_signal(settings, database, role))


async def _serve_until_signal(settings: Settings, database: Database, role: ServeRole) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    forced = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop_requested.is_set():
            log.warning("second %s: exiting without waiting for the drain", signal.Signals(signum).name)
            forced.set()
            return
        log.info("%s received: draining and stopping", signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, on_signal, signum)

    runtime = Runtime(settings, database, role)
    try:
        await runtime.start()
    except (StartupError, OSError) as exc:
        log.error("%s", exc)
        return 1
    server_done = asyncio.ensure_future(runtime.wait())
    stop_wait = asyncio.ensure_future(stop_requested.wait())
    await asyncio.wait({server_done, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    failed = server_done.done() and not stop_requested.is_set()
    if failed:
        log.error("the API server stopped unexpectedly: %s", server_done.exception() or "no error given")
    stop_wait.cancel()
    stopping = asyncio.ensure_future(runtime.stop())
    forced_wait = asyncio.ensure_future(forced.wait())
    await asyncio.wait({stopping, forced_wait}, return_when=asyncio.FIRST_COMPLETED)
    forced_wait.cancel()
    if not stopping.done():
        return 1
    return 1 if failed else 0


def _listen_socket(host: str, port: int) -> socket.socket:
    """Bind the API socket ourselves, so a taken port is a clear error, not uvicorn's exit."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    return sock


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # Windows: the default loop
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
