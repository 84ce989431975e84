"""A raw AMQP 1.0 client for fault tests: a socket plus ``cypid.pyx.codec``, no protocol engine.

It sends exactly the bytes a test asks for (valid or not) and reads back what the broker answers,
frame by frame, always against a deadline, so a test can say "this input must end the session with
amqp:session:unattached-handle" and check the very frame that says so::

    with RawClient.connect(broker) as c:
        c.handshake()                        # SASL ANONYMOUS, AMQP header, open
        ch = c.begin()
        c.send_frame(ch, FLOW, [uint(0), uint(100), uint(0), uint(100), uint(7), uint(0), uint(10)])
        c.expect_end("amqp:session:unattached-handle", channel=ch)

Performative codes are exported (``OPEN`` ... ``CLOSE``, ``SASL_*``). ``read_frame`` returns
``Frame`` tuples (heartbeats are skipped) or None at EOF; ``Error`` holds a decoded error composite.
Session windows are always wide open and transfer ids are not tracked: this client tests a broker's
reactions, not its own flow control.
"""
from __future__ import annotations

import socket
import time
from typing import Any, NamedTuple

from cypid.pyx.codec import (
    AMQP_HEADER, SASL_HEADER, Array, DecodeError, Described, FrameReader, decode_performative, encode,
    encode_frame, encode_transfer_frames, symbol, ubyte, uint, ulong, ushort,
)

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(0x40, 0x45)
AMQP_FRAME, SASL_FRAME = 0, 1
ERROR = 0x1D
SOURCE, TARGET = 0x28, 0x29
ACCEPTED, REJECTED, RELEASED, MODIFIED = 0x24, 0x25, 0x26, 0x27
SENDER, RECEIVER = False, True   # attach role: what the *client* end of the link is

NAMES = {OPEN: "open", BEGIN: "begin", ATTACH: "attach", FLOW: "flow", TRANSFER: "transfer",
         DISPOSITION: "disposition", DETACH: "detach", END: "end", CLOSE: "close",
         SASL_MECHANISMS: "sasl-mechanisms", SASL_INIT: "sasl-init", SASL_CHALLENGE: "sasl-challenge",
         SASL_RESPONSE: "sasl-response", SASL_OUTCOME: "sasl-outcome"}


def split_frames(data: bytes) -> list[bytes]:
    """Cut a run of encoded frames (as encode_frame/encode_transfer_frames give) into single frames."""
    out, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i:i + size])
        i += size
    return out


class ProtocolError(AssertionError):
    """The broker answered something other than what the test expected (or nothing in time)."""


class Error(NamedTuple):
    condition: str | None
    description: str | None
    info: Any

    @classmethod
    def from_value(cls, value) -> Error | None:
        if value is None:
            return None
        fields = list(getattr(value, "value", None) or [])
        fields += [None] * (3 - len(fields))
        cond = fields[0]
        return cls(str(cond) if cond is not None else None, fields[1], fields[2])


class Frame(NamedTuple):
    type: int          # 0 AMQP, 1 SASL
    channel: int
    code: int          # performative descriptor code
    fields: list
    payload: bytes

    @property
    def name(self) -> str:
        return NAMES.get(self.code, hex(self.code))

    def field(self, i: int, default=None):
        return self.fields[i] if len(self.fields) > i and self.fields[i] is not None else default

    @property
    def error(self) -> Error | None:
        """The error of a close (field 0), end (0) or detach (2)."""
        index = {CLOSE: 0, END: 0, DETACH: 2}.get(self.code)
        return Error.from_value(self.field(index)) if index is not None else None

    def __repr__(self) -> str:
        extra = " +%d bytes" % len(self.payload) if self.payload else ""
        return "<%s ch=%d %r%s>" % (self.name, self.channel, self.fields, extra)


