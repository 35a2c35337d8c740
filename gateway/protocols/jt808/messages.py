"""JT/T 808 decoding: one handler per message id, sub-packages, and the platform replies."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Attr
from gateway.protocols.base import (
    DecodeContext,
    Decoded,
    FramingError,
    MalformedFrame,
    UnsupportedMessage,
)
from gateway.protocols.binary import (
    ascii_text,
    digits_of,
)
from gateway.protocols.checksums import xor8
from gateway.protocols.jt808.frames import (
    ACCELERATION,
    ATTRIBUTES,
    AUTHENTICATE,
    BATCH,
    BLIND_LOCATION_2,
    CONTROL_ANSWER,
    FLAG,
    HEAD_2013,
    HEARTBEAT,
    LOCATION,
    LOCATION_2,
    LOCATION_ANSWER,
    LOGOUT,
    MIN_INNER,
    MULTIMEDIA_EVENT,
    PHOTO,
    PLATFORM_RESPONSE,
    PROPS_LENGTH,
    PROPS_SUBPACKAGE,
    PROPS_VERSION,
    REGISTER,
    REGISTER_RESPONSE,
    RESULT_OK,
    RESULTS,
    TERMINAL_RESPONSE,
    TIME_QUERY,
    TIME_SYNC,
    TRANSPARENT,
    VENDOR_LOCATIONS,
    Frame,
    encode_frame,
    escape,
    open_frame,
    unescape,
)
from gateway.protocols.jt808.location import (
    decode_location,
    decode_vendor_location,
)

_U16 = struct.Struct(">H")
_RESPONSE = struct.Struct(">HHB")  # reply serial, reply id, result

# --------------------------------------------------------------------------- other messages


def _register(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    if frame.version is not None:
        sizes = (11, 30, 30)  # 2019: manufacturer, model, terminal id
    elif len(body) >= 37:
        sizes = (5, 20, 7)  # 2013
    else:
        sizes = (5, 8, 7)  # 2011
    manufacturer_size, model_size, device_size = sizes
    fixed = 4 + manufacturer_size + model_size + device_size + 1
    if len(body) < fixed:
        raise MalformedFrame(f"registration body of {len(body)} bytes, needs {fixed}")
    province, city = struct.unpack_from(">HH", body)
    pos = 4
    manufacturer = ascii_text(body[pos : pos + manufacturer_size])
    pos += manufacturer_size
    model = ascii_text(body[pos : pos + model_size])
    pos += model_size
    device_id = ascii_text(body[pos : pos + device_size])
    pos += device_size
    attrs: dict[str, Any] = {
        Attr.MODEL: model,
        "jt808.manufacturer": manufacturer,
        "jt808.device_id": device_id,
        "jt808.province": province,
        "jt808.city": city,
        "jt808.plate_color": body[pos],
        "jt808.plate": body[pos + 1 :].decode("gbk", "replace").strip("\x00 "),
    }
    return [Message(MessageType.LOGIN, frame.terminal_id, attributes=attrs)]


def _authenticate(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    attrs: dict[str, Any] = {}
    if frame.version is not None and body:
        size = body[0]
        attrs["jt808.auth_code"] = body[1 : 1 + size].decode("latin-1")
        rest = body[1 + size :]
        if len(rest) >= 15:
            attrs["jt808.imei"] = ascii_text(rest[:15])
            attrs[Attr.FIRMWARE] = ascii_text(rest[15:35])
    else:
        attrs["jt808.auth_code"] = body.decode("latin-1")
    return [Message(MessageType.LOGIN, frame.terminal_id, attributes=attrs)]


def _heartbeat(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return [Message(MessageType.HEARTBEAT, frame.terminal_id)]


def _location(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return [decode_location(frame.body, 0, len(frame.body), frame.terminal_id, ctx)]


def _batch(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    if len(body) < 3:
        raise MalformedFrame("batch upload shorter than its header")
    count, kind = struct.unpack_from(">HB", body)
    messages: list[Message] = []
    pos = 3
    terminal_id = frame.terminal_id
    for _ in range(count):
        if pos + 2 > len(body):
            raise MalformedFrame(f"batch announces {count} items, holds {len(messages)}")
        (length,) = _U16.unpack_from(body, pos)
        pos += 2
        if pos + length > len(body):
            raise MalformedFrame("batch item runs past the body")
        message = decode_location(body, pos, pos + length, terminal_id, ctx)
        if kind:
            message.attributes[Attr.ARCHIVED] = True
        messages.append(message)
        pos += length
    return messages


def _attributes(frame: Frame, ctx: DecodeContext) -> list[Message]:
    body = frame.body
    model_size, device_size = (30, 30) if frame.version is not None else (20, 7)
    pos = 2 + 5 + model_size + device_size
    if len(body) < pos + 10 + 1:
        raise MalformedFrame("terminal attributes truncated")
    attrs: dict[str, Any] = {
        "jt808.terminal_type": _U16.unpack_from(body)[0],
        "jt808.manufacturer": ascii_text(body[2:7]),
        Attr.MODEL: ascii_text(body[7 : 7 + model_size]),
        "jt808.device_id": ascii_text(body[7 + model_size : pos]),
        Attr.ICCID: digits_of(body[pos : pos + 10]).upper(),
    }
    pos += 10
    size = body[pos]
    attrs["jt808.hardware"] = ascii_text(body[pos + 1 : pos + 1 + size])
    pos += 1 + size
    if pos < len(body):
        size = body[pos]
        attrs[Attr.FIRMWARE] = ascii_text(body[pos + 1 : pos + 1 + size])
        pos += 1 + size
    if pos + 2 <= len(body):
        attrs["jt808.gnss_module"] = body[pos]
        attrs["jt808.comm_module"] = body[pos + 1]
    return [Message(MessageType.INFO, frame.terminal_id, attributes=attrs)]


def _terminal_response(frame: Frame, ctx: DecodeContext) -> list[Message]:
    if len(frame.body) < 5:
        raise MalformedFrame("terminal general response shorter than 5 bytes")
    reply_serial, reply_id, result = _RESPONSE.unpack_from(frame.body)
    attrs = {
        Attr.RESULT: RESULTS.get(result, str(result)),
        "jt808.reply_serial": reply_serial,
        "jt808.reply_id": reply_id,
    }
    return [Message(MessageType.COMMAND_RESULT, frame.terminal_id, attributes=attrs)]


def _logout(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return []


def _location_answer(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """0x0201 location query / 0x0500 vehicle control answers: reply serial, 0x0200 body."""
    body = frame.body
    message = decode_location(body, 2, len(body), frame.terminal_id, ctx)
    message.attributes["jt808.reply_serial"] = _U16.unpack_from(body)[0]
    return [message]


def _time_request(frame: Frame, ctx: DecodeContext) -> list[Message]:
    return [Message(MessageType.TIME_REQUEST, frame.terminal_id)]


def _vendor_data(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """Messages recorded but not interpreted (photos, acceleration samples, multimedia)."""
    attrs = {f"jt808.x{frame.msg_id:04x}": frame.body.hex()}
    return [Message(MessageType.INFO, frame.terminal_id, attributes=attrs)]


def _transparent(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """0x0900 pass-through data: its type byte and the data, kept raw."""
    body = frame.body
    if not body:
        raise MalformedFrame("empty pass-through message")
    attrs = {"jt808.transparent_type": body[0], "jt808.transparent": body[1:].hex()}
    return [Message(MessageType.INFO, frame.terminal_id, attributes=attrs)]


Handler = Callable[[Frame, DecodeContext], list[Message]]
HANDLERS: dict[int, Handler] = {
    TERMINAL_RESPONSE: _terminal_response,
    HEARTBEAT: _heartbeat,
    LOGOUT: _logout,
    REGISTER: _register,
    AUTHENTICATE: _authenticate,
    ATTRIBUTES: _attributes,
    LOCATION: _location,
    BATCH: _batch,
    LOCATION_2: decode_vendor_location,
    BLIND_LOCATION_2: decode_vendor_location,
    LOCATION_ANSWER: _location_answer,
    CONTROL_ANSWER: _location_answer,
    TIME_QUERY: _time_request,
    TIME_SYNC: _time_request,
    TRANSPARENT: _transparent,
    MULTIMEDIA_EVENT: _vendor_data,
    ACCELERATION: _vendor_data,
    PHOTO: _vendor_data,
}
# Terminal messages the platform acknowledges with 0x8001 (a response is not answered).
ACKNOWLEDGED = frozenset({HEARTBEAT, LOGOUT, AUTHENTICATE, LOCATION, BATCH, MULTIMEDIA_EVENT, PHOTO})
# Time requests and the message id of their answer (UTC, BCD YYMMDDhhmmss).
TIME_ANSWERS = {TIME_QUERY: 0x8004, TIME_SYNC: 0x8109}


# --------------------------------------------------------------------------- replies


def _platform_serial(ctx: DecodeContext) -> int:
    serial = (ctx.state.get("jt808.serial", 0) + 1) & 0xFFFF
    ctx.state["jt808.serial"] = serial
    return serial


_GENERAL_RESPONSE_2013 = struct.Struct(">HH6sHHHB")
_BYTE = tuple(bytes((value,)) for value in range(256))
_CHECK_AND_FLAG = tuple(bytes((value, FLAG)) for value in range(256))
_FLAG = bytes((FLAG,))
# 0x8001 with a 5-byte body: the XOR of its id and properties bytes
_RESPONSE_HEAD_XOR = (PLATFORM_RESPONSE >> 8) ^ (PLATFORM_RESPONSE & 0xFF) ^ 5
_PHONE_XOR: dict[bytes, int] = {}  # XOR of each 6-byte phone field acknowledged lately
_MAX_PHONES = 65536


def acknowledge(phone: bytes, serial: int, msg_id: int, ctx: DecodeContext, result: int = RESULT_OK) -> bytes:
    """0x8001 to a terminal with a 2013 header (``phone`` is its 6 BCD bytes).  The check
    code is folded from the fields (the phone's XOR is remembered), not computed over the
    packed frame."""
    state = ctx.state
    own = state["jt808.serial"] = (state.get("jt808.serial", 0) + 1) & 0xFFFF
    phone_xor = _PHONE_XOR.get(phone)
    if phone_xor is None:
        if len(_PHONE_XOR) >= _MAX_PHONES:
            _PHONE_XOR.clear()
        phone_xor = _PHONE_XOR[phone] = xor8(phone)
    words = own ^ serial ^ msg_id  # the XOR of three 16-bit fields, folded below
    check = (words ^ (words >> 8) ^ phone_xor ^ result ^ _RESPONSE_HEAD_XOR) & 0xFF
    inner = _GENERAL_RESPONSE_2013.pack(PLATFORM_RESPONSE, 5, phone, own, serial, msg_id, result)
    if 0x7D in inner or 0x7E in inner or check == 0x7D or check == 0x7E:
        return _FLAG + escape(inner + _BYTE[check]) + _FLAG
    return _FLAG + inner + _CHECK_AND_FLAG[check]


def general_response(frame: Frame, ctx: DecodeContext, result: int = RESULT_OK) -> bytes:
    if frame.version is None and len(frame.phone_bcd) == 6:  # the common case
        return acknowledge(frame.phone_bcd, frame.serial, frame.msg_id, ctx, result)
    body = _RESPONSE.pack(frame.serial, frame.msg_id, result)
    return encode_frame(PLATFORM_RESPONSE, frame.phone_bcd, _platform_serial(ctx), body, frame.version)


def auth_code_for(frame: Frame) -> bytes:
    """The authentication code handed out on registration: the terminal's phone digits."""
    return frame.phone_bcd.hex().encode("ascii")


def register_response(frame: Frame, ctx: DecodeContext) -> bytes:
    body = _U16.pack(frame.serial) + bytes((RESULT_OK,)) + auth_code_for(frame)
    return encode_frame(REGISTER_RESPONSE, frame.phone_bcd, _platform_serial(ctx), body, frame.version)


# --------------------------------------------------------------------------- decoding

MAX_PACKETS = 256  # sub-packages of one message
MAX_PENDING = 4  # messages being reassembled per session


def _reassemble(frame: Frame, ctx: DecodeContext) -> bytes | None:
    """Keep a sub-package in the session; the whole body once the last one arrived."""
    total, index = frame.packet or (1, 1)
    if not 1 <= index <= total <= MAX_PACKETS:
        raise MalformedFrame(f"sub-package {index} of {total}")
    pending: dict[tuple[int, int], dict[int, bytes]] = ctx.state.setdefault("jt808.packets", {})
    key = (frame.msg_id, total)
    parts = pending.get(key)
    if parts is None:
        if len(pending) >= MAX_PENDING:
            pending.pop(next(iter(pending)))  # the oldest unfinished message is dropped
        parts = pending[key] = {}
    parts[index] = frame.body
    if len(parts) < total:
        return None
    del pending[key]
    return b"".join(parts[i] for i in range(1, total + 1))


def decode_text(frame: bytes, ctx: DecodeContext) -> Decoded:
    """``(id,1,001,BASE,2,TIME)`` asks for the time (answered with the sentence and the UTC
    time in place of TIME); any other text frame is a command result."""
    if not frame.endswith(b")") or not frame.isascii():
        raise FramingError("text frame is not (ASCII)")
    fields = frame[1:-1].decode("ascii").split(",")
    terminal_id = fields[0] if fields[0].isalnum() else None
    if terminal_id is None:
        raise MalformedFrame("text frame without a terminal id")
    if len(fields) >= 6 and fields[3] == "BASE" and fields[4] == "2":
        now = ctx.now().astimezone(UTC).strftime("%Y%m%d%H%M%S")
        reply = ("(" + ",".join([*fields[:5], now]) + ")").encode("ascii")
        return Decoded([Message(MessageType.TIME_REQUEST, terminal_id)], reply, terminal_id)
    result = Message(MessageType.COMMAND_RESULT, terminal_id, attributes={Attr.RESULT: ",".join(fields[1:])})
    return Decoded([result], None, terminal_id)


_PLAIN_PROPS = PROPS_VERSION | PROPS_SUBPACKAGE | PROPS_LENGTH
_MIN_FRAME = MIN_INNER + 2  # with its two flags
_HEARTBEAT = MessageType.HEARTBEAT


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    # The usual frame: a right check code (the two flags cancel in the XOR, so the frame is
    # checked as it is), a 2013 header without sub-package and a body of the announced
    # length.  Read in place (unescaped first if it must be); anything else goes through
    # ``open_frame``.
    data = frame
    if len(data) >= _MIN_FRAME and data[0] == FLAG == data[-1]:
        if 0x7D in data:
            data = _FLAG + unescape(data[1:-1]) + _FLAG
        size = len(data)
        if size >= _MIN_FRAME and not xor8(data):
            msg_id, props, phone, serial = HEAD_2013.unpack_from(data, 1)
            if props & _PLAIN_PROPS == size - _MIN_FRAME and msg_id not in VENDOR_LOCATIONS:
                if msg_id == LOCATION:  # most of the traffic
                    terminal_id = phone.hex()
                    message = decode_location(data, 13, size - 2, terminal_id, ctx)
                    return Decoded([message], acknowledge(phone, serial, msg_id, ctx), terminal_id)
                if msg_id == HEARTBEAT:
                    terminal_id = phone.hex()
                    reply = acknowledge(phone, serial, msg_id, ctx)
                    return Decoded([Message(_HEARTBEAT, terminal_id)], reply, terminal_id)
                opened = Frame(msg_id, props, None, phone, serial, data[13:-2], None, True)
                return decode_opened(opened, ctx)
    if frame[:1] == b"(":
        return decode_text(frame, ctx)
    return decode_opened(open_frame(frame, ctx.lenient), ctx)


def decode_opened(opened: Frame, ctx: DecodeContext) -> Decoded:
    """Decode a frame already unescaped and checked: its messages and the reply."""
    msg_id = opened.msg_id
    if msg_id == LOCATION and opened.packet is None:
        body = opened.body
        messages = [decode_location(body, 0, len(body), opened.terminal_id, ctx)]
    else:
        handler = HANDLERS.get(msg_id)
        if handler is None:
            raise UnsupportedMessage(f"message id 0x{msg_id:04x}")
        if opened.packet is not None:
            whole = _reassemble(opened, ctx)
            if whole is None:
                return Decoded([], general_response(opened, ctx), opened.terminal_id)
            opened.body = whole
        messages = handler(opened, ctx)
    if not opened.checksum_ok:
        for message in messages:
            message.attributes[Attr.CHECKSUM_OK] = False
    if msg_id in ACKNOWLEDGED:
        reply: bytes | None = general_response(opened, ctx)
    elif msg_id == REGISTER:
        reply = register_response(opened, ctx)
    elif msg_id in TIME_ANSWERS:
        now = bytes.fromhex(ctx.now().astimezone(UTC).strftime("%y%m%d%H%M%S"))
        answer = TIME_ANSWERS[msg_id]
        reply = encode_frame(answer, opened.phone_bcd, _platform_serial(ctx), now, opened.version)
    else:
        reply = None
    return Decoded(messages, reply, opened.terminal_id)
