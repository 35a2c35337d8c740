"""Virtual terminals on the wire: every protocol's handshake and reports over real sockets
against a server that uses the protocol's own decoder, retransmission when no ack comes,
offline buffering then batch upload, UDP, a serial pseudo-terminal and MQTT."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from core.messages import MessageType
from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DecodeContext, parse_tz
from simulators.motion import LatLon, distance_m
from simulators.runner import Endpoints, FleetRunner, RunResult, format_summary
from simulators.scenario import expand, parse_scenario
from tests.simulators.support import PROTOCOL_NAMES, AckingServer, scenario_text

CENTER = LatLon(31.2304, 121.4737)
ACKED_POSITIONS = {"jt808", "teltonika"}  # protocols whose position frames are acknowledged


def run_fleet(text: str, endpoints: Endpoints, seconds: float) -> tuple[FleetRunner, RunResult]:
    runner = FleetRunner(parse_scenario(text), endpoints)
    result = asyncio.run(runner.run(duration_s=seconds))
    runner.close()
    return runner, result


def endpoints(protocol: str, server: AckingServer, **kwargs: object) -> Endpoints:
    return Endpoints("127.0.0.1", {protocol: server.port}, {protocol: server.udp_port}, **kwargs)  # type: ignore[arg-type]


def spec_of(protocol: str):
    spec = PROTOCOLS.get(protocol)
    assert spec is not None, f"protocol {protocol} is not registered in gateway.protocols.PROTOCOLS"
    assert spec.device is not None, f"protocol {protocol} has no DeviceCodec (SPEC.device)"
    return spec


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_each_protocol_terminal_logs_in_and_reports_over_tcp(protocol: str) -> None:
    spec = spec_of(protocol)
    server = AckingServer(spec)

    async def scenario() -> tuple[FleetRunner, RunResult]:
        await server.start()
        try:
            runner = FleetRunner(
                parse_scenario(scenario_text(protocol, count=2)), endpoints(protocol, server)
            )
            return runner, await runner.run(duration_s=3.5)
        finally:
            await server.stop()

    runner, result = asyncio.run(scenario())
    ids = {plan.terminal_id for plan in runner.plans}
    positions = [m for m in server.received.messages if m.type == MessageType.POSITION and m.lat is not None]
    assert server.received.errors == []
    assert {m.terminal_id or "" for m in positions} <= ids | {""}
    assert server.received.terminal_ids == ids, "each terminal announced itself"
    assert len(positions) >= 4
    for message in positions:
        assert distance_m(LatLon(message.lat, message.lon), CENTER) < 5000  # on the town's grid
        assert message.speed_kmh is None or 0 <= message.speed_kmh < 130
    assert result.stats["handshakes"] == 2
    if protocol in ACKED_POSITIONS:
        assert result.stats["fixes_acked"] >= 4


@pytest.mark.parametrize("protocol", ["jt808", "teltonika", "gt06"])
def test_a_frame_without_acknowledgement_is_sent_again(protocol: str) -> None:
    spec = spec_of(protocol)
    server = AckingServer(spec, drop_replies=2)  # the login reply and the next one get lost

    async def scenario() -> RunResult:
        await server.start()
        try:
            runner = FleetRunner(
                parse_scenario(scenario_text(protocol, count=1)), endpoints(protocol, server)
            )
            return await runner.run(duration_s=4)
        finally:
            await server.stop()

    result = asyncio.run(scenario())
    assert server.received.replies_dropped == 2
    assert result.stats["retransmitted"] >= 2
    assert result.stats["handshakes"] == 1, "the login went through on a retry"
    if protocol in ACKED_POSITIONS:
        assert result.stats["fixes_acked"] >= 2


@pytest.mark.parametrize("protocol", ["jt808", "teltonika"])
def test_fixes_kept_while_offline_are_uploaded_in_batches(protocol: str) -> None:
    spec = spec_of(protocol)
    with socket.socket() as probe:  # a port nobody listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = AckingServer(spec)

    async def scenario() -> tuple[FleetRunner, RunResult]:
        runner = FleetRunner(
            parse_scenario(scenario_text(protocol, count=1)), Endpoints("127.0.0.1", {protocol: port}, {})
        )
        task = asyncio.create_task(runner.run(duration_s=7))
        await asyncio.sleep(3.5)  # the terminal reports into the void, keeping its fixes
        assert runner.stats.connect_failures >= 1 and runner.stats.buffered >= 2
        server._server = await asyncio.start_server(server._serve, "127.0.0.1", port)
        try:
            return runner, await task
        finally:
            await server.stop()

    runner, result = asyncio.run(scenario())
    stats = result.stats
    assert stats["batches"] >= 1
    assert stats["buffer_dropped"] == 0
    times = {m.time for m in server.received.messages if m.type == MessageType.POSITION}
    assert len(times) >= stats["fixes"] - stats["buffered"] - 1  # all but a fix in flight at the end
    assert stats["fixes_acked"] == len(times)


@pytest.mark.parametrize("protocol", ["teltonika", "h02"])
def test_udp_terminals_report_and_read_replies(protocol: str) -> None:
    """Every datagram decodes, heartbeats included (Teltonika has no keep-alive over UDP:
    a lone 0xFF datagram was logged by the gateway as malformed)."""
    spec = spec_of(protocol)
    server = AckingServer(spec)

    async def scenario() -> RunResult:
        await server.start(udp=True)
        try:
            runner = FleetRunner(
                parse_scenario(scenario_text(protocol, transport="udp", heartbeat_s=0.5)),
                endpoints(protocol, server),
            )
            return await runner.run(duration_s=3)
        finally:
            await server.stop()

    result = asyncio.run(scenario())
    positions = [m for m in server.received.messages if m.type == MessageType.POSITION]
    assert server.received.errors == []
    assert len(positions) >= 4
    if protocol == "teltonika":
        assert result.stats["fixes_acked"] >= 4


def test_a_serial_receiver_writes_nmea_into_a_pseudo_terminal() -> None:
    spec = spec_of("nmea")
    scenario = parse_scenario(scenario_text("nmea", transport="serial", count=1))
    runner = FleetRunner(scenario, Endpoints("127.0.0.1", {}, {}))
    (port,) = runner.prepare()
    fd = os.open(port.slave_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)  # the gateway's side
    framer = spec.framer()
    frames: list[bytes] = []

    async def scenario_run() -> RunResult:
        loop = asyncio.get_running_loop()

        def readable() -> None:
            frames.extend(framer.feed(os.read(fd, 4096)))

        loop.add_reader(fd, readable)
        try:
            return await runner.run(duration_s=3)
        finally:
            loop.remove_reader(fd)

    try:
        asyncio.run(scenario_run())
    finally:
        os.close(fd)
        runner.close()
    context = DecodeContext(terminal_id=port.terminal_id, tz=parse_tz(spec.default_tz), transport="serial")
    decoded = [m for frame in frames for m in spec.decode(frame, context).messages]
    fixes = [m for m in decoded if m.lat is not None]
    assert len(fixes) >= 2
    assert all(distance_m(LatLon(m.lat, m.lon), CENTER) < 5000 for m in fixes)


@pytest.mark.mqtt
def test_mqtt_terminals_publish_up_and_read_replies_from_down(mqtt_url: str) -> None:
    import paho.mqtt.client as mqtt

    spec = spec_of("jt808")
    scenario = parse_scenario(scenario_text("jt808", transport="mqtt", count=2))
    ids = {plan.terminal_id for plan in expand(scenario)}
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    contexts: dict[str, DecodeContext] = {}
    received: list[str] = []

    def on_message(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        _prefix, protocol, terminal_id, _up = message.topic.split("/")
        context = contexts.setdefault(
            terminal_id, DecodeContext(tz=parse_tz(spec.default_tz), transport="mqtt")
        )
        for frame in spec.framer().feed(message.payload):
            decoded = spec.decode(frame, context)
            received.append(terminal_id)
            if decoded.reply:
                client.publish(f"gpsfleet/{protocol}/{terminal_id}/down", decoded.reply, qos=1)

    bridge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gateway-side")
    bridge.on_message = on_message
    bridge.connect(host, int(port))
    bridge.subscribe("gpsfleet/jt808/+/up", qos=1)
    bridge.loop_start()
    try:
        runner = FleetRunner(scenario, Endpoints("127.0.0.1", {}, {}, mqtt_url=mqtt_url))
        result = asyncio.run(runner.run(duration_s=3.5))
    finally:
        bridge.loop_stop()
        bridge.disconnect()
    assert set(received) == ids
    assert result.stats["handshakes"] == 2  # registration and authentication answered over .../down
    assert result.stats["fixes_acked"] >= 4


def test_a_silent_terminal_drops_its_link_keeps_its_fixes_and_uploads_them_when_it_speaks_again() -> None:
    spec = spec_of("jt808")
    server = AckingServer(spec)
    text = scenario_text("jt808", count=1) + (
        '\n[[faults]]\nfleet = "jt808"\nkind = "silent"\nat_s = 1\nduration_s = 3.5\n'
    )

    async def scenario() -> tuple[FleetRunner, RunResult]:
        await server.start()
        try:
            runner = FleetRunner(parse_scenario(text), endpoints("jt808", server))
            return runner, await runner.run(duration_s=7)
        finally:
            await server.stop()

    runner, result = asyncio.run(scenario())
    (terminal,) = runner.terminals
    assert result.stats["faults_injected"] == 1
    assert server.received.connections == 2, "it hung up when it fell silent and came back afterwards"
    assert result.stats["batches"] >= 1, "the fixes of the silent spell went up in a batch"
    assert result.stats["fixes_acked"] >= result.stats["fixes"] - 2
    assert terminal.wakeups < 60, f"{terminal.wakeups} loop turns in 7 s: the silent spell must not spin"


@pytest.mark.parametrize("protocol", ["jt808", "teltonika"])
def test_line_faults_reach_the_server_and_retransmission_heals_them(protocol: str) -> None:
    spec = spec_of(protocol)
    server = AckingServer(spec)
    faults = "".join(
        f'\n[[faults]]\nfleet = "{protocol}"\nkind = "{kind}"\nprobability = {chance}\n'
        for kind, chance in (("bad_checksum", 0.3), ("garbage", 0.3), ("truncated", 0.15))
    )
    repeater = f'\n[[fleet]]\nname = "repeater"\nprotocol = "{protocol}"\ncount = 1\n'
    repeats = '\n[[faults]]\nfleet = "repeater"\nkind = "duplicate"\nat_s = 0\n'  # every frame twice
    text = scenario_text(protocol, count=2, ack_timeout_s=0.4) + repeater + faults + repeats

    async def scenario() -> RunResult:
        await server.start()
        try:
            runner = FleetRunner(parse_scenario(text), endpoints(protocol, server))
            return await runner.run(duration_s=7)
        finally:
            await server.stop()

    result = asyncio.run(scenario())
    stats = result.stats
    assert stats["faults_injected"] >= 5
    assert server.received.errors, "corrupted frames reached the decoder and were refused"
    assert server.received.garbage_bytes > 0
    assert stats["retransmitted"] >= 2
    positions = [m for m in server.received.messages if m.type == MessageType.POSITION and m.valid]
    assert all(m.terminal_id for m in positions)
    unique = {(m.terminal_id, m.time) for m in positions}
    assert len(positions) > len(unique), "duplicated frames arrived twice"
    assert stats["fixes_acked"] >= stats["fixes"] - stats["buffered"] - 4  # all but those in flight


def test_the_offline_buffer_is_bounded_and_says_when_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # nobody listens: the terminal stays offline
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = scenario_text("jt808", count=1).replace("max_retries = 4", "max_retries = 4\nbuffer_max = 2")
    runner = FleetRunner(parse_scenario(text), Endpoints("127.0.0.1", {"jt808": port}, {}))
    result = asyncio.run(runner.run(duration_s=4.5))
    assert result.stats["buffered"] == 2
    assert result.stats["buffer_dropped"] == result.stats["fixes"] - 2 >= 2
    assert "dropping the oldest" in caplog.text


def test_a_login_answered_by_closing_the_link_counts_as_rejected_and_the_summary_says_why() -> None:
    """The gateway refuses an unregistered GT06 or H02 terminal by closing the link: no
    protocol has a "no" for those logins, and the operator must still see the refusal."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    async def scenario() -> RunResult:
        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            runner = FleetRunner(
                parse_scenario(scenario_text("gt06", count=1)), Endpoints("127.0.0.1", {"gt06": port}, {})
            )
            return await runner.run(duration_s=2)
        finally:
            server.close()
            await server.wait_closed()

    result = asyncio.run(scenario())
    assert result.stats["handshakes"] == 0
    assert result.stats["rejected"] >= 1
    assert "the gateway refused every login" in format_summary(result)


def test_the_progress_line_names_disconnects_as_such() -> None:
    """A clean stop drops every link: the last progress line said "reconnects 50"."""
    runner = FleetRunner(parse_scenario(scenario_text("gt06", count=1)), Endpoints("127.0.0.1", {}, {}))
    runner.stats.disconnects = 3
    line = runner.progress_line(1.0)
    assert "disconnects 3" in line and "reconnects" not in line


def test_the_first_connect_failure_of_a_run_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """A wrong --target (a port nobody listens on, a serial device that is not there) only
    showed "failures 3" in the summary, exit 0, and no reason."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there
    runner = FleetRunner(
        parse_scenario(scenario_text("gt06", count=2)), Endpoints("127.0.0.1", {"gt06": port}, {})
    )
    with caplog.at_level("WARNING", logger="simulators.terminal"):
        result = asyncio.run(runner.run(duration_s=1.5))
    assert result.stats["connect_failures"] >= 2
    warnings = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(warnings) == 1
    assert "cannot connect over tcp" in warnings[0] and str(port) in warnings[0]