def source(address: str | None = None, **extra) -> Described:
    """A source terminus: address, then optional fields by name (``distribution_mode="copy"``)."""
    fields = [address] + [None] * 10
    order = ["durable", "expiry_policy", "timeout", "dynamic", "dynamic_node_properties",
             "distribution_mode", "filter", "default_outcome", "outcomes", "capabilities"]
    for name, value in extra.items():
        fields[1 + order.index(name)] = value
    while fields and fields[-1] is None:
        fields.pop()
    return Described(ulong(SOURCE), fields)


def target(address: str | None = None, capabilities=None) -> Described:
    fields = [address]
    if capabilities:
        fields += [None] * 5 + [Array(0xA3, [symbol(c) for c in capabilities])]
    return Described(ulong(TARGET), fields)


def outcome(code: int, value=None) -> Described:
    return Described(ulong(code), list(value or []))


def encode_message(body: Any = None, *, header: list | None = None, properties: list | None = None,
                   application_properties: dict | None = None) -> bytes:
    """A message: optional header/properties/application-properties sections and an amqp-value body."""
    out = b""
    if header is not None:
        out += encode(Described(ulong(0x70), header))
    if properties is not None:
        out += encode(Described(ulong(0x73), properties))
    if application_properties is not None:
        out += encode(Described(ulong(0x74), application_properties))
    return out + encode(Described(ulong(0x77), body))


class RawClient:
    """One TCP connection to a broker; every read is bounded by ``timeout`` seconds."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, max_frame_size: int = 1 << 24):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local = self.sock.getsockname()
        self.reader = FrameReader(max_frame_size)
        self.eof = False
        self.headers: list[bytes] = []     # protocol headers the broker sent
        self.frames: list[Frame] = []      # every frame read (log of the conversation)
        self.remote_open: Frame | None = None
        self.remote_max_frame = 512
        self.next_outgoing_id = 0
        self.next_delivery_id = 0
        self.peer_handles: dict[int, int] = {}   # our link handle -> the broker's handle for the link
        self.log_offset = 0                       # see connect()

    @classmethod
    def connect(cls, broker, **kwargs) -> RawClient:
        """Connect to a BrokerProcess (or anything with ``host`` and ``port``). ``log_offset`` is
        the broker's log size before connecting, so that log checks see only this connection's."""
        log_offset = broker.log_size() if hasattr(broker, "log_size") else 0
        client = cls(broker.host, broker.port, **kwargs)
        client.log_offset = log_offset
        return client

    # -- identity ---------------------------------------------------------------------------
    @property
    def local_port(self) -> int:
        return self._local[1]

    @property
    def address_tag(self) -> str:
        """How the broker's log names this connection's client end (``127.0.0.1:PORT``)."""
        return "%s:%d" % self._local[:2]

    # -- sending ----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write raw bytes; a broker that already closed the socket is not an error here."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_frame(self, channel: int, code: int, fields: list, payload: bytes = b"",
                   frame_type: int = AMQP_FRAME) -> None:
        self.send(encode_frame(channel, code, fields, payload, frame_type))

    def shutdown_write(self) -> None:
        """Half-close: the broker reads EOF, and can still answer."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------
    def _recv(self, deadline: float) -> bool:
        """Read more bytes into the frame reader; False at EOF (or reset). TimeoutError at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing more from the broker in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("nothing more from the broker in time") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.reader.feed(data)
        return True

    def read_header(self, timeout: float | None = None) -> bytes | None:
        """The next 8-byte protocol header the broker sends, or None at EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            header = self.reader.read_protocol_header()
            if header is not None:
                self.headers.append(header)
                return header
            if not self._recv(deadline):
                return None

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next non-empty frame, or None at EOF. TimeoutError if nothing comes in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            raw = self.reader.next_frame()
            if raw is not None:
                ftype, channel, body = raw
                if not body:
                    continue    # heartbeat
                code, fields, payload = decode_performative(body)
                frame = Frame(ftype, channel, code, fields, payload)
                self.frames.append(frame)
                return frame
            if not self._recv(deadline):
                if self.reader.buffered:
                    raise ProtocolError("EOF in the middle of a frame (%d bytes)" % self.reader.buffered)
                return None

    def expect(self, code: int, channel: int | None = None, timeout: float | None = None,
               skip=(FLOW, DISPOSITION)) -> Frame:
        """Read until a frame ``code`` (on ``channel``) arrives, skipping the codes in ``skip``;
        anything else, EOF or the deadline is a ProtocolError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise ProtocolError("no %s from the broker in time; got %r"
                                    % (NAMES.get(code), self.frames)) from None
            if frame is None:
                raise ProtocolError("EOF while waiting for %s; got %r" % (NAMES.get(code), self.frames))
            if frame.code == code and (channel is None or frame.channel == channel):
                return frame
            if frame.code in skip:
                continue
            raise ProtocolError("expected %s, got %r" % (NAMES.get(code), frame))

    def read_until_eof(self, timeout: float | None = None) -> list[Frame]:
        """Every frame until the broker closes the socket; TimeoutError if it does not in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        frames = []
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                return frames
            frames.append(frame)

    def expect_eof(self, timeout: float | None = None) -> list[Frame]:
        """The broker closes the socket in time; returns the frames it sent before."""
        try:
            return self.read_until_eof(timeout)
        except TimeoutError:
            raise ProtocolError("the broker did not close the connection; got %r" % self.frames) from None

    @staticmethod
    def _check_error(frame: Frame, condition: str | None, what: str) -> Frame:
        err = frame.error
        if condition is None:
            if err is not None:
                raise ProtocolError("%s carries an unexpected error %r" % (what, err))
        elif err is None or err.condition != condition:
            raise ProtocolError("%s has error %r, expected condition %s" % (what, err, condition))
        return frame

    def expect_close(self, condition: str | None, timeout: float | None = None) -> Frame:
        """A close with ``condition`` (None: no error) arrives, then EOF. Frames before the close
        (an open the broker owed, flows, detaches, ...) are skipped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        frame = self.expect(CLOSE, 0, timeout,
                            skip=(OPEN, FLOW, DISPOSITION, BEGIN, ATTACH, TRANSFER, DETACH, END))
        self._check_error(frame, condition, "close")
        rest = self.expect_eof(max(0.0, deadline - time.monotonic()))
        if rest:
            raise ProtocolError("frames after close: %r" % rest)
        return frame

    def expect_end(self, condition: str | None, channel: int | None = None,
                   timeout: float | None = None) -> Frame:
        """An end (on the broker's ``channel``) with ``condition``; the connection stays open."""
        frame = self.expect(END, channel, timeout, skip=(FLOW, DISPOSITION, ATTACH, DETACH, TRANSFER))
        return self._check_error(frame, condition, "end")

    def expect_detach(self, condition: str | None, handle: int | None = None, channel: int | None = None,
                      timeout: float | None = None) -> Frame:
        """A detach (closed) of the broker's ``handle`` with ``condition``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.expect(DETACH, channel, max(0.0, deadline - time.monotonic()),
                                skip=(FLOW, DISPOSITION, ATTACH, TRANSFER))
            if handle is None or frame.field(0) == handle:
                return self._check_error(frame, condition, "detach")

    # -- handshakes -------------------------------------------------------------------------
    def sasl(self, mechanism: str = "ANONYMOUS", response: bytes | None = None) -> int:
        """SASL header and init; returns the outcome code (0 = ok)."""
        self.send(SASL_HEADER)
        header = self.read_header()
        if header != SASL_HEADER:
            raise ProtocolError("broker answered the SASL header with %r" % (header,))
        mechs = self.expect(SASL_MECHANISMS)
        offered = [str(m) for m in (mechs.field(0) or [])]
        if mechanism not in offered:
            raise ProtocolError("mechanism %s not offered (%s)" % (mechanism, offered))
        return self.sasl_init(mechanism, response)

    def sasl_init(self, mechanism, response: bytes | None = None) -> int:
        self.send_frame(0, SASL_INIT, [symbol(mechanism) if isinstance(mechanism, str) else mechanism,
                                       response], frame_type=SASL_FRAME)
        return self.expect(SASL_OUTCOME).field(0)

    def amqp_header(self) -> bytes | None:
        """Send the AMQP header; returns the header the broker answers with (None at EOF)."""
        self.send(AMQP_HEADER)
        return self.read_header()

    def send_open(self, container_id: str = "rawclient", max_frame_size: int | None = None,
                  idle_time_out: int | None = None) -> None:
        fields = [container_id, "localhost",
                  uint(max_frame_size) if max_frame_size is not None else None]
        if idle_time_out is not None:
            fields += [None, uint(idle_time_out)]
        self.send_frame(0, OPEN, fields)

    def open(self, container_id: str = "rawclient", max_frame_size: int | None = None,
             idle_time_out: int | None = None) -> Frame:
        """Send open, wait for the broker's."""
        self.send_open(container_id, max_frame_size, idle_time_out)
        self.remote_open = self.expect(OPEN, 0)
        self.remote_max_frame = self.remote_open.field(2, 0xFFFFFFFF)
        return self.remote_open

    def handshake(self, sasl: bool = True, container_id: str = "rawclient",
                  max_frame_size: int | None = None) -> Frame:
        """SASL ANONYMOUS (unless ``sasl=False``), AMQP header, open. Returns the broker's open."""
        if sasl:
            code = self.sasl()
            if code != 0:
                raise ProtocolError("SASL outcome %s" % code)
        header = self.amqp_header()
        if header != AMQP_HEADER:
            raise ProtocolError("broker answered the AMQP header with %r" % (header,))
        return self.open(container_id, max_frame_size)

    def begin(self, channel: int = 0, incoming_window: int = 0x7FFFFFFF) -> int:
        """Begin a session on ``channel``; returns the broker's channel for it."""
        self.send_frame(channel, BEGIN, [None, uint(self.next_outgoing_id), uint(incoming_window),
                                         uint(0x7FFFFFFF)])
        while True:
            frame = self.expect(BEGIN)
            if frame.field(0) == channel:
                return frame.channel

    def attach(self, channel: int, name: str, handle: int, role: bool, src=None, tgt=None,
               snd_settle_mode: int | None = None, rcv_settle_mode: int | None = None,
               wait: bool = True) -> Frame | None:
        """Attach a link (``role`` SENDER/RECEIVER is this client's end); returns the broker's attach."""
        self.send_frame(channel, ATTACH, [
            name, uint(handle), role,
            ubyte(snd_settle_mode) if snd_settle_mode is not None else None,
            ubyte(rcv_settle_mode) if rcv_settle_mode is not None else None,
            src, tgt, None, None, uint(0) if role == SENDER else None,
        ])
        if not wait:
            return None
        while True:
            frame = self.expect(ATTACH, skip=(FLOW, DISPOSITION, TRANSFER))
            if frame.field(0) == name:
                self.peer_handles[handle] = frame.field(1)
                return frame

    def flow(self, channel: int, handle: int | None = None, delivery_count: int = 0, credit: int = 0,
             drain: bool = False, echo: bool = False, next_incoming_id: int = 0,
             properties: dict | None = None) -> None:
        fields = [uint(next_incoming_id), uint(0x7FFFFFFF), uint(self.next_outgoing_id), uint(0x7FFFFFFF)]
        if handle is not None:
            fields += [uint(handle), uint(delivery_count), uint(credit), None, drain]
        if echo or properties is not None:
            fields += [None] * (9 - len(fields)) + [echo]
        if properties is not None:
            fields.append(properties)
        self.send_frame(channel, FLOW, fields)

    def transfer_frames(self, channel: int, handle: int, message: bytes, settled: bool = False,
                        max_frame_size: int | None = None) -> bytes:
        """The encoded frames of one delivery (split as the broker's max-frame-size requires)."""
        did = self.next_delivery_id
        self.next_delivery_id = (did + 1) & 0xFFFFFFFF
        data = encode_transfer_frames(channel, handle, did, did.to_bytes(4, "big"), settled, message,
                                      max_frame_size or self.remote_max_frame)
        return data

    def transfer(self, channel: int, handle: int, message: bytes, settled: bool = False) -> int:
        """Send one whole delivery; returns its delivery-id."""
        did = self.next_delivery_id
        self.send(self.transfer_frames(channel, handle, message, settled))
        return did

    def disposition(self, channel: int, first: int, last: int | None = None, settled: bool = True,
                    state=None, role: bool = RECEIVER) -> None:
        self.send_frame(channel, DISPOSITION, [
            role, uint(first), uint(last) if last is not None else None, settled,
            state if state is not None else outcome(ACCEPTED)])

    def detach(self, channel: int, handle: int, closed: bool = True, error=None) -> None:
        self.send_frame(channel, DETACH, [uint(handle), closed, error])

    def end(self, channel: int, error=None) -> None:
        self.send_frame(channel, END, [error] if error is not None else [])

    def send_close(self, error=None) -> None:
        self.send_frame(0, CLOSE, [error] if error is not None else [])

    def close_cleanly(self, timeout: float | None = None) -> None:
        """Send close, expect the broker's close (without error) and EOF."""
        self.send_close()
        self.expect_close(None, timeout)

    # -- consuming --------------------------------------------------------------------------
    def receive_all(self, channel: int, handle: int, credit: int, timeout: float | None = None):
        """On a link just attached (delivery-count 0): grant ``credit`` with drain and collect
        transfers until the broker's drained flow answers -- every message the queue holds for this
        link, up to ``credit``. Returns a list of (delivery-id, message bytes); multi-frame deliveries
        are joined. Nothing is settled."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self.flow(channel, handle, delivery_count=0, credit=credit, drain=True)
        out: list[tuple[int, bytes]] = []
        partial: bytearray | None = None
        did = None
        while True:
            frame = self._next_link_frame(channel, deadline)
            if frame.code == TRANSFER:
                if partial is None:
                    did = frame.field(1)
                    partial = bytearray()
                partial += frame.payload
                if not frame.field(5, False):
                    out.append((did, bytes(partial)))
                    partial = None
                    if len(out) >= credit:
                        return out
                continue
            # A flow for the link with drain set and no credit left: the queue had no more.
            if frame.field(4) == self.peer_handles.get(handle, handle) and frame.field(8, False) \
                    and frame.field(6, 0) == 0:
                if partial is not None:
                    raise ProtocolError("drained in the middle of a delivery")
                return out

    def _next_link_frame(self, channel: int, deadline: float) -> Frame:
        while True:
            try:
                frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise ProtocolError("no transfer or drained flow in time; got %r" % self.frames[-5:]) \
                    from None
            if frame is None:
                raise ProtocolError("EOF while receiving; got %r" % self.frames[-5:])
            if frame.channel != channel:
                continue
            if frame.code in (TRANSFER, FLOW):
                return frame
            if frame.code in (DETACH, END, CLOSE):
                raise ProtocolError("link ended while receiving: %r" % (frame,))


__all__ = [
    "RawClient", "Frame", "Error", "ProtocolError", "split_frames", "source", "target", "outcome",
    "encode_message",
    "OPEN", "BEGIN", "ATTACH", "FLOW", "TRANSFER", "DISPOSITION", "DETACH", "END", "CLOSE",
    "SASL_MECHANISMS", "SASL_INIT", "SASL_CHALLENGE", "SASL_RESPONSE", "SASL_OUTCOME",
    "AMQP_FRAME", "SASL_FRAME", "SENDER", "RECEIVER", "ACCEPTED", "REJECTED", "RELEASED", "MODIFIED",
    "AMQP_HEADER", "SASL_HEADER", "DecodeError", "Described", "Array", "symbol", "uint", "ulong", "ushort",
    "ubyte",
]
